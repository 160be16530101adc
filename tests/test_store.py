"""LeannStore: the API, the docstore's exact types, merges, fingerprints,
locks, readers, temporary stores and the consistency check."""

from __future__ import annotations

import datetime
import gc
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from leann_store import (
    CallbackError,
    CorruptIndexError,
    DimensionMismatchError,
    FilterError,
    InvalidInputError,
    LeannStore,
    ModelMismatchError,
    StoreConfig,
    StoreLockedError,
    UnknownIdError,
)
from leann_store.store import PROBE_TEXT
from store_util import HashEmbed, Reference, random_text, text_vector

SMALL = StoreConfig.from_options(graph_rows=64, merge_rows=64)


def texts_for(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"doc{i} " + random_text(rng) for i in range(n)]


@pytest.fixture
def embed():
    return HashEmbed()


@pytest.fixture
def store(tmp_path, embed):
    s = LeannStore.open(tmp_path / "s", embed=embed, config=SMALL)
    yield s
    s.close()


def test_add_get_search_exact_while_small(store):
    texts = texts_for(20)
    ids = store.add(texts, metadatas=[{"i": i} for i in range(20)])
    assert len(ids) == 20 and len(set(ids)) == 20 and len(store) == 20
    assert [r.text for r in store.get(ids[::-1])] == texts[::-1]
    q = text_vector("alpha beta")
    hits = store.search(q, k=5)
    ref = Reference()
    ref.add(texts, [{"i": i} for i in range(20)], ids)
    assert [h.id for h in hits] == [i for _, i in ref.search(q, 5)]
    assert np.allclose([h.distance for h in hits], [d for d, _ in ref.search(q, 5)], atol=1e-5)
    assert hits.stats["delta"] == 5 and hits.stats["recomputed"] == 0
    assert store.stats()["graph_rows"] == 0


def test_upsert_replaces_and_last_occurrence_wins(store):
    store.add(["one", "two"], ids=["a", "b"])
    store.add(["uno", "dos", "DOS"], ids=["a", None, "c"], metadatas=[{"v": 1}, None, None])
    store.add(["x", "y"], ids=["d", "d"])
    assert len(store) == 5
    assert store.get(["a"])[0].text == "uno" and store.get(["a"])[0].metadata == {"v": 1}
    assert store.get(["d"])[0].text == "y"


def test_delete_missing_ids_are_ignored(store):
    store.add(["one", "two", "three"], ids=["a", "b", "c"])
    assert store.delete(["a", "zzz"]) == 1
    assert store.delete([]) == 0
    assert store.delete("b") == 1
    assert [r.id for r in store.get(["a", "b", "c"])] == ["c"]


def test_get_skips_missing_and_keeps_order(store):
    store.add(["one", "two", "three"], ids=["a", "b", "c"])
    assert [r.id for r in store.get(["c", "nope", "a", "c"])] == ["c", "a", "c"]


def test_metadata_types_round_trip_exactly(store):
    meta = {"int": 3, "float": 3.0, "bool": True, "none": None, "str": "ü", "nested": {"l": [1, 2.5, False, None,
            {"deep": "x"}]}, "big": 2**62, "neg": -1.5e-300}
    store.add(["t"], metadatas=[meta], ids=["m"])
    got = store.get(["m"])[0].metadata
    assert got == meta
    assert type(got["int"]) is int and type(got["float"]) is float and type(got["bool"]) is bool
    assert type(got["nested"]["l"][1]) is float and type(got["nested"]["l"][0]) is int


@pytest.mark.parametrize("value", [b"x", datetime.datetime(2020, 1, 1), {1, 2}, float("inf")])
def test_unstorable_metadata_names_the_key_and_stores_nothing(store, value):
    store.add(["keep"], ids=["k"])
    with pytest.raises(InvalidInputError) as exc:
        store.add(["a", "b"], metadatas=[{"fine": 1}, {"outer": {"bad": value}}], ids=["a", "b"])
    assert "outer.bad" in str(exc.value) and "metadatas[1]" in str(exc.value)
    assert len(store) == 1 and store.get(["a"]) == []


def test_bad_inputs_are_clear(store):
    with pytest.raises(InvalidInputError):
        store.add("one string")
    with pytest.raises(InvalidInputError):
        store.add(["a"], metadatas=[{}, {}])
    with pytest.raises(InvalidInputError):
        store.add(["a"], ids=[3])
    with pytest.raises(DimensionMismatchError):
        store.add(["a"], embeddings=np.ones((1, 3)))
    with pytest.raises(InvalidInputError):
        store.add(["a"], embeddings=np.full((1, 16), np.nan))
    with pytest.raises(InvalidInputError):
        store.add(["a"], embeddings=np.zeros((1, 16)))  # no cosine for a zero vector
    store.add(["a"])
    with pytest.raises(DimensionMismatchError):
        store.search(np.ones(3), k=1)
    with pytest.raises(InvalidInputError):
        store.search(text_vector("a"), k=0)
    with pytest.raises(FilterError):
        store.search(text_vector("a"), k=1, filter={"a": {"$nope": 1}})
    assert len(store) == 1


def test_embed_failures_leave_the_store_as_it_was(tmp_path):
    good = HashEmbed()
    s = LeannStore.open(tmp_path / "s", embed=good, config=SMALL)
    s.add(["kept"], ids=["k"])
    s.close()

    class Broken(HashEmbed):
        def __call__(self, texts):
            if texts != [PROBE_TEXT]:
                return np.ones((len(texts), 5))  # wrong shape
            return super().__call__(texts)

    s = LeannStore.open(tmp_path / "s", embed=Broken())
    with pytest.raises(CallbackError, match="shape"):
        s.add(["new"])
    assert [r.id for r in s.find()] == ["k"]
    s.close()


def test_embed_texts_are_what_recompute_embeds(tmp_path):
    embed = HashEmbed()
    s = LeannStore.open(tmp_path / "s", embed=embed, config=SMALL)
    texts = texts_for(100)
    etexts = [f"title: t{i}\n{t}" for i, t in enumerate(texts)]
    s.add(texts, embed_texts=etexts, ids=[str(i) for i in range(100)])
    assert s.stats()["graph_rows"] == 100  # merged into a graph
    rec = s.get(["7"])[0]
    assert rec.text == texts[7] and rec.embed_text == etexts[7]
    embed.texts.clear()
    hits = s.search(text_vector(etexts[7]), k=3)
    assert hits[0].id == "7" and hits.stats["recomputed"] > 0
    assert set(embed.texts) <= set(etexts)
    s.close()


def test_caller_embeddings_are_dropped_once_in_the_graph(tmp_path):
    embed = HashEmbed()
    s = LeannStore.open(tmp_path / "s", embed=embed, config=SMALL)
    texts = texts_for(200)
    vecs = np.stack([text_vector(t) for t in texts])
    calls = embed.calls
    s.add(texts, embeddings=vecs)
    assert embed.calls == calls + 1  # one row embedded to check the model, nothing else
    st = s.stats()
    assert st["graph_rows"] == 200 and st["delta_rows"] == 0
    conn = sqlite3.connect(os.path.join(s.path, "docstore.sqlite"))
    assert conn.execute("SELECT count(*) FROM vecs").fetchone()[0] == 0
    conn.close()
    assert st["index_bytes"] < 200 * 16 * 4  # the graph file keeps no float vectors
    s.close()


def test_graph_search_matches_the_reference(tmp_path):
    embed = HashEmbed()
    s = LeannStore.open(tmp_path / "s", embed=embed, config=SMALL)
    texts = texts_for(300, seed=3)
    ids = s.add(texts, metadatas=[{"i": i, "odd": i % 2 == 1} for i in range(300)])
    ref = Reference()
    ref.add(texts, [{"i": i, "odd": i % 2 == 1} for i in range(300)], ids)
    rng = np.random.default_rng(5)
    for flt in (None, {"odd": True}, {"i": {"$lt": 3}}):
        hits_total = 0
        for _ in range(10):
            q = text_vector(random_text(rng, 3))
            got = s.search(q, k=10, filter=flt)
            want = ref.search(q, 10, flt)
            assert len(got) == len(want)
            hits_total += len({h.id for h in got} & {i for _, i in want})
        assert hits_total >= 0.9 * 10 * len(want)
    s.close()


def test_filter_in_graph_returns_k_when_k_match(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=SMALL)
    n = 2000
    texts = texts_for(n, seed=9)
    s.add(texts, metadatas=[{"bucket": i % 100} for i in range(n)])  # 1% per bucket
    assert s.stats()["graph_rows"] == n
    hits = s.search(text_vector("alpha"), k=10, filter={"bucket": 42})
    assert len(hits) == 10 and all(h.metadata["bucket"] == 42 for h in hits)
    hits = s.search(text_vector("alpha"), k=30, filter={"bucket": 42})
    assert len(hits) == 20  # only 20 match
    hits = s.search(text_vector("alpha"), k=10, filter=lambda m: m["bucket"] == 7)
    assert len(hits) == 10 and all(h.metadata["bucket"] == 7 for h in hits)
    s.close()


def test_delete_where_and_clear(store):
    store.add(texts_for(10), metadatas=[{"g": i % 3} for i in range(10)])
    assert store.delete_where({"g": 0}) == 4
    assert len(store) == 6 and not store.find({"g": 0})
    with pytest.raises(FilterError):
        store.delete_where(None)
    store.clear()
    assert len(store) == 0 and store.search(text_vector("a"), k=3) == []
    store.add(["again"])
    assert len(store) == 1


def test_embeddings_for_delta_and_graph_rows(tmp_path):
    embed = HashEmbed()
    s = LeannStore.open(tmp_path / "s", embed=embed, config=SMALL)
    texts = texts_for(80)
    ids = s.add(texts)                # merged: graph rows
    late = s.add(["late one"])        # delta row
    got = s.embeddings([ids[3], late[0], ids[0]])
    want = np.stack([text_vector(texts[3]), text_vector("late one"), text_vector(texts[0])])
    assert np.allclose(got, want, atol=1e-5)
    with pytest.raises(UnknownIdError):
        s.embeddings(["nope"])
    s.close()


def test_merge_policy_and_flush(tmp_path):
    embed = HashEmbed()
    cfg = StoreConfig.from_options(graph_rows=32, merge_rows=32, merge_fraction=0.5)
    s = LeannStore.open(tmp_path / "s", embed=embed, config=cfg)
    s.add(texts_for(20))
    assert s.stats()["graph_rows"] == 0
    s.add(texts_for(20, seed=1))
    assert s.stats()["graph_rows"] == 40 and s.stats()["generation"] == 1
    s.add(texts_for(10, seed=2))
    assert s.stats()["delta_rows"] == 10  # below max(32, 0.5 * 40)
    s.flush()
    st = s.stats()
    assert st["graph_rows"] == 50 and st["delta_rows"] == 0 and st["generation"] == 2
    assert st["last_merge"]["rows"] == 50
    assert sorted(os.listdir(s.path)) == sorted(["LOCK", "docstore.sqlite", "docstore.sqlite-wal",
                                                 "docstore.sqlite-shm", "graph-2.leann"])
    conn = sqlite3.connect(os.path.join(s.path, "docstore.sqlite"))
    assert conn.execute("SELECT count(*) FROM docs WHERE tokens IS NULL").fetchone()[0] == 0
    conn.close()
    s.check()
    s.close()


def test_reopen_keeps_everything(tmp_path):
    embed = HashEmbed()
    s = LeannStore.open(tmp_path / "s", embed=embed, config=SMALL)
    ids = s.add(texts_for(100))
    s.delete(ids[:10])
    s.add(["fresh"], ids=["f"])
    s.close()
    s = LeannStore.open(tmp_path / "s", embed=embed)
    assert len(s) == 91 and s.config == SMALL
    assert s.stats()["deleted"] == 10
    assert {h.id for h in s.search(text_vector("fresh"), k=1)} == {"f"}
    s.check()
    s.close()


def test_model_fingerprint(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(), model="hash-v1")
    s.add(["a"])
    s.close()
    with pytest.raises(ModelMismatchError) as exc:
        LeannStore.open(tmp_path / "s", embed=HashEmbed(salt="other"), model="hash-v2")
    assert "hash-v1" in str(exc.value) and "hash-v2" in str(exc.value)
    with pytest.raises(ModelMismatchError, match="8-d"):
        LeannStore.open(tmp_path / "s", embed=HashEmbed(dim=8), model="small")
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(salt="other"), check_model=False)
    assert len(s) == 1 and s.model == "hash-v1"
    s.close()


def test_stored_config_is_reused_and_a_mismatch_is_an_error(tmp_path):
    LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=SMALL).close()
    with pytest.raises(InvalidInputError, match="merge_rows"):
        LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=StoreConfig())
    with pytest.raises(InvalidInputError, match="index.metric"):
        LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=StoreConfig.from_options(metric="l2",
                                                                                           merge_rows=64))
    with pytest.raises(InvalidInputError, match="unknown store option"):
        StoreConfig.from_options(nope=1)


def test_missing_and_unusable_directories(tmp_path):
    with pytest.raises(FileNotFoundError):
        LeannStore.open(tmp_path / "nothing", embed=HashEmbed(), read_only=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        LeannStore.open(tmp_path / "empty", embed=HashEmbed(), read_only=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        LeannStore.open(tmp_path / "file", embed=HashEmbed())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory")
def test_unreadable_directory(tmp_path):
    d = tmp_path / "locked"
    LeannStore.open(d, embed=HashEmbed()).close()
    d.chmod(0)
    try:
        with pytest.raises(PermissionError):
            LeannStore.open(d, embed=HashEmbed())
    finally:
        d.chmod(0o755)


def test_second_writer_in_this_process_is_refused(store):
    with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
        LeannStore.open(store.path, embed=HashEmbed())
    r = LeannStore.open(store.path, embed=HashEmbed(), read_only=True)  # readers are fine
    r.close()


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from leann_store import LeannStore
    from store_util import HashEmbed
    s = LeannStore.open({path!r}, embed=HashEmbed(), read_only={ro})
    print(len(s), flush=True)
    sys.stdin.readline()
    print(len(s), [h.id for h in s.search(__import__("store_util").text_vector("zebra"), k=1)], flush=True)
""")


def _child(path, read_only):
    code = CHILD.format(tests=os.path.dirname(__file__), path=str(path), ro=read_only)
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_second_writer_process_gets_locked_by_pid(store):
    p = _child(store.path, False)
    out, err = p.communicate(timeout=120)
    assert p.returncode != 0
    assert "StoreLockedError" in err and f"pid {os.getpid()}" in err


def test_reader_process_sees_committed_state(store):
    store.add(["one", "two"], ids=["a", "b"])
    p = _child(store.path, True)
    assert p.stdout.readline().strip() == "2"
    store.add(["zebra zebra"], ids=["z"])
    p.stdin.write("\n")
    p.stdin.flush()
    line = p.stdout.readline().strip()
    p.wait(timeout=60)
    assert line == "3 ['z']", p.stderr.read()


def test_reader_follows_a_merge(tmp_path):
    w = LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=SMALL)
    w.add(texts_for(10))
    r = LeannStore.open(tmp_path / "s", embed=HashEmbed(), read_only=True)
    assert len(r) == 10 and r.stats()["generation"] == 0
    w.add(texts_for(100, seed=4))
    assert len(r) == 110 and r.stats()["generation"] == 1
    assert len(r.search(text_vector("alpha"), k=5)) == 5
    with pytest.raises(InvalidInputError, match="read-only"):
        r.add(["x"])
    r.close()
    w.close()


def test_temporary_store_is_removed(embed):
    s = LeannStore.temporary(embed=embed)
    path = s.path
    s.add(["a"])
    s.close()
    assert not os.path.exists(path)
    with LeannStore.temporary(embed=embed) as s:
        path = s.path
    assert not os.path.exists(path)
    s = LeannStore.temporary(embed=embed)
    path = s.path
    del s
    gc.collect()
    assert not os.path.exists(path)


def test_closed_store_refuses_work(store):
    store.close()
    with pytest.raises(InvalidInputError, match="closed"):
        store.add(["a"])
    with pytest.raises(InvalidInputError, match="closed"):
        store.search(text_vector("a"), k=1)
    store.close()  # twice is fine


def test_stats_and_snapshot(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=SMALL, model="hash")
    s.add(texts_for(150), metadatas=[{"i": i} for i in range(150)])
    st = s.stats()
    assert st["documents"] == 150 and st["model"] == "hash" and st["dim"] == 16
    assert st["index_bytes"] > 0 and st["docstore_bytes"] > 0 and 0 < st["bytes_per_passage"] < 1000
    json.dumps(st)
    s.snapshot(tmp_path / "copy")
    with pytest.raises(InvalidInputError):
        s.snapshot(tmp_path / "copy")
    s.add(["after the snapshot"])
    c = LeannStore.open(tmp_path / "copy", embed=HashEmbed())
    assert len(c) == 150
    c.check()
    c.close()
    s.close()


def test_check_finds_damage(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=SMALL)
    s.add(texts_for(100))
    s.check()
    conn = sqlite3.connect(os.path.join(s.path, "docstore.sqlite"))
    conn.execute("DELETE FROM docs WHERE node = 5")  # behind the store's back: the keyword index keeps it
    conn.commit()
    conn.close()
    with pytest.raises(CorruptIndexError, match=r"keyword index holds \+1 rows.*node 5"):
        s.check()
    s.close()
    gen = [f for f in os.listdir(tmp_path / "s") if f.startswith("graph-")][0]
    with open(tmp_path / "s" / gen, "r+b") as f:
        f.seek(200)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(CorruptIndexError):
        LeannStore.open(tmp_path / "s", embed=HashEmbed())


def test_orphan_graph_files_are_removed_on_open(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=SMALL)
    s.add(texts_for(100))
    s.close()
    with open(tmp_path / "s" / "graph-7.leann", "wb") as f:
        f.write(b"half-written")
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed())
    assert "graph-7.leann" not in os.listdir(s.path)
    s.close()


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_metrics_agree_between_delta_and_graph(tmp_path, metric):
    cfg = StoreConfig.from_options(metric=metric, graph_rows=64, merge_rows=64)
    s = LeannStore.open(tmp_path / metric, embed=HashEmbed(), config=cfg)
    texts = texts_for(100)
    s.add(texts[:90])
    s.add(texts[90:])  # 10 in the delta, 90 in the graph
    q = text_vector("alpha beta")
    x = np.stack([text_vector(t) for t in texts]).astype(np.float64)
    if metric == "l2":
        d = ((x - q) ** 2).sum(1)
    elif metric == "ip":
        d = -(x @ q)
    else:
        d = 1 - x @ q / np.linalg.norm(x, axis=1) / np.linalg.norm(q)
    hits = s.search(q, k=100)
    assert np.allclose(sorted(h.distance for h in hits), np.sort(d), rtol=1e-4, atol=1e-4)
    s.close()


def test_a_failed_first_open_leaves_no_directory(tmp_path):
    def broken(texts):
        raise RuntimeError("no model here")

    with pytest.raises(RuntimeError):
        LeannStore.open(tmp_path / "new", embed=broken)
    assert not (tmp_path / "new").exists()


def test_snapshot_is_compact_after_merges(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(dim=256), config=SMALL)
    for i in range(6):
        s.add(texts_for(60, seed=i), ids=[f"{i}-{j}" for j in range(60)])
    s.flush()
    s.snapshot(tmp_path / "copy")
    s.close()
    copy = os.path.getsize(tmp_path / "copy" / "docstore.sqlite")
    assert copy < 360 * 256 * 4  # the merged vectors are gone, not left as free pages
