"""Each README snippet runs with exactly the extra it names, in its own folder.

The README's Python snippets sit in sections that each say how to install
what they need (``pip install -e ".[langchain]"``, ``".[llama-index]"``, or
no extra).  A snippet runs in a fresh virtual environment that holds exactly
the distributions that install would bring: ``leann-store``'s requirements
and that extra's, read from this checkout's ``pyproject.toml``, and their
requirements, transitively, as the installed distributions declare them
(markers and nested extras evaluated).  Nothing else is importable there, so
a snippet that imports something its extra does not bring fails here.

Cost: instead of a pip install per venv (minutes with torch), each venv's
site-packages is a tree of symlinks to the installed files of exactly those
distributions (their RECORD), made in a few seconds: the same files pip
would put there, from the same wheels CI installed once for the test extra.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from typing import Any
from pathlib import Path

import pytest

packaging_requirements = pytest.importorskip("packaging.requirements")
from packaging.markers import default_environment  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PROJECT = "leann-store"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
INSTALL = re.compile(r'pip install -e (?:"\.\[([\w,-]+)\]"|\.(?=[\s`]))')


def snippets() -> list[tuple[str, str, list[str]]]:
    """(section title, code, extras its section installs), in README order."""
    text = README.read_text(encoding="utf-8")
    out = []
    for section in re.split(r"^(?=## )", text, flags=re.M):
        blocks = BLOCK.findall(section)
        if not blocks:
            continue
        title = section.splitlines()[0].lstrip("# ").strip()
        installs = INSTALL.findall(BLOCK.sub("", section))
        assert len(installs) == 1, f"README section {title!r} must name one install command, found {installs}"
        extras = [e for e in installs[0].split(",") if e]
        out.extend((title, code, extras) for code in blocks)
    return out


def _requirements(strings: list[str], extras: set[str]) -> list[Any]:
    env = default_environment()
    out = []
    for s in strings:
        req = packaging_requirements.Requirement(s)
        if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in extras | {""}):
            out.append(req)
    return out


def _dist(name: str) -> metadata.Distribution:
    """The installed distribution, from site-packages only: run from the
    checkout, ``sys.path`` also holds the build's own ``*.egg-info``, which
    lists source files rather than what the install put in place."""
    paths = list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    for dist in metadata.distributions(path=paths):
        if canonicalize_name(dist.metadata["Name"] or "") == canonicalize_name(name):
            return dist
    raise metadata.PackageNotFoundError(name)


def closure(extras: list[str]) -> dict[str, set[str]]:
    """Distribution name -> extras asked of it, for ``leann-store[extras]``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    want: dict[str, set[str]] = {canonicalize_name(PROJECT): set()}
    todo = [*_requirements(project["dependencies"], set())]
    seen_extras: set[str] = set()
    pending = list(extras)
    while pending:  # the project's own extras, self-references expanded
        e = pending.pop()
        if e in seen_extras:
            continue
        seen_extras.add(e)
        for req in _requirements(optional[e], set()):
            if canonicalize_name(req.name) == canonicalize_name(PROJECT):
                pending.extend(req.extras)
            else:
                todo.append(req)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        asked = set(req.extras)
        if name in want and asked <= want[name]:
            continue
        want.setdefault(name, set()).update(asked)
        dist = _dist(name)  # installed by the test extra
        todo.extend(_requirements(dist.requires or [], want[name]))
    return want


def make_venv(where: Path, dists: dict[str, set[str]]) -> Path:
    """A fresh venv whose site-packages links exactly ``dists``' installed files."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    for name in dists:
        dist = _dist(name)
        for f in dist.files or []:
            rel = Path(str(f))
            if rel.parts[0] == ".." or "__pycache__" in rel.parts:
                continue  # scripts, data outside site-packages; compiled caches
            src = Path(dist.locate_file(f))
            dest = site / rel
            if dest.exists() or not src.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(src)
    return python


def _env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "LEANN_STORE_CACHE": str(home / "cache")}


SNIPPETS = snippets()


def test_every_snippet_section_names_its_install() -> None:
    assert {title for title, _, _ in SNIPPETS} >= {"LangChain", "LlamaIndex", "Without a framework: `LeannStore`"}
    assert dict((t, e) for t, _, e in SNIPPETS)["Without a framework: `LeannStore`"] == []


@pytest.mark.parametrize("title,code,extras", SNIPPETS, ids=[t.split(":")[0] for t, _, _ in SNIPPETS])
def test_snippet_runs_with_exactly_its_extra(title: str, code: str, extras: list[str], tmp_path: Path) -> None:
    try:
        dists = closure(extras)
    except metadata.PackageNotFoundError as exc:
        pytest.skip(f"{exc} is not installed here (the test extra installs every README extra)")
    python = make_venv(tmp_path / "venv", dists)
    work = tmp_path / "work"
    work.mkdir()
    (work / "snippet.py").write_text(code, encoding="utf-8")
    if "torch" not in dists:  # the venv really is exact: what the extra does not bring is absent
        probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True,
                               env=_env(tmp_path), cwd=work)
        assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    res = subprocess.run([str(python), "snippet.py"], capture_output=True, text=True, env=_env(tmp_path),
                         cwd=work, timeout=600)
    assert res.returncode == 0, f"README {title!r} with .[{','.join(extras)}]:\n{res.stderr[-4000:]}"
    assert res.stdout.strip(), "the snippet printed nothing"
