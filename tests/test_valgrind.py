"""valgrind memcheck over one build / add / search / delete / compact /
save / load (and a damaged load) cycle of the C library
(tests/valgrind_cycle.py): no memory error and no definite leak in a stack
that passes through csrc/.  Python's and numpy's own reports (the
interpreter is not built for valgrind) and cffi's one-off module set-up are
not the library's and are not counted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = {p.name for p in (ROOT / "csrc").glob("*.c")}


def ours(error: ET.Element) -> bool:
    """A frame in csrc/ (by its source file, or, without debug information,
    in the extension outside cffi's generated glue)."""
    for f in error.iter("frame"):
        if (f.findtext("file") or "") in CSRC:
            return True
        fn, obj = f.findtext("fn") or "", f.findtext("obj") or ""
        if "leann_store/_native" in obj and not fn.startswith(("_cffi_", "PyInit_", "_my_Py")):
            return True
    return False


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_memcheck_cycle_is_clean(tmp_path):
    xml = tmp_path / "memcheck.xml"
    env = dict(os.environ, PYTHONMALLOC="malloc", OMP_NUM_THREADS="1")
    proc = subprocess.run(["valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite",
                           "--errors-for-leak-kinds=definite", "--num-callers=40", "--xml=yes",
                           f"--xml-file={xml}", sys.executable, str(ROOT / "tests" / "valgrind_cycle.py")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "cycle done" in proc.stderr, proc.stderr[-3000:]
    errors = ET.parse(xml).getroot().findall("error")
    assert errors is not None
    found = [e for e in errors if ours(e)]
    report = "\n\n".join(
        (e.findtext("kind") or "") + ": " + (e.findtext("what") or e.findtext("xwhat/text") or "") + "\n  "
        + "\n  ".join(f"{f.findtext('fn')} {f.findtext('file') or f.findtext('obj')}:{f.findtext('line')}"
                      for f in e.iter("frame")) for e in found[:5])
    assert not found, report
