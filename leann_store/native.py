"""The only module that touches cffi: numpy <-> C, status codes -> exceptions.

Everything here is a thin, checked wrapper around ``csrc/leann.h``.  Arrays
handed to C must already be validated (dtype, contiguity, shape) by the
caller; this module asserts the layout it relies on and never copies large
arrays silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import errors

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "leann_store's native extension is missing: install the package with "
        "`pip install .` (or `pip install -e .`) so that csrc/ gets compiled"
    ) from exc

KERNELS = {"scalar": lib.LEANN_KERNEL_SCALAR, "ssse3": lib.LEANN_KERNEL_SSSE3,
           "avx2": lib.LEANN_KERNEL_AVX2, "avx512": lib.LEANN_KERNEL_AVX512,
           "neon": lib.LEANN_KERNEL_NEON}
METRIC_L2 = lib.LEANN_METRIC_L2
METRIC_IP = lib.LEANN_METRIC_IP
BUILDER_FLASH = lib.LEANN_BUILDER_FLASH
BUILDER_EXACT = lib.LEANN_BUILDER_EXACT


class BuildCancelled(errors.LeannError):
    """Raised when a running build was cancelled (e.g. Ctrl-C)."""


_STATUS = {
    lib.LEANN_ERR_INVALID: errors.InvalidInputError,
    lib.LEANN_ERR_NOMEM: errors.OutOfMemoryError,
    lib.LEANN_ERR_CORRUPT: errors.CorruptIndexError,
    lib.LEANN_ERR_CALLBACK: errors.CallbackError,
    lib.LEANN_ERR_CANCELLED: BuildCancelled,
    lib.LEANN_ERR_INTERNAL: errors.NativeError,
}


def last_error() -> str:
    return ffi.string(lib.leann_last_error()).decode("utf-8", "replace")


def check(status: int) -> None:
    """Raise the exception that matches a C status code (no-op for LEANN_OK)."""
    if status == lib.LEANN_OK:
        return
    msg = last_error() or f"native call failed with status {status}"
    if status == lib.LEANN_ERR_IO:
        raise OSError(msg)
    raise _STATUS.get(status, errors.NativeError)(msg)


def _ptr(ctype: str, arr: np.ndarray) -> Any:
    if not arr.flags.c_contiguous:  # callers validate; this guards the C boundary
        raise errors.InvalidInputError("internal: array handed to C is not C-contiguous")
    return ffi.from_buffer(ctype, arr)


# ---- CPU -------------------------------------------------------------------
def cpu_count() -> int:
    return int(lib.leann_cpu_count())


def available_kernels() -> list[str]:
    """Names of the code-lookup kernels this CPU and build can run."""
    return [name for name, k in KERNELS.items() if lib.leann_kernel_available(k)]


def best_kernel() -> str:
    best = lib.leann_kernel_best()
    return next(name for name, k in KERNELS.items() if k == best)


def _kernel_id(kernel: str) -> int:
    if kernel == "auto":
        return lib.LEANN_KERNEL_AUTO
    if kernel not in KERNELS:
        raise errors.InvalidInputError(f"unknown kernel {kernel!r}; choose from {sorted(KERNELS)}")
    return KERNELS[kernel]


def scan_codes(codes: np.ndarray, table: np.ndarray, accumulate: int = 16,
               kernel: str = "auto") -> np.ndarray:
    """Score codes (n, code_bytes) against a canonical table (msub, 16) with one kernel."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    table = np.ascontiguousarray(table, dtype=np.uint8)
    if codes.ndim != 2 or table.ndim != 2 or table.shape != (codes.shape[1] * 2, 16):
        raise errors.InvalidInputError("codes must be (n, code_bytes) and table (2*code_bytes, 16)")
    out = np.empty(codes.shape[0], dtype=np.uint16)
    check(lib.leann_scan_codes(_ptr("uint8_t[]", codes), codes.shape[0], codes.shape[1],
                               _ptr("uint8_t[]", table), accumulate, _kernel_id(kernel),
                               _ptr("uint16_t[]", out)))
    return out


def float_distance(a: np.ndarray, b: np.ndarray, metric: int = METRIC_L2,
                   kernel: str = "auto") -> float:
    """One squared-L2 or negative-inner-product distance with one kernel."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    if a.shape != b.shape or a.ndim != 1:
        raise errors.InvalidInputError("a and b must be 1-D of the same length")
    out = ffi.new("float *")
    check(lib.leann_float_distance(metric, _kernel_id(kernel), _ptr("float[]", a),
                                   _ptr("float[]", b), a.shape[0], out))
    return float(out[0])


# ---- codec -----------------------------------------------------------------
class NativeCodec:
    """Owns a ``leann_codec``: encoding and distance tables in projected space."""

    def __init__(self, centroids: np.ndarray, scale: float, accumulate: int) -> None:
        centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        if centroids.ndim != 3 or centroids.shape[1] != 16:
            raise errors.InvalidInputError("centroids must have shape (msub, 16, dsub)")
        msub, _, dsub = centroids.shape
        out = ffi.new("leann_codec **")
        check(lib.leann_codec_new(msub * dsub, msub, _ptr("float[]", centroids), float(scale),
                                  int(accumulate), out))
        self._ptr = ffi.gc(out[0], lib.leann_codec_free)
        self.msub, self.dsub, self.dp = msub, dsub, msub * dsub
        self.code_bytes = int(lib.leann_codec_code_bytes(self._ptr))

    @property
    def handle(self) -> Any:
        return self._ptr

    def encode(self, proj: np.ndarray, threads: int = 0) -> np.ndarray:
        proj = np.ascontiguousarray(proj, dtype=np.float32)
        if proj.ndim != 2 or proj.shape[1] != self.dp:
            raise errors.DimensionMismatchError(
                f"projected vectors must have shape (n, {self.dp}), got {proj.shape}")
        codes = np.empty((proj.shape[0], self.code_bytes), dtype=np.uint8)
        check(lib.leann_codec_encode(self._ptr, _ptr("float[]", proj), proj.shape[0],
                                     _ptr("uint8_t[]", codes), threads))
        return codes

    def adt(self, proj1: np.ndarray) -> np.ndarray:
        proj1 = np.ascontiguousarray(proj1, dtype=np.float32)
        if proj1.shape != (self.dp,):
            raise errors.DimensionMismatchError(f"expected a vector of {self.dp} values")
        table = np.empty((self.msub, 16), dtype=np.uint8)
        check(lib.leann_codec_adt(self._ptr, _ptr("float[]", proj1), _ptr("uint8_t[]", table)))
        return table

    def sdt(self) -> np.ndarray:
        out = np.empty((self.msub, 16, 16), dtype=np.uint8)
        check(lib.leann_codec_sdt(self._ptr, _ptr("uint8_t[]", out)))
        return out


# ---- build -----------------------------------------------------------------
@dataclass(frozen=True)
class BuildParams:
    n: int
    dim: int
    M: int
    ef_construction: int
    builder: int
    search_metric: int
    store_vectors: bool
    threads: int
    seed: int


class NativeBuilder:
    """One graph construction.  ``run`` blocks with the GIL released."""

    def __init__(self, params: BuildParams, codec: NativeCodec | None) -> None:
        p = ffi.new("leann_build_params *")
        p.n, p.dim, p.M = params.n, params.dim, params.M
        p.ef_construction, p.builder = params.ef_construction, params.builder
        p.search_metric, p.store_vectors = params.search_metric, int(params.store_vectors)
        p.threads, p.seed = params.threads, params.seed & 0xFFFFFFFFFFFFFFFF
        out = ffi.new("leann_builder **")
        check(lib.leann_builder_new(p, codec.handle if codec is not None else ffi.NULL, out))
        self._ptr = out[0]
        self._codec = codec  # the C builder borrows it
        self._proj: np.ndarray | None = None
        self._n, self._dim = params.n, params.dim

    def vectors_view(self) -> np.ndarray | None:
        """Writable numpy view of the C-owned float storage (valid until finish/free)."""
        ptr = lib.leann_builder_vectors(self._ptr)
        if ptr == ffi.NULL:
            return None
        buf = ffi.buffer(ptr, self._n * self._dim * 4)
        return np.frombuffer(buf, dtype=np.float32).reshape(self._n, self._dim)

    def alloc_vectors(self) -> None:
        check(lib.leann_builder_alloc_vectors(self._ptr))

    def set_projected(self, proj: np.ndarray) -> None:
        self._proj = proj  # keep alive while C borrows it
        check(lib.leann_builder_set_projected(self._ptr, _ptr("float[]", proj)))

    def run(self) -> None:
        status = lib.leann_builder_run(self._ptr)
        self._proj = None
        check(status)

    def progress(self) -> int:
        return int(lib.leann_builder_progress(self._ptr))

    def stats(self) -> dict[str, int]:
        ev, hops = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        lib.leann_builder_stats(self._ptr, ev, hops)
        return {"distance_evals": int(ev[0]), "hops": int(hops[0])}

    def cancel(self) -> None:
        lib.leann_builder_cancel(self._ptr)

    def finish(self) -> "NativeIndex":
        out = ffi.new("leann_index **")
        check(lib.leann_builder_finish(self._ptr, out))
        self._ptr = ffi.NULL  # consumed
        return NativeIndex(ffi.gc(out[0], lib.leann_index_free))

    def free(self) -> None:
        if self._ptr != ffi.NULL:
            lib.leann_builder_free(self._ptr)
            self._ptr = ffi.NULL

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            self.free()
        except Exception:
            pass


# ---- index -----------------------------------------------------------------
class NativeIndex:
    """Owns a ``leann_index``."""

    def __init__(self, ptr: Any) -> None:
        self._ptr = ptr

    @property
    def size(self) -> int:
        return int(lib.leann_index_size(self._ptr))

    @property
    def dim(self) -> int:
        return int(lib.leann_index_dim(self._ptr))

    @property
    def max_level(self) -> int:
        return int(lib.leann_index_max_level(self._ptr))

    @property
    def entry_point(self) -> int:
        return int(lib.leann_index_entry_point(self._ptr))

    @property
    def memory(self) -> int:
        return int(lib.leann_index_memory(self._ptr))

    def max_degree(self, level: int) -> int:
        return int(lib.leann_index_max_degree(self._ptr, level))

    def level(self, node: int) -> int:
        r = int(lib.leann_index_level(self._ptr, node))
        if r < 0:
            check(-r)
        return r

    def neighbors(self, node: int, level: int = 0) -> np.ndarray:
        cap = self.max_degree(level)
        out = np.empty(max(cap, 1), dtype=np.uint32)
        r = int(lib.leann_index_neighbors(self._ptr, node, level, _ptr("uint32_t[]", out), cap))
        if r < 0:
            check(-r)
        return out[:r].astype(np.int64)

    def search(self, queries: np.ndarray, k: int, ef: int,
               threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nq = queries.shape[0]
        ids = np.empty((nq, k), dtype=np.int64)
        dist = np.empty((nq, k), dtype=np.float32)
        stats = ffi.new("leann_search_stats[]", max(nq, 1))
        check(lib.leann_index_search(self._ptr, _ptr("float[]", queries), nq, k, ef, threads,
                                     _ptr("int64_t[]", ids), _ptr("float[]", dist), stats))
        st = np.frombuffer(ffi.buffer(stats, max(nq, 1) * ffi.sizeof("leann_search_stats")),
                           dtype=np.uint64).reshape(max(nq, 1), 2)[:nq].copy()
        return ids, dist, st
