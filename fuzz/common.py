"""What every fuzzer here shares: atheris set up, the coverage-instrumented
extension in place of the installed one (``--python-coverage-only`` skips it),
and a scratch folder on the fastest file system there is.

A harness calls :func:`setup` before importing ``leann_store``, then
:func:`run` with its one-input function.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the repository's leann_store

NATIVE_COVERAGE = False
_target: list[Callable[[bytes], None]] = []


def _trampoline(data: bytes) -> None:
    if len(_target) == 1:
        _register()
        _target.append(_target[0])
    _target[0](data)


def setup() -> None:
    """atheris set up, then the coverage-instrumented extension in place of
    the installed one, unless ``--python-coverage-only`` (its counters reach
    libFuzzer at the first input, :func:`_register`)."""
    import atheris

    python_only = "--python-coverage-only" in sys.argv
    if python_only:
        sys.argv.remove("--python-coverage-only")
    atheris.Setup(sys.argv, _trampoline)
    if python_only:
        return
    from native_build import build, install

    global _SO
    _SO = build("coverage")
    install(_SO)


_SO = None


def _register() -> None:
    """Inside atheris.Fuzz (its libFuzzer core is loaded by then): the C
    library's counters and comparison hooks go to that libFuzzer."""
    global NATIVE_COVERAGE
    core = sys.modules.get("atheris.core_with_libfuzzer")
    if _SO is not None and core is not None:
        NATIVE_COVERAGE = bool(ctypes.CDLL(str(_SO)).leann_fuzz_register_coverage(core.__file__.encode()))
    sys.stderr.write(f"leann-fuzz: native coverage {'on' if NATIVE_COVERAGE else 'off'}\n")


def scratch() -> Path:
    """A private folder for files a harness writes, in /dev/shm when there is one."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="leann-fuzz-", dir=base))


def run(one_input: Callable[[bytes], None]) -> None:
    """Fuzzes ``one_input`` with the command line's libFuzzer arguments
    (corpus folders, ``-runs=``, ``-max_total_time=`` ...)."""
    import atheris

    _target.append(one_input)
    atheris.Fuzz()
