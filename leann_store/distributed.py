"""Embedding past one machine: a store built from a Ray Dataset, and recomputes
served by a model that runs elsewhere.

What outgrows one machine first is the embedding, not the index (tens of bytes
a passage).  :func:`build_store` embeds a Ray Dataset on an actor pool (GPUs
when asked), streams the rows and their vectors to this process, and writes an
ordinary store: the docstore takes the rows as they come, and the graph (with
its codec) is built once, here, when every row is in.  Open it afterwards with
:meth:`LeannStore.open <leann_store.LeannStore.open>` and any process's copy of
the same model.

:class:`RemoteEmbed` serves a store's embedding calls (the search's
recomputes included) from a Ray actor running the model, on another machine
or a GPU: each call the store makes is one round trip, and the store already
batches a search's recomputes into few calls (``stats["embed_calls"]``).

This module is a client of :class:`~leann_store.LeannStore`, like the command:
it is the only one that imports ``ray`` (the ``ray`` extra), and nothing below
it knows it exists.

Example (a local Ray; ``address="auto"`` joins a running cluster)::

    import ray
    from leann_store.distributed import build_store, RemoteEmbed

    class MiniLM:                       # instantiated once per actor
        def __init__(self):
            from sentence_transformers import SentenceTransformer
            self.model = SentenceTransformer("all-MiniLM-L6-v2")
        def __call__(self, texts):
            return self.model.encode(list(texts), normalize_embeddings=True)

    ds = ray.data.read_json("passages.jsonl")          # rows: id, text, metadata
    summary = build_store("kb", ds, MiniLM, concurrency=4, num_gpus=1, batch_size=256)
    embed = RemoteEmbed(MiniLM, num_gpus=1)            # the search's recomputes, on the GPU
    store = LeannStore.open("kb", embed=embed)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import errors
from .config import StoreConfig
from .store import LeannStore

__all__ = ["BuildSummary", "RemoteEmbed", "build_store", "connect", "embed_texts"]

#: rows the driver hands the store per ``add`` (its docstore transaction)
_ADD_ROWS = 4096
#: Ray retries a failed actor (a lost machine, an out-of-memory kill) this often
_RETRIES = 3


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise ImportError("leann_store.distributed needs Ray: pip install 'leann-store[ray]'") from exc
    return ray


@dataclass(frozen=True)
class BuildSummary:
    """What :func:`build_store` wrote."""

    path: str
    documents: int
    seconds: float
    embed_seconds: float  #: until the last row had come back from the actors


class _EmbedBatch:
    """The callable class Ray Data instantiates once per actor: it makes the
    user's embedder there and turns a batch of rows into rows with vectors."""

    def __init__(self, embedder: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.model = embedder(*args, **kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vecs = np.asarray(self.model(texts), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise errors.CallbackError(f"the embedder returned shape {vecs.shape} for {len(texts)} texts")
        out = {"id": batch["id"], "text": batch["text"], "vector": vecs}
        if "metadata" in batch:
            out["metadata"] = np.array([_metadata_json(m) for m in batch["metadata"]], dtype=object)
        return out


def _metadata_json(m: Any) -> str:
    """A row's metadata as JSON text (a JSON string is taken as it is)."""
    if m is None:
        return "{}"
    if isinstance(m, (str, bytes)):
        return m.decode() if isinstance(m, bytes) else m
    return json.dumps(dict(m))


def build_store(path: str | os.PathLike[str], dataset: Any, embedder: Callable[..., Any], *,
                concurrency: int | None = None, num_gpus: float = 0, batch_size: int | None = None,
                config: StoreConfig | None = None, model: str | None = None,
                embed: Callable[[list[str]], Any] | None = None,
                embedder_args: Sequence[Any] = (), embedder_kwargs: Mapping[str, Any] | None = None,
                progress: bool | None = None) -> BuildSummary:
    """Embed ``dataset`` on a Ray actor pool and write a new store at ``path``.

    Args:
        path: the store's directory; it must not exist yet (or be empty).  The
            store is written beside it and renamed in at the end, so a failed
            build leaves no half store.
        dataset: a ``ray.data.Dataset`` of rows with ``id`` (str), ``text``
            (str) and optionally ``metadata`` (a dict, or its JSON text: an
            Arrow-backed dataset fills keys a row lacks with None, so give
            JSON text when rows differ in their keys).
        embedder: a class whose instances embed a batch of texts,
            ``embedder(*embedder_args, **embedder_kwargs)(texts) -> (n, dim)``;
            Ray instantiates it once per actor.
        concurrency: actors in the pool (None: an autoscaling pool, 1 up to
            what the cluster offers).
        num_gpus: GPUs per actor (0: CPU actors).
        batch_size: texts per embedder call (None: 64, and it must be given
            with GPUs, as Ray Data requires).
        config: the store's settings (None: the defaults).
        model: the model's name, recorded with its fingerprint (None: the
            embedder's qualified class name).
        embed: this process's ``embed(texts)`` for the store's fingerprint
            (one probe text); None: one local instance of ``embedder``.
        progress: progress bars (None: when stderr is a terminal).

    A lost actor (a dead machine, an out-of-memory kill) is restarted and its
    batches retried by Ray Data; an exception the embedder raises fails the
    build, and nothing is left at ``path``.
    """
    target = os.path.abspath(os.fspath(path))
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise errors.StoreExistsError(f"{target!r} exists and is not empty; build_store writes a new store")
    embedded = _embedded(dataset, embedder, concurrency, num_gpus, batch_size, embedder_args, embedder_kwargs)
    local = embed if embed is not None else embedder(*embedder_args, **dict(embedder_kwargs or {}))
    name = model if model is not None else f"{getattr(embedder, '__module__', '?')}.{getattr(embedder, '__qualname__', repr(embedder))}"

    t0 = time.perf_counter()
    staging = os.path.join(os.path.dirname(target) or ".", f".{os.path.basename(target)}.building-{uuid.uuid4().hex}")
    store = LeannStore.open(staging, embed=local, config=config, model=name, progress=progress)
    try:
        with store.deferred_graph():  # rows go to the docstore as they come; one graph at the end
            for texts, metas, ids, vecs in _rows(embedded, store.dim):
                store.add(texts, metadatas=metas, ids=ids, embeddings=vecs, check_model=False)
            t_embed = time.perf_counter() - t0
        documents = len(store)
    except BaseException:
        store.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    store.close()
    if os.path.isdir(target):
        os.rmdir(target)  # empty, checked above
    os.rename(staging, target)
    return BuildSummary(target, documents, time.perf_counter() - t0, t_embed)


def _embedded(dataset: Any, embedder: Callable[..., Any], concurrency: int | None, num_gpus: float,
              batch_size: int | None, embedder_args: Sequence[Any],
              embedder_kwargs: Mapping[str, Any] | None) -> Any:
    """``dataset`` with a ``vector`` column, computed lazily on an actor pool
    of ``embedder`` instances (the arguments checked as :func:`build_store`
    documents them)."""
    ray = _ray()
    if not hasattr(dataset, "map_batches"):
        raise errors.InvalidInputError(f"dataset must be a ray.data.Dataset, got {type(dataset).__name__}")
    if not callable(embedder):
        raise errors.InvalidInputError("embedder must be a class (or factory) whose instances embed texts")
    bs = 64 if batch_size is None else batch_size
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise errors.InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)
                                    or concurrency < 1):
        raise errors.InvalidInputError(f"concurrency must be None or a positive integer, got {concurrency!r}")
    compute = (ray.data.ActorPoolStrategy(size=concurrency) if concurrency is not None
               else ray.data.ActorPoolStrategy(min_size=1, max_size=None))
    return dataset.map_batches(
        _EmbedBatch, fn_constructor_args=(embedder, tuple(embedder_args), dict(embedder_kwargs or {})),
        batch_size=bs, compute=compute, num_gpus=num_gpus or None,
        batch_format="numpy")  # Ray Data restarts lost actors


def connect(address: str | None = None, *, log_level: int = logging.WARNING) -> None:
    """Join Ray unless this process already has: ``address`` None starts a
    local Ray (or joins ``$RAY_ADDRESS``'s cluster), ``"auto"`` joins the
    cluster running on this machine, anything else is a cluster's address
    (``ray://head:10001``).  Workers' output stays on the workers; Ray's
    and Ray Data's loggers here report from ``log_level`` up."""
    ray = _ray()
    import ray.data  # (configures its loggers: adjust them after)

    logging.getLogger("ray").setLevel(log_level)
    # Ray Data's execution notes come from its internal modules (its own
    # log file, under the session's logs, keeps what they would have said)
    logging.getLogger("ray.data._internal").setLevel(log_level)
    if ray.is_initialized():
        return
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=log_level)


def embed_texts(texts: Sequence[str], embedder: Callable[..., Any], *, concurrency: int | None = None,
                num_gpus: float = 0, batch_size: int | None = None, embedder_args: Sequence[Any] = (),
                embedder_kwargs: Mapping[str, Any] | None = None,
                progress: Callable[[int], Any] | None = None) -> np.ndarray:
    """``texts`` embedded on a Ray actor pool, as :func:`build_store` embeds
    a dataset (same arguments): float32 rows in input order.
    ``progress(n)`` is called as each batch of ``n`` comes back.  Joins a
    local Ray first if this process has none (:func:`connect`).

    >>> import numpy as np
    >>> class Lengths:                      # a stand-in model
    ...     def __call__(self, texts):
    ...         return np.array([[len(t), 1.0] for t in texts])
    >>> connect()
    >>> embed_texts(["a", "bcd"], Lengths, concurrency=1).tolist()
    [[1.0, 1.0], [3.0, 1.0]]
    """
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    ray = _ray()
    connect()
    ds = ray.data.from_items([{"id": i, "text": str(t)} for i, t in enumerate(texts)])
    embedded = _embedded(ds, embedder, concurrency, num_gpus, batch_size, embedder_args, embedder_kwargs)
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    if progress is not None:  # the caller shows its own (for this call only)
        ctx.enable_progress_bars = False
    try:
        return _gather(embedded, len(texts), progress)
    finally:
        ctx.enable_progress_bars = bars


def _gather(embedded: Any, n: int, progress: Callable[[int], Any] | None) -> np.ndarray:
    """The ``n`` vectors of an embedded ``{id: position, text}`` dataset, in
    position order."""
    out: np.ndarray | None = None
    seen = np.zeros(n, dtype=bool)
    for batch in embedded.iter_batches(batch_size=_ADD_ROWS, batch_format="numpy"):
        vecs = _vectors(batch)
        if out is None:
            if vecs.ndim != 2:
                raise errors.CallbackError(f"the embedder returned shape {vecs.shape}")
            out = np.empty((n, vecs.shape[1]), dtype=np.float32)
        elif vecs.shape[1:] != out.shape[1:]:
            raise errors.DimensionMismatchError(f"the embedder returned {vecs.shape[-1]}-d vectors after "
                                                f"{out.shape[1]}-d ones")
        pos = np.asarray(batch["id"], dtype=np.int64)
        out[pos] = vecs
        seen[pos] = True
        if progress is not None:
            progress(len(pos))
    if out is None or not seen.all():
        raise errors.LeannError(f"Ray Data returned {int(seen.sum())} of {n} rows")
    return out


def _vectors(batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """A batch's ``vector`` column as one float32 matrix (Ray Data hands a
    column of arrays over as an object array)."""
    v = batch["vector"]
    return np.ascontiguousarray(np.stack(list(v)) if v.dtype == object else v, dtype=np.float32)


def _rows(embedded: Any, dim: int) -> Iterator[tuple[list[str], list[dict[str, Any]], list[str], np.ndarray]]:
    """The embedded dataset as the store's ``add`` arguments, a bounded batch at a time."""
    for batch in embedded.iter_batches(batch_size=_ADD_ROWS, batch_format="numpy"):
        vecs = _vectors(batch)
        if vecs.ndim != 2 or vecs.shape[1] != dim:
            raise errors.DimensionMismatchError(f"the embedder gives {vecs.shape[-1]}-d vectors, the store "
                                                f"was fingerprinted at {dim}-d")
        ids = [str(i) for i in batch["id"]]
        metas = ([json.loads(m) for m in batch["metadata"]] if "metadata" in batch else [{} for _ in ids])
        yield [str(t) for t in batch["text"]], metas, ids, vecs


class RemoteEmbed:
    """``embed(texts)`` served by a Ray actor running the model elsewhere
    (a GPU, another machine): one round trip per call.

    Give it to a store as its embed function; the store's calls (adds, and
    the passages a search re-embeds, in the few batches the adaptive stop
    asks for) each become one ``actor.embed.remote(texts)``.

    Args:
        embedder: the model class, instantiated once in the actor.
        num_gpus / num_cpus: the actor's resources.
        embedder_args / embedder_kwargs: its constructor's arguments.
        timeout: seconds to wait for one call (None: no limit); a call that
            takes longer raises ``TimeoutError`` and the search fails cleanly.
    """

    def __init__(self, embedder: Callable[..., Any], *, num_gpus: float = 0, num_cpus: float = 1,
                 embedder_args: Sequence[Any] = (), embedder_kwargs: Mapping[str, Any] | None = None,
                 timeout: float | None = None) -> None:
        ray = _ray()
        actor_cls = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=_RETRIES,
                               max_task_retries=_RETRIES)(_ModelActor)
        self._actor = actor_cls.remote(embedder, tuple(embedder_args), dict(embedder_kwargs or {}))
        self._timeout = timeout
        self.calls = 0  #: round trips so far
        self.__qualname__ = f"RemoteEmbed({getattr(embedder, '__qualname__', repr(embedder))})"
        self.__module__ = getattr(embedder, "__module__", __name__)

    def __call__(self, texts: list[str]) -> np.ndarray:
        ray = _ray()
        self.calls += 1
        try:
            return ray.get(self._actor.embed.remote(list(texts)), timeout=self._timeout)
        except ray.exceptions.GetTimeoutError as exc:
            raise TimeoutError(f"the remote model did not answer {len(texts)} texts within {self._timeout} s") from exc

    def close(self) -> None:
        """Stop the actor."""
        _ray().kill(self._actor)


class _ModelActor:
    def __init__(self, embedder: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.model = embedder(*args, **kwargs)

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model(texts), dtype=np.float32)
