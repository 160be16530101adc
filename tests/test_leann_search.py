"""Pruned, vector-free indexes: two-level search with recompute, caches,
filters, tombstones and callback safety."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import clustered, exact_distances, ground_truth, queries_near, recall_at_k
from leann_store import IndexConfig, LeannIndex
from leann_store.errors import CallbackError, InvalidInputError

N, DIM = 3000, 32


@pytest.fixture(scope="module")
def data():
    x = clustered(N, DIM, seed=21)
    return x, queries_near(x, 40, seed=5)


@pytest.fixture(scope="module")
def pruned(data):
    x, _ = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, threads=1))
    index.cache_bytes = 0
    return index


def lookup(x):
    calls = []

    def embed(ids):
        calls.append(ids.copy())
        return x[ids]

    embed.calls = calls
    return embed


def test_index_keeps_no_vectors_and_is_small(pruned):
    assert not pruned.config.store_vectors and pruned.config.resolved_prune
    assert pruned.memory_bytes < N * DIM * 4 / 4  # far below the float vectors
    assert pruned.nbytes < 60 * N


def test_pruned_graph_invariants(pruned):
    cfg = pruned.config
    hub_degree = cfg.resolved_hub_degree
    assert pruned.max_degree(0) == hub_degree
    degrees = []
    for v in range(len(pruned)):
        for level in range(pruned.level(v) + 1):
            nb = pruned.neighbors(v, level)
            assert len(nb) <= hub_degree
            assert v not in nb.tolist(), "self-loop"
            assert len(set(nb.tolist())) == len(nb), "duplicate link"
            assert ((nb >= 0) & (nb < len(pruned))).all()
        degrees.append(len(pruned.neighbors(v, 0)))
    degrees = np.array(degrees)
    assert degrees.mean() < 2 * cfg.resolved_degree + 2, "pruning keeps lists short on average"
    # every node reachable from the entry point at level 0
    seen = np.zeros(len(pruned), bool)
    stack = [pruned.entry_point]
    seen[pruned.entry_point] = True
    while stack:
        for u in pruned.neighbors(stack.pop(), 0):
            if not seen[u]:
                seen[u] = True
                stack.append(int(u))
    assert seen.all()


def test_recall_and_exact_distances(pruned, data):
    x, q = data
    truth = ground_truth(x, q, 10, "l2")
    res = pruned.search(q, k=10, ef=128, embed=lookup(x), rerank_ratio=0.4)
    assert recall_at_k(res.ids, truth) >= 0.9
    expected = exact_distances(x, q, "l2")
    np.testing.assert_allclose(res.distances, np.take_along_axis(expected, res.ids, 1), rtol=1e-4, atol=1e-4)
    assert (np.diff(res.distances, axis=1) >= 0).all()
    # recomputes are a small share of the index
    assert res.stats["recomputed"].mean() < 0.2 * N
    assert (res.stats["exact"] == res.stats["recomputed"]).all()  # no cache here


def test_recompute_count_follows_rerank_ratio(pruned, data):
    x, q = data
    truth = ground_truth(x, q, 10, "l2")
    ef, recalls = 128, []
    for r in (1.0, 0.5, 0.25, 0.1, 0.01):
        res = pruned.search(q, k=10, ef=ef, embed=lookup(x), rerank_ratio=r, confidence=None)
        # without the adaptive stop: exactly the best max(k, ceil(r * ef)) of
        # the beam, whatever the walk saw
        assert (res.stats["recomputed"] == max(10, int(np.ceil(r * ef)))).all(), (r, res.stats["recomputed"])
        recalls.append(recall_at_k(res.ids, truth))
    assert recalls[0] >= recalls[-1] + 0.05, recalls
    # the walk itself is on codes only: it sees far more nodes than it recomputes
    assert (res.stats["code_evals"] > 5 * res.stats["recomputed"]).all()


def test_adaptive_stop_recomputes_fewer_and_keeps_recall(pruned, data):
    """The adaptive stop scores at most the fixed share, at least 2k, and
    keeps recall close; a higher confidence scores more; a loaded index
    stops where the original does (the calibration is saved)."""
    x, q = data
    truth = ground_truth(x, q, 10, "l2")
    fixed = pruned.search(q, k=10, embed=lookup(x), confidence=None)
    runs = {c: pruned.search(q, k=10, embed=lookup(x), confidence=c) for c in (0.6, 0.8, 0.95)}
    for res in runs.values():
        assert (res.stats["recomputed"] <= fixed.stats["recomputed"]).all()
        assert (res.stats["recomputed"] >= 20).all()
    assert runs[0.6].stats["recomputed"].sum() <= runs[0.8].stats["recomputed"].sum()
    assert runs[0.8].stats["recomputed"].sum() <= runs[0.95].stats["recomputed"].sum()
    assert runs[0.8].stats["recomputed"].mean() < fixed.stats["recomputed"].mean()
    assert recall_at_k(runs[0.95].ids, truth) >= recall_at_k(fixed.ids, truth) - 0.05
    calib = pruned._h.calibration()
    assert calib is not None and (np.diff(calib) >= 0).all()
    for bad in (0.0, 1.0, -0.1, 2, True, "x"):
        with pytest.raises(InvalidInputError):
            pruned.search(q[0], k=10, embed=lookup(x), confidence=bad)


def test_presets_and_the_configured_confidence(data):
    """Presets are configurations; an index searches at its configured
    confidence unless the search names one, and saves it."""
    from leann_store.index import PRESETS

    x, q = data
    assert IndexConfig.preset("compact").search_subspaces == 32
    assert IndexConfig.preset("balanced") == IndexConfig()
    assert IndexConfig.preset("fast", metric="l2").metric == "l2"
    assert set(PRESETS) == {"compact", "balanced", "fast"}
    with pytest.raises(InvalidInputError, match="preset"):
        IndexConfig.preset("tiny")
    for bad in (0.0, 1.0, True, "x"):
        with pytest.raises(InvalidInputError, match="search_confidence"):
            IndexConfig(search_confidence=bad)
    fixed = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, search_confidence=None))
    a = fixed.search(q, k=10, embed=lookup(x))
    b = fixed.search(q, k=10, embed=lookup(x), confidence=None)
    np.testing.assert_array_equal(a.stats["exact"], b.stats["exact"])  # rows scored (cached or not)
    c = fixed.search(q, k=10, embed=lookup(x), confidence=0.6)
    assert c.stats["exact"].sum() < a.stats["exact"].sum()


def test_adaptive_stop_does_not_depend_on_the_caches(data):
    """Where the adaptive stop ends (and what a search returns) is the same
    whether the rows come from the LRU, the hub cache or embed."""
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, hub_cache_bytes=64 * 1024))
    index.cache_bytes = 0
    cold = index.search(q, k=10, embed=lookup(x))
    index.cache_bytes = 8 << 20
    warm1 = index.search(q, k=10, embed=lookup(x))
    warm2 = index.search(q, k=10, embed=lookup(x))  # now many rows are cached
    assert warm2.stats["cache_hits"].sum() > 0
    for res in (warm1, warm2):
        np.testing.assert_array_equal(res.ids, cold.ids)
        np.testing.assert_array_equal(res.stats["exact"], cold.stats["exact"])


def test_wider_walk_same_recomputes(pruned, data):
    x, q = data
    narrow = pruned.search(q, k=10, ef=64, embed=lookup(x), rerank_ratio=0.5, confidence=None)
    wide = pruned.search(q, k=10, ef=256, embed=lookup(x), rerank_ratio=0.125, confidence=None)
    assert (narrow.stats["recomputed"] == wide.stats["recomputed"]).all()
    assert (wide.stats["code_evals"] > narrow.stats["code_evals"]).all()
    truth = ground_truth(x, q, 10, "l2")
    assert recall_at_k(wide.ids, truth) >= recall_at_k(narrow.ids, truth) - 0.02


def test_batching_and_max_recompute(pruned, data):
    x, q = data
    emb = lookup(x)
    res = pruned.search(q[0], k=10, ef=64, embed=emb, batch_size=8)
    assert all(len(ids) <= 8 for ids in emb.calls)
    assert res.stats["embed_calls"] == len(emb.calls)
    assert res.stats["recomputed"] == sum(len(ids) for ids in emb.calls)
    capped = pruned.search(q[0], k=10, ef=64, embed=lookup(x), max_recompute=12)
    assert capped.stats["exact"] <= 12 and (capped.ids >= 0).sum() == 10
    with pytest.raises(InvalidInputError, match="max_recompute"):
        pruned.search(q[0], k=10, embed=emb, max_recompute=5)
    for bad in (dict(rerank_ratio=0.0), dict(rerank_ratio=1.5), dict(batch_size=0), dict(batch_size=1.5)):
        with pytest.raises(InvalidInputError):
            pruned.search(q[0], k=10, embed=emb, **bad)


def test_lru_cache_serves_repeated_queries(data):
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0))
    index.cache_bytes = 1 << 20
    first = index.search(q[0], k=10, embed=lookup(x))
    again = index.search(q[0], k=10, embed=lookup(x))
    assert first.stats["recomputed"] > 0 and again.stats["recomputed"] == 0
    assert again.stats["cache_hits"] == first.stats["exact"]
    np.testing.assert_array_equal(first.ids, again.ids)
    np.testing.assert_allclose(first.distances, again.distances)
    index.cache_bytes = 0
    assert index.search(q[0], k=10, embed=lookup(x)).stats["cache_hits"] == 0


def test_hub_cache(data, tmp_path):
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, hub_cache_bytes=300 * (DIM * 2 + 4)))
    index.cache_bytes = 0
    assert index.hub_cache_size == 300
    res = index.search(q, k=10, ef=64, embed=lookup(x))
    assert res.stats["cache_hits"].sum() > 0
    truth = exact_distances(x, q, "l2")
    # float16 rows: distances agree to float16 precision
    np.testing.assert_allclose(res.distances, np.take_along_axis(truth, res.ids, 1), rtol=2e-3, atol=2e-2)
    path = tmp_path / "hubs.leann"
    index.save(path)
    back = LeannIndex.load(path)
    back.cache_bytes = 0
    assert back.hub_cache_size == 300
    again = back.search(q, k=10, ef=64, embed=lookup(x))
    np.testing.assert_array_equal(res.ids, again.ids)


def test_cosine_and_ip_recompute(data):
    x, q = data
    for metric in ("cosine", "ip"):
        index = LeannIndex.build(x, IndexConfig(metric=metric, M=16, seed=0))
        res = index.search(q, k=10, ef=128, embed=lookup(x), rerank_ratio=0.4)
        assert recall_at_k(res.ids, ground_truth(x, q, 10, metric)) >= 0.85
        np.testing.assert_allclose(res.distances, np.take_along_axis(exact_distances(x, q, metric), res.ids, 1),
                                   rtol=1e-4, atol=1e-4)


def test_embed_may_return_float64_and_lists(pruned, data):
    x, q = data
    a = pruned.search(q[0], k=5, embed=lambda ids: x[ids].astype(np.float64))
    b = pruned.search(q[0], k=5, embed=lambda ids: x[ids].tolist())
    np.testing.assert_array_equal(a.ids, b.ids)


# ---- callback safety ----------------------------------------------------------
class Boom(RuntimeError):
    pass


def test_embed_exception_surfaces_unchanged(pruned, data):
    x, q = data

    def bad(ids):
        raise Boom("model server down")

    with pytest.raises(Boom, match="model server down") as info:
        pruned.search(q[0], k=5, embed=bad)
    assert len(info.value.leann_ids) > 0
    assert any("embed function failed for ids" in n for n in getattr(info.value, "__notes__", []))
    # the index is still usable, results unchanged
    a = pruned.search(q[0], k=5, embed=lookup(x))
    b = pruned.search(q[0], k=5, embed=lookup(x))
    np.testing.assert_array_equal(a.ids, b.ids)


def test_embed_fails_midway(pruned, data):
    x, q = data
    count = {"n": 0}

    def flaky(ids):
        count["n"] += 1
        if count["n"] == 3:
            raise KeyError("passage missing")
        return x[ids]

    with pytest.raises(KeyError):
        pruned.search(q[1], k=5, embed=flaky, batch_size=4)
    assert (pruned.search(q[1], k=5, embed=lookup(x)).ids >= 0).all()


@pytest.mark.parametrize("make, match", [
    (lambda x, ids: x[ids][:, :-1], "shape"),
    (lambda x, ids: x[ids][:-1], "shape"),
    (lambda x, ids: x[ids].astype(np.int32), "floats"),
    (lambda x, ids: np.full((len(ids), DIM), np.nan, np.float32), "NaN"),
    (lambda x, ids: None, "floats|shape"),
    (lambda x, ids: "text", "floats"),
    (lambda x, ids: [[1.0, 2.0], [3.0]], "array|floats|shape"),
])
def test_bad_embed_output_is_a_clear_error(pruned, data, make, match):
    x, q = data
    with pytest.raises(CallbackError, match=match):
        pruned.search(q[0], k=5, embed=lambda ids: make(x, ids))
    assert (pruned.search(q[0], k=5, embed=lookup(x)).ids >= 0).all()


def test_embed_must_be_callable(pruned, data):
    _, q = data
    with pytest.raises(InvalidInputError, match="callable"):
        pruned.search(q[0], k=5, embed=42)


# ---- filters and tombstones -----------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), share=st.sampled_from([0.0005, 0.002, 0.01, 0.05, 0.2, 0.6, 1.0]),
       k=st.integers(1, 20), qi=st.integers(0, 39))
def test_filters_return_k_whenever_k_allowed_exist(pruned, data, seed, share, k, qi):
    x, q = data
    rng = np.random.default_rng(seed)
    allowed = np.flatnonzero(rng.random(N) < share)
    res = pruned.search(q[qi], k=k, ef=32, embed=lookup(x), rerank_ratio=0.1, allowed=allowed)
    got = res.ids[res.ids >= 0]
    assert len(got) == min(k, len(allowed))
    assert set(got.tolist()) <= set(allowed.tolist())
    assert len(set(got.tolist())) == len(got)
    assert np.isinf(res.distances[len(got):]).all()
    d = exact_distances(x, q[qi:qi + 1], "l2")[0]
    np.testing.assert_allclose(res.distances[:len(got)], d[got], rtol=1e-4, atol=1e-4)


def test_filtered_walk_passes_through_hidden_nodes(pruned, data):
    """A filter the walk serves (not a scan) that allows each query's 10
    nearest nodes and the far half, and hides everything between.  The walk
    starts among hidden nodes; it must pass through them to the allowed
    core and stop there.  A walk that dropped hidden nodes would end at once
    and fall back to scanning every allowed code."""
    x, q = data
    d = exact_distances(x, q, "l2")
    got, truth, evals = [], [], []
    for i in range(len(q)):
        order = np.argsort(d[i])
        allowed = np.sort(np.concatenate([order[:10], order[N // 2:]]))
        res = pruned.search(q[i], k=10, ef=10, embed=lookup(x), rerank_ratio=1.0, allowed=allowed)
        assert res.stats["hops"] > 0  # walked, not scanned
        got.append(res.ids)
        truth.append(order[:10])
        evals.append(res.stats["code_evals"])
    assert recall_at_k(np.array(got), np.array(truth)) >= 0.9
    assert np.median(evals) < N // 4  # no scan of the allowed half


def test_small_filter_is_scored_directly(pruned, data):
    x, q = data
    allowed = np.arange(0, N, 97)  # 31 ids: scanned by code, the best recomputed
    res = pruned.search(q[0], k=5, embed=lookup(x), allowed=allowed, rerank_ratio=1.0)
    d = exact_distances(x, q[:1], "l2")[0]
    expect = allowed[np.argsort(d[allowed])[:5]]
    np.testing.assert_array_equal(res.ids, expect)
    assert res.stats["hops"] == 0  # no walk


def test_filter_forms_and_errors(pruned, data):
    x, q = data
    ids = np.arange(100, 400)
    mask = np.zeros(N, bool)
    mask[ids] = True
    a = pruned.search(q[0], k=5, embed=lookup(x), allowed=ids)
    b = pruned.search(q[0], k=5, embed=lookup(x), allowed=mask)
    c = pruned.search(q[0], k=5, embed=lookup(x), allowed=set(ids.tolist()))
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.ids, c.ids)
    for bad in ([-1], [N], np.zeros(N - 1, bool), ["a"], [0.5]):
        with pytest.raises(InvalidInputError):
            pruned.search(q[0], k=5, embed=lookup(x), allowed=bad)
    empty = pruned.search(q[0], k=5, embed=lookup(x), allowed=[])
    assert (empty.ids == -1).all()


def test_tombstones_never_returned(data):
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0))
    before = index.search(q, k=10, ef=64, embed=lookup(x))
    dead = np.unique(before.ids[:, :5])
    index.delete(dead)
    assert index.deleted_count == len(dead) and index.is_deleted(int(dead[0]))
    after = index.search(q, k=10, ef=64, embed=lookup(x))
    assert not np.isin(after.ids, dead).any()
    assert (after.ids >= 0).all()
    with pytest.raises(InvalidInputError):
        index.delete([0, N])  # nothing deleted when one id is bad
    assert not index.is_deleted(0) or 0 in dead
    # with a filter, deletions still apply and k still comes back
    allowed = np.setdiff1d(np.arange(50), dead)[:30]
    index.delete(allowed[:10])
    res = index.search(q[0], k=20, embed=lookup(x), allowed=allowed)
    assert (res.ids >= 0).sum() == 20 and not np.isin(res.ids, allowed[:10]).any()


def test_delete_and_allowed_take_any_iterable_of_ints(data):
    x, _ = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0))
    index.delete(i for i in (1, 2))  # a generator
    index.delete({3, 4})
    index.delete(range(5, 7))
    index.delete(np.array([7], dtype=np.uint16))
    index.delete([])
    assert index.deleted_count == 7 and all(index.is_deleted(i) for i in range(1, 8))
    with pytest.raises(InvalidInputError, match="integers"):
        index.delete(["8"])
    with pytest.raises(InvalidInputError, match="iterable"):
        index.delete(8)
    q = x[:1]
    for allowed in ((i for i in range(50)), set(range(50)), range(50), list(range(50))):
        res = index.search(q[0], k=5, embed=lookup(x), allowed=allowed)
        assert ((res.ids >= 0) & (res.ids < 50)).all() and not np.isin(res.ids, np.arange(1, 8)).any()


def test_stored_vectors_with_filters_need_no_embed(data):
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, store_vectors=True, prune=True))
    allowed = np.arange(0, N, 3)
    res = index.search(q, k=10, ef=64, allowed=allowed)
    assert np.isin(res.ids, allowed).all()
    truth = np.array([allowed[np.argsort(exact_distances(x[allowed], q[i:i + 1], "l2")[0])[:10]]
                      for i in range(len(q))])
    assert recall_at_k(res.ids, truth) >= 0.9
    index.delete([int(res.ids[0, 0])])
    assert res.ids[0, 0] not in index.search(q[0], k=10).ids
