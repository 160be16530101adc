"""A bounded run of every fuzzer in fuzz/ (about a minute and a half in all);
the long runs are by hand (fuzz/README.md).  A crash, an uncaught exception,
a hang (-timeout) or an allocation past -rss_limit_mb fails the test, with
the input saved under the test's temporary folder and printed in base64."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")


def fuzz(tmp_path: Path, harness: str, seconds: int, *extra: str) -> str:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "fuzz" / harness), str(corpus), f"-max_total_time={seconds}",
                           "-timeout=20", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/", "-print_final_stats=1",
                           *extra], cwd=tmp_path, capture_output=True, text=True, timeout=seconds + 240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "Done " in out and "stat::number_of_executed_units" in out, out[-3000:]
    return out


def executions(out: str) -> int:
    return int(out.split("stat::number_of_executed_units:")[1].split()[0])


def test_index_loader(tmp_path):
    out = fuzz(tmp_path, "fuzz_index.py", 30, "-max_len=131072")
    assert "native coverage on" in out  # the C library's blocks guide it
    assert executions(out) > 1000


def test_filter_compiler(tmp_path):
    assert executions(fuzz(tmp_path, "fuzz_filters.py", 20)) > 1000


def test_document_readers(tmp_path):
    assert executions(fuzz(tmp_path, "fuzz_sources.py", 15)) > 500


def test_hostile_docstore(tmp_path):
    assert executions(fuzz(tmp_path, "fuzz_docstore.py", 25)) > 50
