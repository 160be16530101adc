"""Builds from a memory-mapped .npy: the same index as from memory, without
copying the vectors (issue: scale, streaming build)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from leann_store import IndexConfig, LeannIndex, LeannStore, StoreConfig


def _spectrum(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(np.arange(1, d + 1))).astype(np.float32)


def test_index_from_a_memory_map_equals_the_in_memory_build(tmp_path):
    x = _spectrum(4000, 48)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    cfg = IndexConfig(metric="l2", threads=1, seed=3)
    a, b = LeannIndex.build(x, cfg), LeannIndex.build(mm, cfg)
    q = x[:50] + 0.01
    fetch = lambda ids: x[ids]  # noqa: E731
    ra, rb = a.search(q, k=10, embed=fetch), b.search(q, k=10, embed=fetch)
    assert np.array_equal(ra.ids, rb.ids)
    assert (ra.ids[:, 0] == np.arange(50)).mean() > 0.9


def _traced_add_peak(tmp_path, n: int, d: int) -> tuple[int, LeannStore, np.ndarray]:
    x = _spectrum(n, d, seed=n)
    np.save(tmp_path / f"x{n}.npy", x)
    del x
    mm = np.load(tmp_path / f"x{n}.npy", mmap_mode="r")
    texts = [f"passage {i}" for i in range(n)]
    # the codec trains on a sample (2048 rows here; 32768 by default), so what
    # a build holds beyond the graph is that sample and a chunk of vectors
    cfg = StoreConfig.from_options(graph_rows=5000, codec_sample=2048)
    store = LeannStore.open(tmp_path / f"s{n}", embed=lambda b: np.ones((len(b), d), np.float32), config=cfg)
    tracemalloc.start()
    store.add(texts, embeddings=mm, check_model=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, store, mm


def test_store_add_from_a_memory_map_does_not_copy_it(tmp_path):
    """Python-side memory of an add from a memory map grows with the rows'
    texts and ids, not with their vectors: 3x the rows, a fraction of the
    vectors' growth."""
    d = 256
    small, s1, _ = _traced_add_peak(tmp_path, 10_000, d)
    large, s2, mm = _traced_add_peak(tmp_path, 30_000, d)
    grown_vectors = 20_000 * d * 4
    assert large - small < 0.35 * grown_vectors, (small, large)
    st = s2.stats()
    assert st["search"] == "graph" and st["graph_rows"] == 30_000 and st["delta_rows"] == 0
    own = lambda b: np.stack([mm[int(t.split()[1])] for t in b])  # noqa: E731  (the rows' own vectors)
    assert s2.search(np.asarray(mm[7]), k=1, embed=own)[0].text == "passage 7"
    s1.close()
    s2.close()
