"""cffi builder for ``leann_store._native`` (out-of-line API mode).

The declarations come from ``csrc/leann.h`` itself (between its CDEF markers),
so the header is the single source of truth for the C API.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = ["common.c", "flash.c", "distance.c", "graph.c", "build.c", "search.c", "prune.c", "cache.c",
           "format.c", "index_io.c", "update.c"]


def _cdef() -> str:
    text = (CSRC / "leann.h").read_text()
    body = text.split("/* CDEF-BEGIN", 1)[1].split("*/", 1)[1]
    body = body.split("/* CDEF-END */", 1)[0]
    return "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("#"))


# GCC and Clang flags for every target (the tests cross-compile with them too).
# No -march=native: SIMD kernels carry per-function target attributes and are
# chosen at run time, so one wheel serves every CPU of its architecture.
# -ffp-contract=off: Clang (macOS, the usual Arm compiler) fuses a * b + c
# into one rounding by default and GCC does not; without it the same source
# would encode, say, a tie between two centroids differently by compiler.
# The kernels' explicit FMA intrinsics are unaffected.
BASE_ARGS = ["-std=c11", "-O3", "-pthread", "-fno-strict-aliasing", "-ffp-contract=off", "-Wall", "-Wextra",
             "-Wno-unused-parameter"]


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        # pthreads, per-function target attributes and __builtin_cpu_supports:
        # say so here rather than in a page of MSVC errors
        raise RuntimeError("leann-store's C library builds with GCC or Clang on Linux and macOS; "
                           "on Windows, install it under WSL")
    args = list(BASE_ARGS)
    if os.environ.get("LEANN_SANITIZE"):
        args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    if os.environ.get("LEANN_FUZZ_COVERAGE"):
        # GCC has no libFuzzer: it reports every basic block to
        # __sanitizer_cov_trace_pc (fuzz/sancov.c maps it onto counters that
        # atheris's libFuzzer reads) and every comparison to libFuzzer's own
        # __sanitizer_cov_trace_cmp* hooks (fuzz/README.md)
        args += ["-fsanitize-coverage=trace-pc,trace-cmp", "-O1", "-g"]
    if platform.machine().lower() in ("aarch64", "arm64"):
        args.append("-march=armv8-a")  # baseline: NEON is part of AArch64
    return args


def _sources() -> list[str]:
    extra = [str(Path("fuzz") / "sancov.c")] if os.environ.get("LEANN_FUZZ_COVERAGE") else []
    return [str(Path("csrc") / s) for s in SOURCES] + extra


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "leann_store._native",
    '#include "leann.h"',
    sources=_sources(),
    include_dirs=["csrc"],
    extra_compile_args=_compile_args(),
    extra_link_args=["-pthread"] + (["-fsanitize=address,undefined"] if os.environ.get("LEANN_SANITIZE") else [])
    + (["-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign"]
       if os.environ.get("LEANN_FUZZ_COVERAGE") else []),
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
