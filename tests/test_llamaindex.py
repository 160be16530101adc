"""LlamaIndex adapter: ``llama_index.vector_stores.leann.LeannVectorStore``.

Runs offline: a small deterministic embedding of our own (hashed bag of
words) both embeds the nodes and recomputes them; the LLM is llama-index's
``MockLLM``; llama-index's token counting reads tiktoken files that
llama-index-core ships, and a guard refuses any network connection.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import zlib
from types import SimpleNamespace
from typing import Any, List

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import (  # noqa: E402
    Document,
    StorageContext,
    VectorStoreIndex,
    load_index_from_storage,
)
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.storage.docstore import SimpleDocumentStore  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn  # noqa: E402

from llama_index.vector_stores.leann import LeannVectorStore  # noqa: E402


# -- a deterministic embedding ------------------------------------------------

class HashEmbedding(BaseEmbedding):
    """Bag of words hashed into ``dim`` buckets, L2-normalised; counts the texts
    it embeds and can be slowed down to show that async calls leave the loop free."""

    dim: int = 64
    delay: float = 0.0
    _texts: List[str] = PrivateAttr(default_factory=list)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "HashEmbedding"

    def vector(self, text: str) -> List[float]:
        v = np.full(self.dim, 0.05)
        for word in re.findall(r"\w+", text.lower()):
            v[zlib.crc32(word.encode()) % self.dim] += 1.0
        return (v / np.linalg.norm(v)).tolist()

    @property
    def texts_embedded(self) -> int:
        return len(self._texts)

    def _get_text_embedding(self, text: str) -> List[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self._texts.extend(texts)
        return [self.vector(t) for t in texts]

    def _get_query_embedding(self, query: str) -> List[float]:
        return self.vector(query)

    async def _aget_query_embedding(self, query: str) -> List[float]:
        return self.vector(query)

    async def _aget_text_embedding(self, text: str) -> List[float]:
        return self.vector(text)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Nothing here may reach the network (tiktoken downloads, model hubs)."""

    def refuse(self, address, *args, **kwargs):
        if isinstance(address, tuple):  # AF_INET / AF_INET6; local sockets pass
            raise OSError(f"network access attempted in an offline test: {address}")
        return real_connect(self, address, *args, **kwargs)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection",
                        lambda address, *a, **k: refuse(None, address))


@pytest.fixture
def embed() -> HashEmbedding:
    return HashEmbedding()


@pytest.fixture
def store(embed, tmp_path):
    vs = LeannVectorStore(path=tmp_path / "kb", embed_model=embed)
    yield vs
    vs.close()


def embedded(embed: HashEmbedding, nodes: List[TextNode]) -> List[TextNode]:
    for node in nodes:
        node.embedding = embed.vector(node.get_content(metadata_mode=MetadataMode.EMBED))
    return nodes


# -- filters: every operator against llama-index-core's own evaluator ---------

FILTER_ROWS = [
    ("n1", "apples and pears in the orchard",
     {"rank": "a", "weight": 1.0, "quality": ["medium", "high"], "identifier": "6FTR78Y", "tags": ["x"]}),
    ("n2", "rivers and lakes in the valley",
     {"rank": "b", "weight": 2.0, "quality": ["low", "medium"], "identifier": "6FTR78Ya", "tags": []}),
    ("n3", "stars and planets in the sky",
     {"rank": "c", "weight": 3.0, "quality": ["high"], "identifier": "6ftr78y", "tags": None}),
    ("n4", "a node without most keys", {"rank": "d"}),
]


#: rows that make the store build its graph (StoreConfig graph_rows=16): the
#: filter tests run on the exact delta segment and on the graph
FILLER_WORDS = "oak elm ash fir yew pine birch maple cedar larch alder aspen beech holly rowan spruce hazel lime willow poplar".split()
FILLERS = [(f"f{i}", f"a filler passage about the {w} tree", {"rank": "f", "weight": 10.0 + i, "quality": ["low"],
                                                              "identifier": f"X{i}", "tags": ["t"]})
           for i, w in enumerate(FILLER_WORDS)]
GRAPH_OPTIONS = {"graph_rows": 16, "merge_rows": 16}


def filter_nodes(embed: HashEmbedding, rows=FILTER_ROWS) -> List[TextNode]:
    return embedded(embed, [TextNode(id_=i, text=t, metadata=dict(m)) for i, t, m in rows])


@pytest.fixture(params=["delta", "graph"])
def fc(request, embed, tmp_path):
    """A store holding FILTER_ROWS: alone (exact delta segment), or with
    FILLERS added in the same call (the first graph is built from them all)."""
    graph = request.param == "graph"
    vs = LeannVectorStore(path=tmp_path / "kb", embed_model=embed, **(GRAPH_OPTIONS if graph else {}))
    rows = FILTER_ROWS + FILLERS if graph else FILTER_ROWS
    vs.add(filter_nodes(embed, rows))
    stats = vs.client.stats()
    assert (stats["graph_rows"], stats["delta_rows"]) == ((len(rows), 0) if graph else (0, len(rows)))
    yield SimpleNamespace(store=vs, rows={i: m for i, _, m in rows})
    vs.close()


def reference_ids(rows: dict, filters) -> set:
    """What llama-index-core's own evaluator selects (it refuses nested filters)."""
    match = build_metadata_filter_fn(lambda node_id: rows[node_id], filters)
    return {i for i in rows if match(i)}


#: operator -> (key, value, ids the filter selects); n4 lacks every key but "rank"
OPERATOR_CASES = {
    FilterOperator.EQ: ("rank", "b", {"n2"}),
    FilterOperator.NE: ("weight", 2.0, {"n1", "n3", "n4"}),     # missing key matches NE
    FilterOperator.GT: ("weight", 1.0, {"n2", "n3"}),
    FilterOperator.GTE: ("weight", 2.0, {"n2", "n3"}),
    FilterOperator.LT: ("weight", 2.0, {"n1"}),
    FilterOperator.LTE: ("weight", 2.0, {"n1", "n2"}),
    FilterOperator.IN: ("rank", ["a", "c"], {"n1", "n3"}),
    FilterOperator.NIN: ("identifier", ["6FTR78Y"], {"n2", "n3", "n4"}),  # and NIN
    FilterOperator.ANY: ("quality", ["low", "high"], {"n1", "n2", "n3"}),
    FilterOperator.ALL: ("quality", ["medium", "high"], {"n1"}),
    FilterOperator.TEXT_MATCH: ("identifier", "FTR78Y", {"n1", "n2"}),
    FilterOperator.TEXT_MATCH_INSENSITIVE: ("identifier", "ftr78y", {"n1", "n2", "n3"}),
    FilterOperator.CONTAINS: ("quality", "medium", {"n1", "n2"}),
    FilterOperator.IS_EMPTY: ("tags", None, {"n2", "n3", "n4"}),
}


def test_every_installed_operator_has_a_case():
    assert set(FilterOperator) == set(OPERATOR_CASES)


def query_ids(vs: LeannVectorStore, embed: HashEmbedding, filters, k: int = 50, text: str = "apples") -> set:
    result = vs.query(VectorStoreQuery(query_embedding=embed.vector(text), similarity_top_k=k, filters=filters))
    return set(result.ids)


@pytest.mark.parametrize("operator", list(OPERATOR_CASES), ids=lambda op: op.name)
def test_filter_operator(fc, embed, operator):
    key, value, expected = OPERATOR_CASES[operator]
    filters = MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=operator)])
    # llama-index-core's reference evaluator agrees with the table...
    reference = reference_ids(fc.rows, filters)
    assert reference & {i for i, _, _ in FILTER_ROWS} == expected
    # ...and so do the search, get_nodes and delete_nodes
    assert query_ids(fc.store, embed, filters) == reference
    assert {n.node_id for n in fc.store.get_nodes(filters=filters)} == reference
    fc.store.delete_nodes(filters=filters)
    assert {n.node_id for n in fc.store.get_nodes()} == set(fc.rows) - reference
    assert query_ids(fc.store, embed, None) == set(fc.rows) - reference


def test_missing_key_matches_only_ne_and_nin(fc, embed):
    for op, value in [("==", 1.0), ("!=", 1.0), (">", 0.0), ("<", 9.0), (">=", 0.0), ("<=", 9.0),
                      ("in", [1.0]), ("nin", [1.0])]:
        filters = MetadataFilters(filters=[MetadataFilter(key="weight", value=value, operator=op)])
        assert ("n4" in query_ids(fc.store, embed, filters)) == (op in ("!=", "nin")), op


def f(key, value, op="=="):
    return MetadataFilter(key=key, value=value, operator=op)


@pytest.mark.parametrize("condition, expected", [
    (FilterCondition.AND, {"n2"}),
    (FilterCondition.OR, {"n1", "n2", "n3"}),
    (FilterCondition.NOT, {"n4"}),   # none of the filters match
])
def test_filter_condition(fc, embed, condition, expected):
    filters = MetadataFilters(filters=[f("weight", 1.0, ">"), f("quality", "medium", "contains")],
                              condition=condition)
    reference = reference_ids(fc.rows, filters)
    assert reference & {i for i, _, _ in FILTER_ROWS} == expected
    assert query_ids(fc.store, embed, filters) == reference


def test_nested_filters(fc, embed):
    # rank == d OR (weight >= 2 AND weight < 10 AND NOT (quality contains low))
    filters = MetadataFilters(condition=FilterCondition.OR, filters=[
        f("rank", "d"),
        MetadataFilters(condition=FilterCondition.AND, filters=[
            f("weight", 2.0, ">="), f("weight", 10.0, "<"),
            MetadataFilters(condition=FilterCondition.NOT, filters=[f("quality", "low", "contains")]),
        ]),
    ])
    assert query_ids(fc.store, embed, filters) == {"n3", "n4"}
    assert {n.node_id for n in fc.store.get_nodes(filters=filters)} == {"n3", "n4"}
    fc.store.delete_nodes(node_ids=["n1", "n3"], filters=filters)
    assert set(fc.rows) - {n.node_id for n in fc.store.get_nodes()} == {"n3"}


@pytest.mark.parametrize("operator, value", [("text_match", "F%R"), ("text_match", "F_R"),
                                             ("text_match_insensitive", "f%r"), ("contains", "med%")])
def test_text_filters_take_wildcards_literally(fc, embed, operator, value):
    assert query_ids(fc.store, embed, MetadataFilters(filters=[f("identifier", value, operator)])) == set()


def test_filter_on_nested_metadata_key(store, embed):
    nodes = embedded(embed, [
        TextNode(id_="a", text="one", metadata={"author": {"name": "ann", "langs": ["en", "fr"]}}),
        TextNode(id_="b", text="two", metadata={"author": {"name": "bob", "langs": ["de"]}}),
    ])
    store.add(nodes)
    assert query_ids(store, embed, MetadataFilters(filters=[f("author.name", "bob")])) == {"b"}
    # nested metadata round-trips (flat_metadata=False)
    assert store.get_nodes(["a"])[0].metadata == {"author": {"name": "ann", "langs": ["en", "fr"]}}


def test_empty_filters_filter_nothing(fc, embed):
    assert query_ids(fc.store, embed, MetadataFilters(filters=[])) == set(fc.rows)


# -- the protocol ---------------------------------------------------------------

def test_query_similarities_higher_is_better(store, embed):
    nodes = filter_nodes(embed)
    store.add(nodes)
    res = store.query(VectorStoreQuery(query_embedding=embed.vector("stars and planets"), similarity_top_k=3))
    assert res.ids[0] == "n3" and res.nodes[0].node_id == "n3"
    assert res.similarities == sorted(res.similarities, reverse=True)
    assert res.similarities[0] == pytest.approx(   # cosine, the vectors being unit length
        float(np.dot(embed.vector("stars and planets"), nodes[2].embedding)), abs=1e-5)
    assert res.nodes[0].get_content() == FILTER_ROWS[2][1]


def test_query_doc_ids_and_node_ids(store, embed):
    nodes = filter_nodes(embed)
    nodes[0].relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="doc-1")
    nodes[1].relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="doc-2")
    store.add(nodes)
    q = embed.vector("apples")
    assert set(store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=9, doc_ids=["doc-2"])).ids) == {"n2"}
    assert set(store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=9,
                                            node_ids=["n3", "n4"])).ids) == {"n3", "n4"}
    # VectorIndexRetriever passes node_ids=[] for stores that keep text: no restriction
    assert len(store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=9, node_ids=[])).ids) == 4


def test_search_options_reach_the_store(tmp_path, embed):
    from leann_store import InvalidInputError

    with LeannVectorStore(path=tmp_path / "kb", embed_model=embed, **GRAPH_OPTIONS) as vs:
        vs.add(filter_nodes(embed, FILTER_ROWS + FILLERS))
        q = VectorStoreQuery(query_embedding=embed.vector("stars and planets"), similarity_top_k=3)
        assert vs.query(q, ef=32, rerank_ratio=1.0, confidence=None, batch_size=4).ids[0] == "n3"
        with pytest.raises(InvalidInputError, match="rerank_ratio"):
            vs.query(q, rerank_ratio=5.0)
        assert vs.query(q, some_other_stores_option=1).ids[0] == "n3"   # ignored


@pytest.mark.parametrize("mode", [VectorStoreQueryMode.SPARSE, VectorStoreQueryMode.SEMANTIC_HYBRID,
                                  VectorStoreQueryMode.SVM, VectorStoreQueryMode.LOGISTIC_REGRESSION])
def test_unsupported_modes_are_a_clear_error(store, embed, mode):
    store.add(filter_nodes(embed))
    with pytest.raises(NotImplementedError, match=mode.value):
        store.query(VectorStoreQuery(query_embedding=embed.vector("x"), query_str="x", mode=mode))


def test_upsert_get_delete_clear(store, embed):
    store.add(filter_nodes(embed))
    changed = embedded(embed, [TextNode(id_="n1", text="bananas now", metadata={"rank": "z"})])
    store.add(changed)
    assert [n.get_content() for n in store.get_nodes(["n1"])] == ["bananas now"]
    assert [n.node_id for n in store.get_nodes(["n3", "missing", "n1"])] == ["n3", "n1"]
    store.delete_nodes(["n1", "n2"], filters=MetadataFilters(filters=[f("rank", "b")]))
    assert {n.node_id for n in store.get_nodes()} == {"n1", "n3", "n4"}
    store.delete_nodes(["n1"])
    assert {n.node_id for n in store.get_nodes()} == {"n3", "n4"}
    store.delete_nodes()   # neither ids nor filters: nothing
    assert len(store.get_nodes()) == 2
    store.clear()
    assert store.get_nodes() == []
    assert store.query(VectorStoreQuery(query_embedding=embed.vector("x"), similarity_top_k=3)).ids == []


def test_nodes_round_trip(store, embed):
    doc = Document(text="The quick brown fox. It jumps over the lazy dog.", id_="doc-rt",
                   metadata={"file": "fox.txt", "secret": "s", "n": 3},
                   excluded_embed_metadata_keys=["secret"], excluded_llm_metadata_keys=["file"],
                   metadata_template="{key}=>{value}", text_template="META {metadata_str}\n\n{content}")
    nodes = SentenceSplitter(chunk_size=12, chunk_overlap=0).get_nodes_from_documents([doc])
    assert len(nodes) >= 2
    store.add(embedded(embed, nodes))
    back = {n.node_id: n for n in store.get_nodes([n.node_id for n in nodes])}
    for node in nodes:
        got = back[node.node_id]
        assert got.ref_doc_id == "doc-rt"
        assert got.relationships == node.relationships
        for mode in MetadataMode:
            assert got.get_content(metadata_mode=mode) == node.get_content(metadata_mode=mode)
        assert got.embedding is None
        assert got.model_dump(exclude={"embedding"}) == node.model_dump(exclude={"embedding"})


def test_recompute_uses_the_embed_string(tmp_path):
    """Recompute embeds exactly node.get_content(MetadataMode.EMBED), metadata included."""
    embed = HashEmbedding()
    with LeannVectorStore(path=tmp_path / "kb", embed_model=embed) as vs:
        node = TextNode(id_="a", text="body text", metadata={"title": "Title words", "hidden": "no"},
                        excluded_embed_metadata_keys=["hidden"])
        vs.add(embedded(embed, [node]))
        vs.query(VectorStoreQuery(query_embedding=embed.vector("title"), similarity_top_k=1))
        x = vs.client.embeddings(["a"])
    assert np.allclose(x[0], embed.vector(node.get_content(metadata_mode=MetadataMode.EMBED)), atol=1e-6)
    assert "hidden" not in node.get_content(metadata_mode=MetadataMode.EMBED)


def test_nodes_from_another_model_are_refused(tmp_path):
    with LeannVectorStore(path=tmp_path / "kb", embed_model=HashEmbedding(dim=64)) as vs:
        other = HashEmbedding(dim=64)
        node = TextNode(id_="a", text="some words here")
        node.embedding = list(reversed(other.vector("some words here")))
        with pytest.raises(ValueError, match="embed_model"):
            vs.add([node])


def test_nodes_without_embeddings_are_embedded_by_the_store(store, embed):
    nodes = [TextNode(id_=i, text=t, metadata=dict(m)) for i, t, m in FILTER_ROWS]
    nodes[0].embedding = embed.vector(nodes[0].get_content(metadata_mode=MetadataMode.EMBED))
    store.add(nodes)
    assert query_ids(store, embed, None, k=1, text="stars and planets in the sky") == {"n3"}


def test_temporary_store_is_removed_on_close(embed):
    vs = LeannVectorStore(embed_model=embed)
    vs.add(filter_nodes(embed))
    path = vs.client.path
    import os
    assert os.path.exists(path)
    vs.close()
    assert not os.path.exists(path)


# -- through VectorStoreIndex ---------------------------------------------------

DOCS = {
    "fruit": "Apples and pears grow in orchards. Ripe apples are red or green and taste sweet.",
    "water": "Rivers flow into lakes and the sea. Fish swim in rivers and lakes.",
    "space": "Stars and planets fill the night sky. Astronomers watch planets with telescopes.",
    "code": "Python functions return values. A function may raise an exception on bad input.",
}


def documents(**changes: str) -> List[Document]:
    texts = {**DOCS, **changes}
    return [Document(text=t, id_=k, metadata={"topic": k}) for k, t in texts.items()]


def build_index(vs: LeannVectorStore, embed: HashEmbedding) -> VectorStoreIndex:
    ctx = StorageContext.from_defaults(vector_store=vs)
    return VectorStoreIndex.from_documents(
        documents(), storage_context=ctx, embed_model=embed,
        transformations=[SentenceSplitter(chunk_size=24, chunk_overlap=0)])


def top(index: VectorStoreIndex, embed, text: str, k: int = 2, **kwargs) -> List[str]:
    retriever = index.as_retriever(similarity_top_k=k, embed_model=embed, **kwargs)
    return [n.node.ref_doc_id for n in retriever.retrieve(text)]


def test_index_retriever_and_query_engine(store, embed):
    index = build_index(store, embed)
    assert top(index, embed, "telescopes and planets")[0] == "space"
    assert top(index, embed, "fish in the lakes")[0] == "water"
    hits = index.as_retriever(similarity_top_k=3, embed_model=embed).retrieve("apples")
    assert all(h.score is not None for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    filtered = top(index, embed, "apples", k=5,
                   filters=MetadataFilters(filters=[f("topic", "code")]))
    assert filtered and set(filtered) == {"code"}
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=2)
    response = engine.query("What do astronomers watch?")
    assert response.source_nodes[0].node.ref_doc_id == "space"
    assert "telescopes" in str(response)  # MockLLM echoes its prompt, context included


def test_delete_ref_doc(store, embed):
    index = build_index(store, embed)
    index.delete_ref_doc("space")
    assert "space" not in top(index, embed, "telescopes and planets", k=10)
    assert all(n.ref_doc_id != "space" for n in store.get_nodes())


def test_mmr(store, embed):
    near_dupes = ["apple pie recipe with apples", "apple pie recipe with apples!",
                  "apple pie recipe using apples", "apple orchard in spring"]
    store.add(embedded(embed, [TextNode(id_=f"d{i}", text=t) for i, t in enumerate(near_dupes)]))
    q = embed.vector("apple pie recipe")
    plain = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=2))
    assert set(plain.ids) <= {"d0", "d1", "d2"}
    mmr = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=2,
                                       mode=VectorStoreQueryMode.MMR, mmr_threshold=0.2))
    assert mmr.ids[0] in {"d0", "d1", "d2"} and "d3" in mmr.ids
    assert len(mmr.similarities) == 2 and all(s > 0 for s in mmr.similarities)
    # through a retriever, threshold in vector_store_kwargs
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    nodes = index.as_retriever(similarity_top_k=2, vector_store_query_mode="mmr",
                               vector_store_kwargs={"mmr_threshold": 0.2}).retrieve("apple pie recipe")
    assert "d3" in [n.node.node_id for n in nodes]


def test_persist_and_reload(tmp_path, embed):
    vs = LeannVectorStore(embed_model=embed)   # temporary: persist must copy it
    index = build_index(vs, embed)
    before = top(index, embed, "fish in the lakes", k=3)
    persist_dir = tmp_path / "storage"
    index.storage_context.persist(persist_dir)
    vs.close()

    loaded_vs = LeannVectorStore.from_persist_dir(persist_dir, embed_model=embed)
    ctx = StorageContext.from_defaults(vector_store=loaded_vs, persist_dir=persist_dir)
    loaded = load_index_from_storage(ctx, embed_model=embed)
    assert top(loaded, embed, "fish in the lakes", k=3) == before
    # persisting again where it now lives is a flush, not a copy onto itself
    loaded.insert(Document(text="Comets have tails of dust and ice.", id_="comet"))
    loaded.storage_context.persist(persist_dir)
    loaded_vs.close()

    reopened = VectorStoreIndex.from_vector_store(
        LeannVectorStore(path=persist_dir / "default__vector_store.leann", embed_model=embed),
        embed_model=embed)
    assert top(reopened, embed, "comets with tails of ice", k=1) == ["comet"]


def test_loading_without_the_store_is_an_error_not_an_empty_index(tmp_path, embed):
    vs = LeannVectorStore(embed_model=embed)
    build_index(vs, embed).storage_context.persist(tmp_path / "storage")
    vs.close()
    with pytest.raises(ValueError, match="LeannVectorStore"):
        load_index_from_storage(StorageContext.from_defaults(persist_dir=tmp_path / "storage"),
                                embed_model=embed)


def test_from_persist_path_rejects_other_files(tmp_path, embed):
    (tmp_path / "x.json").write_text('{"embedding_dict": {}}')
    with pytest.raises(ValueError, match="not written by LeannVectorStore"):
        LeannVectorStore.from_persist_path(str(tmp_path / "x.json"), embed_model=embed)
    with pytest.raises(FileNotFoundError):
        LeannVectorStore.from_persist_dir(tmp_path / "nothing", embed_model=embed)


def node_texts(vs: LeannVectorStore, ref_doc_id: str) -> List[str]:
    return sorted(n.get_content() for n in vs.get_nodes() if n.ref_doc_id == ref_doc_id)


def test_ingestion_pipeline_rerun_replaces_a_changed_documents_nodes(store, embed):
    def pipeline() -> IngestionPipeline:
        return IngestionPipeline(
            transformations=[SentenceSplitter(chunk_size=24, chunk_overlap=0), embed],
            vector_store=store, docstore=docstore, docstore_strategy=DocstoreStrategy.UPSERTS)

    docstore = SimpleDocumentStore()
    pipeline().run(documents=documents())
    before = {n.node_id for n in store.get_nodes()}
    old_fruit = node_texts(store, "fruit")
    assert old_fruit and len(before) >= len(DOCS)

    new_text = "Bananas are yellow. Monkeys eat bananas in the jungle."
    pipeline().run(documents=documents(fruit=new_text))
    assert node_texts(store, "fruit") == sorted(SentenceSplitter(chunk_size=24, chunk_overlap=0)
                                                .split_text(new_text))
    assert node_texts(store, "water") != []
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    assert top(index, embed, "monkeys eat bananas", k=1) == ["fruit"]
    assert not any("apples" in t.lower() for t in node_texts(store, "fruit"))


async def test_ingestion_pipeline_arun_upserts(store, embed):
    docstore = SimpleDocumentStore()

    def pipeline() -> IngestionPipeline:
        return IngestionPipeline(transformations=[SentenceSplitter(chunk_size=24, chunk_overlap=0), embed],
                                 vector_store=store, docstore=docstore)

    await pipeline().arun(documents=documents())
    await pipeline().arun(documents=documents(code="Rust has no exceptions; functions return Result."))
    assert any("Rust" in t for t in node_texts(store, "code"))
    assert not any("Python" in t for t in node_texts(store, "code"))


def test_reopening_with_another_model_is_refused(tmp_path, embed):
    from leann_store import ModelMismatchError

    with LeannVectorStore(path=tmp_path / "kb", embed_model=embed) as vs:
        vs.add(filter_nodes(embed))
    with pytest.raises(ModelMismatchError):
        LeannVectorStore(path=tmp_path / "kb", embed_model=HashEmbedding(dim=32))


def test_refresh_ref_docs(store, embed):
    index = build_index(store, embed)
    changed = documents(water="Glaciers are rivers of ice that carve valleys.")
    assert index.refresh_ref_docs(changed) == [False, True, False, False]
    assert top(index, embed, "glaciers carve valleys", k=1) == ["water"]
    assert not any("fish" in t.lower() for t in node_texts(store, "water"))


# -- async ------------------------------------------------------------------------

async def test_async_methods_under_gather(store, embed):
    nodes = filter_nodes(embed)
    await asyncio.gather(store.async_add(nodes[:2]), store.async_add(nodes[2:]))
    q = VectorStoreQuery(query_embedding=embed.vector("stars and planets"), similarity_top_k=2)
    results = await asyncio.gather(*(store.aquery(q) for _ in range(4)),
                                   store.aget_nodes(["n1", "n2"]),
                                   store.aget_nodes(filters=MetadataFilters(filters=[f("rank", "d")])))
    assert all(r.ids[0] == "n3" for r in results[:4])
    assert [n.node_id for n in results[4]] == ["n1", "n2"]
    assert [n.node_id for n in results[5]] == ["n4"]
    await asyncio.gather(store.adelete_nodes(["n4"]), store.adelete("no-such-doc"))
    assert {n.node_id for n in await store.aget_nodes()} == {"n1", "n2", "n3"}
    await store.aclear()
    assert await store.aget_nodes() == []


async def test_async_calls_leave_the_event_loop_free(tmp_path):
    slow = HashEmbedding(delay=0.2)   # every recompute batch sleeps in the worker thread
    with LeannVectorStore(path=tmp_path / "kb", embed_model=slow, **GRAPH_OPTIONS) as vs:
        await vs.async_add(filter_nodes(slow, FILTER_ROWS + FILLERS))   # a graph: searches recompute
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        q = VectorStoreQuery(query_embedding=slow.vector("apples"), similarity_top_k=2)
        before = slow.texts_embedded
        await asyncio.gather(vs.aquery(q), vs.aquery(q))
        stop.set()
        await task
    assert slow.texts_embedded > before   # the queries did recompute (and sleep)
    assert ticks >= 10


async def test_async_index_and_retriever(store, embed):
    ctx = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex.from_documents(documents(), storage_context=ctx, embed_model=embed,
                                            use_async=True,
                                            transformations=[SentenceSplitter(chunk_size=24, chunk_overlap=0)])
    retriever = index.as_retriever(similarity_top_k=1, embed_model=embed)
    space, water = await asyncio.gather(retriever.aretrieve("planets and telescopes"),
                                        retriever.aretrieve("fish in rivers"))
    assert space[0].node.ref_doc_id == "space" and water[0].node.ref_doc_id == "water"
