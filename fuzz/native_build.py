"""Builds a variant of the extension ``leann_store._native`` in a folder of
its own, leaving the installed one alone, and loads it in its place.

Two variants: ``"coverage"`` (GCC's trace-pc and trace-cmp instrumentation
plus ``fuzz/sancov.c``, for the fuzzers) and ``"sanitize"`` (AddressSanitizer
and UndefinedBehaviorSanitizer, for ``tests/test_sanitizers.py``).  A build is
cached under ``build/ext-<variant>-<hash of the sources and flags>`` in the
repository (about a minute on 2 cores the first time).

Usage, before anything imports ``leann_store``::

    from native_build import build, install
    install(build("coverage"))
    import leann_store   # now runs on the instrumented library
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import runpy
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_ENV = {"coverage": "LEANN_FUZZ_COVERAGE", "sanitize": "LEANN_SANITIZE"}


def _digest(variant: str) -> str:
    h = hashlib.sha256(variant.encode())
    files = sorted((ROOT / "csrc").iterdir()) + [ROOT / "fuzz" / "sancov.c", ROOT / "leann_store" / "_build_native.py"]
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build(variant: str, out_root: str | os.PathLike[str] | None = None) -> Path:
    """Path of the built extension (``.so``) for ``variant``, building it if
    the cache has none for the current sources."""
    if variant not in _ENV:
        raise ValueError(f"unknown variant {variant!r}: one of {sorted(_ENV)}")
    out_root = Path(out_root) if out_root is not None else ROOT / "build"
    out = out_root / f"ext-{variant}-{_digest(variant)}"
    found = sorted(out.glob("leann_store/_native*.so"))
    if found:
        return found[0]
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ROOT / "csrc", tmp / "csrc")
    (tmp / "fuzz").mkdir()
    shutil.copy(ROOT / "fuzz" / "sancov.c", tmp / "fuzz" / "sancov.c")
    saved = os.environ.get(_ENV[variant])
    os.environ[_ENV[variant]] = "1"
    try:
        builder = runpy.run_path(str(ROOT / "leann_store" / "_build_native.py"))["ffibuilder"]
        builder.compile(tmpdir=str(tmp))
    finally:
        if saved is None:
            del os.environ[_ENV[variant]]
        else:
            os.environ[_ENV[variant]] = saved
    os.replace(tmp, out) if not out.exists() else shutil.rmtree(tmp, ignore_errors=True)
    return sorted(out.glob("leann_store/_native*.so"))[0]


def install(so_path: str | os.PathLike[str]) -> None:
    """Makes ``import leann_store`` use the extension at ``so_path``; call it
    before anything imports ``leann_store``."""
    if "leann_store._native" in sys.modules:
        raise RuntimeError("leann_store._native is already loaded")
    loader = importlib.machinery.ExtensionFileLoader("leann_store._native", str(so_path))
    spec = importlib.util.spec_from_file_location("leann_store._native", str(so_path), loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules["leann_store._native"] = module


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "coverage"))
