"""The C library under AddressSanitizer + UndefinedBehaviorSanitizer, in CI.

An instrumented build of the extension (fuzz/native_build.py, cached under
build/) replaces the installed one in a child interpreter that runs the
tests that drive the C code hardest per second: file loading and damaged
files, the error paths, graph building and search, recompute, threads, the
codecs.  Any sanitizer report fails the test.  The whole suite runs the same
way by hand (about 12 minutes on 2 cores):
``LEANN_SANITIZE_ALL=1 python -m pytest tests/test_sanitizers.py -s``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: LEANN_SANITIZE_ALL=1: every test but those that build instrumented copies of their own
WHOLE = ["tests", "--deselect", "tests/test_sanitizers.py", "--deselect", "tests/test_valgrind.py",
         "--deselect", "tests/test_fuzz.py"]
SUBSET = ["tests/test_index_file.py", "tests/test_errors.py", "tests/test_graph.py", "tests/test_recompute.py",
          "tests/test_threads.py", "tests/test_codec.py", "tests/test_leann_search.py", "tests/test_fuzz_findings.py"]

RUNNER = """
import sys
sys.path.insert(0, {fuzz!r})
from native_build import install
install(sys.argv[1])
import leann_store._native as n
assert n.__file__ == sys.argv[1], n.__file__
import pytest
sys.exit(pytest.main(sys.argv[2:]))
"""


def _runtime(name: str) -> str | None:
    cc = shutil.which("gcc")
    if cc is None:
        return None
    path = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def sanitizer_env() -> dict[str, str]:
    """The environment a sanitized extension needs inside an uninstrumented
    Python: both runtimes preloaded; leaks are left to valgrind
    (tests/test_valgrind.py), every UBSan report is fatal."""
    asan, ubsan = _runtime("libasan.so"), _runtime("libubsan.so")
    if not (asan and ubsan):
        pytest.skip("gcc with libasan and libubsan is needed")
    env = dict(os.environ)
    env["LD_PRELOAD"] = f"{asan} {ubsan}"
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:exitcode=86"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=87"
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def test_c_tests_under_asan_and_ubsan():
    env = sanitizer_env()
    sys.path.insert(0, str(ROOT / "fuzz"))
    try:
        from native_build import build
    finally:
        sys.path.pop(0)
    so = build("sanitize")
    whole = os.environ.get("LEANN_SANITIZE_ALL") == "1"
    proc = subprocess.run([sys.executable, "-c", RUNNER.format(fuzz=str(ROOT / "fuzz")), str(so),
                           *(WHOLE if whole else SUBSET), "-q", "-x", "-p", "no:cacheprovider", "-s",
                           "-W", "ignore::pytest.PytestUnraisableExceptionWarning"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600 if whole else 900)
    out = proc.stdout + proc.stderr
    tail = out[-6000:]
    assert "ERROR: AddressSanitizer" not in out, tail
    assert "runtime error:" not in out, tail
    assert proc.returncode == 0, tail
    assert " passed" in out, tail
    print(next(line for line in reversed(proc.stdout.splitlines()) if " passed" in line))  # the count (-s)
