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

import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from . import errors, native
from .codec import Codec, train_codec

METRICS = ("l2", "cosine", "ip")
BUILDERS = ("flash", "exact")
_CHUNK = 32768


@dataclass(frozen=True)
class IndexConfig:
    """How to build an index.

    Args:
        metric: ``"cosine"``, ``"l2"`` or ``"ip"`` (see the module docs).
        M: graph degree; upper layers keep up to M links, the base layer 2M.
        ef_construction: beam width while inserting (quality vs build time).
        builder: ``"flash"`` (HNSW on 4-bit codes, fast) or ``"exact"``
            (the same construction on float distances, for comparison).
        store_vectors: keep full-precision vectors in the index (needed for
            exact-distance search without an embedding callback).
        seed: seeds codec training and level assignment; with ``threads=1``
            the whole build is deterministic.
        threads: build threads; None uses every core.
        num_subspaces: PQ subspaces of the build codes (16, 32 or 64 -> 8, 16
            or 32 bytes per code; 8 -> 4 bytes is allowed too).  64 is the
            default: on real MiniLM embeddings 16 subspaces cost 0.09 of
            recall@10 at ef=64 against an exact-distance build, 64 cost 0.016.
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
    store_vectors: bool = True
    seed: int = 0
    threads: int | None = None
    num_subspaces: int = 64
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
        _int("M", 2, 256, self.M)
        _int("ef_construction", 1, 100_000, self.ef_construction)
        _int("seed", 0, 2**63 - 1, self.seed)
        if self.threads is not None:
            _int("threads", 1, 1024, self.threads)
        if (isinstance(self.num_subspaces, bool) or not isinstance(self.num_subspaces, (int, np.integer))
                or self.num_subspaces not in (8, 16, 32, 64)):
            raise errors.InvalidInputError(
                f"num_subspaces must be 8, 16, 32 or 64, got {self.num_subspaces!r}")
        if self.pca_dim is not None:
            _int("pca_dim", 1, 4096, self.pca_dim)
            if self.pca_dim % self.num_subspaces:
                raise errors.InvalidInputError(
                    f"pca_dim ({self.pca_dim}) must be a multiple of num_subspaces ({self.num_subspaces})")
        if (isinstance(self.pca_variance, bool) or not isinstance(self.pca_variance, (int, float))
                or not 0 < self.pca_variance <= 1):
            raise errors.InvalidInputError(f"pca_variance must be in (0, 1], got {self.pca_variance!r}")
        if self.accumulate not in (8, 16):
            raise errors.InvalidInputError(f"accumulate must be 8 or 16, got {self.accumulate!r}")
        _int("codec_sample", 16, 10_000_000, self.codec_sample)
        if not isinstance(self.store_vectors, bool):
            raise errors.InvalidInputError("store_vectors must be True or False")
        if not self.store_vectors:
            raise errors.InvalidInputError(
                "store_vectors=False needs the recompute search (embed callback), which this "
                "version does not have yet; build with store_vectors=True")


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


# Squared distances are float32: components beyond this overflow them.
_MAX_ABS = 1e15


def _check_finite(x: np.ndarray, name: str) -> None:
    for s in range(0, x.shape[0], _CHUNK):
        block = x[s:s + _CHUNK]
        if not np.isfinite(block).all():
            row = s + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise errors.InvalidInputError(f"{name} row {row} contains NaN or infinity")
        if (np.abs(block) > _MAX_ABS).any():
            row = s + int(np.flatnonzero((np.abs(block) > _MAX_ABS).any(axis=1))[0])
            raise errors.InvalidInputError(
                f"{name} row {row} has a component beyond +-{_MAX_ABS:g}, which overflows "
                "float32 distances; rescale the vectors")


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
            radius = max(float(np.sqrt((x[s:s + _CHUNK].astype(np.float64) ** 2).sum(1)).max())
                         for s in range(0, x.shape[0], _CHUNK))
        return cls(metric, x.shape[1], radius)

    def vectors(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Build-space rows for a block of input rows."""
        if out is None:
            out = np.empty((x.shape[0], self.build_dim), dtype=np.float32)
        if self.metric == "cosine":
            norms = np.linalg.norm(x, axis=1)
            if (norms == 0).any():
                raise errors.InvalidInputError(
                    "cosine metric: a vector has zero norm (row "
                    f"{int(np.flatnonzero(norms == 0)[0])} of its block)")
            np.divide(x, norms[:, None], out=out)
        elif self.metric == "ip":
            out[:, :self.dim] = x
            sq = (x.astype(np.float64) ** 2).sum(1)
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


def _threads(threads: int | None) -> int:
    """None -> 0 (every core); else a validated positive int."""
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 1024:
        raise errors.InvalidInputError(f"threads must be None or an integer in [1, 1024], got {threads!r}")
    return int(threads)


class LeannIndex:
    """An HNSW index over ids 0..n-1.  Create it with :meth:`build`."""

    def __init__(self, handle: native.NativeIndex, config: IndexConfig, metric_map: _MetricMap,
                 codec: Codec | None) -> None:
        self._h = handle
        self._config = config
        self._map = metric_map
        self._codec = codec
        #: construction counters: ``distance_evals`` and ``hops`` (expansions)
        self.build_stats: dict[str, int] = {}

    # ---- construction ---------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray | Sequence[Sequence[float]], config: IndexConfig | None = None,
              *, progress: bool | None = None) -> "LeannIndex":
        """Build an index over ``vectors`` (float32, shape (n, dim)); ids are 0..n-1.

        ``progress`` shows a progress bar (default: when stderr is a terminal
        and n >= 20000).  Ctrl-C cancels the build cleanly.
        """
        cfg = config if config is not None else IndexConfig()
        if not isinstance(cfg, IndexConfig):
            raise errors.InvalidInputError("config must be an IndexConfig")
        x = _as_matrix(vectors, "vectors")
        _check_finite(x, "vectors")
        n = x.shape[0]
        mmap = _MetricMap.fit(cfg.metric, x)
        flash = cfg.builder == "flash"
        codec = None
        if flash:
            rng = np.random.default_rng(cfg.seed)
            sample_idx = np.sort(rng.choice(n, size=min(n, cfg.codec_sample), replace=False))
            codec = train_codec(mmap.vectors(x[sample_idx]), num_subspaces=cfg.num_subspaces,
                                pca_dim=cfg.pca_dim, pca_variance=cfg.pca_variance,
                                sample=cfg.codec_sample, seed=cfg.seed, accumulate=cfg.accumulate)
        params = native.BuildParams(
            n=n, dim=mmap.build_dim, M=cfg.M, ef_construction=cfg.ef_construction,
            builder=native.BUILDER_FLASH if flash else native.BUILDER_EXACT,
            search_metric=mmap.search_metric, store_vectors=cfg.store_vectors,
            threads=_threads(cfg.threads), seed=cfg.seed)
        builder = native.NativeBuilder(params, codec.native if codec else None)
        try:
            if flash:
                assert codec is not None
                proj = np.empty((n, codec.pca_dim), dtype=np.float32)
                for s in range(0, n, _CHUNK):
                    proj[s:s + _CHUNK] = codec.project(mmap.vectors(x[s:s + _CHUNK]))
                builder.set_projected(proj)
            else:
                _fill(builder.vectors_view(), x, mmap)
            _run_with_progress(builder, n, progress)
            build_stats = builder.stats()
            if flash:
                del proj  # free the projections before the float storage exists
                if cfg.store_vectors:
                    builder.alloc_vectors()
                    _fill(builder.vectors_view(), x, mmap)
            handle = builder.finish()
        finally:
            builder.free()
        index = cls(handle, cfg, mmap, codec)
        index.build_stats = build_stats
        return index

    # ---- search ----------------------------------------------------------
    def search(self, query: np.ndarray | Sequence[float], k: int = 10, ef: int = 64,
               threads: int | None = None) -> SearchResult:
        """The k nearest neighbours of one query (shape (dim,)) or a batch (nq, dim).

        Distances are exact (see the module docs for what each metric
        returns).  ``ef`` is the beam width (raised to k if smaller);
        ``threads`` parallelises a batch (None: every core).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise errors.InvalidInputError(f"k must be a positive integer, got {k!r}")
        if k > len(self):
            raise errors.InvalidInputError(f"k = {k} exceeds the {len(self)} vectors in the index")
        if isinstance(ef, bool) or not isinstance(ef, (int, np.integer)) or not 1 <= ef <= 1_000_000:
            raise errors.InvalidInputError(f"ef must be an integer in [1, 1000000], got {ef!r}")
        q = _as_array(query, "query")
        single = q.ndim == 1
        q = _as_matrix(q[None, :] if single else q, "query")
        if q.shape[1] != self.dim:
            raise errors.DimensionMismatchError(
                f"query has dimension {q.shape[1]}, the index has {self.dim}")
        _check_finite(q, "query")
        nthreads = _threads(threads)
        ids, dist, stats = self._h.search(self._map.queries(q), int(k), int(ef), nthreads)
        dist = self._map.distances(dist)
        st = {"distance_evals": stats[:, 0], "hops": stats[:, 1]}
        if single:
            return SearchResult(ids[0], dist[0], {key: v[0] for key, v in st.items()})
        return SearchResult(ids, dist, st)

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
        """The trained Flash codec (None for ``builder="exact"``)."""
        return self._codec

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
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= 255:
            raise errors.InvalidInputError(f"level must be an integer in [0, 255], got {level!r}")
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


def _fill(view: np.ndarray | None, x: np.ndarray, mmap: _MetricMap) -> None:
    if view is None:
        raise errors.NativeError("internal: the native builder has no vector storage")
    for s in range(0, x.shape[0], _CHUNK):
        mmap.vectors(x[s:s + _CHUNK], out=view[s:s + _CHUNK])


def _run_with_progress(builder: native.NativeBuilder, n: int, progress: bool | None) -> None:
    """Run the native build in a worker thread (the GIL is released in C) while
    this thread shows progress and turns Ctrl-C into a clean cancellation."""
    if progress is None:
        progress = n >= 20000 and sys.stderr.isatty()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            builder.run()
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    t = threading.Thread(target=work, name="leann-build", daemon=True)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="building graph", unit="vec", leave=False)
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
    finally:
        if bar is not None:
            bar.close()
    if failure:
        raise failure[0]

