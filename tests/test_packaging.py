"""The source distribution builds on its own: everything under csrc/ and
leann_store/ that git tracks goes into it (pip builds the extension from it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tracked() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_sdist_carries_every_source_and_header(tmp_path):
    tracked = _tracked()
    src = tmp_path / "src"
    for name in tracked:  # the committed file set, without build leftovers
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    # through the PEP 517 backend in an isolated environment, as pip builds
    # an sdist: the build requirements (setuptools >= 77 for the licence
    # expression) come from pyproject.toml, not from this environment
    res = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (tarball,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(tarball) as tf:
        shipped = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    needed = [n for n in tracked if n.startswith(("csrc/", "leann_store/"))]
    assert any(n.endswith(".h") for n in needed)
    assert not [n for n in needed if n not in shipped]
    assert "LICENSE" in shipped


def test_package_type_checks(tmp_path):
    """The package ships py.typed: its annotations must hold ([tool.mypy] in
    pyproject.toml)."""
    pytest.importorskip("mypy", reason="the test extra installs mypy")
    res = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
