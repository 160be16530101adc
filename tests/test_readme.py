"""The README's framework-free quick start runs as written (the LangChain and
LlamaIndex blocks have their own tests beside their adapters)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_readme_store_quick_start_runs(tmp_path, monkeypatch, capsys):
    blocks = [b for b in BLOCK.findall(README.read_text(encoding="utf-8"))
              if "from leann_store import" in b and "langchain" not in b and "llama_index" not in b]
    assert blocks, "README.md lost its LeannStore quick start"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})  # noqa: S102
    out = capsys.readouterr().out
    assert out.startswith("apple ") and "'fruit'" in out
    assert (tmp_path / "my-store" / "docstore.sqlite").exists()
