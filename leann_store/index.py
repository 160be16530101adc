"""LeannIndex: an HNSW graph built on Flash codes (or exact floats), with search.

Metrics.  The graph is always built on squared L2 distances; the three user
metrics are mapped onto it here, and only here:

* ``"l2"``: vectors as given; distances returned are *squared* Euclidean.
* ``"cosine"``: vectors are normalised to unit length (zero vectors are an
  error); distances returned are ``1 - cos``, in [0, 2].
* ``"ip"`` (maximum inner product): HNSW needs a metric space, so each vector
  gets one extra coordinate ``sqrt(R^2 - |x|^2)`` where R is the largest norm
  at build time, and the query gets 0 there.  Then ``|q' - x'|^2 = |q|^2 + R^2
  - 2<q, x>``, which orders candidates exactly as the inner product does, so
  the graph is a real L2 graph.  Search ranks by the exact inner product and
  distances returned are ``-<q, x>`` (ascending = best first).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from numpy.random import default_rng
from threadpoolctl import threadpool_limits

from . import errors, native
from ._checks import check_finite as _check_finite
from .codec import (Codec, code_distance_bias, code_error_quantiles, codec_from_native, fit_pca, search_codec,
                    train_codec)

METRICS = ("l2", "cosine", "ip")
BUILDERS = ("flash", "exact")
_CHUNK = 4096  # rows per block of the chunked transforms (a few MB at 768-d)
_BUILD_CHUNK = 8192  # nodes per flash build step (their projections exist together)
_BUILD_KMEANS_SAMPLE = 4096  # k-means rows of a build-only codec (faiss's cap: 256 per centroid)
_FILE_KIND = "leann-store/index"
_FILE_VERSION = 1
#: default byte budget of the cross-query LRU of recomputed embeddings
DEFAULT_CACHE_BYTES = 16 << 20
#: beam width of the classic search over stored vectors
DEFAULT_EF = 64
#: beam width of the two-level search's walk on codes (a code distance costs
#: nanoseconds, so the walk can be wide; it recomputes nothing)
DEFAULT_CODE_EF = 1024
#: share of the code beam scored exactly at most: 0.15 * 1024 -> 154
#: recomputes, the adaptive stop's cap
DEFAULT_RERANK_RATIO = 0.15
#: the adaptive stop's confidence: scoring ends once no candidate left could
#: enter the top k unless its code error lies below the index's calibrated
#: (1 - confidence) quantile (see LeannIndex.search)
DEFAULT_CONFIDENCE = 0.8
#: search_subspaces=None without stored vectors, from this input dimension
#: up: the "balanced" preset's 40-byte codes (below it, 16-byte codes: a
#: small vector needs no more)
DEFAULT_SEARCH_SUBSPACES = 80
BALANCED_MIN_DIM = 256
_SEARCH_SUBSPACES = native.VALID_SUBSPACES
_BUILD_SUBSPACES = tuple(m for m in native.VALID_SUBSPACES if m <= native.MAX_BUILD_SUBSPACES)
#: named presets (IndexConfig.preset): the search codes' size (see preset)
PRESETS: dict[str, dict[str, Any]] = {
    "compact": {"search_subspaces": 32, "search_confidence": 0.95},  # 16-byte codes
    "balanced": {"search_subspaces": None},  # 40-byte codes from 256 dimensions (the default)
    "fast": {"search_subspaces": 96},        # 48-byte codes
}
#: link caps after pruning (IndexConfig.hub_degree / degree).  Measured on
#: 50k MiniLM passages (benchmarks/search_bench.py): 12/4 keep the index near
#: 32 bytes per passage with 16-byte codes; 16/5 and 16/6 cost 35 and 37 bytes
#: for ~0.03-0.05 more recall@10 at the same recompute count.
DEFAULT_HUB_DEGREE = 12
DEFAULT_DEGREE = 4
#: rows an insertion needs to re-measure the adaptive stop's calibration
_RECALIBRATE_MIN_ROWS = 256
#: num_subspaces=None: 16-byte build codes up to this input dimension, 32
#: above, and 32 whenever the build prunes (see IndexConfig.num_subspaces)
AUTO_SUBSPACES_MAX_DIM = 512

EmbedFn = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class IndexConfig:
    """How to build an index.

    Args:
        metric: ``"cosine"``, ``"l2"`` or ``"ip"`` (see the module docs).
        M: graph degree; upper layers keep up to M links, the base layer 2M.
        ef_construction: beam width while inserting (quality vs build time).
        builder: ``"flash"`` (HNSW on 4-bit codes, fast) or ``"exact"``
            (the same construction on float distances, for comparison).
        store_vectors: keep full-precision vectors in the index (classic
            HNSW: exact search without an embedding callback).  False (the
            default) keeps no embeddings: searches recompute the few they need
            through ``embed``.
        prune: LEANN's high-degree-preserving pruning of the base layer; None
            (default) prunes exactly when vectors are not stored.
        hub_fraction: share of nodes (most links first) that keep up to
            ``hub_degree`` links when pruning.
        hub_degree: link cap of hubs, of any list filled by reverse links,
            and of upper-level lists after pruning; None means
            ``min(DEFAULT_HUB_DEGREE, M)``.
        degree: link cap of every other node when pruning; None means
            ``min(DEFAULT_DEGREE, hub_degree)``.
        search_subspaces: PQ subspaces of the codes kept for search (8, 16,
            32, 64, 80, 96, 112 or 128: half as many bytes per passage); they
            rank candidates before exact recompute, so they set how many
            recomputes a recall costs.  None: ``DEFAULT_SEARCH_SUBSPACES``
            (80, the "balanced" preset) when vectors are not stored and have
            at least ``BALANCED_MIN_DIM`` (256) dimensions, else 32.  See
            :meth:`preset` for what each size costs and saves.
        search_confidence: the adaptive stop's confidence that searches of
            this index use unless they pass their own (``LeannIndex.search``'s
            ``confidence``); None: a fixed count.
        hub_cache_bytes: budget of the persistent hub cache (float16
            embeddings of the most-linked nodes, saved with the index); 0 = off.
        seed: seeds codec training and level assignment; with ``threads=1``
            the whole build is deterministic.
        threads: build threads; None uses every core.
        num_subspaces: PQ subspaces of the build codes (16, 32 or 64 -> 8, 16
            or 32 bytes per code; 8 -> 4 bytes is allowed too).  None (the
            default) picks 32 up to 512 dimensions and 64 above, about one
            code byte per 24 dimensions, and 64 whenever the build prunes.
            Measured at M=32, efC=200, recall@10 at ef=64 of the graph
            searched exactly (hnswlib's graph in brackets): 50k MiniLM
            (384-d) 32 -> 0.975, 64 -> 0.983 (0.987), and 32 builds in 0.74
            of the time with 40 MB less peak memory; 100k x 768 synthetic 32
            -> 0.966, 64 -> 0.982 (0.991).  16 costs 0.03-0.05 of recall on
            both.  Pruning picks the kept edges by the build codes: on 50k
            MiniLM, vector-free, 64 instead of 32 lifts two-level recall@10
            at ratio 0.15 / 0.3 from 0.910 / 0.946 to 0.914 / 0.952 (2000
            queries), as much as 100 more recomputes a query would, for
            0.9 s more build (2.8 s).  The gap to hnswlib's graph can grow
            with the number of vectors: on 384-d synthetic data, 32 gives
            0.973 / 0.956 / 0.918 at 50k / 100k / 200k vectors (hnswlib
            0.991 / 0.986 / 0.976) and 64 gives 0.974 / 0.958 at 100k / 200k,
            for 1.4-1.5x the build time and, at 384-d, more build memory
            than hnswlib's (483 against 371 MB at 200k); on the real
            passages it stays 0.007-0.015 from 10k to 50k.  With stored
            vectors and more than ~100k vectors, 64 keeps the graph close.
        pca_dim: projected dimension for the codes; None chooses it from
            ``pca_variance``.
        pca_variance: share of variance the automatic PCA dimension keeps.
        accumulate: 16 (integer totals, default) or 8 (saturating 8-bit
            totals as in the Flash paper; measured to cost graph quality).
        codec_sample: vectors sampled to train the codec.
    """

    metric: str = "cosine"
    M: int = 32
    ef_construction: int = 200
    builder: str = "flash"
    store_vectors: bool = False
    prune: bool | None = None
    hub_fraction: float = 0.02
    hub_degree: int | None = None
    degree: int | None = None
    search_subspaces: int | None = None
    search_confidence: float | None = DEFAULT_CONFIDENCE
    hub_cache_bytes: int = 0
    seed: int = 0
    threads: int | None = None
    num_subspaces: int | None = None
    pca_dim: int | None = None
    pca_variance: float = 0.8
    accumulate: int = 16
    codec_sample: int = 32768

    def __post_init__(self) -> None:
        def _int(name: str, lo: int, hi: int, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise errors.InvalidInputError(f"{name} must be an integer, got {value!r}")
            if not lo <= value <= hi:
                raise errors.InvalidInputError(f"{name} must be in [{lo}, {hi}], got {value}")

        if self.metric not in METRICS:
            raise errors.InvalidInputError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.builder not in BUILDERS:
            raise errors.InvalidInputError(f"builder must be one of {BUILDERS}, got {self.builder!r}")
        _int("M", native.MIN_M, native.MAX_M, self.M)
        _int("ef_construction", 1, native.MAX_EF_CONSTRUCTION, self.ef_construction)
        _int("seed", 0, 2**63 - 1, self.seed)
        if self.threads is not None:
            _int("threads", 1, native.MAX_THREADS, self.threads)
        if self.num_subspaces is not None and (
                isinstance(self.num_subspaces, bool) or not isinstance(self.num_subspaces, (int, np.integer))
                or self.num_subspaces not in _BUILD_SUBSPACES):
            raise errors.InvalidInputError(
                f"num_subspaces must be 8, 16, 32, 64 or None, got {self.num_subspaces!r}")
        if self.pca_dim is not None:
            _int("pca_dim", 1, native.MAX_PCA_DIM, self.pca_dim)
            if self.num_subspaces is not None and self.pca_dim % self.num_subspaces:
                raise errors.InvalidInputError(
                    f"pca_dim ({self.pca_dim}) must be a multiple of num_subspaces ({self.num_subspaces})")
            if self.num_subspaces is None and self.pca_dim % 64:
                raise errors.InvalidInputError(
                    f"pca_dim ({self.pca_dim}) must be a multiple of 64 when num_subspaces is chosen "
                    "automatically (None, 32 or 64); or set num_subspaces")
        if (isinstance(self.pca_variance, bool) or not isinstance(self.pca_variance, (int, float))
                or not 0 < self.pca_variance <= 1):
            raise errors.InvalidInputError(f"pca_variance must be in (0, 1], got {self.pca_variance!r}")
        if self.accumulate not in (8, 16):
            raise errors.InvalidInputError(f"accumulate must be 8 or 16, got {self.accumulate!r}")
        _int("codec_sample", 16, 10_000_000, self.codec_sample)
        if not isinstance(self.store_vectors, bool):
            raise errors.InvalidInputError("store_vectors must be True or False")
        if self.prune is not None and not isinstance(self.prune, bool):
            raise errors.InvalidInputError("prune must be True, False or None")
        if (isinstance(self.hub_fraction, bool) or not isinstance(self.hub_fraction, (int, float))
                or not 0 <= self.hub_fraction <= 1):
            raise errors.InvalidInputError(f"hub_fraction must be in [0, 1], got {self.hub_fraction!r}")
        if self.hub_degree is not None:
            _int("hub_degree", 1, native.MAX_DEGREE, self.hub_degree)
        if self.degree is not None:
            _int("degree", 1, native.MAX_DEGREE, self.degree)
        if self.degree is not None and self.degree > self.resolved_hub_degree:
            raise errors.InvalidInputError(
                f"degree ({self.degree}) must not exceed hub_degree ({self.resolved_hub_degree})")
        if self.search_subspaces is not None and (
                isinstance(self.search_subspaces, bool)
                or not isinstance(self.search_subspaces, (int, np.integer))
                or self.search_subspaces not in _SEARCH_SUBSPACES):
            raise errors.InvalidInputError(
                f"search_subspaces must be one of {_SEARCH_SUBSPACES} or None, got {self.search_subspaces!r}")
        _int("hub_cache_bytes", 0, 2**48, self.hub_cache_bytes)
        _check_confidence(self.search_confidence, "search_confidence")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "IndexConfig":
        """A named configuration, any field overridable.

        Bigger search codes rank candidates better, so a search recomputes
        fewer passages for the same recall.  Measured on the devcorpus (50k
        MiniLM passages, 2000 queries of each set, default search: recall@10
        and mean recomputes, summaries / short keyword queries;
        ``python benchmarks/search_bench.py --tradeoff --queries 2000``):

        ============  ===============  ==============  ==============
        preset        bytes / passage  summaries       short queries
        ============  ===============  ==============  ==============
        ``compact``   31.9             0.909 @ 137     0.853 @ 139
        ``balanced``  56.4             0.942 @ 38      0.919 @ 44
        ``fast``      65.0             0.958 @ 32      0.936 @ 37
        ============  ===============  ==============  ==============

        ``compact`` searches at ``search_confidence=0.95``: 0.909 @ 137 on
        the summaries, 0.853 @ 139 on the short queries (at 0.8: 0.842 @ 85
        and 0.784 @ 94).  ``balanced`` is the
        default ``IndexConfig()`` for vectors of 256 dimensions or more.

        >>> IndexConfig.preset("compact").search_subspaces
        32
        >>> IndexConfig.preset("balanced", metric="l2").metric
        'l2'
        """
        if name not in PRESETS:
            raise errors.InvalidInputError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def resolved_search_subspaces(self, dim: int) -> int:
        """Subspaces of the search codes (``search_subspaces``, or its default)."""
        if self.search_subspaces is not None:
            return int(self.search_subspaces)
        # stored vectors: the codes only steer filtered walks' scans; keep
        # them small (and shared with the build codec's where they match)
        return DEFAULT_SEARCH_SUBSPACES if not self.store_vectors and dim >= BALANCED_MIN_DIM else 32

    def build_subspaces(self, dim: int) -> int:
        """PQ subspaces of the build codes for ``dim``-dimensional vectors
        (``num_subspaces``, or the default for None)."""
        if self.num_subspaces is not None:
            return int(self.num_subspaces)
        return 32 if dim <= AUTO_SUBSPACES_MAX_DIM and not self.resolved_prune else 64

    @property
    def resolved_prune(self) -> bool:
        """Whether the build prunes (``prune=None`` -> when vectors are not stored)."""
        return (not self.store_vectors) if self.prune is None else self.prune

    @property
    def resolved_hub_degree(self) -> int:
        return self.hub_degree if self.hub_degree is not None else min(DEFAULT_HUB_DEGREE, self.M)

    @property
    def resolved_degree(self) -> int:
        if self.degree is not None:
            return self.degree
        return min(DEFAULT_DEGREE, self.resolved_hub_degree)


def _check_confidence(value: Any, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0 < value < 1):
        raise errors.InvalidInputError(f"{name} must be None or in (0, 1), got {value!r}")


#: ``LeannIndex.search(confidence=...)`` default: the index's ``search_confidence``
FROM_CONFIG: Any = "from config"


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


def _sq_norms(block: np.ndarray) -> np.ndarray:
    """Squared row norms in float64, without a (rows, dim) temporary."""
    return np.einsum("ij,ij->i", block, block, dtype=np.float64)


class _MetricMap:
    """Maps a user metric onto the L2 build space and back (one place)."""

    def __init__(self, metric: str, dim: int, radius: float = 0.0) -> None:
        self.metric, self.dim, self.radius = metric, dim, radius
        self.build_dim = dim + 1 if metric == "ip" else dim
        self.search_metric = native.METRIC_L2 if metric == "l2" else native.METRIC_IP

    @classmethod
    def fit(cls, metric: str, x: np.ndarray) -> "_MetricMap":
        radius = 0.0
        if metric == "ip":
            radius = max(float(np.sqrt(_sq_norms(x[s:s + _CHUNK]).max()))
                         for s in range(0, x.shape[0], _CHUNK))
        return cls(metric, x.shape[1], radius)

    def vectors(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Build-space rows for a block of input rows (read-only: for l2
        without ``out`` this may be ``x`` itself)."""
        if out is None and self.metric == "l2":
            return np.ascontiguousarray(x, dtype=np.float32)
        if out is None:
            out = np.empty((x.shape[0], self.build_dim), dtype=np.float32)
        if self.metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", x, x))  # no (rows, dim) temporary
            if (norms == 0).any():
                raise errors.InvalidInputError(
                    "cosine metric: a vector has zero norm (row "
                    f"{int(np.flatnonzero(norms == 0)[0])} of its block)")
            np.divide(x, norms[:, None], out=out)
        elif self.metric == "ip":
            out[:, :self.dim] = x
            sq = _sq_norms(x)
            out[:, self.dim] = np.sqrt(np.clip(self.radius ** 2 - sq, 0.0, None))
        else:
            out[:] = x
        return out

    def queries(self, q: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            norms = np.linalg.norm(q, axis=1)
            if (norms == 0).any():
                raise errors.InvalidInputError("cosine metric: a query has zero norm")
            return np.ascontiguousarray(q / norms[:, None], dtype=np.float32)
        if self.metric == "ip":
            out = np.zeros((q.shape[0], self.build_dim), dtype=np.float32)
            out[:, :self.dim] = q
            return out
        return q

    def distances(self, d: np.ndarray) -> np.ndarray:
        """Native ranking distances -> user distances."""
        if self.metric == "cosine":
            return np.where(np.isfinite(d), d + np.float32(1.0), d).astype(np.float32)
        return d


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


def _threads(threads: int | None) -> int:
    """None -> 0 (every core); else a validated positive int."""
    if threads is None:
        return 0
    if (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
            or not 1 <= threads <= native.MAX_THREADS):
        raise errors.InvalidInputError(
            f"threads must be None or an integer in [1, {native.MAX_THREADS}], got {threads!r}")
    return int(threads)


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
            return cls._build(x, cfg, progress)

    @classmethod
    def _build(cls, x: np.ndarray, cfg: IndexConfig, progress: bool | None) -> "LeannIndex":
        n = x.shape[0]
        mmap = _MetricMap.fit(cfg.metric, x)
        flash = cfg.builder == "flash"
        msub = cfg.build_subspaces(x.shape[1]) if flash else 0
        ssub = cfg.resolved_search_subspaces(x.shape[1])
        # Both codecs and the search codes come first, while nothing else is
        # allocated: the training sample never coexists with the graph under
        # construction or with stored vectors (peak memory).
        rng = default_rng(cfg.seed)
        rows = np.sort(rng.choice(n, size=min(n, cfg.codec_sample), replace=False))
        workers = _threads(cfg.threads) or native.cpu_count()  # the build's threads
        # read a block or a subset at a time, on this thread (worker
        # threads' blocks would stay resident in their malloc arenas): a
        # copy of the sample was the peak of a small build's memory (61 of
        # 120 MiB at 20k x 768)
        sample = _TrainingRows(x, mmap, rows)
        pca = fit_pca(sample)  # one decomposition serves both codecs
        native.release_free_memory()  # its freed blocks, before the codec's projections
        codec = None
        if flash:
            # A codec that only steers the build trains k-means on 256 points
            # a centroid, half the default: 100k x 768, 64 subspaces, 0.24 s
            # less, graph recall@10 at ef 64 unchanged (0.9816 -> 0.9825).  A
            # codec that also ranks search candidates keeps the default: on
            # MiniLM its two-level recall@10 at ratio 0.15 fell 0.911 -> 0.907.
            build_only = {} if msub == ssub else {"kmeans_sample": _BUILD_KMEANS_SAMPLE}
            codec = train_codec(sample, num_subspaces=msub, pca_dim=cfg.pca_dim,
                                pca_variance=cfg.pca_variance, sample=cfg.codec_sample, seed=cfg.seed,
                                accumulate=cfg.accumulate, pca=pca, **build_only)
        if codec is not None and codec.num_subspaces == ssub:
            scodec = codec
        else:
            scodec = train_codec(sample, num_subspaces=ssub, pca_variance=cfg.pca_variance,
                                 sample=cfg.codec_sample, seed=cfg.seed, pca=pca)
        ncodec = search_codec(scodec, code_distance_bias(scodec, sample, seed=cfg.seed))
        # the adaptive stop's bound: the code error where searches meet it
        # (only vector-free searches recompute, so only they need it)
        calib = None if cfg.store_vectors else code_error_quantiles(
            scodec, ncodec.bias, sample, native.CALIB_LEVELS, n, seed=cfg.seed)
        del sample
        codes = np.empty((n, ncodec.code_bytes), dtype=np.uint8)
        # the search codes come from the build's feed when the build codec's
        # projection contains the search codec's (one PCA): no second pass
        # over the vectors (100k x 768: 0.3-0.4 s)
        search_cols = codec.projection_columns(scodec) if codec is not None else None
        if search_cols is None:
            project = _Projector(scodec, x, mmap, min(n, _CHUNK), workers)
            for s in range(0, n, _CHUNK):
                codes[s:s + _CHUNK] = ncodec.encode(project(s, min(n, s + _CHUNK)))
            del project
        # training's freed buffers would otherwise stay resident under the
        # graph's allocations (synthetic 100k x 768: ~40 MiB of the peak)
        native.release_free_memory()
        params = native.BuildParams(
            n=n, dim=mmap.build_dim, M=cfg.M, ef_construction=cfg.ef_construction,
            builder=native.BUILDER_FLASH if flash else native.BUILDER_EXACT,
            search_metric=mmap.search_metric, store_vectors=cfg.store_vectors,
            threads=_threads(cfg.threads), seed=cfg.seed,
            # debiased selection (see build.c): its extra edges serve search
            # over the full graph; pruning would drop them, and the reverse
            # ones it keeps cost bytes (0.14 B/passage at 50k) without lifting
            # recall (0.914 either way)
            selection_relax=(codec.quant_error / codec.scale
                             if codec is not None and not cfg.resolved_prune
                             and np.isfinite(codec.quant_error) else 0.0))
        builder = native.NativeBuilder(params, codec.native if codec else None)
        try:
            if flash:
                assert codec is not None
                # one chunk of projections at a time: a node's projection
                # serves only its own insertion (the buffers go with the call)
                project = _Projector(codec, x, mmap, min(n, _BUILD_CHUNK), workers)
                feed = project if search_cols is None else _encoding_feed(project, ncodec, search_cols, codes)
                del project
                _run_with_progress(builder, n, progress, feed)
                del feed  # its buffers, before the stored vectors come (peak memory)
            else:
                _fill(builder.vectors_view(), x, mmap, workers=workers)
                _run_with_progress(builder, n, progress)
            build_stats = builder.stats()
            handle = builder.finish()
        finally:
            builder.free()
        index = cls(handle, cfg, mmap, codec)
        index.build_stats = build_stats
        index._finish_build(x, scodec, ncodec, codes, calib)
        del codes  # the index holds its own copy
        if flash and cfg.store_vectors:
            # the float storage comes last: it never coexists with the
            # build's neighbour code blocks or the unpacked graph
            native.release_free_memory()
            handle.alloc_vectors(workers)
            _fill(handle.vectors_view(), x, mmap, workers=workers)
        return index

    def _finish_build(self, x: np.ndarray, scodec: Codec, ncodec: native.NativeCodec,
                      codes: np.ndarray, calib: np.ndarray | None = None) -> None:
        """LEANN pruning, search codes, compaction and the hub cache."""
        cfg, mmap, n = self._config, self._map, x.shape[0]
        build_codec = self._codec
        if cfg.resolved_prune:
            hub_degree = cfg.resolved_hub_degree
            if build_codec is not None:  # the finer build codes, still in the index
                self._h.prune(build_codec.native, None, cfg.hub_fraction, hub_degree, cfg.resolved_degree,
                              _threads(cfg.threads))
            else:
                self._h.prune(ncodec, codes, cfg.hub_fraction, hub_degree, cfg.resolved_degree, _threads(cfg.threads))
        self._h.set_codes(ncodec, codes)
        if calib is not None:
            self._h.set_calibration(calib)
        self._h.pack()
        self._search_codec = scodec
        if cfg.hub_cache_bytes:
            count = min(n, cfg.hub_cache_bytes // (mmap.build_dim * 2 + 4))
            if count:
                ids = np.sort(self._h.hub_candidates(count))
                self._h.set_hub_cache(ids, mmap.vectors(x[ids.astype(np.int64)]))

    # ---- search ----------------------------------------------------------
    def search(self, query: np.ndarray | Sequence[float], k: int = 10, ef: int | None = None,
               threads: int | None = None, *, embed: EmbedFn | None = None,
               rerank_ratio: float = DEFAULT_RERANK_RATIO, batch_size: int = 32,
               max_recompute: int | None = None,
               allowed: np.ndarray | Iterable[int] | None = None,
               confidence: float | None = FROM_CONFIG) -> SearchResult:
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
            ef: beam width (raised to k).  None: ``DEFAULT_EF`` (64) for the
                classic search, ``DEFAULT_CODE_EF`` (1024) for the walk on
                codes, which costs about a millisecond at 50k passages.
            embed: ``embed(ids: int64 array) -> (len(ids), dim)`` float
                embeddings of those passages with the model the index was
                built with.  Needed when the index keeps no vectors.  An
                exception it raises propagates unchanged, with a note naming
                the ids (also in ``exc.leann_ids``); the index stays usable.
            rerank_ratio: in (0, 1]: the share of the beam scored exactly at
                most (0.15 * 1024 -> 154 by default).
            confidence: the adaptive stop (default: the index's
                ``IndexConfig.search_confidence``, 0.8), in (0, 1): after the first 2k
                scores, scoring stops once every candidate left has a code
                distance above the k-th best exact distance minus the code
                error that the index measured at build time at quantile
                ``1 - confidence``; higher scores more.  None scores the
                whole share (a fixed count).  Indexes saved before the
                calibration existed always score the whole share.
            batch_size: most ids handed to ``embed`` at once (the adaptive
                stop asks only for candidates that can still count).
            threads: the two-level search runs a batch's queries on this
                many threads only when it is given (None: one), since
                ``embed`` is then called from several threads at once (some
                tokenizers refuse that).  The walks run in C without the GIL.
            max_recompute: cap on exact scores per query (None: no cap).
            allowed: ids that may be returned (bool mask of length n, or an
                id collection); applied inside the walk, so k results come
                back whenever k allowed, undeleted ids exist.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise errors.InvalidInputError(f"k must be a positive integer, got {k!r}")
        if k > len(self):
            raise errors.InvalidInputError(f"k = {k} exceeds the {len(self)} vectors in the index")
        if ef is not None and (isinstance(ef, bool) or not isinstance(ef, (int, np.integer))
                               or not 1 <= ef <= native.MAX_EF):
            raise errors.InvalidInputError(f"ef must be an integer in [1, {native.MAX_EF}], got {ef!r}")
        q = _as_array(query, "query")
        single = q.ndim == 1
        q = _as_matrix(q[None, :] if single else q, "query")
        if q.shape[1] != self.dim:
            raise errors.DimensionMismatchError(
                f"query has dimension {q.shape[1]}, the index has {self.dim}")
        _check_finite(q, "query")
        nthreads = _threads(threads)
        bits = self._allowed_bitset(allowed)
        if self._h.has_vectors:  # C honours deletions and the filter itself
            ef = DEFAULT_EF if ef is None else ef
            ids, dist, stats = self._h.search(self._map.queries(q), int(k), int(ef), nthreads, bits)
            st = {"distance_evals": stats[:, 0], "hops": stats[:, 1]}
        else:
            ef = DEFAULT_CODE_EF if ef is None else ef
            if confidence is FROM_CONFIG:
                confidence = self._config.search_confidence
            _check_confidence(confidence, "confidence")
            ids, dist, st = self._search_two_level(q, int(k), int(ef), embed, rerank_ratio, batch_size,
                                                   max_recompute, bits, nthreads if threads is not None else 1,
                                                   float(confidence or 0.0))
        dist = self._map.distances(dist)
        if single:
            return SearchResult(ids[0], dist[0], {key: v[0] for key, v in st.items()})
        return SearchResult(ids, dist, st)

    def _search_two_level(self, q: np.ndarray, k: int, ef: int, embed: EmbedFn | None, rerank_ratio: float,
                          batch_size: int, max_recompute: int | None, bits: np.ndarray | None,
                          workers: int = 1,
                          confidence: float = 0.0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        if embed is None and not self._h.has_vectors:
            raise errors.InvalidInputError(
                "this index keeps no vectors: pass embed=fn, where fn(ids) returns the embeddings of "
                "those passages (the index recomputes the few it needs)")
        if embed is not None and not callable(embed):
            raise errors.InvalidInputError("embed must be callable: fn(ids) -> (len(ids), dim) floats")
        if (isinstance(rerank_ratio, bool) or not isinstance(rerank_ratio, (int, float))
                or not 0 < rerank_ratio <= 1):
            raise errors.InvalidInputError(f"rerank_ratio must be in (0, 1], got {rerank_ratio!r}")
        if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                or not 1 <= batch_size <= native.MAX_BATCH):
            raise errors.InvalidInputError(
                f"batch_size must be an integer in [1, {native.MAX_BATCH}], got {batch_size!r}")
        if max_recompute is not None and (isinstance(max_recompute, bool)
                                          or not isinstance(max_recompute, (int, np.integer))
                                          or not k <= max_recompute <= 2**62):
            raise errors.InvalidInputError(
                f"max_recompute must be None or an integer >= k ({k}), got {max_recompute!r}")
        fetch = self._fetcher(embed)
        qs = self._map.queries(q)
        nq = qs.shape[0]
        ids = np.empty((nq, k), dtype=np.int64)
        dist = np.empty((nq, k), dtype=np.float32)
        keys = ("recomputed", "embed_calls", "cache_hits", "exact", "code_evals", "hops")
        st = {key: np.zeros(nq, dtype=np.int64) for key in keys}
        def part(_: int, a: int, b: int) -> None:  # queries [a, b), each writing its own rows
            for i in range(a, b):
                ids[i], dist[i], one = self._h.search_recompute(
                    np.ascontiguousarray(qs[i]), k, ef, float(rerank_ratio), int(batch_size),
                    int(max_recompute or 0), bits, fetch, confidence)
                for key in keys:
                    st[key][i] = one[key]

        _in_parallel(part, 0, nq, workers)
        return ids, dist, st

    def _fetcher(self, embed: EmbedFn | None) -> Callable[[np.ndarray], np.ndarray]:
        """Wraps ``embed``: validates what it returns, maps it to search space."""
        dim = self.dim

        def fetch(ids: np.ndarray) -> np.ndarray:
            if embed is None:  # pragma: no cover - C finds stored vectors itself
                raise errors.NativeError("internal: rows requested from an index that stores them")
            try:
                out = embed(ids)
            except Exception as exc:
                _add_note(exc, f"leann-store: the embed function failed for ids {_id_list(ids)}")
                exc.leann_ids = ids  # type: ignore[attr-defined]
                raise
            try:
                arr = np.asarray(out)
            except Exception as exc:
                raise errors.CallbackError(
                    f"embed returned {type(out).__name__}, not an array, for ids {_id_list(ids)}") from exc
            if arr.dtype.kind != "f":
                raise errors.CallbackError(
                    f"embed must return floats, got dtype {arr.dtype} for ids {_id_list(ids)}")
            if arr.shape != (len(ids), dim):
                raise errors.CallbackError(
                    f"embed returned shape {arr.shape} for {len(ids)} ids; expected ({len(ids)}, {dim})")
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if not np.isfinite(arr).all():
                raise errors.CallbackError(f"embed returned NaN or infinity for ids {_id_list(ids)}")
            try:
                return self._map.vectors(arr)
            except errors.InvalidInputError as exc:
                raise errors.CallbackError(f"embed returned unusable rows for ids {_id_list(ids)}: {exc}") from exc

        return fetch

    def _allowed_bitset(self, allowed: Any) -> np.ndarray | None:
        """A filter as the uint64 bitset C reads (None: no filter)."""
        if allowed is None:
            return None
        n = len(self)
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
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 2**48:
            raise errors.InvalidInputError(f"cache_bytes must be a non-negative integer, got {value!r}")
        self._h.set_cache(int(value))
        self._cache_bytes = int(value)

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
        if cfg.store_vectors or self._search_codec is None:
            raise errors.InvalidInputError(
                "live updates (add, compact) work on vector-free indexes (store_vectors=False)")
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
        on the ``threads`` of the build, GIL released); their vectors are not
        kept.  Vector-free indexes only.

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
        x = _as_matrix(vectors, "vectors")
        if x.shape[1] != self.dim:
            raise errors.DimensionMismatchError(f"vectors have dimension {x.shape[1]}, the index {self.dim}")
        _check_finite(x, "vectors")
        codec = self._search_codec
        assert codec is not None
        with _blas_single_thread():
            mapped = self._map.vectors(x)
            proj = codec.project(mapped) if len(x) else np.zeros((0, codec.pca_dim), np.float32)
            new = self._derived(self._h.added(proj, **args))
            del proj
            # The adaptive stop's error quantiles are measured among the
            # candidates a search of an index of this size meets (the nearer,
            # the more their code distances are biased low): as the index
            # grows they move, and a stop calibrated at 2k rows stops too
            # early at 50k (recall@10 0.89 against 0.94).  The new rows are
            # the sample at hand.
            if len(x) >= _RECALIBRATE_MIN_ROWS and self._h.calibration() is not None:
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

        Rebuilt from the stored codes alone (no embeddings): every list that
        linked a deleted node is re-selected among its live links and the
        live nodes the deleted ones linked.  New ids keep the old order.

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
        if isinstance(node, bool) or not isinstance(node, (int, np.integer)) or not 0 <= node < len(self):
            raise errors.InvalidInputError(f"node must be an id in [0, {len(self)}), got {node!r}")
        return int(node)

    @staticmethod
    def _level_arg(level: int) -> int:
        if (isinstance(level, bool) or not isinstance(level, (int, np.integer))
                or not 0 <= level <= native.MAX_LEVEL_ARG):
            raise errors.InvalidInputError(
                f"level must be an integer in [0, {native.MAX_LEVEL_ARG}], got {level!r}")
        return int(level)

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


def _in_parallel(part: Callable[[int, int, int], None], lo: int, hi: int, workers: int) -> None:
    """``part(i, a, b)`` over ``workers`` contiguous shares ``[a, b)`` of
    ``[lo, hi)``, share i on thread i (numpy's copies and products and the
    native calls release the GIL); the first exception is re-raised."""
    shares = min(workers, hi - lo)
    if shares <= 1:
        part(0, lo, hi)
        return
    cuts = [lo + (hi - lo) * i // shares for i in range(shares + 1)]
    with ThreadPoolExecutor(max_workers=shares, thread_name_prefix="leann-rows") as pool:
        for f in [pool.submit(part, i, cuts[i], cuts[i + 1]) for i in range(shares)]:
            f.result()


class _Projector:
    """Build-space codec projections of row ranges of x, on ``workers``
    threads, written into buffers that are reused from call to call: a
    build's feed allocates nothing per chunk, so the allocator's heap does
    not grow under the graph.  The workers' blocks hold ``_CHUNK`` rows
    together, as one block would."""

    def __init__(self, codec: Codec, x: np.ndarray, mmap: _MetricMap, rows: int, workers: int = 1) -> None:
        self.codec, self.x, self.mmap, self.workers = codec, x, mmap, max(1, workers)
        self.rows = max(1, -(-min(rows, _CHUNK) // self.workers))
        self.blocks = [np.empty((self.rows, mmap.build_dim), dtype=np.float32) for _ in range(self.workers)]
        self.out = np.empty((rows, codec.pca_dim), dtype=np.float32)

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        """Projections of rows [lo, hi) (at most ``rows``), valid until the next call."""
        out = self.out[:hi - lo]

        def part(i: int, a: int, b: int) -> None:
            for c in range(a, b, self.rows):
                d = min(b, c + self.rows)
                block = self.mmap.vectors(self.x[c:d], out=self.blocks[i][:d - c])
                self.codec.project_into(block, out[c - lo:d - lo])

        _in_parallel(part, lo, hi, self.workers)
        return out


def _encoding_feed(project: _Projector, ncodec: native.NativeCodec, cols: np.ndarray,
                   codes: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """``project``, also writing the search codes of the rows it projects into
    ``codes``, from the columns ``cols`` of each projection."""
    identity = len(cols) == project.codec.pca_dim and bool((cols == np.arange(len(cols))).all())

    def feed(lo: int, hi: int) -> np.ndarray:
        proj = project(lo, hi)
        codes[lo:hi] = ncodec.encode(proj if identity else np.ascontiguousarray(proj[:, cols]))
        return proj

    return feed


class _TrainingRows:
    """The build-space form of the rows ``rows`` of x, made when asked for:
    the codec's training sample (a ``codec.Rows``) without a copy of it."""

    def __init__(self, x: np.ndarray, mmap: _MetricMap, rows: np.ndarray) -> None:
        self.x, self.mmap, self.rows = x, mmap, rows
        self.shape = (len(rows), mmap.build_dim)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return self.mmap.vectors(self.x[self.rows[key]])


def _fill(view: np.ndarray | None, x: np.ndarray, mmap: _MetricMap, workers: int = 1) -> None:
    """Write the build-space form of x into view, a block at a time on each
    of ``workers`` threads, so no full-size temporary exists."""
    if view is None:
        raise errors.NativeError("internal: the native builder has no vector storage")

    def part(_: int, a: int, b: int) -> None:
        step = -(-_CHUNK // max(1, workers))
        for s in range(a, b, step):
            e = min(b, s + step)
            mmap.vectors(x[s:e], out=view[s:e])

    _in_parallel(part, 0, view.shape[0], workers)


def _run_with_progress(builder: native.NativeBuilder, n: int, progress: bool | None,
                       project: Callable[[int, int], np.ndarray] | None = None) -> None:
    """Run the native build in a worker thread (the GIL is released in C) while
    this thread shows progress and turns Ctrl-C into a clean cancellation.
    With ``project`` (flash), nodes go in chunks of ``_BUILD_CHUNK``, each fed
    its projected rows first, here: numpy's temporaries then come from the
    main thread's heap, which ``release_free_memory`` returns in full (a
    thread's own arena keeps its free top resident)."""
    if progress is None:
        progress = n >= 20000 and sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="building graph", unit="vec", leave=False)
    try:
        if project is None:
            _run_in_worker(builder, None, bar)
        else:
            for lo in range(0, n, _BUILD_CHUNK):
                hi = min(n, lo + _BUILD_CHUNK)
                builder.set_projected(project(lo, hi), lo)
                _run_in_worker(builder, hi, bar)
    finally:
        if bar is not None:
            bar.close()


def _run_in_worker(builder: native.NativeBuilder, upto: int | None, bar: Any) -> None:
    """``builder.run(upto)`` in a worker thread; this one updates ``bar`` and
    cancels the build on Ctrl-C (re-raised once the worker has stopped)."""
    failure: list[BaseException] = []

    def work() -> None:
        try:
            builder.run(upto)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    t = threading.Thread(target=work, name="leann-build", daemon=True)
    try:
        t.start()
        while t.is_alive():
            t.join(0.1)
            if bar is not None:
                bar.n = builder.progress()
                bar.refresh()
    except KeyboardInterrupt:
        builder.cancel()
        t.join()
        raise
    if failure:
        raise failure[0]

