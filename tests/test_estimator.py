"""The normalised estimate of IP indexes, the stop that learns each query's
own error, its tail bound, the time budget and the engine's timings."""

from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import clustered, ground_truth, queries_near, recall_at_k
from leann_store import IndexConfig, LeannIndex, native
from leann_store.errors import InvalidInputError

N, DIM = 3000, 32


@pytest.fixture(scope="module")
def data():
    x = clustered(N, DIM, seed=31)
    return x, queries_near(x, 40, seed=7)


@pytest.fixture(scope="module")
def cosine(data):
    x, _ = data
    index = LeannIndex.build(x, IndexConfig(metric="cosine", M=16, seed=0, threads=1))
    index.cache_bytes = 0
    return index


def lookup(x):
    return lambda ids: x[ids]


def test_which_indexes_use_the_normalised_estimate(data, cosine):
    """cosine and ip searches (every search-space row has one norm: 1, or
    the ip metric's radius) rank by the normalised estimate; l2 and stored
    vectors keep the code distance."""
    x, _ = data
    assert cosine._h.estimator() == (native.EST_NORMALISED, 1.0)
    ip = LeannIndex.build(x, IndexConfig(metric="ip", M=16, seed=0, threads=1))
    kind, norm = ip._h.estimator()
    assert kind == native.EST_NORMALISED
    assert norm == pytest.approx(float(np.linalg.norm(x, axis=1).max()), rel=1e-5)
    for cfg in (IndexConfig(metric="l2", M=16, seed=0), IndexConfig(metric="cosine", M=16, store_vectors=True)):
        assert LeannIndex.build(x, cfg)._h.estimator() == (native.EST_CODE, 0.0)
    assert cosine._h.calibration() is not None and (np.diff(cosine._h.calibration()) >= 0).all()


def test_the_estimate_needs_what_it_reads(data, cosine):
    """An l2 index has no norm to normalise to; a norm must be finite and
    positive; an unknown kind is refused; setting one clears the
    calibration (it described the other)."""
    x, _ = data
    l2 = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0))
    with pytest.raises(InvalidInputError, match="IP metric"):
        l2._h.set_estimator(native.EST_NORMALISED, 1.0)
    other = LeannIndex.build(x, IndexConfig(metric="cosine", M=16, seed=0))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidInputError, match="norm"):
            other._h.set_estimator(native.EST_NORMALISED, bad)
    with pytest.raises(InvalidInputError, match="estimator"):
        other._h.set_estimator(5, 1.0)
    other._h.set_estimator(native.EST_CODE)
    assert other._h.calibration() is None and other._h.estimator() == (native.EST_CODE, 0.0)


def test_stop_scores_k_plus_2_first_and_keeps_its_tail_bound(data, cosine):
    """The stop scores k + 2 candidates before it judges, never more than
    k (1 + 1 / (1 - confidence)) without max_recompute (max_recompute
    replaces that bound), asks for rounds that double, and scores more at
    a higher confidence."""
    x, q = data
    truth = ground_truth(x, q, 10, "cosine")
    runs = {c: cosine.search(q, k=10, embed=lookup(x), confidence=c) for c in (0.6, 0.8, 0.95)}
    for c, res in runs.items():
        rc = res.stats["recomputed"]
        assert (rc >= 12).all() and (rc <= int(np.ceil(10 * (1 + 1 / (1 - c))))).all()
    assert runs[0.6].stats["recomputed"].sum() <= runs[0.8].stats["recomputed"].sum()
    assert runs[0.8].stats["recomputed"].sum() <= runs[0.95].stats["recomputed"].sum()
    assert recall_at_k(runs[0.95].ids, truth) >= recall_at_k(runs[0.6].ids, truth)
    lifted = cosine.search(q, k=10, embed=lookup(x), confidence=0.8, max_recompute=200)
    assert (lifted.stats["recomputed"] >= runs[0.8].stats["recomputed"]).all()
    calls = []
    cosine.search(q[0], k=10, embed=lambda ids: (calls.append(len(ids)), x[ids])[1], confidence=0.95,
                  max_recompute=200)
    assert calls[0] == 12 and all(b <= max(12, 2 * a) for a, b in zip(calls, calls[1:]))


def test_live_updates_keep_the_estimate(data):
    """add() and compact() keep the estimator; add() re-measures its
    calibration on the new rows; the grown index still finds its rows."""
    x, q = data
    index = LeannIndex.build(x[:2000], IndexConfig(metric="cosine", M=16, seed=0, threads=1))
    index.cache_bytes = 0
    before = index._h.calibration()
    index.add(x[2000:], threads=1)
    assert index._h.estimator() == (native.EST_NORMALISED, 1.0)
    assert index._h.calibration() is not None and not np.array_equal(index._h.calibration(), before)
    res = index.search(x[2500], k=1, embed=lookup(x))
    assert int(res.ids[0]) == 2500
    index.delete(np.arange(0, N, 5))
    index.compact(threads=1)
    assert index._h.estimator() == (native.EST_NORMALISED, 1.0) and index._h.calibration() is not None


def test_time_budget_returns_the_best_so_far(data, cosine):
    """A spent budget asks embed for no more rows: the first round trip
    (k scores are needed for a result) and then the best k so far, flagged;
    a generous one changes nothing; a bad one is a clear error."""
    x, q = data
    calls = []

    def slow(ids):
        calls.append(len(ids))
        time.sleep(0.02)
        return x[ids]

    full = cosine.search(q[:5], k=10, embed=lookup(x), confidence=0.95)
    assert (full.stats["embed_calls"] > 1).any() and (full.stats["stopped"] == 0).all()
    cut = cosine.search(q[:5], k=10, embed=slow, confidence=0.95, time_budget_ms=1)
    assert (cut.stats["embed_calls"] == 1).all() and (cut.stats["recomputed"] == 12).all()
    stopped = full.stats["embed_calls"] > 1
    assert (cut.stats["stopped"][stopped] == 1).all()
    assert (cut.ids >= 0).all() and all(len(set(r)) == 10 for r in cut.ids.tolist())
    same = cosine.search(q[:5], k=10, embed=lookup(x), confidence=0.95, time_budget_ms=60_000)
    np.testing.assert_array_equal(same.ids, full.ids)
    assert (same.stats["stopped"] == 0).all()
    for bad in (0, -5, float("nan"), float("inf"), True, "10"):
        with pytest.raises(InvalidInputError, match="time_budget_ms"):
            cosine.search(q[0], k=10, embed=lookup(x), time_budget_ms=bad)


def test_engine_and_fetch_timings(data, cosine):
    """stats carry the engine's own time and the time spent fetching rows,
    so a caller can tell where a query's wait went."""
    x, q = data

    def slow(ids):
        time.sleep(0.005)
        return x[ids]

    res = cosine.search(q[:3], k=10, embed=slow)
    assert (res.stats["engine_us"] > 0).all()
    assert (res.stats["fetch_us"] >= 5000 * res.stats["embed_calls"]).all()


def test_a_graph_too_small_to_calibrate_scores_its_whole_share():
    """A codec trained on a few rows codes them almost exactly and a new row
    far worse, so the stop must not judge by the first candidates' errors:
    a graph built from fewer than CALIBRATION_MIN_ROWS rows has no
    calibration and scores every candidate of its share (here: all), and
    the first insertion of that many rows calibrates it.  (Hypothesis found
    it: three equal rows and one other, where the other's own query was
    answered with an equal row at k = 1.)"""
    from leann_store.build import CALIBRATION_MIN_ROWS

    rng = np.random.default_rng(3)
    same, other = rng.normal(size=(2, 16)).astype(np.float32)
    index = LeannIndex.build(np.stack([same, same, same]), IndexConfig(metric="cosine", M=8, seed=0, threads=1))
    assert index._h.calibration() is None
    index = index.with_added(other[None])
    index.cache_bytes = 0
    res = index.search(other, k=1, embed=lookup(np.stack([same, same, same, other])))
    assert int(res.ids[0]) == 3 and res.stats["recomputed"] == 4
    grown = index.with_added(clustered(CALIBRATION_MIN_ROWS, 16, seed=5))
    assert grown._h.calibration() is not None
    small = index.with_added(clustered(CALIBRATION_MIN_ROWS - 1, 16, seed=5))
    assert small._h.calibration() is None
