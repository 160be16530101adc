"""`LeannVectorStore`: LangChain's ``VectorStore`` interface mapped onto ``LeannStore``.

Mapping code only: ids, Documents, filters, relevance scores, MMR and the async bridge.
Storage, filtering inside the search, recompute and durability live in ``leann_store``.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance
from typing_extensions import Self

from leann_store import LeannStore, StoreConfig, UnknownIdError
from leann_store.options import SearchOptions
from leann_store.scores import hit_relevance, relevance

#: A metadata filter: the core's Mongo-style dict, or a predicate on a document's metadata.
Filter = dict[str, Any] | Callable[[dict[str, Any]], bool]

#: An embed function as the store calls it: texts -> (len(texts), d) floats.
EmbedFn = Callable[[list[str]], Any]

# Attributes that name the model behind common Embeddings classes (OpenAI: model,
# HuggingFace: model_name, Bedrock: model_id, Azure: deployment, fakes: size).
_MODEL_ATTRS = ("model", "model_name", "model_id", "deployment", "repo_id", "size", "dimensions")


def model_identity(embedding: Embeddings) -> str:
    """The string a store records as its embedding model: the class and its model attributes.

    The store also records the vector this model gives for a probe text, so a store opened
    with another model fails loudly instead of returning neighbours of the wrong space.
    """
    cls = type(embedding)
    parts = [f"{cls.__module__}.{cls.__qualname__}"]
    for attr in _MODEL_ATTRS:
        value = getattr(embedding, attr, None)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            parts.append(f"{attr}={value}")
    return " ".join(parts)


def _overrides(embedding: Embeddings, method: str) -> bool:
    """Whether the embedding class has its own ``method`` rather than the base class's
    default (which only runs the sync method in an executor)."""
    return getattr(type(embedding), method, None) is not getattr(Embeddings, method)


def _to_document(item: Any) -> Document:
    """A store ``Record`` or ``Hit`` as a fresh LangChain Document carrying its id."""
    return Document(id=item.id, page_content=item.text, metadata=dict(item.metadata))





class LeannVectorStore(VectorStore):
    """A LangChain vector store whose index keeps no embeddings.

    Passages visited by a search are re-embedded with ``embedding.embed_documents`` on the
    exact text that was embedded when they were added; queries use ``embed_query``.

    Set-up (no ``path``: a temporary store, removed when closed or collected)::

        from langchain_core.embeddings import DeterministicFakeEmbedding
        from langchain_leann import LeannVectorStore

        embedding = DeterministicFakeEmbedding(size=64)
        vs = LeannVectorStore(embedding)            # or LeannVectorStore(embedding, path="kb")

    Add (an upsert: ids from ``ids=``, then ``Document.id``, then generated)::

        from langchain_core.documents import Document
        ids = vs.add_documents([
            Document(page_content="LEANN prunes the graph", metadata={"year": 2025}),
            Document(page_content="FAISS keeps every vector", metadata={"year": 2017}),
        ])

    Search, with scores and with a filter (a Mongo-style dict or a callable on metadata,
    applied inside the search: ``k`` results come back when ``k`` documents match)::

        vs.similarity_search("graph pruning", k=1)
        vs.similarity_search_with_relevance_scores("graph pruning", k=2)
        vs.similarity_search("graph", k=1, filter={"year": {"$gte": 2020}})
        vs.similarity_search("graph", k=1, filter=lambda md: md["year"] < 2020)

    Keyword (BM25) and hybrid search, per call or store-wide (``search_mode=``): hybrid
    fuses the dense and the keyword ranking, so an identifier or a rare word the model
    blurs is still found; keyword search needs no model call::

        vs.similarity_search("FAISS", k=1, mode="hybrid")
        vs.similarity_search("FAISS", k=1, mode="keyword")
        hybrid_vs = LeannVectorStore(embedding, search_mode="hybrid")
        hybrid_vs.close()

    Retriever (``similarity``, ``similarity_score_threshold`` or ``mmr``; ``mode`` in
    ``search_kwargs``)::

        retriever = vs.as_retriever(search_type="mmr", search_kwargs={"k": 1, "fetch_k": 2})
        retriever.invoke("graph pruning")
        vs.as_retriever(search_kwargs={"k": 1, "mode": "hybrid"}).invoke("FAISS")

    Async (never blocks the event loop; uses ``aembed_query``/``aembed_documents``)::

        import asyncio
        asyncio.run(vs.asimilarity_search("graph pruning", k=1))

    Snapshot and reopen (no pickle)::

        import tempfile, os
        folder = os.path.join(tempfile.mkdtemp(), "kb")
        vs.save_local(folder)
        reopened = LeannVectorStore.load_local(folder, embedding)
        reopened.close(); vs.close()

    Args:
        embedding: the LangChain embedding model, used for adds, queries and recompute.
        path: the store's directory (created if missing, reopened if it holds a store);
            ``None`` for a temporary store.
        metric: ``"cosine"`` (default for a new store), ``"l2"`` or ``"ip"``; ``None``
            keeps the metric of an existing store.
        model: the model name recorded in the store; default :func:`model_identity`.
        relevance_score_fn: replaces the per-metric distance -> [0, 1] mapping (dense mode).
        search_mode: ``"dense"`` (default), ``"keyword"`` or ``"hybrid"``: the mode of the
            methods that take the query's text when they are not given ``mode=``
            (``*_by_vector`` methods search densely unless given ``mode=`` and ``text=``).
        read_only: open an existing store without write access (many processes may).
        check_model: False skips the model fingerprint check on reopening.
        **store_options: ``StoreConfig`` options (``M``, ``ef_construction``, ...).
    """

    def __init__(
        self,
        embedding: Embeddings,
        path: str | os.PathLike[str] | None = None,
        *,
        metric: str | None = None,
        model: str | None = None,
        relevance_score_fn: Callable[[float], float] | None = None,
        read_only: bool = False,
        check_model: bool = True,
        search_mode: str = "dense",
        **store_options: Any,
    ) -> None:
        self._search_mode = SearchOptions(mode=search_mode).mode
        self._embedding = embedding
        self._relevance_score_fn = relevance_score_fn
        options = dict(store_options)
        if metric is not None:
            options["metric"] = metric
        config = StoreConfig.from_options(**options) if options else None
        model = model if model is not None else model_identity(embedding)
        if path is None:
            if read_only:
                raise ValueError("read_only needs the path of an existing store")
            self._store = LeannStore.temporary(
                embed=embedding.embed_documents, config=config, model=model
            )
        else:
            self._store = LeannStore.open(
                os.fspath(path), embed=embedding.embed_documents, config=config,
                model=model, check_model=check_model, read_only=read_only,
            )

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings:
        """The embedding model used for adds, queries and recompute."""
        return self._embedding

    @property
    def search_mode(self) -> str:
        """The mode of searches given the query's text and no ``mode=``."""
        return self._search_mode

    @property
    def store(self) -> LeannStore:
        """The underlying framework-free store (stats, check, find, ...)."""
        return self._store

    def close(self) -> None:
        """Close the store; a temporary store's directory is removed."""
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"LeannVectorStore({self._store!r}, embedding={type(self._embedding).__name__})"

    # -- writes ------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and upsert ``texts``; returns their ids (given ones kept, others generated)."""
        return self._store.add(*self._rows(texts, metadatas, ids, **kwargs))

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Upsert Documents; ids from ``ids=``, then ``Document.id``, then generated.

        The caller's Documents are not modified.
        """
        texts, metadatas, doc_ids = self._document_rows(documents, kwargs.pop("ids", None))
        return self.add_texts(texts, metadatas, ids=doc_ids, **kwargs)

    def add_embeddings(
        self,
        text_embeddings: Iterable[tuple[str, Sequence[float]]],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Upsert texts with embeddings computed earlier by this store's model (as FAISS's
        ``add_embeddings``). Later searches recompute them with ``embed_documents``."""
        pairs = list(text_embeddings)
        vectors = np.asarray([v for _, v in pairs], dtype=np.float32)
        return self._store.add(*self._rows([t for t, _ in pairs], metadatas, ids, **kwargs),
                               embeddings=vectors)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete ``ids`` (missing ones are fine), or every document matching ``filter=``,
        or everything when neither is given. Returns ``True``."""
        flt = kwargs.pop("filter", None)
        if kwargs:
            raise TypeError(f"delete() got unexpected arguments: {sorted(kwargs)}")
        if ids is not None and flt is not None:
            raise ValueError("delete() takes ids or filter, not both")
        if flt is not None:
            self._store.delete_where(flt)
        elif ids is None:
            self._store.clear()
        else:
            self._store.delete(list(ids))
        return True

    # -- reads -------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents for the ids that exist, in request order; missing ids are skipped."""
        return [_to_document(rec) for rec in self._store.get(list(ids))]

    def similarity_search(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents and scores.  Dense mode: distances (lower is closer): 1 - cos,
        squared L2 or -<q, x>; keyword and hybrid modes: the BM25 or fused score
        (higher is better).  ``mode=`` overrides the store-wide ``search_mode``."""
        options = self._text_options(query, kwargs)
        vector = None if options["mode"] == "keyword" else self._embedding.embed_query(query)
        return self._search(vector, k, filter, None, options)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        pairs = self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)
        return [doc for doc, _ in pairs]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return self._search(embedding, k, filter, None, kwargs)

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """MMR over the ``fetch_k`` best matches of the store-wide or given ``mode``."""
        vector = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter, **self._text_options(query, kwargs)
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """MMR over the ``fetch_k`` nearest matches; their embeddings are recomputed with
        ``embed_documents`` (the index keeps none)."""
        pairs = self._mmr(embedding, k, fetch_k, lambda_mult, filter, None, kwargs)
        return [doc for doc, _ in pairs]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Distance -> relevance in [0, 1], higher is better, for the store's metric:
        cosine -> the cosine similarity floored at 0; l2 -> 1 / (1 + squared distance);
        ip -> the logistic of the inner product."""
        if self._relevance_score_fn is not None:
            return self._relevance_score_fn
        return functools.partial(relevance, self._store.metric)

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        options = self._text_options(query, kwargs)
        return self._relevance(self.similarity_search_with_score(query, k, **options), options)

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        options = self._text_options(query, kwargs)
        return self._relevance(await self.asimilarity_search_with_score(query, k, **options), options)

    def _relevance(
        self, pairs: list[tuple[Document, float]], options: dict[str, Any]
    ) -> list[tuple[Document, float]]:
        """Scores as relevance in [0, 1]: dense distances through
        ``_select_relevance_score_fn``; BM25 and fused scores by their mode."""
        mode = options["mode"]
        if mode == "dense":
            fn = self._select_relevance_score_fn()
            return [(doc, fn(score)) for doc, score in pairs]
        opts = SearchOptions.of(None, **SearchOptions.pick(options))
        return [(doc, hit_relevance(self._store.metric, mode, float("nan"), score, rrf_k=opts.rrf_k,
                                    weighted=opts.alpha is not None)) for doc, score in pairs]

    # -- async -------------------------------------------------------------------------

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        rows = self._rows(texts, metadatas, ids, **kwargs)
        if not rows[0] or not _overrides(self._embedding, "aembed_documents"):
            # the store embeds in the worker thread, in its token-budgeted batches
            return await asyncio.to_thread(self._store.add, *rows)
        vectors = np.asarray(await self._embedding.aembed_documents(rows[0]), dtype=np.float32)
        # the store's own model made them: nothing to check
        return await asyncio.to_thread(functools.partial(self._store.add, *rows, embeddings=vectors,
                                                         check_model=False))

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        texts, metadatas, doc_ids = self._document_rows(documents, kwargs.pop("ids", None))
        return await self.aadd_texts(texts, metadatas, ids=doc_ids, **kwargs)

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        return await asyncio.to_thread(self.delete, ids, **kwargs)

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return await asyncio.to_thread(self.get_by_ids, ids)

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        pairs = await self.asimilarity_search_with_score(query, k, filter, **kwargs)
        return [doc for doc, _ in pairs]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        options = self._text_options(query, kwargs)
        vector = None if options["mode"] == "keyword" else await self._embedding.aembed_query(query)
        return await self._asearch(vector, k, filter, options)

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        pairs = await self._asearch(embedding, k, filter, kwargs)
        return [doc for doc, _ in pairs]

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = await self._embedding.aembed_query(query)
        return await self.amax_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter, **self._text_options(query, kwargs)
        )

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        embed = self._async_recompute()
        pairs = await asyncio.to_thread(
            self._mmr, embedding, k, fetch_k, lambda_mult, filter, embed, kwargs
        )
        return [doc for doc, _ in pairs]

    # -- construction and snapshots ----------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A store (temporary unless ``path``) holding ``texts``; other keyword arguments
        go to the constructor."""
        vs = cls(embedding, path, **kwargs)
        try:
            vs.add_texts(texts, metadatas, ids=ids)
        except BaseException:
            vs.close()
            raise
        return vs

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        vs = await asyncio.to_thread(lambda: cls(embedding, path, **kwargs))
        try:
            await vs.aadd_texts(texts, metadatas, ids=ids)
        except BaseException:
            vs.close()
            raise
        return vs

    def save_local(self, folder: str | os.PathLike[str]) -> None:
        """Write a consistent snapshot of the store to ``folder`` (no pickle).

        ``folder`` may be absent, empty, or an earlier snapshot (replaced whole, never
        half-written); any other non-empty folder is refused. Saving to the store's own
        path only flushes it.
        """
        self._store.snapshot(folder, replace=True)

    @classmethod
    def load_local(
        cls,
        folder: str | os.PathLike[str],
        embeddings: Embeddings,
        **kwargs: Any,
    ) -> Self:
        """Open the store in ``folder`` (written by :meth:`save_local` or used as a
        ``path``) with ``embeddings``; changes are saved in place. A different embedding
        model than the one the store was built with raises ``ModelMismatchError``.
        Keyword arguments go to the constructor (``read_only=True``, ``model=``, ...);
        FAISS's ``allow_dangerous_deserialization`` is accepted and ignored, so code
        written for FAISS runs unchanged: nothing here is unpickled."""
        kwargs.pop("allow_dangerous_deserialization", None)
        if not LeannStore.is_store(folder):
            raise FileNotFoundError(f"{folder} holds no leann store")
        return cls(embeddings, folder, **kwargs)

    # -- the one query path ------------------------------------------------------------

    def _search(
        self, vector: Sequence[float] | None, k: int, filter: Filter | None,
        embed: EmbedFn | None, options: dict[str, Any],
    ) -> list[tuple[Document, float]]:
        """(Document, score) pairs: the distance in dense mode, else the hit's score."""
        options = {"mode": "dense", **options}
        query = None if vector is None else np.asarray(vector, dtype=np.float32)
        hits = self._store.search(query, k=k, filter=filter, embed=embed, **options)
        dense = options["mode"] == "dense"
        return [(_to_document(hit), float(hit.distance if dense else hit.score)) for hit in hits]

    def _text_options(self, query: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """A text query's keyword arguments with its mode (given, else the store-wide
        one) and its text, for the keyword side."""
        mode = kwargs.get("mode", self._search_mode)
        return {**kwargs, "mode": mode, "text": query} if mode != "dense" else {**kwargs, "mode": mode}

    async def _asearch(
        self, vector: Sequence[float] | None, k: int, filter: Filter | None, options: dict[str, Any]
    ) -> list[tuple[Document, float]]:
        embed = self._async_recompute()
        return await asyncio.to_thread(self._search, vector, k, filter, embed, options)

    def _mmr(
        self, vector: Sequence[float], k: int, fetch_k: int, lambda_mult: float,
        filter: Filter | None, embed: EmbedFn | None, options: dict[str, Any],
    ) -> list[tuple[Document, float]]:
        query = np.asarray(vector, dtype=np.float32)
        hits: list[Any] = self._store.search(query, k=max(k, fetch_k), filter=filter,
                                             embed=embed, **{"mode": "dense", **options})
        if not hits:
            return []
        try:
            candidates = self._store.embeddings([hit.id for hit in hits], embed=embed)
        except UnknownIdError:
            # deleted by another writer since the search: choose among those still there
            alive = {rec.id for rec in self._store.get([hit.id for hit in hits])}
            hits = [hit for hit in hits if hit.id in alive]
            if not hits:
                return []
            candidates = self._store.embeddings([hit.id for hit in hits], embed=embed)
        chosen = maximal_marginal_relevance(
            query, candidates.tolist(), lambda_mult=lambda_mult, k=k
        )
        return [(_to_document(hits[i]), float(hits[i].distance)) for i in chosen]

    def _async_recompute(self) -> EmbedFn | None:
        """The recompute function for a search run in a worker thread from async code.

        An embedding with its own ``aembed_documents`` is called on the event loop (the
        worker waits for it); otherwise ``None``: the store's ``embed_documents`` runs in
        the worker thread, off the loop.
        """
        if not _overrides(self._embedding, "aembed_documents"):
            return None
        loop = asyncio.get_running_loop()
        aembed = self._embedding.aembed_documents

        def embed(texts: list[str]) -> Any:
            return asyncio.run_coroutine_threadsafe(aembed(list(texts)), loop).result()

        return embed

    # -- argument mapping --------------------------------------------------------------

    @staticmethod
    def _rows(
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None,
        ids: Sequence[str | None] | None,
        **kwargs: Any,
    ) -> tuple[list[str], list[dict[str, Any]], list[str | None]]:
        """Validated parallel lists; ``batch_size`` (from the indexing API) is accepted
        and ignored: the store batches its embedding calls by token budget itself."""
        kwargs.pop("batch_size", None)
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        if isinstance(texts, str):  # iterable too: it would add one document per character
            raise ValueError("texts must be a list of strings, not one string")
        text_list = list(texts)
        n = len(text_list)
        if metadatas is not None and len(metadatas) != n:
            raise ValueError(f"got {len(metadatas)} metadatas for {n} texts")
        if ids is not None and len(ids) != n:
            raise ValueError(f"got {len(ids)} ids for {n} texts")
        return (
            text_list,
            [dict(md or {}) for md in metadatas] if metadatas is not None else [{} for _ in text_list],
            list(ids) if ids is not None else [None] * n,
        )

    @staticmethod
    def _document_rows(
        documents: Sequence[Document], ids: Sequence[str | None] | None
    ) -> tuple[list[str], list[dict[str, Any]], list[str | None]]:
        if ids is not None and len(ids) != len(documents):
            raise ValueError(f"got {len(ids)} ids for {len(documents)} documents")
        given = ids if ids is not None else [None] * len(documents)
        return (
            [doc.page_content for doc in documents],
            [doc.metadata for doc in documents],
            [given_id or doc.id for given_id, doc in zip(given, documents)],
        )
