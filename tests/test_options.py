"""SearchOptions (one checked type for every search surface) and the one
distance -> score rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from leann_store import InvalidInputError, LeannIndex, LeannStore
from leann_store.options import FROM_CONFIG, SearchOptions
from leann_store.scores import relevance, similarity


@pytest.mark.parametrize("name, bad", [
    ("ef", 0), ("ef", True), ("ef", 1.5), ("ef", 10**9),
    ("rerank_ratio", 0), ("rerank_ratio", 1.01), ("rerank_ratio", float("nan")), ("rerank_ratio", "0.5"),
    ("batch_size", 0), ("batch_size", False), ("max_recompute", 0), ("max_recompute", -3),
    ("confidence", 0), ("confidence", 1), ("confidence", True), ("confidence", float("inf")),
])
def test_bad_values_name_the_option(name, bad):
    with pytest.raises(InvalidInputError, match=name):
        SearchOptions(**{name: bad})


def test_defaults_and_replace():
    o = SearchOptions()
    assert o.ef is None and o.max_recompute is None and o.confidence is FROM_CONFIG
    assert o.resolved_confidence(0.8) == 0.8
    assert o.replace(confidence=None).resolved_confidence(0.8) is None
    assert SearchOptions.of(o) is o
    assert SearchOptions.of(None, ef=np.int64(7)).ef == 7 and isinstance(SearchOptions.of(None, ef=np.int64(7)).ef, int)
    with pytest.raises(InvalidInputError, match="unknown search option 'efs'.*ef, rerank_ratio"):
        o.replace(efs=3)
    with pytest.raises(InvalidInputError, match="SearchOptions"):
        SearchOptions.of({"ef": 3})  # type: ignore[arg-type]
    assert SearchOptions.pick({"ef": 3, "similarity_top_k": 2}) == {"ef": 3}


def _corpus(n=600, d=24, seed=3):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_index_options_and_keywords_agree():
    x = _corpus()
    index = LeannIndex.build(x)
    fetch = lambda ids: x[ids]  # noqa: E731
    a = index.search(x[5], k=5, embed=fetch, options=SearchOptions(ef=128, confidence=None, max_recompute=40))
    b = index.search(x[5], k=5, embed=fetch, ef=128, confidence=None, max_recompute=40)
    assert a.ids.tolist() == b.ids.tolist() and a.stats["exact"] == b.stats["exact"] <= 40
    # a keyword overrides the options object's field
    c = index.search(x[5], k=5, embed=fetch, options=SearchOptions(max_recompute=40), max_recompute=20)
    assert c.stats["exact"] <= 20
    with pytest.raises(InvalidInputError, match="max_recompute"):
        index.search(x[5], k=5, embed=fetch, max_recompute=3)


def test_store_takes_the_same_options():
    x = _corpus(40, 8)
    def embed(texts):
        return np.stack([x[int(t)] if t.isdigit() else np.ones(8, np.float32) for t in texts])

    with LeannStore.temporary(embed=embed) as store:
        store.add([str(i) for i in range(40)], embeddings=x)
        hits = store.search(x[3], k=3, options=SearchOptions(ef=16))
        assert hits[0].id == store.search(x[3], k=3, ef=16)[0].id
        assert math.isclose(hits[0].score, 1 - hits[0].distance)
        with pytest.raises(InvalidInputError, match="unknown search option 'ef_search'"):
            store.search(x[3], k=3, ef_search=16)


@given(st.sampled_from(["cosine", "l2", "ip"]), st.floats(-1e6, 1e6, allow_nan=False))
def test_relevance_is_in_unit_interval_and_monotone(metric, d):
    if metric == "l2":
        d = abs(d)
    r = relevance(metric, d)
    assert 0.0 <= r <= 1.0
    assert relevance(metric, d + 1.0) <= r  # farther is never more relevant
    assert similarity(metric, d + 1.0) <= similarity(metric, d)


def test_unknown_metric():
    with pytest.raises(InvalidInputError, match="metric"):
        similarity("hamming", 1.0)


def test_quality_names_a_measured_confidence():
    from leann_store.options import QUALITY
    assert SearchOptions(quality="fast").resolved_confidence(0.85) == QUALITY["fast"] < QUALITY["exact"]
    assert SearchOptions().resolved_confidence(0.85) == 0.85
    with pytest.raises(InvalidInputError, match="quality must be one of"):
        SearchOptions(quality="best")
    with pytest.raises(InvalidInputError, match="not both"):
        SearchOptions(quality="fast", confidence=0.9)


def _graph_store(n=3000, d=32):
    x = np.random.default_rng(11).normal(size=(n, d)).astype(np.float32)
    calls = {"n": 0}

    def embed(texts):
        calls["n"] += 1
        return np.stack([x[int(t)] if t.isdigit() else np.ones(d, np.float32) for t in texts])

    from leann_store import StoreConfig
    store = LeannStore.temporary(embed=embed, config=StoreConfig.from_options(graph_rows=1000))
    store.add([str(i) for i in range(n)], embeddings=x)
    assert store.stats()["search"] == "graph"
    return store, x, embed


def test_quality_trades_recomputes_through_the_store():
    store, x, _ = _graph_store()
    with store:
        q = x[:40] + 0.3 * np.random.default_rng(2).normal(size=(40, x.shape[1])).astype(np.float32)
        def scored(quality):  # re-embedded or taken from the caches: exact scores either way
            return sum(h.stats["recomputed"] + h.stats["cache_hits"]
                       for h in (store.search(v, k=10, quality=quality) for v in q))

        assert scored("fast") < scored("exact")


def test_time_budget_returns_the_best_so_far_and_says_so():
    import time as _time
    store, x, slow = _graph_store()

    def sleepy(texts):
        _time.sleep(0.02)
        return slow(texts)

    with store:
        q = x[5] + 0.5
        hits = store.search(q, k=10, embed=sleepy, time_budget_ms=1, confidence=None)
        assert len(hits) == 10 and hits.stats["stopped"] == 1
        assert hits.stats["embed_calls"] <= 2  # the first round trip (k scored), then it stops
        full = store.search(q, k=10, embed=sleepy, confidence=None)
        assert full.stats.get("stopped", 0) == 0 and full.stats["recomputed"] > hits.stats["recomputed"]
