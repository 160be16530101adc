"""The build pipeline behind :meth:`LeannIndex.build
<leann_store.LeannIndex.build>`, in the order it runs:

1. codecs: the metric map fitted on the vectors, a sample of
   ``codec_sample`` rows (read through :class:`_TrainingRows`, never
   copied), one PCA for both codecs, the build codec (``"flash"``) and the
   search codec, the search codes' bias and the adaptive stop's
   calibration; the training buffers are freed before the graph allocates;
2. the search codes of every row, from a pass of their own unless the
   build codec's projection holds the search codec's (then the build's feed
   writes them, :func:`_encoding_feed`);
3. the native construction (C, GIL released) in a worker thread, in chunks
   of ``_BUILD_CHUNK`` nodes fed their projections (:class:`_Projector`)
   from this thread, with a progress bar and Ctrl-C cancellation
   (:func:`_run_with_progress`);
4. :func:`finish_build`: LEANN pruning, the search codes and calibration
   into the index, packing, the hub cache;
5. the stored vectors, last (``store_vectors`` with ``"flash"``).

Arrows: this module imports ``config``, ``_rows``, ``codec``, ``native`` and
``errors``, never ``index``: :func:`build_index` is handed the class to
instantiate (``LeannIndex``), and ``index.py`` imports this module.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Protocol, TypeVar

import numpy as np
from numpy.random import default_rng

from . import errors, native
from ._rows import _CHUNK, _in_parallel, _MetricMap, _threads, release_rows
from .codec import (Codec, code_distance_bias, code_error_quantiles, fit_pca, normalised_error_quantiles,
                    search_codec, train_codec)
from .config import IndexConfig

#: rows a calibration of the adaptive stop is measured on, at least (a
#: build's rows, or an insertion's).  A codec trained on a handful of rows
#: codes them almost exactly and the rows that come next far worse: a stop
#: that trusts the first few candidates' errors then misses a row scored
#: last (a 4-row graph of three equal rows and one other answered the
#: other's own query with an equal row).  A smaller graph scores its whole
#: share (``rerank_ratio``), every row of a graph this small.
CALIBRATION_MIN_ROWS = 256

_BUILD_CHUNK = 8192  # nodes per flash build step (their projections exist together)
_BUILD_KMEANS_SAMPLE = 4096  # k-means rows of a build-only codec (faiss's cap: 256 per centroid)
#: the search codec's least PCA variance when it ranks by the normalised
#: estimate (IP search spaces, vector-free): the estimate corrects the
#: reconstruction's length, so more kept dimensions pay (devcorpus, 300
#: queries a set, confidence 0.8: recall@10 0.916 / 0.895 at 21.4 / 21.9
#: recomputes with 0.8, 0.924 / 0.901 at 20.8 / 21.3 with 0.9; docs/internals.md)
NORMALISED_PCA_VARIANCE = 0.9


class _NewIndex(Protocol):
    """What :func:`build_index` needs of the index it makes."""

    build_stats: dict[str, int]

    def _finish_build(self, x: np.ndarray, scodec: Codec, ncodec: native.NativeCodec,
                      codes: np.ndarray, calib: np.ndarray | None = None,
                      estimator: tuple[int, float] | None = None) -> None: ...


_Index = TypeVar("_Index", bound=_NewIndex)


def build_index(cls: Callable[[native.NativeIndex, IndexConfig, _MetricMap, Codec | None], _Index],
                x: np.ndarray, cfg: IndexConfig, progress: bool | None) -> _Index:
    """Build ``cls`` (:class:`~leann_store.LeannIndex`) over ``x``, a checked
    float32 matrix, as ``cfg`` says; the steps are the module's.  ``cls``
    is called as ``cls(handle, cfg, metric_map, build_codec)`` once the
    graph exists, then finished with its ``_finish_build`` (which calls
    :func:`finish_build`).  :meth:`LeannIndex.build
    <leann_store.LeannIndex.build>` checks the input and runs this with
    numpy's BLAS on one thread.

    >>> import numpy as np
    >>> from leann_store import IndexConfig, LeannIndex
    >>> x = np.random.default_rng(2).normal(size=(600, 16)).astype(np.float32)
    >>> index = build_index(LeannIndex, x, IndexConfig(metric="l2", store_vectors=True), progress=False)
    >>> len(index), index.search_codec is not None, int(index.search(x[5], k=1).ids[0])
    (600, True, 5)
    """
    n = x.shape[0]
    mmap = _MetricMap.fit(cfg.metric, x)
    flash = cfg.builder == "flash"
    msub = cfg.build_subspaces(x.shape[1], n) if flash else 0
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
        build_only = {} if msub == ssub and cfg.search_bits == 4 else {"kmeans_sample": _BUILD_KMEANS_SAMPLE}
        codec = train_codec(sample, num_subspaces=msub, pca_dim=cfg.pca_dim,
                            pca_variance=cfg.pca_variance, sample=cfg.codec_sample, seed=cfg.seed,
                            accumulate=cfg.accumulate, pca=pca, **build_only)
    # IP search spaces (every row one norm) rank by the normalised estimate
    # (native.EST_NORMALISED), which gains from a wider projection
    normalised = not cfg.store_vectors and mmap.search_metric == native.METRIC_IP
    svar = max(cfg.pca_variance, NORMALISED_PCA_VARIANCE) if normalised and cfg.pca_dim is None else cfg.pca_variance
    if codec is not None and codec.num_subspaces == ssub and cfg.search_bits == 4 and svar == cfg.pca_variance:
        scodec = codec
    else:
        scodec = train_codec(sample, num_subspaces=ssub, pca_variance=svar,
                             sample=cfg.codec_sample, seed=cfg.seed, pca=pca, bits=cfg.search_bits)
    ncodec = search_codec(scodec, code_distance_bias(scodec, sample, seed=cfg.seed))
    # the adaptive stop's bound: the code error where searches meet it
    # (only vector-free searches recompute, so only they need it)
    # (IP search spaces, where every row has one norm: the normalised
    # estimate, see native.EST_NORMALISED; l2: the code distance)
    estimator = None
    if cfg.store_vectors or n < CALIBRATION_MIN_ROWS:
        calib = None
    elif normalised:
        estimator = (native.EST_NORMALISED, 1.0 if cfg.metric == "cosine" else mmap.radius)
        calib = normalised_error_quantiles(scodec.as_stored(), estimator[1], sample, native.CALIB_LEVELS, n,
                                           seed=cfg.seed)
    else:
        calib = code_error_quantiles(scodec, ncodec.bias, sample, native.CALIB_LEVELS, n, seed=cfg.seed)
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
    index._finish_build(x, scodec, ncodec, codes, calib, estimator)
    del codes  # the index holds its own copy
    if flash and cfg.store_vectors:
        # the float storage comes last: it never coexists with the
        # build's neighbour code blocks or the unpacked graph
        native.release_free_memory()
        handle.alloc_vectors(workers)
        _fill(handle.vectors_view(), x, mmap, workers=workers)
    return index


def finish_build(handle: native.NativeIndex, cfg: IndexConfig, mmap: _MetricMap, build_codec: Codec | None,
                 x: np.ndarray, ncodec: native.NativeCodec, codes: np.ndarray,
                 calib: np.ndarray | None = None, estimator: tuple[int, float] | None = None) -> None:
    """LEANN pruning, search codes, compaction and the hub cache of a new
    graph (``handle``): pruning picks the kept links by the build codes when
    the index still holds them (``build_codec``), else by ``codes``; the
    index copies ``codes`` (``ncodec``'s search codes of every row),
    ``estimator`` (kind and norm of the candidates' distance estimate;
    None: the code distance) and ``calib`` (the adaptive stop's quantiles
    of that estimate's error), then packs."""
    n = x.shape[0]
    if cfg.resolved_prune:
        hub_degree = cfg.resolved_hub_degree
        if build_codec is not None:  # the finer build codes, still in the index
            handle.prune(build_codec.native, None, cfg.hub_fraction, hub_degree, cfg.resolved_degree,
                         _threads(cfg.threads))
        else:
            handle.prune(ncodec, codes, cfg.hub_fraction, hub_degree, cfg.resolved_degree, _threads(cfg.threads))
    handle.set_codes(ncodec, codes)
    if estimator is not None:
        handle.set_estimator(*estimator)
    if calib is not None:
        handle.set_calibration(calib)
    handle.pack()
    if cfg.hub_cache_bytes:
        count = min(n, cfg.hub_cache_bytes // (mmap.build_dim * 2 + 4))
        if count:
            ids = np.sort(handle.hub_candidates(count))
            handle.set_hub_cache(ids, mmap.vectors(x[ids.astype(np.int64)]))


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
                release_rows(self.x, c, d)

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
            release_rows(x, s, e)

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
