"""Keyword and hybrid search through the LlamaIndex adapter:
``VectorStoreQueryMode.HYBRID`` (alpha, sparse_top_k, hybrid_top_k) and
``TEXT_SEARCH``, directly and through ``index.as_retriever``."""

from __future__ import annotations

from typing import List

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from llama_index.vector_stores.leann import LeannVectorStore  # noqa: E402
from test_llamaindex import HashEmbedding, no_network  # noqa: E402,F401  (no_network: autouse)

DOCS = {
    "cmake": ("configure_file copies an input file to an output file at configure time.", "build"),
    "hnsw": ("getNeighborsByHeuristic2 prunes the candidate list of a node.", "graph"),
    "paths": ("os.path.join joins one or more path components.", "python"),
}
FILLER = {f"f{i}": (f"some filler text number {i} about trees rivers and stars", "filler") for i in range(30)}


class Blurry(HashEmbedding):
    """An embedding that cannot tell documents apart (every text gets nearly
    the same vector): only the keyword side can find the answer."""

    def vector(self, text: str) -> List[float]:
        v = np.ones(self.dim) + 1e-3 * np.array(super().vector(text))
        return (v / np.linalg.norm(v)).tolist()


@pytest.fixture(params=["delta", "graph"])
def index(request, tmp_path):
    embed = Blurry()
    opts = {"graph_rows": 16, "merge_rows": 16} if request.param == "graph" else {}
    vs = LeannVectorStore(path=tmp_path / "kb", embed_model=embed, **opts)
    docs = [Document(text=t, doc_id=i, metadata={"topic": topic}) for i, (t, topic) in {**DOCS, **FILLER}.items()]
    idx = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=vs),
                                          embed_model=embed)
    yield idx, embed, vs
    vs.close()


def ids(nodes) -> List[str]:
    return [n.node.ref_doc_id for n in nodes]


def test_text_search_and_hybrid_through_the_retriever(index):
    idx, embed, _ = index
    r = idx.as_retriever(vector_store_query_mode="text_search", similarity_top_k=2, embed_model=embed)
    got = r.retrieve("configure_file")
    assert ids(got)[0] == "cmake" and got[0].score > 0
    r = idx.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=3, embed_model=embed)
    got = r.retrieve("getNeighborsByHeuristic2")
    assert "hnsw" in ids(got)[:2] and len(got) == 3
    assert [n.score for n in got] == sorted((n.score for n in got), reverse=True)
    r = idx.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=3, alpha=0.0, embed_model=embed)
    assert ids(r.retrieve("os.path.join"))[0] == "paths"  # alpha 0: keywords alone order it
    r = idx.as_retriever(vector_store_query_mode="default", similarity_top_k=3, embed_model=embed)
    assert len(r.retrieve("os.path.join")) == 3  # the other modes keep working


def test_hybrid_top_k_sparse_top_k_and_filters(index):
    _, embed, vs = index
    q = VectorStoreQuery(query_embedding=embed.vector("configure_file"), query_str="configure_file",
                         similarity_top_k=1, hybrid_top_k=4, sparse_top_k=2, mode=VectorStoreQueryMode.HYBRID)
    res = vs.query(q)
    assert len(res.ids) == 4 and len(res.similarities) == 4
    assert "cmake" in {n.ref_doc_id for n in res.nodes}
    flt = MetadataFilters(filters=[MetadataFilter(key="topic", value="filler")])
    q = VectorStoreQuery(query_embedding=embed.vector("configure_file"), query_str="configure_file file",
                         similarity_top_k=5, mode=VectorStoreQueryMode.HYBRID, filters=flt)
    res = vs.query(q)
    assert len(res.ids) == 5 and {n.metadata["topic"] for n in res.nodes} == {"filler"}
    q = VectorStoreQuery(query_str="configure_file", similarity_top_k=3, mode=VectorStoreQueryMode.TEXT_SEARCH,
                         filters=flt)
    assert vs.query(q).ids == []  # no filler passage holds the word
    q = VectorStoreQuery(query_embedding=embed.vector("x"), query_str="x", similarity_top_k=2, alpha=1.5,
                         mode=VectorStoreQueryMode.HYBRID)
    with pytest.raises(ValueError, match="alpha"):
        vs.query(q)


def test_missing_text_or_embedding_is_a_clear_error(index):
    _, embed, vs = index
    with pytest.raises(ValueError, match="query_str"):
        vs.query(VectorStoreQuery(query_embedding=embed.vector("x"), similarity_top_k=2,
                                  mode=VectorStoreQueryMode.HYBRID))
    with pytest.raises(ValueError, match="query_embedding"):
        vs.query(VectorStoreQuery(query_str="x", similarity_top_k=2, mode=VectorStoreQueryMode.HYBRID))


def test_deletes_reach_the_keyword_side(index):
    idx, embed, vs = index
    idx.delete_ref_doc("cmake")
    q = VectorStoreQuery(query_str="configure_file", similarity_top_k=3, mode=VectorStoreQueryMode.TEXT_SEARCH)
    assert vs.query(q).ids == []


async def test_async_hybrid(index):
    idx, embed, _ = index
    r = idx.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=2, embed_model=embed)
    got = await r.aretrieve("getNeighborsByHeuristic2")
    assert "hnsw" in ids(got)
