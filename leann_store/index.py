"""LeannIndex: an HNSW graph built on Flash codes (or exact floats), with search.

Metrics.  The graph is always built on squared L2 distances; the three user
metrics are mapped onto it in one place (``_MetricMap``, in ``_rows.py``):

* ``"l2"``: vectors as given; distances returned are *squared* Euclidean.
* ``"cosine"``: vectors are normalised to unit length (zero vectors are an
  error); distances returned are ``1 - cos``, in [0, 2].
* ``"ip"`` (maximum inner product): HNSW needs a metric space, so each vector
  gets one extra coordinate ``sqrt(R^2 - |x|^2)`` where R is the largest norm
  at build time, and the query gets 0 there.  Then ``|q' - x'|^2 = |q|^2 + R^2
  - 2<q, x>``, which orders candidates exactly as the inner product does, so
  the graph is a real L2 graph.  Search ranks by the exact inner product and
  distances returned are ``-<q, x>`` (ascending = best first).

Layout.  This module holds :class:`LeannIndex` (search, deletion, live
updates, persistence, introspection) and :class:`SearchResult`.  How an
index is configured (:class:`IndexConfig`, its presets and defaults) lives
in ``config.py``; how it is built (codec training, the native construction,
pruning) in ``build.py``, which :meth:`LeannIndex.build` runs; the metric
map and the row helpers that both share in ``_rows.py``.  The configuration's
public names are importable from here as before.  Arrows run one way:
``index -> build -> config``, ``index -> config``, and both ``-> _rows``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from . import errors, native
from . import _checks as checks
from ._checks import check_finite as _check_finite
from ._rows import _in_parallel, _MetricMap, _threads
from .build import CALIBRATION_MIN_ROWS, build_index, finish_build
from .codec import Codec, code_error_quantiles, codec_from_native, normalised_error_quantiles
from .options import DEFAULT_CODE_EF, DEFAULT_EF, DEFAULT_RERANK_RATIO, FROM_CONFIG, SearchOptions
from .config import (AUTO_SUBSPACES_MAX_DIM, BALANCED_MIN_DIM, BUILDERS, DEFAULT_CONFIDENCE, DEFAULT_DEGREE,
                     DEFAULT_HUB_DEGREE, DEFAULT_SEARCH_SUBSPACES, METRICS, PRESETS, IndexConfig)

#: the public names; the configuration's (IndexConfig, PRESETS, METRICS, ...)
#: live in config.py and are re-exported here
__all__ = [
    "AUTO_SUBSPACES_MAX_DIM", "BALANCED_MIN_DIM", "BUILDERS", "DEFAULT_CACHE_BYTES", "DEFAULT_CODE_EF",
    "DEFAULT_CONFIDENCE", "DEFAULT_DEGREE", "DEFAULT_EF", "DEFAULT_HUB_DEGREE", "DEFAULT_RERANK_RATIO",
    "DEFAULT_SEARCH_SUBSPACES", "EmbedFn", "FROM_CONFIG", "IdFetchFn", "CheckedFetch", "AllowedBits",
    "IndexConfig", "LeannIndex", "METRICS", "PRESETS",
    "SearchResult",
]

_FILE_KIND = "leann-store/index"
_FILE_VERSION = 1
#: default byte budget of the cross-query LRU of recomputed embeddings
DEFAULT_CACHE_BYTES = 16 << 20

#: ``fetch(ids: int64 array) -> (len(ids), dim)`` floats: the embeddings of
#: those passages, which the two-level search asks for (``search(embed=...)``)
IdFetchFn = Callable[[np.ndarray], Any]
#: the same, under its earlier name
EmbedFn = IdFetchFn


class CheckedFetch:
    """An id fetcher whose rows are float32 (len(ids), dim) and finite
    already (the store's :class:`~leann_store.recompute.TextEmbedder`
    checks its model's answer itself): the index only maps them."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fn = fn

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        return self.fn(ids)


#: "not given" for LeannIndex.search's keyword options (None means something for some)
_UNSET: Any = object()


@dataclass(frozen=True)
class AllowedBits:
    """A filter packed for the walk (:meth:`LeannIndex.allowed_bits`):
    little-endian uint64 words, bit i set when id i may be returned."""

    words: np.ndarray
    size: int


@dataclass
class SearchResult:
    """Result of :meth:`LeannIndex.search`.

    ``ids`` (int64) and ``distances`` (float32) have shape ``(k,)`` for one
    query and ``(nq, k)`` for a batch, best first; when fewer than k nodes are
    reachable the tail is padded with id -1 and distance +inf.  ``stats`` maps
    ``"distance_evals"`` and ``"hops"`` to per-query counts.
    """

    ids: np.ndarray
    distances: np.ndarray
    stats: dict[str, np.ndarray] = field(default_factory=dict)


def _as_array(x: Any, name: str) -> np.ndarray:
    """An ndarray as is; a Python sequence converted to float32."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInputError(f"{name} must be a float32 array: {exc}") from exc


def _listed(x: Any, name: str) -> np.ndarray:
    """Ids or a mask: an ndarray as is, any other iterable (list, set,
    range, generator) as the array of its items."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(list(x))
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInputError(f"{name} must be an array or an iterable of ids: {exc}") from exc


def _as_matrix(x: Any, name: str) -> np.ndarray:
    """Validate a float32, C-contiguous 2-D array (sequences are converted)."""
    x = _as_array(x, name)
    if x.dtype != np.float32:
        raise errors.InvalidInputError(
            f"{name} must have dtype float32, got {x.dtype}; convert with "
            f"np.asarray({name}, dtype=np.float32)")
    if x.ndim != 2:
        raise errors.InvalidInputError(f"{name} must be 2-D (n, dim), got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise errors.InvalidInputError(
            f"{name} must be C-contiguous; use np.ascontiguousarray({name})")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise errors.InvalidInputError(f"{name} is empty (shape {x.shape})")
    return x


def _blas_single_thread() -> contextlib.AbstractContextManager[Any]:
    """numpy's BLAS on one thread for the length of a build on the main thread.

    The build's own threads do the parallel work; BLAS workers would spin
    after each of the feed's products (about 5% of a 2-core build) and commit
    a few MB of buffers each, for products that take milliseconds.  (Two
    BLAS threads for the codec training alone would save 0.1 s at 100k x
    768 but keep 6 MB more resident to the end of the build: measured.)  The
    setting is process-wide, and OpenBLAS (0.3.31, measured) applies a
    decrease made from any thread but ignores an increase made from a thread
    other than the main one: a build on a worker thread could not restore
    the thread count it lowered, so it leaves the setting alone."""
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


class LeannIndex:
    """An HNSW index over ids 0..n-1.  Create it with :meth:`build`.

    >>> import numpy as np
    >>> x = np.random.default_rng(1).normal(size=(1000, 16)).astype(np.float32)
    >>> index = LeannIndex.build(x, IndexConfig(metric="l2", store_vectors=True))
    >>> int(index.search(x[3], k=1).ids[0])
    3
    >>> index.delete([3])
    >>> 3 in index.search(x[3], k=5).ids.tolist()
    False

    Thread-safe: searches from several threads run side by side (the GIL is
    released in C); :meth:`delete`, :attr:`cache_bytes` and :meth:`save`
    wait for the searches in flight.  A search's ``embed`` callback may
    search the index again but not change it (that is refused with
    :class:`~leann_store.errors.InvalidInputError`).
    """

    def __init__(self, handle: native.NativeIndex, config: IndexConfig, metric_map: _MetricMap,
                 codec: Codec | None) -> None:
        self._h = handle
        self._config = config
        self._map = metric_map
        self._codec = codec
        self._search_codec: Codec | None = None
        #: construction counters: ``distance_evals`` and ``hops`` (expansions)
        self.build_stats: dict[str, int] = {}
        self._cache_bytes = 0
        self.cache_bytes = DEFAULT_CACHE_BYTES

    # ---- construction ---------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray | Sequence[Sequence[float]], config: IndexConfig | None = None,
              *, progress: bool | None = None) -> "LeannIndex":
        """Build an index over ``vectors`` (float32, shape (n, dim)); ids are 0..n-1.

        ``progress`` shows a progress bar (default: when stderr is a terminal
        and n >= 20000).  Ctrl-C cancels the build cleanly.

        The build's ``threads`` do the parallel work; called from the main
        thread, numpy's BLAS runs on one thread while it lasts (a process-wide
        setting, restored afterwards).
        """
        cfg = config if config is not None else IndexConfig()
        if not isinstance(cfg, IndexConfig):
            raise errors.InvalidInputError("config must be an IndexConfig")
        x = _as_matrix(vectors, "vectors")
        _check_finite(x, "vectors")
        with _blas_single_thread():
            return build_index(cls, x, cfg, progress)

    def _finish_build(self, x: np.ndarray, scodec: Codec, ncodec: native.NativeCodec,
                      codes: np.ndarray, calib: np.ndarray | None = None,
                      estimator: tuple[int, float] | None = None) -> None:
        """LEANN pruning, search codes, compaction and the hub cache (see
        :func:`leann_store.build.finish_build`); the search codec becomes
        this index's, as its file keeps it (so that a built index and its
        loaded copy project new rows alike).  The build pipeline calls it on
        the new index."""
        finish_build(self._h, self._config, self._map, self._codec, x, ncodec, codes, calib, estimator)
        self._search_codec = scodec.as_stored()

    # ---- search ----------------------------------------------------------
    def search(self, query: np.ndarray | Sequence[float], k: int = 10, ef: Any = _UNSET,
               threads: int | None = None, *, embed: IdFetchFn | None = None,
               rerank_ratio: Any = _UNSET, batch_size: Any = _UNSET, max_recompute: Any = _UNSET,
               allowed: "np.ndarray | Iterable[int] | AllowedBits | None" = None, confidence: Any = _UNSET,
               time_budget_ms: Any = _UNSET, options: SearchOptions | None = None) -> SearchResult:
        """The k nearest neighbours of one query (shape (dim,)) or a batch (nq, dim).

        Distances are exact (see the module docs for what each metric
        returns), ascending; missing results are id -1, distance +inf.

        With stored vectors this is a classic HNSW search on exact distances
        (``threads`` parallelises a batch; None: every core); deleted ids and
        ``allowed`` are honoured inside the walk, in C.  Otherwise it is the
        two-level search: a beam search of width ``ef`` walks the graph on
        code distances alone, then the beam's nodes are scored exactly in
        order of code distance, fetched ``batch_size`` ids at a time from the
        hub cache, the LRU (:attr:`cache_bytes`) or ``embed``, until no node
        left could plausibly enter the top k (the adaptive stop, see
        ``confidence``), and never more than ``max(k, ceil(rerank_ratio *
        ef))`` or ``max_recompute`` of them, however wide the walk.

        Args:
            embed: ``embed(ids: int64 array) -> (len(ids), dim)`` float
                embeddings of those passages with the model the index was
                built with.  Needed when the index keeps no vectors.  An
                exception it raises propagates unchanged, with a note naming
                the ids (also in ``exc.leann_ids``); the index stays usable.
            options: a :class:`~leann_store.options.SearchOptions` (``ef``,
                ``rerank_ratio``, ``batch_size``, ``max_recompute``,
                ``confidence``, ``time_budget_ms``: see its docs); the
                keyword arguments of the same names override its fields.
                The adaptive stop of cosine and ip indexes (the normalised
                estimate, see ``docs/internals.md``): the first k + 2
                candidates are scored, then the query's own estimate error
                (exact - estimate over them: mean mu, deviation sd) keeps
                scoring, at most k + 2 ids a round trip and twice as many
                each time after, while a candidate left has an estimate
                below the k-th best exact distance - mu + z sd (z: the
                normal quantile at ``confidence``); the tail is bounded by
                design, k * (1 + 1 / (1 - confidence)) scores at most unless
                ``max_recompute`` is given.  l2 indexes and indexes saved
                before format version 4: after the first 2k scores, scoring
                stops once every candidate left has a code distance above
                the k-th best exact distance minus the code error that the
                index measured at build time at quantile ``1 -
                confidence``.  Graphs with no calibration (built from
                fewer than ``CALIBRATION_MIN_ROWS`` rows, or saved before the
                calibration existed) score the whole share until an
                insertion of that many rows calibrates them.  ``stats`` also carry
                ``engine_us`` (the C engine's time: walk, ranking, exact
                scores), ``fetch_us`` (time in ``embed`` and the checks of
                what it returned) and ``stopped`` (1: ``time_budget_ms`` ran
                out).
            threads: the two-level search runs a batch's queries on this
                many threads only when it is given (None: one), since
                ``embed`` is then called from several threads at once (some
                tokenizers refuse that).  The walks run in C without the GIL.
            allowed: ids that may be returned (bool mask of length n, an
                id collection, or :meth:`allowed_bits`); applied inside the walk, so k results
                come back whenever k allowed, undeleted ids exist.
        """
        given = {name: v for name, v in (("ef", ef), ("rerank_ratio", rerank_ratio), ("batch_size", batch_size),
                                         ("max_recompute", max_recompute), ("confidence", confidence),
                                         ("time_budget_ms", time_budget_ms))
                 if v is not _UNSET}
        opts = SearchOptions.of(options, **given)
        if opts.mode != "dense":
            raise errors.InvalidInputError(
                f"LeannIndex searches by embedding only (mode 'dense'); mode {opts.mode!r} needs the keyword "
                "index of a LeannStore")
        k = checks.integer(k, "k", 1)
        if k > len(self):
            raise errors.InvalidInputError(f"k = {k} exceeds the {len(self)} vectors in the index")
        q = _as_array(query, "query")
        single = q.ndim == 1
        q = _as_matrix(q[None, :] if single else q, "query")
        if q.shape[1] != self.dim:
            raise errors.DimensionMismatchError(
                f"query has dimension {q.shape[1]}, the index has {self.dim}")
        _check_finite(q, "query")
        nthreads = _threads(threads)
        bits = self._allowed_words(allowed)
        if self._h.has_vectors:  # C honours deletions and the filter itself
            ids, dist, stats = self._h.search(self._map.queries(q), k, opts.ef or DEFAULT_EF, nthreads, bits)
            st = {"distance_evals": stats[:, 0], "hops": stats[:, 1]}
        else:
            ids, dist, st = self._search_two_level(q, k, opts, embed, bits,
                                                   nthreads if threads is not None else 1)
        dist = self._map.distances(dist)
        if single:
            return SearchResult(ids[0], dist[0], {key: v[0] for key, v in st.items()})
        return SearchResult(ids, dist, st)

    def _search_two_level(self, q: np.ndarray, k: int, opts: SearchOptions, embed: IdFetchFn | None,
                          bits: np.ndarray | None,
                          workers: int = 1) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        if embed is None:
            raise errors.InvalidInputError(
                "this index keeps no vectors: pass embed=fn, where fn(ids) returns the embeddings of "
                "those passages (the index recomputes the few it needs)")
        if not callable(embed):
            raise errors.InvalidInputError("embed must be callable: fn(ids) -> (len(ids), dim) floats")
        if opts.max_recompute is not None and opts.max_recompute < k:
            raise errors.InvalidInputError(
                f"max_recompute must be None or an integer >= k ({k}), got {opts.max_recompute!r}")
        ef = opts.ef or DEFAULT_CODE_EF
        confidence = float(opts.resolved_confidence(self._config.search_confidence) or 0.0)
        fetch = self._id_fetcher(embed)
        qs = self._map.queries(q)
        nq = qs.shape[0]
        ids = np.empty((nq, k), dtype=np.int64)
        dist = np.empty((nq, k), dtype=np.float32)
        keys = ("recomputed", "embed_calls", "cache_hits", "exact", "code_evals", "hops", "engine_us", "fetch_us",
                "stopped")
        st = {key: np.zeros(nq, dtype=np.int64) for key in keys}
        def part(_: int, a: int, b: int) -> None:  # queries [a, b), each writing its own rows
            for i in range(a, b):
                deadline = (None if opts.time_budget_ms is None
                            else time.perf_counter() + opts.time_budget_ms / 1000.0)
                ids[i], dist[i], one = self._h.search_recompute(
                    np.ascontiguousarray(qs[i]), k, ef, opts.rerank_ratio, opts.batch_size,
                    int(opts.max_recompute or 0), bits, fetch, confidence, deadline)
                for key in keys:
                    st[key][i] = one[key]

        _in_parallel(part, 0, nq, workers)
        return ids, dist, st

    def _id_fetcher(self, embed: IdFetchFn) -> Callable[[np.ndarray], np.ndarray]:
        """``embed`` as the walk calls it: rows checked (unless the caller
        checked them, :class:`CheckedFetch`) and mapped to search space."""
        dim = self.dim
        checked = isinstance(embed, CheckedFetch)

        def fetch(ids: np.ndarray) -> np.ndarray:
            try:
                out = embed(ids)
            except Exception as exc:
                _add_note(exc, f"leann-store: the embed function failed for ids {_id_list(ids)}")
                exc.leann_ids = ids  # type: ignore[attr-defined]
                raise
            arr = out if checked else checks.embeddings(out, len(ids), dim, f"for ids {_id_list(ids)}")
            try:
                return self._map.vectors(arr)
            except errors.InvalidInputError as exc:
                raise errors.CallbackError(f"embed returned unusable rows for ids {_id_list(ids)}: {exc}") from exc

        return fetch

    def allowed_bits(self, allowed: Any) -> "AllowedBits":
        """A filter (a bool mask of length n, or an id collection) packed as
        the walk reads it, for callers that search many times with one
        filter: pass the result as ``allowed=`` and nothing is packed again.

        >>> index = LeannIndex.build(np.eye(8, dtype=np.float32) + 1, IndexConfig(store_vectors=True))
        >>> bits = index.allowed_bits([1, 2])
        >>> sorted(index.search(np.ones(8, np.float32), k=2, allowed=bits).ids.tolist())
        [1, 2]
        """
        words = self._allowed_words(allowed)
        if words is None:
            raise errors.InvalidInputError("allowed_bits needs a mask or ids, not None")
        return AllowedBits(words, len(self))

    def _allowed_words(self, allowed: Any) -> np.ndarray | None:
        """A filter as the uint64 bitset C reads (None: no filter)."""
        if allowed is None:
            return None
        n = len(self)
        if isinstance(allowed, AllowedBits):
            if allowed.size != n:
                raise errors.InvalidInputError(f"allowed bits were packed for {allowed.size} ids; "
                                               f"the index has {n}")
            return allowed.words
        a = _listed(allowed, "allowed")
        if a.dtype == bool:
            if a.shape != (n,):
                raise errors.InvalidInputError(f"an allowed mask must have shape ({n},), got {a.shape}")
            mask = a
        elif a.size == 0 or a.dtype.kind in "iu":
            ids = a.astype(np.int64).ravel()
            if ids.size and (ids.min() < 0 or ids.max() >= n):
                bad = int(ids[(ids < 0) | (ids >= n)][0])
                raise errors.InvalidInputError(f"allowed id {bad} is not in the index (0..{n - 1})")
            mask = np.zeros(n, dtype=bool)
            mask[ids] = True
        else:
            raise errors.InvalidInputError(f"allowed must be a bool mask or integer ids, got dtype {a.dtype}")
        packed = np.packbits(mask, bitorder="little")
        words = np.zeros((n + 63) // 64 * 8, dtype=np.uint8)
        words[:packed.size] = packed
        return words.view("<u8")

    # ---- caches and deletion -----------------------------------------------
    @property
    def cache_bytes(self) -> int:
        """Byte budget of the cross-query LRU of recomputed embeddings (0: off)."""
        return self._cache_bytes

    @cache_bytes.setter
    def cache_bytes(self, value: int) -> None:
        value = checks.integer(value, "cache_bytes", 0, 2**48)
        self._h.set_cache(value)
        self._cache_bytes = value

    @property
    def hub_cache_size(self) -> int:
        """Nodes whose embeddings the persistent hub cache holds."""
        return self._h.hub_count

    def delete(self, ids: Iterable[int] | np.ndarray) -> None:
        """Tombstone ids: never returned again, still used for navigation.
        Every id is checked before any is deleted."""
        a = _listed(ids, "ids")
        if a.size and a.dtype.kind not in "iu":
            raise errors.InvalidInputError(f"ids must be integers, got dtype {a.dtype}")
        self._h.delete(a.astype(np.int64).ravel())

    @property
    def deleted_count(self) -> int:
        return self._h.deleted_count

    def is_deleted(self, node: int) -> bool:
        return self._h.is_deleted(self._node(node))

    # ---- live updates ----------------------------------------------------------
    def _update_args(self, threads: int | None) -> dict[str, Any]:
        cfg = self._config
        if self._search_codec is None:
            raise errors.InvalidInputError("this index keeps no search codes: it takes no live updates")
        pruned = cfg.resolved_prune
        return {"ef": cfg.ef_construction, "degree": cfg.resolved_degree if pruned else cfg.M,
                "upper_degree": min(cfg.M, self._h.max_degree(1)), "seed": cfg.seed,
                "threads": _threads(threads if threads is not None else cfg.threads)}

    def _derived(self, handle: native.NativeIndex) -> "LeannIndex":
        new = LeannIndex(handle, self._config, self._map, None)
        new._search_codec = self._search_codec
        new.build_stats = dict(self.build_stats)
        new.cache_bytes = self._cache_bytes
        return new

    def with_added(self, vectors: np.ndarray | Sequence[Sequence[float]], *,
                   threads: int | None = None) -> "LeannIndex":
        """A new index with this one's nodes (same ids, deletions kept) and
        ``vectors`` as nodes ``len(self)``, ``len(self) + 1``, ...; this index
        is unchanged, so searches may run on it meanwhile.

        The new rows are coded with the existing search codec and inserted
        in C (the build's neighbour selection and the pruning's link caps,
        on the ``threads`` of the build, GIL released).  A vector-free index
        keeps none of their vectors; one that stores vectors stores theirs
        and inserts them on exact distances, as its build did.

        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(1200, 32)).astype(np.float32)
        >>> index = LeannIndex.build(x[:1000], IndexConfig(metric="l2"))
        >>> bigger = index.with_added(x[1000:])
        >>> len(index), len(bigger)
        (1000, 1200)
        >>> fetch = lambda ids: x[ids]
        >>> int(bigger.search(x[1100], k=1, embed=fetch).ids[0])
        1100
        """
        args = self._update_args(threads)
        if isinstance(vectors, np.ndarray) and vectors.ndim == 2 and vectors.shape[0] == 0:
            if vectors.shape[1] != self.dim:
                raise errors.DimensionMismatchError(f"vectors have dimension {vectors.shape[1]}, the index {self.dim}")
            assert self._search_codec is not None
            return self._derived(self._h.added(np.zeros((0, self._search_codec.pca_dim), np.float32), None, **args))
        x = _as_matrix(vectors, "vectors")
        if x.shape[1] != self.dim:
            raise errors.DimensionMismatchError(f"vectors have dimension {x.shape[1]}, the index {self.dim}")
        _check_finite(x, "vectors")
        codec = self._search_codec
        assert codec is not None
        with _blas_single_thread():
            mapped = self._map.vectors(x)
            proj = codec.project(mapped)
            new = self._derived(self._h.added(proj, mapped if self._h.has_vectors else None, **args))
            del proj
            # The adaptive stop's error quantiles are measured among the
            # candidates a search of an index of this size meets (the nearer,
            # the more their code distances are biased low): as the index
            # grows they move, and a stop calibrated at 2k rows stops too
            # early at 50k (recall@10 0.89 against 0.94).  The new rows are
            # the sample at hand.  (A graph built too small to calibrate
            # gets its calibration from the first insertion large enough.)
            if len(x) >= CALIBRATION_MIN_ROWS and not self._h.has_vectors:
                kind, norm = self._h.estimator()
                if kind == native.EST_NORMALISED:
                    new._h.set_calibration(normalised_error_quantiles(
                        codec, norm, mapped, native.CALIB_LEVELS, len(new), seed=self._config.seed))
                else:
                    nc = self._h.search_codec()
                    assert nc is not None
                    new._h.set_calibration(code_error_quantiles(
                        codec, nc.bias, mapped, native.CALIB_LEVELS, len(new), seed=self._config.seed))
        return new

    def add(self, vectors: np.ndarray | Sequence[Sequence[float]], *, threads: int | None = None) -> np.ndarray:
        """Insert ``vectors`` in place (see :meth:`with_added`); returns their
        ids.  Searches already running finish on the index as it was."""
        first = len(self)
        new = self.with_added(vectors, threads=threads)
        self._h = new._h
        return np.arange(first, len(self), dtype=np.int64)

    def coding_error(self, vectors: np.ndarray | Sequence[Sequence[float]]) -> float:
        """Mean squared coding error of ``vectors`` under the search codec
        (see :meth:`Codec.coding_error`), in the index's build space."""
        if self._search_codec is None:
            raise errors.InvalidInputError("this index keeps no search codec")
        x = _as_matrix(vectors, "vectors")
        if x.shape[1] != self.dim:
            raise errors.DimensionMismatchError(f"vectors have dimension {x.shape[1]}, the index {self.dim}")
        return self._search_codec.coding_error(self._map.vectors(x))

    def compacted(self, *, threads: int | None = None) -> tuple["LeannIndex", np.ndarray]:
        """A new index without the deleted nodes, and the map from old ids to
        new ones (-1: deleted); this index is unchanged.

        Rebuilt from the stored codes alone (no embeddings; an index that
        stores vectors uses them): every list that linked a deleted node is
        re-selected among its live links and the live nodes the deleted ones
        linked.  New ids keep the old order.

        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(1000, 32)).astype(np.float32)
        >>> index = LeannIndex.build(x, IndexConfig(metric="l2"))
        >>> index.delete(range(0, 1000, 2))
        >>> small, mapping = index.compacted()
        >>> len(small), small.deleted_count, mapping[:4].tolist()
        (500, 0, [-1, 0, -1, 1])
        """
        args = self._update_args(threads)
        if self.deleted_count == len(self):
            raise errors.InvalidInputError("every node is deleted: nothing to compact into")
        handle, mapping = self._h.compacted(**args)
        return self._derived(handle), mapping

    def compact(self, *, threads: int | None = None) -> np.ndarray:
        """Drop the deleted nodes in place (see :meth:`compacted`); returns
        the old -> new id map."""
        new, mapping = self.compacted(threads=threads)
        self._h = new._h
        return mapping

    # ---- persistence ---------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Size in bytes of the index file :meth:`save` writes."""
        return self._h.saved_size

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index to one file atomically (temp file, fsync, rename);
        returns the bytes written."""
        meta = {"kind": _FILE_KIND, "version": _FILE_VERSION, "config": asdict(self._config),
                "dim": self._map.dim, "radius": self._map.radius, "build_stats": self.build_stats}
        self._h.set_meta(json.dumps(meta, sort_keys=True).encode())
        return self._h.save(os.fspath(path))

    def __reduce__(self) -> tuple[Callable[[bytes, int], "LeannIndex"], tuple[bytes, int]]:
        """Pickling (``copy.deepcopy``, multiprocessing) goes through the
        index file: the copy holds what :meth:`save` keeps, as one from
        :meth:`load` does (deletions included, the build codec not), and the
        same :attr:`cache_bytes`."""
        with tempfile.TemporaryDirectory(prefix="leann-pickle-") as tmp:
            path = os.path.join(tmp, "index.leann")
            self.save(path)
            with open(path, "rb") as f:
                data = f.read()
        return _index_from_bytes, (data, self._cache_bytes)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "LeannIndex":
        """Read an index written by :meth:`save`; every section is validated
        (a damaged file raises :class:`~leann_store.errors.CorruptIndexError`
        naming the section)."""
        path = os.fspath(path)
        handle = native.NativeIndex.load(path)
        try:
            meta = json.loads(handle.meta().decode("utf-8"))
            if meta.get("kind") != _FILE_KIND:
                raise ValueError("not a leann-store index")
            if meta.get("version") != _FILE_VERSION:
                raise ValueError(f"metadata version {meta.get('version')} is not supported")
            cfg = IndexConfig(**meta["config"])
            mmap = _MetricMap(cfg.metric, int(meta["dim"]), float(meta["radius"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise errors.CorruptIndexError(f"index file {path!r}: section 'UMETA' is invalid: {exc}") from exc
        if mmap.build_dim != handle.dim:
            raise errors.CorruptIndexError(f"index file {path!r}: metadata disagrees with the index dimension")
        nc = handle.search_codec()
        index = cls(handle, cfg, mmap, None)
        index._search_codec = codec_from_native(nc) if nc is not None else None
        index.build_stats = {str(k): int(v) for k, v in meta.get("build_stats", {}).items()}
        return index

    # ---- introspection ---------------------------------------------------
    def __len__(self) -> int:
        return self._h.size

    @property
    def dim(self) -> int:
        """Dimension of the vectors the index was built on."""
        return self._map.dim

    @property
    def config(self) -> IndexConfig:
        return self._config

    @property
    def metric(self) -> str:
        return self._config.metric

    @property
    def codec(self) -> Codec | None:
        """The Flash codec the graph was built with (None for ``builder="exact"``
        and for a loaded index, which keeps only its search codec)."""
        return self._codec

    @property
    def search_codec(self) -> Codec | None:
        """The codec of the codes kept for search."""
        return self._search_codec

    @property
    def max_level(self) -> int:
        return self._h.max_level

    @property
    def entry_point(self) -> int:
        return self._h.entry_point

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the native index (graph, codes, stored vectors)."""
        return self._h.memory

    def _node(self, node: int) -> int:
        return checks.integer(node, "node", 0, len(self) - 1)

    @staticmethod
    def _level_arg(level: int) -> int:
        return checks.integer(level, "level", 0, native.MAX_LEVEL_ARG)

    def level(self, node: int) -> int:
        """Top level of a node."""
        return self._h.level(self._node(node))

    def max_degree(self, level: int = 0) -> int:
        """Most links a node may have at a level (2M at level 0, M above)."""
        return self._h.max_degree(self._level_arg(level))

    def neighbors(self, node: int, level: int = 0) -> np.ndarray:
        """Neighbour ids of a node at a level (int64)."""
        return self._h.neighbors(self._node(node), self._level_arg(level))

    def __repr__(self) -> str:
        c = self._config
        return (f"LeannIndex(n={len(self)}, dim={self.dim}, metric={c.metric!r}, M={c.M}, "
                f"builder={c.builder!r})")

    def config_dict(self) -> dict[str, Any]:
        return asdict(self._config)


def _index_from_bytes(data: bytes, cache_bytes: int) -> LeannIndex:
    """Unpickle a :class:`LeannIndex` (see ``LeannIndex.__reduce__``)."""
    with tempfile.TemporaryDirectory(prefix="leann-pickle-") as tmp:
        path = os.path.join(tmp, "index.leann")
        with open(path, "wb") as f:
            f.write(data)
        index = LeannIndex.load(path)
    index.cache_bytes = cache_bytes
    return index


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # Python 3.10
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]


def _id_list(ids: np.ndarray, limit: int = 16) -> str:
    head = ", ".join(str(int(i)) for i in ids[:limit])
    return f"[{head}{', ...' if len(ids) > limit else ''}] ({len(ids)} ids)"
