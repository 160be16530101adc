"""Keyword and hybrid search through the LangChain adapter: per call (``mode=``),
store-wide (``search_mode=``), retrievers, relevance scores, filters, MMR and async."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402

from langchain_leann import LeannVectorStore  # noqa: E402
from test_langchain_leann import AsyncTableEmbedding, TableEmbedding  # noqa: E402

TEXTS = [
    "Use configure_file to copy a file into the build tree at configure time.",
    "getNeighborsByHeuristic2 keeps the neighbours closer to the node than to each other.",
    "os.path.join joins path components.",
] + [f"ordinary passage number {i} about nothing in particular" for i in range(60)]
IDS = ["cf", "hnsw", "join"] + [f"p{i}" for i in range(60)]


def make(search_mode: str = "dense", emb=None, **kw) -> tuple[LeannVectorStore, TableEmbedding]:
    emb = emb or TableEmbedding({}, 16)  # unrelated random vectors: only keywords can find the answer
    vs = LeannVectorStore(emb, search_mode=search_mode, graph_rows=16, merge_rows=16, **kw)
    vs.add_texts(TEXTS, [{"n": i, "even": i % 2 == 0} for i in range(len(TEXTS))], ids=IDS)
    return vs, emb


def test_keyword_mode_needs_no_model_call():
    vs, emb = make()
    calls = emb.query_calls
    docs = vs.similarity_search("configure_file", k=2, mode="keyword")
    assert docs[0].id == "cf" and emb.query_calls == calls
    assert vs.similarity_search("getNeighborsByHeuristic2", k=1, mode="keyword")[0].id == "hnsw"
    vs.close()


def test_hybrid_per_call_with_scores_and_relevance():
    vs, emb = make()
    pairs = vs.similarity_search_with_score("copy a file with configure_file", k=4, mode="hybrid")
    # random vectors: the dense side's first and the keyword side's first tie under RRF
    assert "cf" in {d.id for d, _ in pairs[:2]} and len(pairs) == 4
    scores = [s for _, s in pairs]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    rel = vs.similarity_search_with_relevance_scores("configure_file", k=4, mode="hybrid")
    assert "cf" in {d.id for d, _ in rel[:2]} and all(0.0 <= s <= 1.0 for _, s in rel)
    rel = vs.similarity_search_with_relevance_scores("configure_file", k=2, mode="keyword")
    assert rel[0][0].id == "cf" and 0.0 < rel[0][1] < 1.0
    w = vs.similarity_search_with_relevance_scores("configure_file", k=3, mode="hybrid", alpha=0.0)
    assert w[0] == (w[0][0], 1.0) and w[0][0].id == "cf"
    dense = vs.similarity_search_with_score("configure_file", k=2)
    assert all(not math.isnan(d) for _, d in dense)  # dense mode: distances, unchanged
    vs.close()


def test_store_wide_mode_and_retrievers():
    vs, emb = make("hybrid")
    assert vs.search_mode == "hybrid"
    assert "join" in {d.id for d in vs.similarity_search("os.path.join", k=2)}
    assert "hnsw" in {d.id for d in vs.as_retriever(search_kwargs={"k": 2}).invoke("getNeighborsByHeuristic2")}
    assert len(vs.similarity_search_by_vector(emb.embed_query("x"), k=3)) == 3  # by vector: dense
    vs.close()
    vs, emb = make()
    got = vs.as_retriever(search_kwargs={"k": 2, "mode": "hybrid"}).invoke("getNeighborsByHeuristic2")
    assert "hnsw" in {d.id for d in got}
    got = vs.as_retriever(search_type="similarity_score_threshold",
                          search_kwargs={"k": 3, "mode": "keyword", "score_threshold": 0.5}).invoke("configure_file")
    assert [d.id for d in got] == ["cf"]
    # fetch_k = k: MMR reorders the hybrid top 2 (its own choice uses the random vectors)
    got = vs.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 2, "mode": "hybrid"}).invoke(
        "configure_file")
    assert "cf" in {d.id for d in got}
    vs.close()
    with pytest.raises(ValueError, match="mode"):
        LeannVectorStore(TableEmbedding({}, 16), search_mode="sparse")


@pytest.mark.parametrize("flt", [{"even": True}, lambda m: m["even"]])
def test_filters_on_both_sides(flt):
    vs, _ = make()
    docs = vs.similarity_search("configure_file passage", k=5, filter=flt, mode="hybrid")
    assert len(docs) == 5 and all(d.metadata["even"] for d in docs) and "cf" in {d.id for d in docs}
    docs = vs.similarity_search("getNeighborsByHeuristic2", k=5, filter=flt, mode="keyword")
    assert "hnsw" not in {d.id for d in docs}  # n = 1: odd
    vs.close()


def test_deletes_and_upserts_reach_the_keyword_side():
    vs, _ = make()
    vs.delete(["cf"])
    assert "cf" not in {d.id for d in vs.similarity_search("configure_file", k=3, mode="keyword")}
    vs.add_documents([Document(page_content="now about configure_file again", id="p5")])
    assert vs.similarity_search("configure_file", k=1, mode="keyword")[0].id == "p5"
    vs.close()


async def test_async_modes():
    emb = AsyncTableEmbedding({}, 16)
    vs, _ = make(emb=emb)
    calls = emb.async_query_calls
    docs = await vs.asimilarity_search("configure_file", k=2, mode="keyword")
    assert docs[0].id == "cf" and emb.async_query_calls == calls
    docs = await vs.asimilarity_search("getNeighborsByHeuristic2", k=3, mode="hybrid")
    assert "hnsw" in {d.id for d in docs[:2]} and emb.async_query_calls == calls + 1
    rel = await vs.asimilarity_search_with_relevance_scores("os.path.join", k=2, mode="hybrid")
    assert "join" in {d.id for d, _ in rel} and all(0 <= s <= 1 for _, s in rel)
    got = await vs.as_retriever(search_kwargs={"k": 2, "mode": "hybrid"}).ainvoke("configure_file")
    assert "cf" in {d.id for d in got}
    got = await vs.amax_marginal_relevance_search("configure_file", k=2, fetch_k=2, mode="hybrid")
    assert "cf" in {d.id for d in got}
    vs.close()
