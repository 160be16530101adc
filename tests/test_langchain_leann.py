"""LeannVectorStore beyond the standard suite: ids, filters, relevance scores, MMR,
snapshots, retrievers, the indexing API and async behaviour."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings  # noqa: E402
from langchain_core.indexing import InMemoryRecordManager, aindex, index  # noqa: E402

import langchain_leann  # noqa: E402
from langchain_leann import LeannVectorStore  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


class TableEmbedding(Embeddings):
    """A lookup embedding: known texts map to fixed vectors, others to a vector seeded by
    the text's CRC. Counts its calls so tests can see where recompute went."""

    def __init__(self, table: dict[str, np.ndarray], dim: int, delay: float = 0.0) -> None:
        self.table = table
        self.dim = dim
        self.delay = delay
        self.document_calls = 0
        self.documents_embedded = 0
        self.query_calls = 0

    def _vector(self, text: str) -> list[float]:
        v = self.table.get(text)
        if v is None:
            v = np.random.default_rng(zlib.crc32(text.encode())).normal(size=self.dim)
        return [float(x) for x in v]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.delay:
            time.sleep(self.delay)  # a slow, blocking model
        self.document_calls += 1
        self.documents_embedded += len(texts)
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        if self.delay:
            time.sleep(self.delay)
        self.query_calls += 1
        return self._vector(text)


class AsyncTableEmbedding(TableEmbedding):
    """The same lookup with native async methods that run on the event loop."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.async_document_calls = 0
        self.async_query_calls = 0
        self.loop_threads: set[int] = set()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        await asyncio.sleep(0)
        self.loop_threads.add(threading.get_ident())
        self.async_document_calls += 1
        return [self._vector(t) for t in texts]

    async def aembed_query(self, text: str) -> list[float]:
        await asyncio.sleep(0)
        self.loop_threads.add(threading.get_ident())
        self.async_query_calls += 1
        return self._vector(text)


def unit(*pairs: tuple[int, float], dim: int = 8) -> np.ndarray:
    v = np.zeros(dim)
    for axis, value in pairs:
        v[axis] = value
    return v


def clustered_table(n: int, dim: int = 16, seed: int = 0) -> tuple[list[str], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    x = centres[rng.integers(0, 12, n)] + 0.4 * rng.normal(size=(n, dim))
    texts = [f"passage {i}" for i in range(n)]
    return texts, dict(zip(texts, x))


def exact_distances(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return 1.0 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    if metric == "l2":
        return ((x - q) ** 2).sum(1)
    return -(x @ q)


# Stores under GRAPH hold their rows in the vector-free graph (searches recompute); smaller
# stores than the default graph_rows keep an exact delta segment.
GRAPH = {"graph_rows": 16, "merge_rows": 16}


@pytest.fixture
def small():
    """A temporary cosine store of 200 clustered passages in a graph, varied metadata."""
    texts, table = clustered_table(200)
    emb = TableEmbedding(table, 16)
    metadatas = [{"n": i, "parity": "even" if i % 2 == 0 else "odd"} for i in range(200)]
    vs = LeannVectorStore(emb, **GRAPH)
    vs.add_texts(texts, metadatas, ids=[f"id{i}" for i in range(200)])
    try:
        yield vs, emb, texts, table
    finally:
        vs.close()


# -- ids, writes and reads -------------------------------------------------------------

def test_ids_precedence_and_no_mutation():
    with LeannVectorStore(DeterministicFakeEmbedding(size=8)) as vs:
        docs = [Document(page_content="a", id="doc-a"), Document(page_content="b"),
                Document(page_content="c", id="doc-c"), Document(page_content="d")]
        snapshot = [d.model_copy(deep=True) for d in docs]
        ids = vs.add_documents(docs, ids=["arg-a", None, None, "arg-d"])
        assert ids[0] == "arg-a" and ids[2] == "doc-c" and ids[3] == "arg-d"
        assert isinstance(ids[1], str) and ids[1] and ids[1] not in {"arg-a", "doc-c", "arg-d"}
        assert docs == snapshot
        got = {d.id: d.page_content for d in vs.get_by_ids(ids)}
        assert got == dict(zip(ids, "abcd"))
        with pytest.raises(ValueError):
            vs.add_documents(docs, ids=["x"])
        with pytest.raises(ValueError):
            vs.add_texts(["x", "y"], metadatas=[{}])


def test_get_by_ids_order_missing_and_delete_variants(small):
    vs, *_ = small
    got = vs.get_by_ids(["id5", "nope", "id3"])
    assert [d.id for d in got] == ["id5", "id3"]
    assert got[0] == Document(id="id5", page_content="passage 5", metadata={"n": 5, "parity": "odd"})
    assert vs.delete(["id5", "nope"]) is True
    assert vs.get_by_ids(["id5"]) == []
    assert vs.delete(filter={"parity": "odd"}) is True
    assert len(vs) == 100
    assert vs.delete() is True
    assert len(vs) == 0 and vs.similarity_search("passage 1", k=3) == []


def test_add_embeddings_then_recompute(small):
    vs, emb, texts, table = small
    vs.delete()
    vs.add_embeddings([(t, table[t]) for t in texts[:50]], ids=[f"e{i}" for i in range(50)])
    q = table[texts[7]]
    assert vs.similarity_search_by_vector(list(q), k=1)[0].id == "e7"


@pytest.mark.parametrize("segment", ["delta", "graph"])
@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_scores_are_exact_distances_and_relevance_in_unit_interval(metric, segment):
    texts, table = clustered_table(120, seed=3)
    emb = TableEmbedding(table, 16)
    options = GRAPH if segment == "graph" else {}
    with LeannVectorStore.from_texts(texts, emb, metric=metric, **options) as vs:
        assert vs.store.stats()["graph_rows"] == (120 if segment == "graph" else 0)
        x = np.stack([table[t] for t in texts])
        q = table[texts[0]] + 0.1
        d = exact_distances(q, x, metric)
        pairs = vs.similarity_search_with_score_by_vector(list(q), k=10)
        order = np.argsort(d)[:10]
        assert [doc.page_content for doc, _ in pairs] == [texts[i] for i in order]
        np.testing.assert_allclose([s for _, s in pairs], d[order], rtol=1e-4, atol=1e-4)

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # LangChain warns when a score leaves [0, 1]
            scored = vs.similarity_search_with_relevance_scores(texts[5], k=len(texts))
        scores = [s for _, s in scored]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)
        assert scored[0][0].page_content == texts[5] or metric == "ip"
        if metric != "ip":
            assert scores[0] == pytest.approx(1.0, abs=1e-5)
        cut = scores[len(scores) // 2]
        kept = vs.similarity_search_with_relevance_scores(texts[5], k=len(texts), score_threshold=cut)
        assert len(kept) >= len(scores) // 2 and all(s >= cut for _, s in kept)


def test_relevance_functions_are_monotone_per_metric():
    fns = {}
    for metric in ("cosine", "l2", "ip"):
        with LeannVectorStore(DeterministicFakeEmbedding(size=4), metric=metric) as vs:
            fns[metric] = vs._select_relevance_score_fn()
    grids = {"cosine": np.linspace(0, 2, 41), "l2": np.linspace(0, 50, 41),
             "ip": np.linspace(-40, 40, 41)}
    for metric, grid in grids.items():
        s = [fns[metric](float(d)) for d in grid]
        assert all(0.0 <= v <= 1.0 for v in s), metric
        assert all(a >= b for a, b in zip(s, s[1:])), metric
    assert fns["cosine"](0.0) == 1.0 and fns["l2"](0.0) == 1.0
    custom = LeannVectorStore(DeterministicFakeEmbedding(size=4), relevance_score_fn=lambda d: 0.5)
    assert custom._select_relevance_score_fn()(3.0) == 0.5
    custom.close()


# -- MMR --------------------------------------------------------------------------------

@pytest.fixture
def mmr_store():
    table = {
        "A": unit((0, 1.0), (1, 0.5)),
        "A2": unit((0, 1.0), (1, 0.55)),   # a near-duplicate of A
        "B": unit((0, 1.0), (2, 0.6)),     # a little further from the query, but different
        "C": unit((3, 1.0)),
        "query": unit((0, 1.0)),
    }
    emb = TableEmbedding(table, 8)
    vs = LeannVectorStore.from_texts(["A", "A2", "B", "C"], emb, ids=["A", "A2", "B", "C"],
                                     metadatas=[{"g": 1}, {"g": 1}, {"g": 2}, {"g": 2}])
    try:
        yield vs, emb
    finally:
        vs.close()


def test_mmr_diversifies_and_honours_fetch_k_and_lambda(mmr_store):
    vs, emb = mmr_store
    ids = lambda docs: [d.id for d in docs]  # noqa: E731
    assert ids(vs.similarity_search("query", k=2)) == ["A", "A2"]
    assert ids(vs.max_marginal_relevance_search("query", k=2, fetch_k=4)) == ["A", "B"]
    assert ids(vs.max_marginal_relevance_search("query", k=2, fetch_k=2)) == ["A", "A2"]
    assert ids(vs.max_marginal_relevance_search("query", k=2, fetch_k=4, lambda_mult=1.0)) == ["A", "A2"]
    assert ids(vs.max_marginal_relevance_search("query", k=2, fetch_k=4, filter={"g": 2})) == ["B", "C"]
    q = emb.embed_query("query")
    assert ids(vs.max_marginal_relevance_search_by_vector(q, k=2, fetch_k=4)) == ["A", "B"]


def test_mmr_on_the_graph_recomputes_candidates(small):
    vs, emb, texts, table = small
    q = table["passage 3"] + 0.3 * table["passage 150"]
    before = emb.documents_embedded
    got = vs.max_marginal_relevance_search_by_vector(list(q), k=5, fetch_k=25, lambda_mult=0.3)
    assert emb.documents_embedded > before  # candidates re-embedded: the index keeps no vectors
    from langchain_core.vectorstores.utils import maximal_marginal_relevance

    x = np.stack([table[t] for t in texts])
    nearest = np.argsort(exact_distances(q, x, "cosine"))[:25]
    pick = maximal_marginal_relevance(q, x[nearest], lambda_mult=0.3, k=5)
    assert [d.page_content for d in got] == [texts[nearest[i]] for i in pick]
    plain = vs.similarity_search_by_vector(list(q), k=5)
    assert got[0] == plain[0] and got != plain


async def test_mmr_async(mmr_store):
    vs, _ = mmr_store
    docs = await vs.amax_marginal_relevance_search("query", k=2, fetch_k=4)
    assert [d.id for d in docs] == ["A", "B"]


# -- filters ----------------------------------------------------------------------------

FILTER_CASES = [
    ({"colour": "red"}, lambda m: m.get("colour") == "red"),
    ({"colour": {"$eq": "blue"}}, lambda m: m.get("colour") == "blue"),
    ({"colour": {"$ne": "red"}}, lambda m: m.get("colour") != "red"),
    ({"n": {"$gt": 20}}, lambda m: m["n"] > 20),
    ({"n": {"$gte": 20}}, lambda m: m["n"] >= 20),
    ({"n": {"$lt": 7}}, lambda m: m["n"] < 7),
    ({"n": {"$lte": 7}}, lambda m: m["n"] <= 7),
    ({"colour": {"$in": ["red", "green"]}}, lambda m: m.get("colour") in ("red", "green")),
    ({"colour": {"$nin": ["red", "green"]}}, lambda m: m.get("colour") not in ("red", "green")),
    ({"$and": [{"colour": "red"}, {"n": {"$lt": 20}}]}, lambda m: m.get("colour") == "red" and m["n"] < 20),
    ({"$or": [{"colour": "blue"}, {"n": {"$gte": 35}}]}, lambda m: m.get("colour") == "blue" or m["n"] >= 35),
    ({"$not": {"colour": "red"}}, lambda m: m.get("colour") != "red"),
    ({"n": {"$not": {"$gt": 10}}}, lambda m: not m["n"] > 10),
    ({"colour": "red", "big": True}, lambda m: m.get("colour") == "red" and m["big"] is True),
]


@pytest.fixture(scope="module", params=["delta", "graph"])
def filter_store(request):
    texts, table = clustered_table(40, seed=5)
    colours = ["red", "green", "blue", None]
    metadatas = []
    for i in range(40):
        md = {"n": i, "big": i % 3 == 0}
        if colours[i % 4] is not None:  # every fourth document has no colour at all
            md["colour"] = colours[i % 4]
        metadatas.append(md)
    options = GRAPH if request.param == "graph" else {}
    vs = LeannVectorStore.from_texts(texts, TableEmbedding(table, 16), metadatas,
                                     ids=[str(i) for i in range(40)], **options)
    yield vs, metadatas
    vs.close()


@pytest.mark.parametrize("flt,predicate", FILTER_CASES, ids=[str(c[0]) for c in FILTER_CASES])
def test_every_filter_operator(filter_store, flt, predicate):
    vs, metadatas = filter_store
    expected = {str(i) for i, m in enumerate(metadatas) if predicate(m)}
    got = vs.similarity_search("passage 3", k=40, filter=flt)
    assert {d.id for d in got} == expected
    assert all(predicate(d.metadata) for d in got)
    # a callable filter on the metadata gives the same documents
    assert {d.id for d in vs.similarity_search("passage 3", k=40, filter=predicate)} == expected


def test_bad_filter_is_a_clear_value_error(filter_store):
    vs, _ = filter_store
    with pytest.raises(ValueError, match=r"\$regex"):
        vs.similarity_search("passage 3", k=3, filter={"colour": {"$regex": "r.*"}})


def test_k_results_under_a_one_percent_filter():
    n = 3000
    texts, table = clustered_table(n, seed=7)
    metadatas = [{"rare": i % 100 == 0, "i": i} for i in range(n)]
    with LeannVectorStore.from_texts(texts, TableEmbedding(table, 16), metadatas) as vs:
        docs = vs.similarity_search("passage 1", k=10, filter={"rare": True})
        assert len(docs) == 10 and all(d.metadata["rare"] for d in docs)
        x = np.stack([table[t] for t in texts[::100]])
        d = exact_distances(table["passage 1"], x, "cosine")
        assert [doc.page_content for doc in docs] == [texts[::100][i] for i in np.argsort(d)[:10]]
        assert len(vs.similarity_search("passage 1", k=50, filter={"rare": True})) == 30


# -- snapshots --------------------------------------------------------------------------

def test_save_local_load_local_round_trip(small, tmp_path):
    vs, emb, texts, _ = small
    before = vs.similarity_search_with_score("passage 11", k=5, filter={"parity": "odd"})
    folder = tmp_path / "snap"
    vs.save_local(folder)
    vs.add_texts(["added after the snapshot"], ids=["late"])
    assert not any(p.suffix in {".pkl", ".pickle"} for p in folder.rglob("*"))
    reopened = LeannVectorStore.load_local(folder, emb)
    try:
        assert len(reopened) == 200 and reopened.get_by_ids(["late"]) == []
        after = reopened.similarity_search_with_score("passage 11", k=5, filter={"parity": "odd"})
        assert [d for d, _ in after] == [d for d, _ in before]
        np.testing.assert_allclose([s for _, s in after], [s for _, s in before], atol=1e-5)
    finally:
        reopened.close()
    vs.save_local(folder)  # over an earlier snapshot: replaced whole
    # code written for FAISS passes its deserialization flag: accepted, nothing is unpickled
    reopened = LeannVectorStore.load_local(folder, emb, allow_dangerous_deserialization=True)
    assert reopened.get_by_ids(["late"])[0].page_content == "added after the snapshot"
    reopened.close()


def test_save_local_refuses_foreign_folder_and_load_local_needs_a_store(small, tmp_path):
    vs, emb, *_ = small
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        vs.save_local(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(FileNotFoundError):
        LeannVectorStore.load_local(tmp_path / "nothing", emb)


def test_load_local_with_another_model_fails_loudly(tmp_path):
    from leann_store import ModelMismatchError

    with LeannVectorStore.from_texts(["x", "y"], DeterministicFakeEmbedding(size=8)) as vs:
        vs.save_local(tmp_path / "kb")
    with pytest.raises(ModelMismatchError):
        LeannVectorStore.load_local(tmp_path / "kb", DeterministicFakeEmbedding(size=12))
    with LeannVectorStore.load_local(tmp_path / "kb", DeterministicFakeEmbedding(size=8)) as vs:
        assert {d.page_content for d in vs.similarity_search("x", k=2)} == {"x", "y"}


def test_path_store_persists_between_objects(tmp_path):
    emb = DeterministicFakeEmbedding(size=8)
    with LeannVectorStore(emb, tmp_path / "kb", metric="l2") as vs:
        vs.add_texts(["alpha", "beta"], [{"k": 1}, {"k": 2}], ids=["a", "b"])
    with LeannVectorStore(emb, tmp_path / "kb") as vs:
        assert vs.store.metric == "l2"
        assert vs.similarity_search("alpha", k=1) == [Document(id="a", page_content="alpha", metadata={"k": 1})]


def test_read_only_reader_beside_a_writer(tmp_path):
    texts, table = clustered_table(60, seed=19)
    emb = TableEmbedding(table, 16)
    with LeannVectorStore(emb, tmp_path / "kb") as writer:
        writer.add_texts(texts[:40], ids=texts[:40])
        with LeannVectorStore(emb, tmp_path / "kb", read_only=True) as reader:
            assert len(reader) == 40
            writer.add_texts(texts[40:], ids=texts[40:])
            assert reader.similarity_search(texts[50], k=1)[0].id == texts[50]  # sees the commit
            with pytest.raises(ValueError):
                reader.add_texts(["no"])


class FailingEmbedding(TableEmbedding):
    """Embeds until told to fail, then raises from embed_documents (a model server down)."""

    fail = False

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.fail:
            raise ConnectionError("embedding server unreachable")
        return super().embed_documents(texts)


def test_a_failing_model_raises_its_own_error_and_the_store_stays_usable():
    texts, table = clustered_table(100, seed=23)
    emb = FailingEmbedding(table, 16)
    with LeannVectorStore.from_texts(texts, emb, ids=texts, **GRAPH) as vs:
        emb.fail = True
        with pytest.raises(ConnectionError, match="unreachable"):
            vs.similarity_search("passage 8", k=3)  # recompute needs the model
        emb.fail = False
        assert vs.similarity_search("passage 8", k=3)[0].id == "passage 8"
        vs.store.check()


# -- retrievers, construction -----------------------------------------------------------

def test_retrievers_of_all_three_search_types(mmr_store):
    vs, _ = mmr_store
    sim = vs.as_retriever(search_kwargs={"k": 2})
    assert [d.id for d in sim.invoke("query")] == ["A", "A2"]
    thr = vs.as_retriever(search_type="similarity_score_threshold",
                          search_kwargs={"k": 4, "score_threshold": 0.8})
    assert [d.id for d in thr.invoke("query")] == ["A", "A2", "B"]  # C is orthogonal: 0
    mmr = vs.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 4})
    assert [d.id for d in mmr.invoke("query")] == ["A", "B"]
    filtered = vs.as_retriever(search_kwargs={"k": 4, "filter": {"g": 2}})
    assert [d.id for d in filtered.invoke("query")] == ["B", "C"]


async def test_retrievers_async(mmr_store):
    vs, _ = mmr_store
    assert [d.id for d in await vs.as_retriever(search_kwargs={"k": 1}).ainvoke("query")] == ["A"]
    mmr = vs.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 4})
    assert [d.id for d in await mmr.ainvoke("query")] == ["A", "B"]


def test_from_documents_and_embeddings_property():
    emb = DeterministicFakeEmbedding(size=8)
    docs = [Document(page_content="one", id="1"), Document(page_content="two")]
    with LeannVectorStore.from_documents(docs, emb, metric="l2") as vs:
        assert vs.embeddings is emb
        assert vs.get_by_ids(["1"])[0].page_content == "one"
        assert len(vs) == 2


async def test_afrom_texts():
    emb = DeterministicFakeEmbedding(size=8)
    vs = await LeannVectorStore.afrom_texts(["one", "two"], emb, ids=["1", "2"])
    try:
        assert [d.id for d in await vs.asimilarity_search("two", k=1)] == ["2"]
    finally:
        vs.close()


def test_model_identity_names_class_and_model():
    ident = langchain_leann.model_identity(DeterministicFakeEmbedding(size=8))
    assert "DeterministicFakeEmbedding" in ident and "size=8" in ident


# -- the indexing API -------------------------------------------------------------------

def _source_docs(version: int) -> list[Document]:
    return [Document(page_content=f"{src} chunk {j} v{version if src == 'a.md' else 1}",
                     metadata={"source": src}) for src in ("a.md", "b.md") for j in range(3)]


def test_indexing_api_incremental_and_full():
    emb = DeterministicFakeEmbedding(size=8)
    with LeannVectorStore(emb) as vs:
        rm = InMemoryRecordManager(namespace="leann/test")
        rm.create_schema()
        kw = dict(source_id_key="source", key_encoder="sha256")
        r = index(_source_docs(1), rm, vs, cleanup="incremental", **kw)
        assert (r["num_added"], r["num_deleted"]) == (6, 0) and len(vs) == 6
        r = index(_source_docs(1), rm, vs, cleanup="incremental", **kw)
        assert (r["num_added"], r["num_skipped"]) == (0, 6)
        r = index(_source_docs(2), rm, vs, cleanup="incremental", **kw)  # a.md changed
        assert (r["num_added"], r["num_deleted"], r["num_skipped"]) == (3, 3, 3)
        texts = {d.page_content for d in vs.similarity_search("chunk", k=20)}
        assert texts == {d.page_content for d in _source_docs(2)}
        only_b = [d for d in _source_docs(2) if d.metadata["source"] == "b.md"]
        r = index(only_b, rm, vs, cleanup="full", **kw)  # a.md gone from the source
        assert (r["num_deleted"], r["num_skipped"]) == (3, 3)
        assert {d.metadata["source"] for d in vs.similarity_search("chunk", k=20)} == {"b.md"}


async def test_indexing_api_async():
    emb = DeterministicFakeEmbedding(size=8)
    with LeannVectorStore(emb) as vs:
        rm = InMemoryRecordManager(namespace="leann/atest")
        await rm.acreate_schema()
        kw = dict(source_id_key="source", key_encoder="sha256")
        r = await aindex(_source_docs(1), rm, vs, cleanup="incremental", **kw)
        assert r["num_added"] == 6
        r = await aindex(_source_docs(3), rm, vs, cleanup="incremental", **kw)
        assert (r["num_added"], r["num_deleted"]) == (3, 3) and len(vs) == 6


# -- async behaviour ---------------------------------------------------------------------

async def test_async_search_does_not_block_the_event_loop():
    texts, table = clustered_table(300, seed=11)
    emb = TableEmbedding(table, 16)
    vs = LeannVectorStore(emb, **GRAPH)
    try:
        await vs.aadd_texts(texts)
        emb.delay = 0.3  # from now on every embedding call blocks its thread for 0.3 s
        recomputed = emb.documents_embedded
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        start = time.perf_counter()
        docs = await vs.asimilarity_search("passage 4", k=3)
        mmr = await vs.amax_marginal_relevance_search("passage 4", k=3, fetch_k=10)
        await vs.aadd_texts(["one more passage"], ids=["late"])
        elapsed = time.perf_counter() - start
        done.set()
        await task
        assert docs[0].page_content == "passage 4" and mmr[0].page_content == "passage 4"
        assert elapsed >= 0.9 and emb.documents_embedded > recomputed  # queries, recompute, add ran
        assert vs.get_by_ids(["late"])
        assert len(gaps) >= 20 and max(gaps) < 0.25, (len(gaps), max(gaps))
    finally:
        vs.close()


async def test_async_uses_the_embeddings_async_methods():
    texts, table = clustered_table(100, seed=13)
    emb = AsyncTableEmbedding(table, 16)
    vs = await asyncio.to_thread(lambda: LeannVectorStore(emb, **GRAPH))
    try:
        sync_docs_before = emb.document_calls
        await vs.aadd_texts(texts)
        assert emb.async_document_calls == 1
        assert vs.store.stats()["graph_rows"] == 100
        docs = await vs.asimilarity_search("passage 9", k=2)
        mmr = await vs.amax_marginal_relevance_search("passage 9", k=2, fetch_k=6)
        assert docs[0].page_content == mmr[0].page_content == "passage 9"
        assert emb.async_query_calls == 2 and emb.query_calls == 0
        assert emb.async_document_calls > 1  # recompute went through the bridge
        assert emb.document_calls == sync_docs_before  # recompute went through aembed_documents
        assert emb.loop_threads == {threading.get_ident()}
    finally:
        vs.close()


async def test_many_async_calls_at_once():
    texts, table = clustered_table(400, seed=17)
    emb = TableEmbedding(table, 16)
    vs = LeannVectorStore(emb, **GRAPH)  # the adds below trigger a merge beside the searches
    try:
        await vs.aadd_texts(texts[:200], ids=texts[:200])
        adds = [vs.aadd_texts(texts[i:i + 20], ids=texts[i:i + 20]) for i in range(200, 400, 20)]
        searches = [vs.asimilarity_search(texts[i], k=1) for i in range(0, 200, 10)]
        results = await asyncio.gather(*adds, *searches, vs.adelete(["passage 0"]))
        found = results[len(adds):len(adds) + len(searches)]
        for i, docs in zip(range(0, 200, 10), found):
            assert docs and (docs[0].id == texts[i] or texts[i] == "passage 0")
        assert len(vs) == 399
        assert len(await vs.aget_by_ids(texts)) == 399
        assert vs.store.stats()["generation"] >= 2
        vs.store.check()
    finally:
        vs.close()


# -- documentation runs as written -------------------------------------------------------

def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_class_docstring_tour_runs():
    doc = LeannVectorStore.__doc__ or ""
    blocks = re.findall(r"::\n\n((?:        .*\n|\n)+)", doc)
    code = "\n".join(
        "\n".join(line[8:] for line in block.splitlines()) for block in blocks)
    assert "add_documents" in code and "asimilarity_search" in code
    exec(compile(code, "LeannVectorStore.__doc__", "exec"), {})


def test_readme_langchain_quick_start_runs(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in _python_blocks(readme) if "langchain_leann" in b]
    if not blocks:
        pytest.skip("README.md has no LangChain quick start yet")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
