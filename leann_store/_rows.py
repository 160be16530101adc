"""Row machinery that the build pipeline (``build.py``) and the index
(``index.py``) share: the metric map, the ``threads`` argument and row
ranges cut into shares on threads.

* :class:`_MetricMap` is the one place where a user metric (``"l2"``,
  ``"cosine"``, ``"ip"``) is mapped onto the squared-L2 build space and
  back (what each metric returns: see :mod:`leann_store.index`).
* :func:`_threads` turns a ``threads`` argument into the native layer's
  count (0: every core).
* :func:`_in_parallel` runs contiguous shares of a row range on threads.

>>> import numpy as np
>>> x = np.array([[3.0, 4.0], [0.0, 1.0]], dtype=np.float32)
>>> _MetricMap.fit("cosine", x).vectors(x).tolist()
[[0.6000000238418579, 0.800000011920929], [0.0, 1.0]]
>>> m = _MetricMap.fit("ip", x)
>>> m.build_dim, m.radius, m.vectors(x)[:, 2].tolist()
(3, 5.0, [0.0, 4.898979663848877])

Imports ``errors`` and ``native`` only.
"""

from __future__ import annotations

import contextlib
import mmap
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from . import _checks as checks
from . import errors, native

_CHUNK = 4096  # rows per block of the chunked transforms (a few MB at 768-d)


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
            for s in range(0, x.shape[0], _CHUNK):
                radius = max(radius, float(np.sqrt(_sq_norms(x[s:s + _CHUNK]).max())))
                release_rows(x, s, s + _CHUNK)
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



def release_rows(x: np.ndarray, lo: int, hi: int) -> None:
    """Let go of the pages of rows [lo, hi) of a memory-mapped ``x`` once a
    build has read them (a no-op for arrays in memory): the file's pages
    stay in the page cache, but not in this process's resident memory, so
    building from a file larger than memory holds one chunk of it at a time."""
    mm = getattr(x, "_mmap", None)
    if mm is None or not x.flags.c_contiguous or hi <= lo or not hasattr(mm, "madvise"):
        return
    try:
        base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError, BufferError):
        return
    row = x.strides[0]
    start = x.ctypes.data - base + lo * row
    end = x.ctypes.data - base + hi * row
    page = mmap.PAGESIZE
    start = (start + page - 1) // page * page  # whole pages inside the rows only
    end = end // page * page
    if end > start:
        with contextlib.suppress(OSError, ValueError):
            mm.madvise(mmap.MADV_DONTNEED, start, end - start)


def _threads(threads: int | None) -> int:
    """None -> 0 (every core); else a validated positive int."""
    if threads is None:
        return 0
    return checks.integer(threads, "threads", 1, native.MAX_THREADS)


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

