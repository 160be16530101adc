"""``LeannVectorStore``: LlamaIndex's vector store protocol on one ``leann_store.LeannStore``.

Mapping code only.  Nodes go in as (text, the string LlamaIndex embedded,
``node_to_metadata_dict`` metadata, the node's embedding); the store builds
with the embedding and drops it, and at query time re-embeds the few passages
the search visits through this store's ``embed_model``.  Filters are
translated by ``filters.py``; everything else (search, filters, durability,
deletes) is the store's.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    DEFAULT_PERSIST_DIR,
    DEFAULT_PERSIST_FNAME,
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from leann_store import Hit, LeannStore, ModelMismatchError, StoreConfig
from leann_store.options import SearchOptions
from leann_store.scores import similarity

from .filters import StoreFilter, all_of, to_store_filter

#: metadata key holding the node id, so that filters can select by id
NODE_ID_KEY = "_node_id"
#: the key of the persist file that names the store directory beside it
MANIFEST_KEY = "leann_vector_store"
MANIFEST_FORMAT = 1
#: candidates searched per result in MMR mode, unless ``mmr_prefetch_k`` / ``mmr_prefetch_factor``
DEFAULT_MMR_PREFETCH_FACTOR = 4.0

_SUPPORTED_MODES = (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR, VectorStoreQueryMode.HYBRID,
                    VectorStoreQueryMode.TEXT_SEARCH)
#: LlamaIndex's query modes -> the store's search modes
_STORE_MODE = {VectorStoreQueryMode.HYBRID: "hybrid", VectorStoreQueryMode.TEXT_SEARCH: "keyword"}
_NAMESPACE_SEP = "__"  # llama-index-core's: "{namespace}__vector_store.json"


class LeannVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store whose index is tens of bytes a passage.

    Embeddings are not kept: the passages a search visits are re-embedded with
    ``embed_model`` (default ``Settings.embed_model``), which must be the model
    that embedded the nodes (the first add checks one node).

    Set up and build an index::

        from llama_index.core import StorageContext, VectorStoreIndex, Settings
        from llama_index.vector_stores.leann import LeannVectorStore

        vector_store = LeannVectorStore(path="kb", embed_model=Settings.embed_model)
        storage_context = StorageContext.from_defaults(vector_store=vector_store)
        index = VectorStoreIndex.from_documents(documents, storage_context=storage_context)

    Retrieve, filter, MMR::

        from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
        filters = MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=">=")])
        nodes = index.as_retriever(similarity_top_k=5, filters=filters).retrieve("query")
        nodes = index.as_retriever(vector_store_query_mode="mmr",
                                   vector_store_kwargs={"mmr_threshold": 0.5}).retrieve("query")

    Hybrid (dense + BM25 keywords, fused by reciprocal rank, or weighted by
    ``alpha``: 1 = dense only) and keyword-only search over the store's
    keyword index::

        nodes = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=5,
                                   sparse_top_k=20).retrieve("configure_file")
        nodes = index.as_retriever(vector_store_query_mode="hybrid", alpha=0.5).retrieve("query")
        nodes = index.as_retriever(vector_store_query_mode="text_search").retrieve("configure_file")

    Reopen: the store is durable at ``path`` (no ``persist`` call needed)::

        index = VectorStoreIndex.from_vector_store(LeannVectorStore(path="kb"))

    or round-trip through a storage context's persist directory::

        storage_context.persist("storage")
        vector_store = LeannVectorStore.from_persist_dir("storage")
        index = load_index_from_storage(
            StorageContext.from_defaults(vector_store=vector_store, persist_dir="storage"))

    Async: ``async_add``, ``aquery``, ``adelete``, ``adelete_nodes``,
    ``aget_nodes`` and ``aclear`` run the store in a worker thread.

    Large builds: adds of any size are cheap.  A store is exact below
    ``graph_rows`` (16384) nodes and then builds its graph from the nodes'
    embeddings; later adds wait in an exact delta segment that merges insert
    into the graph without re-embedding anything.  Handing VectorStoreIndex
    all nodes at once is still a little faster (20k nodes: 3.3 s against
    4.1 s in the default 2,048-node batches)::

        VectorStoreIndex(nodes, storage_context=storage_context, insert_batch_size=len(nodes))

    Args:
        path: the store's directory (created if missing); None: a temporary
            store, removed on ``close()``.
        embed_model: the LlamaIndex embedding that recomputes passages.
        model: the name recorded with the store to recognise the model on
            reopen; default: the embedding's class and ``model_name``.
        read_only, check_model: as in ``LeannStore.open``.
        **store_options: ``StoreConfig.from_options`` names (``metric``,
            ``M``, ``ef_construction``, ...); none: the stored configuration.
    """

    stores_text: bool = True
    flat_metadata: bool = False
    is_embedding_query: bool = True
    path: Optional[str] = None

    _store: LeannStore = PrivateAttr()
    _embed_model: BaseEmbedding = PrivateAttr()

    def __init__(
        self,
        path: Optional[Union[str, os.PathLike]] = None,
        *,
        embed_model: Optional[BaseEmbedding] = None,
        model: Optional[str] = None,
        read_only: bool = False,
        check_model: bool = True,
        **store_options: Any,
    ) -> None:
        super().__init__(path=None if path is None else os.fspath(path))  # type: ignore[call-arg]
        if embed_model is None:
            from llama_index.core import Settings

            embed_model = Settings.embed_model
        self._embed_model = embed_model
        config = StoreConfig.from_options(**store_options) if store_options else None
        model = model or _model_name(embed_model)
        if path is None:
            self._store = LeannStore.temporary(embed=self._embed_documents, config=config, model=model)
        else:
            self._store = LeannStore.open(
                os.fspath(path), embed=self._embed_documents, config=config, model=model,
                check_model=check_model, read_only=read_only,
            )

    @classmethod
    def class_name(cls) -> str:
        return "LeannVectorStore"

    @property
    def client(self) -> LeannStore:
        """The underlying ``leann_store.LeannStore``."""
        return self._store

    @property
    def embed_model(self) -> BaseEmbedding:
        return self._embed_model

    def close(self) -> None:
        """Close the store (a temporary one is removed)."""
        self._store.close()

    def __enter__(self) -> "LeannVectorStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the embedding callback ----------------------------------------------

    def _embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Recompute passages: the store calls this with the strings stored at add time."""
        vectors = self._embed_model.get_text_embedding_batch(list(texts))
        return np.asarray(vectors, dtype=np.float32)

    # -- writes --------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> List[str]:
        """Upsert nodes by id; their embeddings build the index and are then dropped."""
        if not nodes:
            return []
        ids = [node.node_id for node in nodes]
        texts = [node.get_content(metadata_mode=MetadataMode.NONE) for node in nodes]
        embed_texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        embeddings = self._node_embeddings(nodes, embed_texts)
        metadatas = [self._node_metadata(node) for node in nodes]
        try:
            self._store.add(texts, metadatas=metadatas, ids=ids, embeddings=embeddings,
                            embed_texts=embed_texts)
        except ModelMismatchError as exc:  # the store checks given embeddings against the model
            raise ValueError(f"{exc} (here: pass LeannVectorStore(embed_model=...) the model that embedded "
                             "the nodes, e.g. the index's embed_model)") from exc
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document ``ref_doc_id``."""
        self._store.delete_where({"ref_doc_id": {"$eq": ref_doc_id}})

    def delete_nodes(
        self,
        node_ids: Optional[List[str]] = None,
        filters: Optional[MetadataFilters] = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete the nodes that are in ``node_ids`` and match ``filters``.

        With neither given nothing is deleted (``clear()`` empties the store)."""
        store_filter = to_store_filter(filters)
        if node_ids is not None and store_filter is None:
            self._store.delete(list(node_ids))
        elif node_ids is not None or store_filter is not None:
            self._store.delete_where(all_of(_ids_filter(node_ids), store_filter))

    def clear(self) -> None:
        self._store.clear()

    # -- reads ---------------------------------------------------------------

    def get_nodes(
        self,
        node_ids: Optional[List[str]] = None,
        filters: Optional[MetadataFilters] = None,
    ) -> List[BaseNode]:
        """Nodes by id (request order) and/or by filter; neither: every node."""
        store_filter = to_store_filter(filters)
        if node_ids is not None and store_filter is None:
            records = self._store.get(list(node_ids))
        else:
            records = self._store.find(all_of(_ids_filter(node_ids), store_filter))
        return [_to_node(r.id, r.text, r.metadata) for r in records]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Top ``similarity_top_k`` nodes; modes DEFAULT, MMR, HYBRID and TEXT_SEARCH.

        HYBRID fuses the dense top ``similarity_top_k`` with the keyword
        (BM25) top ``sparse_top_k`` (default ``max(k, 20)``) and returns
        ``hybrid_top_k`` nodes (default ``similarity_top_k``); ``alpha``
        None fuses by reciprocal rank, a number in [0, 1] weights the
        normalised scores (1: dense only).  TEXT_SEARCH is BM25 alone on
        ``query_str``.
        kwargs: the store's search options (``ef``, ``rerank_ratio``,
        ``max_recompute``, ``batch_size``, ``confidence``: the adaptive stop,
        higher recomputes more; ``rrf_k``); for MMR ``mmr_threshold`` (when
        the query has none), ``mmr_prefetch_k`` or ``mmr_prefetch_factor``.
        Similarities are higher-is-better (``similarity``); in MMR mode they
        are still each node's similarity to the query, in MMR order; in
        HYBRID mode the fused score, in TEXT_SEARCH the BM25 score."""
        mode = VectorStoreQueryMode(query.mode)
        if mode not in _SUPPORTED_MODES:
            raise NotImplementedError(
                f"LeannVectorStore does not support query mode {mode.value!r}; "
                f"supported: {', '.join(m.value for m in _SUPPORTED_MODES)}"
            )
        if mode in _STORE_MODE:
            return self._query_text(query, _STORE_MODE[mode], kwargs)
        if query.query_embedding is None:
            raise ValueError("LeannVectorStore needs query.query_embedding (a dense vector query)")
        k = int(query.similarity_top_k)
        if k <= 0:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        store_filter = _query_filter(query)
        search_options = SearchOptions.pick(kwargs)
        q = np.asarray(query.query_embedding, dtype=np.float32)
        hits: Sequence[Hit]
        if mode == VectorStoreQueryMode.MMR:
            candidates = self._store.search(q, k=_mmr_fetch_k(k, kwargs), filter=store_filter, **search_options)
            hits = self._mmr_select(q, candidates, k, _mmr_threshold(query, kwargs))
        else:
            hits = self._store.search(q, k=k, filter=store_filter, **search_options)
        return VectorStoreQueryResult(
            nodes=[_to_node(h.id, h.text, h.metadata) for h in hits],
            similarities=[self.similarity(h.distance) for h in hits],
            ids=[h.id for h in hits],
        )

    def _query_text(self, query: VectorStoreQuery, mode: str, kwargs: Dict[str, Any]) -> VectorStoreQueryResult:
        """HYBRID and TEXT_SEARCH: the store's hybrid or keyword search."""
        if not query.query_str or not query.query_str.strip():
            raise ValueError(f"query mode {query.mode!r} needs query.query_str (the query's text)")
        if mode == "hybrid" and query.query_embedding is None:
            raise ValueError("hybrid mode needs query.query_embedding as well as query.query_str")
        dense_k = int(query.similarity_top_k)
        k = int(query.hybrid_top_k or dense_k) if mode == "hybrid" else dense_k
        if k <= 0:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        options = SearchOptions.pick(kwargs)
        if mode == "hybrid":
            options.update(dense_depth=max(1, dense_k), alpha=query.alpha)
            if query.sparse_top_k:
                options["keyword_depth"] = int(query.sparse_top_k)
        q = None if mode == "keyword" else np.asarray(query.query_embedding, dtype=np.float32)
        hits = self._store.search(q, k=k, filter=_query_filter(query), text=query.query_str, mode=mode, **options)
        return VectorStoreQueryResult(
            nodes=[_to_node(h.id, h.text, h.metadata) for h in hits],
            similarities=[float(h.score) for h in hits],
            ids=[h.id for h in hits],
        )

    def similarity(self, distance: float) -> float:
        """Higher-is-better score from the store's distance (override to change).

        cosine: the cosine (1 - distance); ip: the inner product; l2: 1 / (1 + squared distance)."""
        return similarity(self._store.metric, distance)

    def _mmr_select(self, q: np.ndarray, hits: Sequence[Hit], k: int, threshold: Optional[float]) -> List[Hit]:
        if len(hits) <= 1:
            return list(hits)
        ids = [h.id for h in hits]
        vectors = self._store.embeddings(ids)
        _, chosen = get_top_k_mmr_embeddings(
            q.tolist(), vectors.tolist(), similarity_top_k=k, embedding_ids=list(range(len(hits))),
            mmr_threshold=threshold,
        )
        return [hits[i] for i in chosen]

    # -- async: the same calls in a worker thread ---------------------------

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> List[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(
        self,
        node_ids: Optional[List[str]] = None,
        filters: Optional[MetadataFilters] = None,
        **delete_kwargs: Any,
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aget_nodes(
        self,
        node_ids: Optional[List[str]] = None,
        filters: Optional[MetadataFilters] = None,
    ) -> List[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    # -- persistence ---------------------------------------------------------

    def persist(self, persist_path: str = os.path.join(DEFAULT_PERSIST_DIR, DEFAULT_PERSIST_FNAME),
                fs: Optional[Any] = None) -> None:
        """Save the store beside ``persist_path`` and write ``persist_path`` naming it.

        ``StorageContext.persist(dir)`` calls this with ``dir/default__vector_store.json``:
        the store goes to ``dir/default__vector_store.leann/`` (a consistent
        snapshot; nothing to copy when this store already lives there, since
        every write is durable when it returns) and the JSON file names it.
        That file is also shaped so that loading ``dir`` without passing this
        store (``StorageContext.from_defaults(persist_dir=dir)``, which reads
        every ``*vector_store.json`` as a SimpleVectorStore) fails with a
        message saying what to do instead of giving an empty index."""
        _require_local(fs)
        persist_path = os.fspath(persist_path)
        target = _store_dir_for(persist_path)
        self._store.snapshot(target, replace=True)
        _write_manifest(persist_path, target.name)

    @classmethod
    def from_persist_path(cls, persist_path: str, fs: Optional[Any] = None, **kwargs: Any) -> "LeannVectorStore":
        """Open the store that ``persist(persist_path)`` saved (kwargs: as the constructor)."""
        _require_local(fs)
        return cls(path=_read_manifest(os.fspath(persist_path)), **kwargs)

    @classmethod
    def from_persist_dir(cls, persist_dir: str = DEFAULT_PERSIST_DIR, namespace: str = "default",
                         fs: Optional[Any] = None, **kwargs: Any) -> "LeannVectorStore":
        """Open the store that ``StorageContext.persist(persist_dir)`` saved."""
        fname = f"{namespace}{_NAMESPACE_SEP}{DEFAULT_PERSIST_FNAME}"
        return cls.from_persist_path(os.path.join(os.fspath(persist_dir), fname), fs=fs, **kwargs)

    # -- node <-> store row ------------------------------------------------

    def _node_metadata(self, node: BaseNode) -> Dict[str, Any]:
        metadata = node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata)
        metadata[NODE_ID_KEY] = node.node_id
        return metadata

    def _node_embeddings(self, nodes: Sequence[BaseNode], embed_texts: List[str]) -> Optional[np.ndarray]:
        """The nodes' own embeddings (missing ones computed here); None when none has one."""
        given = [node.embedding for node in nodes]
        if all(e is None for e in given):
            return None
        missing = [i for i, e in enumerate(given) if e is None]
        if missing:
            computed = self._embed_documents([embed_texts[i] for i in missing])
            for i, vector in zip(missing, computed):
                given[i] = vector
        return np.asarray(given, dtype=np.float32)

# -- helpers (pure) ----------------------------------------------------------

def _model_name(embed_model: BaseEmbedding) -> str:
    return f"llama_index:{embed_model.class_name()}:{getattr(embed_model, 'model_name', 'unknown')}"


def _to_node(node_id: str, text: str, metadata: Dict[str, Any]) -> BaseNode:
    """The node LlamaIndex stored, or a TextNode for rows added without LlamaIndex."""
    if "_node_content" in metadata:
        return metadata_dict_to_node(metadata, text=text)
    return TextNode(id_=node_id, text=text, metadata=dict(metadata))


def _query_filter(query: VectorStoreQuery) -> Optional[StoreFilter]:
    """The store filter of a query: its metadata filters, doc ids and node ids."""
    return all_of(
        to_store_filter(query.filters),
        _doc_ids_filter(query.doc_ids),
        # an empty list is what VectorIndexRetriever passes for stores that keep text
        _ids_filter(query.node_ids) if query.node_ids else None,
    )


def _ids_filter(node_ids: Optional[Sequence[str]]) -> Optional[StoreFilter]:
    return None if node_ids is None else {NODE_ID_KEY: {"$in": list(node_ids)}}


def _doc_ids_filter(doc_ids: Optional[Sequence[str]]) -> Optional[StoreFilter]:
    return None if not doc_ids else {"ref_doc_id": {"$in": list(doc_ids)}}


def _mmr_threshold(query: VectorStoreQuery, kwargs: Dict[str, Any]) -> Optional[float]:
    if query.mmr_threshold is not None:
        return query.mmr_threshold
    return kwargs.get("mmr_threshold")


def _mmr_fetch_k(k: int, kwargs: Dict[str, Any]) -> int:
    if kwargs.get("mmr_prefetch_k") is not None:
        return max(k, int(kwargs["mmr_prefetch_k"]))
    factor = kwargs.get("mmr_prefetch_factor") or DEFAULT_MMR_PREFETCH_FACTOR
    return max(k, int(round(k * float(factor))))


def _require_local(fs: Optional[Any]) -> None:
    protocol = getattr(fs, "protocol", "file") if fs is not None else "file"
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    if not {"file", "local"} & set(protocols):
        raise NotImplementedError(
            f"LeannVectorStore persists to the local file system only, not {protocols[0]!r}")


def _store_dir_for(persist_path: str) -> Path:
    """``.../default__vector_store.json`` -> ``.../default__vector_store.leann``."""
    p = Path(persist_path)
    stem = p.name[: -len(".json")] if p.name.endswith(".json") else p.name
    return p.with_name(stem + ".leann")


def _write_manifest(persist_path: str, store_dir_name: str) -> None:
    message = (
        f"This is a LeannVectorStore (leann-store), saved in {store_dir_name!r} beside this file, "
        "not a SimpleVectorStore. Load it with StorageContext.from_defaults("
        "vector_store=LeannVectorStore.from_persist_dir(persist_dir), persist_dir=persist_dir)"
    )
    manifest = {
        MANIFEST_KEY: {"format": MANIFEST_FORMAT, "store_dir": store_dir_name},
        # StorageContext.from_defaults(persist_dir=...) without vector_store= loads every
        # "*vector_store.json" as SimpleVectorStoreData, which ignores unknown keys and would
        # give an empty store.  A key of its own whose value it cannot decode makes that load
        # fail instead, and the message it raises ("could not convert string to float: '...'")
        # is this text.
        "embedding_dict": {"__leann_vector_store__": {message: 0}},
    }
    path = Path(persist_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _read_manifest(persist_path: str) -> str:
    """The store directory that the persist file names (or the path itself, if a store)."""
    path = Path(persist_path)
    if path.is_dir():
        return str(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))[MANIFEST_KEY]
    except FileNotFoundError:
        raise FileNotFoundError(f"no LeannVectorStore persisted at {persist_path}") from None
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"{persist_path} was not written by LeannVectorStore.persist "
            "(a SimpleVectorStore's file? load that one with SimpleVectorStore)") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{persist_path}: unknown LeannVectorStore persist format "
                         f"{manifest.get('format')!r} (this version reads {MANIFEST_FORMAT})")
    store_dir = path.parent / manifest["store_dir"]
    if not store_dir.is_dir():
        raise FileNotFoundError(f"{persist_path} names the store {store_dir}, which is missing")
    return str(store_dir)
