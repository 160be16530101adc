"""Keyword and hybrid search through LeannStore: the keyword index (FTS5,
kept by triggers), its text preparation, safe queries, fusion, filters,
writes of every kind, reopen, read-only opens and the upgrade of a store
written before the index existed."""

from __future__ import annotations

import math
import os
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leann_store import InvalidInputError, LeannStore, StoreConfig, keywords
from leann_store.fusion import rrf, weighted
from leann_store.options import SearchOptions
from store_util import WORDS, HashEmbed, text_vector

SMALL = StoreConfig.from_options(graph_rows=16, merge_rows=16)

CODE_DOCS = {
    "cf": "Use configure_file to copy a file into the build tree at configure time.",
    "hnsw": "getNeighborsByHeuristic2 keeps the neighbours that are closer to the node than to each other.",
    "join": "os.path.join(a, *p) joins one or more path components intelligently.",
    "cafe": "Le café crème est servi à la terrasse.",
    "tokyo": "東京都に住んでいます。毎日電車で通勤します。",
    "http": "HTTPServer.serve_forever handles requests until shutdown.",
    "plain": "alpha beta gamma delta",
}


def keyword_ids(store: LeannStore, text: str, k: int = 10, **kw) -> list[str]:
    return [h.id for h in store.search(None, k, text=text, mode="keyword", **kw)]


@pytest.fixture
def code_store(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=SMALL)
    s.add(list(CODE_DOCS.values()), ids=list(CODE_DOCS), metadatas=[{"n": i} for i in range(len(CODE_DOCS))])
    yield s
    s.close()


# ---- text preparation and queries ---------------------------------------------------
@pytest.mark.parametrize("query, doc", [
    ("configure_file", "cf"), ("configure file", "cf"), ("configureFile", "cf"), ("configure", "cf"),
    ("getNeighborsByHeuristic2", "hnsw"), ("heuristic", "hnsw"), ("neighbors", "hnsw"),
    ("get_neighbors_by_heuristic2", "hnsw"),
    ("os.path.join", "join"), ("path", "join"), ("join", "join"),
    ("HTTPServer", "http"), ("server", "http"), ("serve_forever", "http"), ("forever", "http"),
])
def test_identifiers_are_found_whole_and_by_their_parts(code_store, query, doc):
    assert keyword_ids(code_store, query)[0] == doc


@pytest.mark.parametrize("query, doc", [
    ("café", "cafe"), ("cafe", "cafe"), ("CAFÉ", "cafe"), ("terrasse", "cafe"), ("crème", "cafe"),
    ("東京", "tokyo"), ("電車", "tokyo"), ("通勤", "tokyo"), ("東京都", "tokyo"), ("住んで", "tokyo"),
])
def test_accented_and_cjk_text_is_found(code_store, query, doc):
    assert keyword_ids(code_store, query) == [doc]


def test_whole_identifier_outranks_its_parts_elsewhere(tmp_path):
    with LeannStore.open(tmp_path / "s", embed=HashEmbed()) as s:
        s.add(["the file is configured later", "call configure_file here", "file configure options file"],
              ids=["parts", "whole", "parts2"])
        assert keyword_ids(s, "configure_file")[0] == "whole"
        assert keyword_ids(s, "files")  # the stemmer: files -> file


def test_prepare_examples():
    assert keywords.terms("getNeighborsByHeuristic2") == [
        "getneighborsbyheuristic2", "get", "neighbors", "by", "heuristic", "2"]
    assert keywords.terms("configure_file") == ["configurefile", "configure", "file"]
    assert keywords.terms("os.path.join")[:1] == ["ospathjoin"]
    assert keywords.terms("東京", query=True) == ["東京"]
    assert keywords.match_expression("  ...  ") is None


HOSTILE = ['"', '""', "'", "a OR", "NOT", "AND AND", "NEAR(a b, 2)", "body:alpha", "{body}: x", "^alpha", "alpha*",
           "-alpha", "+", "(", ")", "'); DROP TABLE docs; --", '" OR 1=1 --', "x\x00y", "\\", "*", ":", "keywords",
           "rank MATCH 'a'", "alpha -- beta", "💥 alpha"]


@pytest.mark.parametrize("text", HOSTILE)
def test_user_text_never_reaches_fts_syntax_or_sql(code_store, text):
    hits = code_store.search(text_vector("alpha"), 3, text=text, mode="hybrid")
    assert len(hits) == 3
    keyword_ids(code_store, text)
    assert len(code_store) == len(CODE_DOCS)
    code_store.check()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_makes_a_valid_match_expression(text):
    expr = keywords.match_expression(text)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(body, content='', tokenize='porter unicode61')")
    conn.execute("INSERT INTO t(rowid, body) VALUES (1, ?)", (keywords.prepare(text),))
    if expr is not None:
        got = conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (expr,)).fetchall()
        assert got == [(1,)]  # a text always finds itself


# ---- fusion -------------------------------------------------------------------------
def test_rrf_and_weighted():
    a = [(3.0, "x"), (2.0, "y")]
    b = [(9.0, "y"), (1.0, "z")]
    fused = rrf([a, b], k=60)
    assert [key for _, key, _ in fused] == ["y", "x", "z"]
    assert fused[0][0] == pytest.approx(1 / 62 + 1 / 61) and fused[0][2] == (0, 1)
    assert [key for _, key, _ in weighted(a, b, alpha=1.0)][:1] == ["x"]
    assert [key for _, key, _ in weighted(a, b, alpha=0.0)][:1] == ["y"]
    assert weighted([], [], 0.5) == [] and rrf([[], []]) == []


def test_depths():
    assert SearchOptions().depths(10) == (10, 20)
    assert SearchOptions(dense_depth=2, keyword_depth=5).depths(4) == (4, 5)  # dense: k at least
    assert SearchOptions(dense_depth=50).depths(4) == (50, 20) and SearchOptions().depths(30) == (30, 30)


@pytest.mark.parametrize("bad", [{"mode": "sparse"}, {"alpha": 1.5}, {"alpha": -0.1}, {"rrf_k": 0},
                                 {"dense_depth": 0}, {"keyword_depth": True}])
def test_bad_hybrid_options(bad):
    with pytest.raises(InvalidInputError, match=next(iter(bad))):
        SearchOptions(**bad)


# ---- LeannStore.search modes -----------------------------------------------------------
def test_modes_found_by_and_scores(code_store):
    q = text_vector("alpha beta")
    dense = code_store.search(q, 3)
    assert all(h.found_by == ("dense",) and not math.isnan(h.distance) for h in dense)
    kw = code_store.search(None, 3, text="alpha", mode="keyword")
    assert [h.id for h in kw] == ["plain"] and kw[0].found_by == ("keyword",) and math.isnan(kw[0].distance)
    assert kw[0].score > 0 and kw.stats["mode"] == "keyword" and kw.stats["recomputed"] == 0
    hy = code_store.search(q, 4, text="configure_file", mode="hybrid")
    assert len(hy) == 4
    by_id = {h.id: h for h in hy}
    assert "keyword" in by_id["cf"].found_by
    assert by_id["plain"].found_by == ("dense",)
    scores = [h.score for h in hy]
    assert scores == sorted(scores, reverse=True)
    both = [h for h in hy if h.found_by == ("dense", "keyword")]
    for h in both:
        assert not math.isnan(h.distance)
    w = code_store.search(q, 4, text="configure_file", mode="hybrid", alpha=0.0)
    assert w[0].id == "cf" and w[0].score == pytest.approx(1.0)
    w = code_store.search(q, 4, text="configure_file", mode="hybrid", alpha=1.0)
    assert [h.id for h in w][:3] == [h.id for h in dense]


def test_mode_errors(code_store):
    with pytest.raises(InvalidInputError, match="text"):
        code_store.search(text_vector("alpha"), 3, mode="hybrid")
    with pytest.raises(InvalidInputError, match="text"):
        code_store.search(None, 3, text="   ", mode="keyword")
    with pytest.raises(InvalidInputError, match="query_embedding"):
        code_store.search(None, 3, text="alpha", mode="hybrid")
    with pytest.raises(InvalidInputError, match="mode"):
        code_store.search(text_vector("alpha"), 3, text="alpha", mode="bm25")
    opts = SearchOptions(mode="keyword")
    assert [h.id for h in code_store.search(None, 1, text="alpha", options=opts)] == ["plain"]


def test_hybrid_recomputes_what_dense_does(tmp_path):
    embed = HashEmbed()
    with LeannStore.open(tmp_path / "s", embed=embed, config=SMALL) as s:
        rng = np.random.default_rng(0)
        s.add([" ".join(rng.choice(WORDS, 4)) for _ in range(300)])
        s.flush()
        for query in ("alpha beta", "omega", "pi rho sigma"):
            q = text_vector(query)
            d = s.search(q, 5, confidence=None)
            h = s.search(q, 5, text=query, mode="hybrid", confidence=None)
            assert d.stats["recomputed"] + d.stats["cache_hits"] == h.stats["recomputed"] + h.stats["cache_hits"]
            assert len(h) == 5


@pytest.mark.parametrize("flt", [{"g": 1}, lambda m: m["g"] == 1])
def test_filters_act_on_both_sides(tmp_path, flt):
    with LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=SMALL) as s:
        rng = np.random.default_rng(1)
        texts = [" ".join(rng.choice(WORDS, 3)) + (" needle" if i % 7 == 0 else "") for i in range(200)]
        s.add(texts, ids=[f"d{i}" for i in range(200)], metadatas=[{"g": i % 3} for i in range(200)])
        want = {f"d{i}" for i in range(200) if i % 3 == 1 and i % 7 == 0}
        got = keyword_ids(s, "needle", k=50, filter=flt)
        assert set(got) == want
        for mode, n in (("hybrid", 8), ("keyword", min(8, len(want)))):
            hits = s.search(text_vector("needle alpha"), 8, filter=flt, text="needle", mode=mode)
            assert all(h.metadata["g"] == 1 for h in hits) and len(hits) == n
        # a filter nothing matches
        assert s.search(text_vector("x"), 5, filter={"g": 9}, text="needle", mode="hybrid") == []


def test_writes_of_every_kind_keep_the_index(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=SMALL)
    s.add([f"doc {i} alpha" + (" special" if i % 10 == 0 else "") for i in range(100)],
          ids=[f"d{i}" for i in range(100)], metadatas=[{"i": i} for i in range(100)])
    assert set(keyword_ids(s, "special", 50)) == {f"d{i}" for i in range(0, 100, 10)}
    s.delete(["d0", "d10"])
    assert set(keyword_ids(s, "special", 50)) == {f"d{i}" for i in range(20, 100, 10)}
    s.add(["no longer the word", "now special"], ids=["d20", "d21"])  # upserts
    assert set(keyword_ids(s, "special", 50)) == {"d21"} | {f"d{i}" for i in range(30, 100, 10)}
    assert keyword_ids(s, "longer") == ["d20"]
    s.delete_where({"i": {"$gte": 50}})
    assert set(keyword_ids(s, "special", 50)) == {"d21", "d30", "d40"}
    s.flush()  # merges and compaction renumber graph nodes; rowids stay
    s.compact()
    assert set(keyword_ids(s, "special", 50)) == {"d21", "d30", "d40"}
    assert s.stats()["keyword_bytes"] > 0
    s.check()
    s.close()
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed())
    assert set(keyword_ids(s, "special", 50)) == {"d21", "d30", "d40"}
    s.clear()
    assert keyword_ids(s, "special alpha") == []
    s.add(["special again"], ids=["new"])
    assert keyword_ids(s, "special") == ["new"]
    s.check()
    s.close()


def test_a_failed_write_leaves_the_index_as_it_was(tmp_path):
    def embed(texts):
        if any("boom" in t for t in texts):
            raise RuntimeError("model down")
        return HashEmbed()(texts)

    with LeannStore.open(tmp_path / "s", embed=embed) as s:
        s.add(["alpha one"], ids=["a"])
        with pytest.raises(Exception):
            s.add(["alpha two", "boom"], ids=["a", "b"])
        assert keyword_ids(s, "alpha") == ["a"] and keyword_ids(s, "two") == []
        s.check()


def test_read_only_opens_search_keywords(tmp_path):
    with LeannStore.open(tmp_path / "s", embed=HashEmbed()) as s:
        s.add(["configure_file here", "other words"], ids=["a", "b"])
        ro = LeannStore.open(tmp_path / "s", embed=HashEmbed(), read_only=True)
        assert keyword_ids(ro, "configure") == ["a"]
        s.add(["configure again"], ids=["c"])
        assert set(keyword_ids(ro, "configure")) == {"a", "c"}  # later commits show up
        ro.close()


# ---- the upgrade of a store written before the keyword index -------------------------------
def to_schema_1(path) -> None:
    """Turn a store into what the previous version wrote: schema 1, the same
    tables, no keyword index, triggers or key."""
    conn = sqlite3.connect(os.path.join(path, "docstore.sqlite"))
    keywords.drop(conn.cursor())
    conn.execute("DELETE FROM meta WHERE key = 'keywords'")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    conn.commit()
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")} == {
        "meta", "docs", "vecs"}
    conn.close()


def test_a_store_from_the_previous_version_gains_the_index(tmp_path, capsys):
    path = tmp_path / "s"
    texts = [f"row {i} " + " ".join(np.random.default_rng(i).choice(WORDS, 3)) for i in range(2500)]
    with LeannStore.open(path, embed=HashEmbed(), config=SMALL) as s:
        s.add(texts, ids=[f"d{i}" for i in range(2500)])
        s.delete(["d7"])
    to_schema_1(path)
    ro = LeannStore.open(path, embed=HashEmbed(), read_only=True)  # a reader cannot upgrade: dense still works
    assert len(ro.search(text_vector("alpha"), 3)) == 3
    with pytest.raises(InvalidInputError, match="earlier version.*without read_only"):
        ro.search(None, 3, text="alpha", mode="keyword")
    ro.close()
    s = LeannStore.open(path, embed=HashEmbed(), progress=True)
    assert "keyword index" in capsys.readouterr().err  # a progress bar over the rows
    assert s._docs.get_meta("schema") == "2"
    assert keyword_ids(s, "row 1234")[0] == "d1234"
    assert keyword_ids(s, "7") == []  # the deleted row stays out
    s.check()
    s.close()
    s = LeannStore.open(path, embed=HashEmbed())  # done once
    assert keyword_ids(s, "1234") == ["d1234"]
    s.close()


def test_a_changed_text_preparation_rebuilds_the_index(tmp_path):
    with LeannStore.open(tmp_path / "s", embed=HashEmbed()) as s:
        s.add(["configure_file here"], ids=["a"])
    conn = sqlite3.connect(os.path.join(tmp_path / "s", "docstore.sqlite"))
    conn.execute("UPDATE meta SET value = '0/old' WHERE key = 'keywords'")
    conn.commit()
    conn.close()
    with LeannStore.open(tmp_path / "s", embed=HashEmbed()) as s:
        assert s._docs.get_meta("keywords") == keywords.prep_key()
        assert keyword_ids(s, "configure") == ["a"]
        s.delete(["a"])
        s.check()


def test_newer_schema_is_refused(tmp_path):
    with LeannStore.open(tmp_path / "s", embed=HashEmbed()) as s:
        s.add(["x"])
    conn = sqlite3.connect(os.path.join(tmp_path / "s", "docstore.sqlite"))
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    from leann_store import CorruptIndexError
    with pytest.raises(CorruptIndexError, match="schema '3'"):
        LeannStore.open(tmp_path / "s", embed=HashEmbed())


# a store the previous version (schema 1, commit 2f79b08) wrote: 40 HashEmbed rows with
# graph_rows=16, 29 in the graph, 10 in the delta, d5 deleted (a tombstone)
V1_STORE = os.path.join(os.path.dirname(__file__), "data", "store-v1")


def test_a_store_written_by_the_previous_version_is_upgraded(tmp_path):
    import shutil
    path = tmp_path / "old"
    shutil.copytree(V1_STORE, path)
    ro = LeannStore.open(path, embed=HashEmbed(), read_only=True)
    assert len(ro) == 39 and not ro.has_keywords
    ro.close()
    with LeannStore.open(path, embed=HashEmbed()) as s:
        assert s.has_keywords and s._docs.get_meta("schema") == "2"
        st = s.stats()
        assert (st["graph_rows"], st["delta_rows"], st["deleted"]) == (29, 10, 1)
        assert keyword_ids(s, "configure_file") == ["d3"]             # a graph row
        assert keyword_ids(s, "heuristic") == ["d20"]
        assert keyword_ids(s, "cafe") == ["d35"]                      # a delta row
        assert "d5" not in keyword_ids(s, "doc5 " + " ".join(WORDS), k=50)
        hits = s.search(text_vector("alpha"), 5, text="configure_file", mode="hybrid")
        assert len(hits) == 5 and "d3" in {h.id for h in hits}
        s.check()
        s.add(["configure_file again"], ids=["d3"])                    # writes keep it in step
        s.flush()
        assert keyword_ids(s, "again") == ["d3"] and keyword_ids(s, "copy") == []
        s.check()
