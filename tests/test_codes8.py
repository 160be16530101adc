"""8-bit search codes (``IndexConfig.search_bits=8``): the codec against a
numpy reference, and an index that ranks by them through build, search,
files, live updates and the store."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import clustered, exact_distances, ground_truth, queries_near, recall_at_k
from leann_store import IndexConfig, LeannIndex, LeannStore, StoreConfig
from leann_store.codec import train_codec
from leann_store.errors import InvalidInputError
from test_update import check_graph, live_recall

N, DIM = 3000, 32


@pytest.fixture(scope="module")
def data():
    x = clustered(N, DIM, seed=31)
    return x, queries_near(x, 60, seed=32)


@pytest.fixture(scope="module")
def codec8(data):
    x, _ = data
    return train_codec(x, num_subspaces=8, bits=8, seed=0)


def _reference_codes(codec, x):
    p = codec.project(x).reshape(len(x), codec.num_subspaces, -1)
    d = ((p[:, :, None, :] - codec.centroids[None]) ** 2).sum(-1)  # (n, msub, 256)
    return d.argmin(-1), d


def test_codec_shapes_and_encoding_match_numpy(codec8, data):
    x, _ = data
    assert codec8.bits == 8 and codec8.centroids.shape[1] == 256
    assert codec8.code_bytes == codec8.num_subspaces == 8
    codes = codec8.encode(x[:500])
    ref, _ = _reference_codes(codec8, x[:500])
    assert codes.shape == (500, 8) and codes.dtype == np.uint8
    # float ties aside, the C encoder picks numpy's nearest centroid
    assert (codes == ref).mean() > 0.999


def test_float_table_matches_numpy_and_quantised_tables_are_refused(codec8, data):
    x, _ = data
    _, d = _reference_codes(codec8, x[:1])
    table = codec8.native.adt_float(codec8.project(x[:1])[0])
    np.testing.assert_allclose(table, d[0], rtol=1e-4, atol=1e-4)
    with pytest.raises(InvalidInputError, match="4-bit"):
        codec8.sdt()
    with pytest.raises(InvalidInputError, match="4-bit"):
        codec8.adt(x[0])


def test_eight_bits_code_better_than_four_at_equal_bytes(data):
    """256 centroids on the same projection keep more of each row."""
    x, _ = data
    c8 = train_codec(x, num_subspaces=8, bits=8, seed=0)
    c4 = train_codec(x, num_subspaces=16, seed=0)
    assert c8.code_bytes == c4.code_bytes
    assert c8.coding_error(x) < c4.coding_error(x)


def test_bad_bits_are_refused(data):
    x, _ = data
    with pytest.raises(InvalidInputError, match="bits"):
        train_codec(x, num_subspaces=8, bits=6)
    with pytest.raises(InvalidInputError, match="search_bits"):
        IndexConfig(search_bits=16)
    with pytest.raises(InvalidInputError, match="rotation"):
        train_codec(x, num_subspaces=8, bits=8, rotation_iterations=2)


@pytest.fixture(scope="module")
def index8(data):
    x, _ = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, search_subspaces=16, search_bits=8,
                                            threads=1))
    index.cache_bytes = 0
    return index


def test_index_ranks_by_eight_bit_codes(index8, data):
    x, q = data
    sc = index8.search_codec
    assert sc.bits == 8 and sc.code_bytes == 16
    truth = ground_truth(x, q, 10, "l2")
    res = index8.search(q, k=10, embed=lambda ids: x[ids], rerank_ratio=0.1, confidence=None)
    assert recall_at_k(res.ids, truth) >= 0.9
    d = exact_distances(x, q, "l2")
    np.testing.assert_allclose(res.distances, np.take_along_axis(d, res.ids, 1), rtol=1e-4, atol=1e-4)


def test_eight_bit_index_round_trips(index8, data, tmp_path):
    x, q = data
    path = tmp_path / "c8.leann"
    index8.save(path)
    back = LeannIndex.load(path)
    back.cache_bytes = 0
    assert back.search_codec.bits == 8 and back.config.search_bits == 8
    a = index8.search(q, k=10, embed=lambda ids: x[ids])
    b = back.search(q, k=10, embed=lambda ids: x[ids])
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.stats["recomputed"], b.stats["recomputed"])


def test_eight_bit_index_takes_adds_deletes_and_compaction(data):
    x, q = data
    cfg = IndexConfig(metric="cosine", seed=2, search_subspaces=16, search_bits=8)
    index = LeannIndex.build(x[:1000], cfg)
    for s in range(1000, N, 1000):
        index.add(x[s:s + 1000])
    check_graph(index)
    dead = np.zeros(N, bool)
    dead[np.random.default_rng(1).choice(N, 900, replace=False)] = True
    index.delete(np.flatnonzero(dead))
    grown = live_recall(index, x, dead, q, "cosine")
    mapping = index.compact()
    check_graph(index)
    assert len(index) == N - 900 and index.deleted_count == 0
    live = np.flatnonzero(~dead)
    np.testing.assert_array_equal(mapping[live], np.arange(len(live)))
    compacted = live_recall(index, x[live], np.zeros(len(live), bool), q, "cosine")
    fresh = live_recall(LeannIndex.build(x[live], cfg), x[live], np.zeros(len(live), bool), q, "cosine")
    assert grown >= 0.9 and compacted >= fresh - 0.03, (grown, compacted, fresh)


def test_store_with_eight_bit_codes(data, tmp_path):
    x, q = data
    cfg = StoreConfig(index=IndexConfig(metric="l2", search_subspaces=16, search_bits=8, seed=0),
                      graph_rows=500, merge_rows=500)
    texts = [f"passage {i}" for i in range(N)]
    def embed(batch):  # passages by number; anything else (the store's probe) as row 0
        return x[[int(t.split()[1]) if t.startswith("passage ") else 0 for t in batch]]

    with LeannStore.open(tmp_path / "s", embed, cfg) as store:
        for s in range(0, N, 1000):
            store.add(texts[s:s + 1000], embeddings=x[s:s + 1000])
        store.flush()
        store.check()
        st = store.stats()
        assert st["graph_rows"] > 0 and st["codec"]["bits"] == 8 and st["codec"]["code_bytes"] == 16
        hits = store.search(q[0], k=5)
        truth = ground_truth(x, q[:1], 5, "l2")[0]
        assert len(set(int(h.text.split()[1]) for h in hits) & set(truth.tolist())) >= 4
