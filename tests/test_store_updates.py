"""LeannStore's live updates: an exact store up to ``graph_rows``, merges
that insert into the graph (no re-embedding, stable nodes), compaction from
codes (no embed call), codec drift and ``refresh_codec``."""

from __future__ import annotations

import os
import sqlite3
import warnings

import numpy as np
import pytest

import leann_store.store as store_mod
from leann_store import CodecDriftWarning, LeannStore, StoreConfig
from store_util import HashEmbed, random_text, text_vector


def texts_for(n: int, seed: int = 0, prefix: str = "doc") -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{prefix}{i} " + random_text(rng) for i in range(n)]


def node_of(store: LeannStore) -> dict[str, int]:
    conn = sqlite3.connect(os.path.join(store.path, "docstore.sqlite"))
    try:
        return {i: n for i, n in conn.execute("SELECT id, node FROM docs WHERE node IS NOT NULL")}
    finally:
        conn.close()


def stored_vectors(store: LeannStore) -> int:
    conn = sqlite3.connect(os.path.join(store.path, "docstore.sqlite"))
    try:
        return int(conn.execute("SELECT count(*) FROM vecs").fetchone()[0])
    finally:
        conn.close()


def recall(store: LeannStore, texts: list[str], ids: list[str], queries: list[str], k: int = 10) -> float:
    x = np.stack([text_vector(t) for t in texts]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    got = 0
    for q in queries:
        qv = text_vector(q)
        truth = {ids[i] for i in np.argsort(-(x @ (qv / np.linalg.norm(qv))))[:k]}
        got += len(truth & {h.id for h in store.search(qv, k=k)})
    return got / (k * len(queries))


def test_merges_insert_without_embedding_and_keep_nodes(tmp_path):
    embed = HashEmbed()
    cfg = StoreConfig.from_options(graph_rows=64, merge_rows=64)
    s = LeannStore.open(tmp_path / "s", embed=embed, config=cfg)
    texts = texts_for(640)
    ids = [f"d{i}" for i in range(640)]
    s.add(texts[:64], ids=ids[:64], embeddings=[text_vector(t) for t in texts[:64]])
    first = node_of(s)
    assert len(first) == 64
    calls = embed.calls
    for a in range(64, 640, 32):
        s.add(texts[a:a + 32], ids=ids[a:a + 32], embeddings=[text_vector(t) for t in texts[a:a + 32]])
    assert embed.calls == calls  # merges re-embed nothing
    nodes = node_of(s)
    assert all(nodes[i] == n for i, n in first.items())  # a merge never renumbers
    st = s.stats()
    assert st["graph_rows"] == 640 and st["delta_rows"] == 0 and st["last_merge"]["kind"] == "insert"
    assert stored_vectors(s) == 0
    s.check()
    assert recall(s, texts, ids, texts_for(40, seed=9, prefix="q")) >= 0.85
    s.close()
    with LeannStore.open(tmp_path / "s", embed=embed) as again:
        assert node_of(again) == nodes and len(again) == 640
        again.check()


def test_compact_uses_codes_only(tmp_path):
    embed = HashEmbed()
    cfg = StoreConfig.from_options(graph_rows=64, compact_fraction=1.0)
    s = LeannStore.open(tmp_path / "s", embed=embed, config=cfg)
    texts = texts_for(1000)
    ids = [f"d{i}" for i in range(1000)]
    s.add(texts, ids=ids, embeddings=[text_vector(t) for t in texts])
    rng = np.random.default_rng(3)
    gone = set(rng.choice(1000, size=300, replace=False).tolist())
    s.delete([ids[i] for i in sorted(gone)])
    assert s.stats()["deleted"] == 300  # compact_fraction=1.0: not yet
    calls, seen = embed.calls, len(embed.texts)
    s.compact()
    assert embed.calls == calls and len(embed.texts) == seen  # no embed call at all
    st = s.stats()
    assert st["deleted"] == 0 and st["graph_rows"] == 700 and st["last_merge"]["kind"] == "compact"
    assert sorted(node_of(s).values()) == list(range(700))
    s.check()
    live = [i for i in range(1000) if i not in gone]
    r = recall(s, [texts[i] for i in live], [ids[i] for i in live], texts_for(40, seed=9, prefix="q"))
    assert r >= 0.85
    s.close()
    with LeannStore.open(tmp_path / "s", embed=embed) as again:
        assert len(again) == 700
        again.check()


def test_deletes_compact_past_the_threshold(tmp_path):
    cfg = StoreConfig.from_options(graph_rows=64, compact_fraction=0.25)
    with LeannStore.temporary(embed=HashEmbed(), config=cfg) as s:
        texts = texts_for(400)
        ids = s.add(texts, embeddings=[text_vector(t) for t in texts])
        s.delete(ids[:90])
        assert s.stats()["deleted"] == 90  # 22.5%
        s.delete(ids[90:100])
        st = s.stats()
        assert st["deleted"] == 0 and st["graph_rows"] == 300
        s.delete(ids[100:])  # every graph row: the store goes back to exact
        st = s.stats()
        assert st["documents"] == 0 and st["generation"] == 0
        s.add(["alpha beta"], ids=["x"])
        assert [h.id for h in s.search(text_vector("alpha beta"), k=1)] == ["x"]
        s.check()


def test_exact_until_graph_rows_then_one_build(tmp_path):
    embed = HashEmbed()
    cfg = StoreConfig.from_options(graph_rows=256, merge_rows=64)
    s = LeannStore.open(tmp_path / "s", embed=embed, config=cfg)
    texts = texts_for(400)
    calls = embed.calls
    for a in range(0, 240, 60):  # 240 rows: still exact, with their vectors
        s.add(texts[a:a + 60], embeddings=[text_vector(t) for t in texts[a:a + 60]])
    st = s.stats()
    assert st["graph_rows"] == 0 and st["delta_rows"] == 240 and stored_vectors(s) == 240
    hits = s.search(text_vector(texts[7]), k=1)
    assert hits.stats["recomputed"] == 0 and hits[0].text == texts[7]
    s.close()
    s = LeannStore.open(tmp_path / "s", embed=embed)
    s.add(texts[240:300], embeddings=[text_vector(t) for t in texts[240:300]])  # reaches graph_rows
    st = s.stats()
    assert st["graph_rows"] == 300 and st["delta_rows"] == 0 and st["last_merge"]["kind"] == "build"
    assert stored_vectors(s) == 0 and st["codec"]["drift"] == 1.0
    s.add(texts[300:370], embeddings=[text_vector(t) for t in texts[300:370]])  # a merge: inserted
    st = s.stats()
    assert st["graph_rows"] == 370 and st["last_merge"]["kind"] == "insert" and stored_vectors(s) == 0
    assert embed.calls == calls + 3  # the reopen's probe and one check row per open store, nothing else
    s.check()
    s.close()


def shifted(n: int, seed: int, shift: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x[:, :8] *= 3.0  # most energy in the first half...
    if shift:
        x = x[:, ::-1] * shift  # ...or in the second half
    return np.ascontiguousarray(x)


def test_codec_drift_warns_and_refresh_codec_fixes_it(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "DRIFT_MIN_ROWS", 256)
    vecs = {}

    def embed(texts):  # rows are looked up by their text
        return np.stack([vecs[t] if t in vecs else text_vector(t) for t in texts])

    cfg = StoreConfig.from_options(graph_rows=128, merge_rows=128, metric="l2", pca_variance=0.5)
    s = LeannStore.open(tmp_path / "s", embed=embed, config=cfg, check_model=False)
    a = shifted(1024, 1, 0.0)
    texts = [f"a{i}" for i in range(1024)]
    vecs.update(zip(texts, a))
    s.add(texts, embeddings=a)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CodecDriftWarning)
        more = shifted(256, 2, 0.0)  # the same distribution: no warning
        s.add([f"b{i}" for i in range(256)], embeddings=more)
    assert s.stats()["codec"]["drift"] < 1.25
    b = shifted(256, 3, 1.0)
    tb = [f"c{i}" for i in range(256)]
    vecs.update(zip(tb, b))
    vecs.update(zip([f"b{i}" for i in range(256)], more))
    with pytest.warns(CodecDriftWarning, match="refresh_codec"):
        s.add(tb, embeddings=b)
    assert s.stats()["codec"]["drift"] > 1.25
    s.refresh_codec()
    st = s.stats()
    assert st["codec"]["drift"] == 1.0 and st["last_merge"]["kind"] == "refresh" and st["graph_rows"] == 1536
    s.check()
    s.close()
