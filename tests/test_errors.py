"""Bad input raises the right leann_store exception, and the index survives it."""

from __future__ import annotations

import numpy as np
import pytest

import leann_store
from leann_store import (DimensionMismatchError, IndexConfig, InvalidInputError, LeannError,
                         LeannIndex)

from conftest import clustered

N, DIM = 200, 16


@pytest.fixture(scope="module")
def x():
    return clustered(N, DIM, seed=11)


@pytest.fixture(scope="module", params=["exact", "flash"])
def index(request, x):
    return LeannIndex.build(x, IndexConfig(metric="l2", builder=request.param, M=8, seed=0, store_vectors=True))


@pytest.fixture(scope="module")
def cos_index(x):
    return LeannIndex.build(x, IndexConfig(metric="cosine", builder="exact", M=8, seed=0, store_vectors=True))


def assert_still_works(index: LeannIndex, x: np.ndarray) -> None:
    res = index.search(x[5], k=3)
    assert res.ids.shape == (3,) and (res.ids >= 0).all()
    if index.metric == "l2":
        assert res.ids[0] == 5 or res.distances[0] <= 1e-6


def test_exception_hierarchy():
    for exc in (leann_store.InvalidInputError, leann_store.DimensionMismatchError,
                leann_store.OutOfMemoryError, leann_store.CorruptIndexError,
                leann_store.CallbackError, leann_store.NativeError):
        assert issubclass(exc, LeannError)
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(DimensionMismatchError, InvalidInputError)
    assert issubclass(leann_store.OutOfMemoryError, MemoryError)


# ---- build input --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.uint8, bool, object])
def test_build_wrong_dtype(x, dtype):
    bad = x.astype(dtype)
    with pytest.raises(InvalidInputError, match="float32"):
        LeannIndex.build(bad, IndexConfig(metric="l2"))


def test_build_error_is_value_error_and_leann_error(x):
    for exc in (ValueError, LeannError):
        with pytest.raises(exc):
            LeannIndex.build(x.astype(np.float64))


@pytest.mark.parametrize("view", ["strided_cols", "transpose", "fortran", "strided_rows"])
def test_build_not_c_contiguous(view):
    base = clustered(64, 32, seed=1)
    bad = {"strided_cols": base[:, ::2], "transpose": base.T, "fortran": np.asfortranarray(base),
           "strided_rows": base[::2]}[view]
    assert not bad.flags.c_contiguous
    with pytest.raises(InvalidInputError, match="C-contiguous"):
        LeannIndex.build(bad, IndexConfig(metric="l2"))


@pytest.mark.parametrize("builder", ["exact", "flash"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_build_non_finite_mentions_row(x, builder, value, metric):
    bad = x.copy()
    bad[37, 3] = value
    with pytest.raises(InvalidInputError, match=r"row 37\b"):
        LeannIndex.build(bad, IndexConfig(metric=metric, builder=builder))


@pytest.mark.parametrize("value", [1e16, -1e16])
@pytest.mark.parametrize("row", [3, 4096 + 37])  # in the first block and in a later one
def test_build_overflowing_component_mentions_row(value, row):
    bad = clustered(4200, 8, seed=2)
    bad[row, 5] = value
    with pytest.raises(InvalidInputError, match=rf"row {row} has a component beyond"):
        LeannIndex.build(bad, IndexConfig(metric="l2"))


def test_build_non_finite_in_a_later_block_mentions_row():
    bad = clustered(4200, 8, seed=2)
    bad[4100, 0] = np.nan
    with pytest.raises(InvalidInputError, match=r"row 4100 contains NaN"):
        LeannIndex.build(bad, IndexConfig(metric="l2"))


@pytest.mark.parametrize("shape", [(16,), (4, 4, 4), (1, 2, 3, 4), ()])
def test_build_wrong_ndim(shape):
    with pytest.raises(InvalidInputError):
        LeannIndex.build(np.ones(shape, dtype=np.float32))


@pytest.mark.parametrize("shape", [(0, 8), (5, 0), (0, 0)])
def test_build_empty(shape):
    with pytest.raises(InvalidInputError, match="empty"):
        LeannIndex.build(np.zeros(shape, dtype=np.float32))


def test_build_bad_sequences():
    with pytest.raises(InvalidInputError):
        LeannIndex.build([[1.0, 2.0], [3.0]])  # ragged
    with pytest.raises(InvalidInputError):
        LeannIndex.build([["a", "b"], ["c", "d"]])
    with pytest.raises(InvalidInputError):
        LeannIndex.build([])
    # a well-formed nested list is accepted (converted to float32)
    index = LeannIndex.build([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], IndexConfig(metric="l2", M=2))
    assert len(index) == 3


@pytest.mark.parametrize("builder", ["exact", "flash"])
def test_cosine_zero_vector_in_build(x, builder):
    bad = x.copy()
    bad[12] = 0.0
    with pytest.raises(InvalidInputError, match="zero"):
        LeannIndex.build(bad, IndexConfig(metric="cosine", builder=builder))
    # l2 and ip accept zero vectors
    for metric in ("l2", "ip"):
        idx = LeannIndex.build(bad, IndexConfig(metric=metric, builder=builder, M=8))
        assert len(idx) == N


def test_config_must_be_index_config(x):
    for cfg in ({"metric": "l2"}, "l2", 3, object()):
        with pytest.raises(InvalidInputError, match="IndexConfig"):
            LeannIndex.build(x, cfg)


# ---- configuration -----------------------------------------------------------------------
BAD_CONFIGS = [
    dict(M=1), dict(M=0), dict(M=-4), dict(M=100000), dict(M=257), dict(M=8.0), dict(M=True), dict(M="8"),
    dict(ef_construction=0), dict(ef_construction=-1), dict(ef_construction=100001),
    dict(ef_construction=2.5),
    dict(metric="hamming"), dict(metric="L2"), dict(metric=None), dict(metric=""),
    dict(builder="x"), dict(builder="hnsw"), dict(builder=None),
    dict(num_subspaces=12), dict(num_subspaces=0), dict(num_subspaces=128), dict(num_subspaces=4),
    dict(pca_dim=24), dict(pca_dim=24, num_subspaces=16), dict(pca_dim=8, num_subspaces=16),
    dict(pca_dim=0), dict(pca_dim=-16), dict(pca_dim=16.0), dict(pca_dim=8192),
    dict(pca_variance=0.0), dict(pca_variance=1.5), dict(pca_variance=-0.1), dict(pca_variance="0.5"),
    dict(pca_variance=float("nan")),
    dict(accumulate=4), dict(accumulate=32), dict(accumulate=0),
    dict(threads=0), dict(threads=-1), dict(threads=2.0), dict(threads=100000),
    dict(seed=-1), dict(seed=2**63), dict(seed=1.5),
    dict(codec_sample=0), dict(codec_sample=15),
    dict(store_vectors="yes"), dict(store_vectors=1),
]


@pytest.mark.parametrize("kwargs", BAD_CONFIGS, ids=[repr(c) for c in BAD_CONFIGS])
def test_bad_config_values(kwargs):
    with pytest.raises(InvalidInputError):
        IndexConfig(**kwargs)


def test_vector_free_index_needs_embed(x):
    index = LeannIndex.build(x[:200], IndexConfig(metric="l2", M=8, seed=0))
    with pytest.raises(InvalidInputError, match="embed"):
        index.search(x[0], k=3)


def test_good_config_edges(x):
    for kwargs in (dict(M=2), dict(M=256), dict(ef_construction=1), dict(seed=2**63 - 1),
                   dict(threads=1), dict(threads=None), dict(num_subspaces=8), dict(num_subspaces=64),
                   dict(pca_dim=32, num_subspaces=16), dict(pca_variance=1.0), dict(accumulate=8),
                   dict(codec_sample=16), dict(M=np.int64(8))):
        IndexConfig(**kwargs)  # no error
    small = LeannIndex.build(x[:40], IndexConfig(M=2, ef_construction=1, seed=2**63 - 1, codec_sample=16))
    assert len(small) == 40


# ---- search input ------------------------------------------------------------------------
def test_query_dimension_mismatch(index, x):
    for bad in (x[0, :8].copy(), np.ones(DIM + 1, np.float32), np.ones((3, DIM - 1), np.float32)):
        with pytest.raises(DimensionMismatchError, match=str(DIM)):
            index.search(bad, k=3)
    assert_still_works(index, x)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, object])
def test_query_wrong_dtype(index, x, dtype):
    with pytest.raises(InvalidInputError, match="float32"):
        index.search(x[0].astype(dtype), k=3)
    with pytest.raises(InvalidInputError, match="float32"):
        index.search(x[:4].astype(dtype), k=3)
    assert_still_works(index, x)


def test_query_not_c_contiguous(index, x):
    wide = np.ascontiguousarray(np.repeat(x[:4], 2, axis=1))  # (4, 2*DIM)
    for bad in (wide[:, ::2], np.asfortranarray(x[:4]), x[:8:2]):
        assert not bad.flags.c_contiguous
        with pytest.raises(InvalidInputError, match="C-contiguous"):
            index.search(bad, k=3)
    with pytest.raises(InvalidInputError):
        index.search(wide[0, ::2], k=3)  # 1-D strided view
    assert_still_works(index, x)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_query_non_finite_mentions_row(index, x, value):
    q = x[:6].copy()
    q[4, 1] = value
    with pytest.raises(InvalidInputError, match=r"row 4\b"):
        index.search(q, k=3)
    with pytest.raises(InvalidInputError, match=r"row 0\b"):
        index.search(q[4], k=3)
    assert_still_works(index, x)


@pytest.mark.parametrize("shape", [(), (1, 2, DIM), (0, DIM), (3, 0), (0,)])
def test_query_bad_shape(index, x, shape):
    with pytest.raises(InvalidInputError):
        index.search(np.ones(shape, np.float32), k=3)
    assert_still_works(index, x)


@pytest.mark.parametrize("k", [0, -1, N + 1, 10**9, 2.5, "3", None, True, 3.0])
def test_bad_k(index, x, k):
    with pytest.raises(InvalidInputError, match="k"):
        index.search(x[0], k=k)
    assert_still_works(index, x)


@pytest.mark.parametrize("ef", [0, -5, 1_000_001, 2.5, "64", False])
def test_bad_ef(index, x, ef):
    with pytest.raises(InvalidInputError, match="ef"):
        index.search(x[0], k=3, ef=ef)
    assert_still_works(index, x)


def test_numpy_integer_k_and_ef_accepted(index, x):
    res = index.search(x[0], k=np.int64(4), ef=np.int32(16))
    assert res.ids.shape == (4,)
    assert index.search(x[0], k=4, ef=None).ids.shape == (4,)  # None: the default width
    assert index.search(x[0], k=N).ids.shape == (N,)  # k == n is allowed


def test_cosine_zero_query(cos_index, x):
    with pytest.raises(InvalidInputError, match="zero"):
        cos_index.search(np.zeros(DIM, np.float32), k=3)
    q = x[:3].copy()
    q[1] = 0.0
    with pytest.raises(InvalidInputError, match="zero"):
        cos_index.search(q, k=3)
    assert_still_works(cos_index, x)


def test_many_errors_then_search(index, x):
    """A burst of failures of every kind leaves no state behind."""
    bad_calls = [
        lambda: index.search(x[0].astype(np.float64)),
        lambda: index.search(np.ones(3, np.float32)),
        lambda: index.search(x[0], k=0),
        lambda: index.search(x[0], ef=0),
        lambda: index.search(np.full(DIM, np.nan, np.float32)),
        lambda: index.neighbors(N, 0),
        lambda: index.level(N),
    ]
    for _ in range(3):
        for call in bad_calls:
            with pytest.raises(LeannError):
                call()
    before = index.search(x[:10], k=5)
    after = index.search(x[:10], k=5)
    np.testing.assert_array_equal(before.ids, after.ids)
    assert_still_works(index, x)


# ---- regressions: gaps found and fixed ----------------------------------------------
@pytest.mark.parametrize("query", [["a"] * DIM, [[1.0, 2.0], [3.0]]], ids=["strings", "ragged"])
def test_query_bad_sequence_is_leann_error(index, query):
    with pytest.raises(InvalidInputError):
        index.search(query, k=3)


@pytest.mark.parametrize("threads", ["x", -5, 2.5])
def test_search_bad_threads(index, x, threads):
    with pytest.raises(InvalidInputError):
        index.search(x[:4], k=3, threads=threads)


def test_float_num_subspaces_rejected_by_config(x):
    with pytest.raises(InvalidInputError):
        cfg = IndexConfig(num_subspaces=16.0)
        LeannIndex.build(x, cfg)


@pytest.mark.parametrize("call", ["neighbors_negative", "level_huge", "neighbors_huge_level"])
def test_introspection_out_of_range_is_leann_error(index, call):
    with pytest.raises(InvalidInputError):
        if call == "neighbors_negative":
            index.neighbors(-1, 0)
        elif call == "level_huge":
            index.level(2**40)
        else:
            index.neighbors(0, 2**40)


def test_huge_finite_values_flash(x):
    big = (x * np.float32(1e30)).astype(np.float32)
    assert np.isfinite(big).all()
    try:
        LeannIndex.build(big, IndexConfig(metric="l2", builder="flash"))
    except LeannError:
        pass  # a clear input error is an acceptable outcome


def test_build_subspaces_default_follows_dimension_and_pruning():
    cfg = IndexConfig(store_vectors=True)  # no pruning
    assert cfg.num_subspaces is None
    assert cfg.build_subspaces(384) == 32 and cfg.build_subspaces(512) == 32
    assert cfg.build_subspaces(513) == 64 and cfg.build_subspaces(768) == 64
    assert IndexConfig(num_subspaces=16).build_subspaces(768) == 16
    assert IndexConfig(pca_dim=128, store_vectors=True).build_subspaces(384) == 32
    # many rows crowd the 16-byte codes' neighbourhoods: the finer ones
    assert cfg.build_subspaces(384, 99_999) == 32 and cfg.build_subspaces(384, 100_000) == 64
    # a pruned build picks its edges by the build codes: the finer ones
    assert IndexConfig().build_subspaces(384) == 64
    assert IndexConfig(store_vectors=True, prune=True).build_subspaces(384) == 64
    assert IndexConfig(prune=False).build_subspaces(384) == 32
    with pytest.raises(InvalidInputError, match="multiple of 64"):
        IndexConfig(pca_dim=96)
    IndexConfig(pca_dim=96, num_subspaces=32)  # explicit: no error


def test_default_build_codes_by_dimension(clustered_data):
    small, wide = clustered_data(300, 64), clustered_data(300, 600)
    cfg = IndexConfig(metric="l2", M=8, seed=0, store_vectors=True)
    assert LeannIndex.build(small, cfg).codec.num_subspaces == 32
    assert LeannIndex.build(wide, cfg).codec.num_subspaces == 64


def test_limits_come_from_c():
    """Every limit Python checks is read from leann.h, and the C side
    enforces the same bound."""
    from leann_store import native

    assert (native.MAX_EF, native.MAX_BATCH, native.MAX_M, native.MAX_DEGREE) == (1_000_000, 65536, 256, 255)
    assert native.VALID_SUBSPACES == (8, 16, 32, 64, 80, 88, 96, 112, 128)
    with pytest.raises(InvalidInputError, match=str(native.MAX_M)):
        IndexConfig(M=native.MAX_M + 1)
    with pytest.raises(InvalidInputError, match=str(native.MAX_DEGREE)):
        IndexConfig(hub_degree=native.MAX_DEGREE + 1)
    with pytest.raises(InvalidInputError):
        IndexConfig(num_subspaces=80)  # search codes only
    IndexConfig(M=native.MAX_M, search_subspaces=128)


def test_calibration_is_validated_in_c():
    """A calibration must have the C-defined count of finite, non-decreasing
    quantiles; clearing it turns the adaptive stop off."""
    from leann_store import native

    data = clustered(600, 16, seed=3)
    index = LeannIndex.build(data, IndexConfig(metric="l2", M=8, seed=0))
    h, levels = index._h, len(native.CALIB_LEVELS)
    good = h.calibration()
    assert good is not None and len(good) == levels
    for bad in (good[:-1], np.full(levels, np.nan), good[::-1] - np.arange(levels)):
        with pytest.raises(InvalidInputError):
            h.set_calibration(bad)
    np.testing.assert_array_equal(h.calibration(), good)  # untouched
    h.set_calibration(None)
    assert h.calibration() is None
    fixed = index.search(data[:5], k=5, embed=lambda ids: data[ids], rerank_ratio=0.1)
    assert (fixed.stats["exact"] == 103).all()  # the whole share: no stop without a calibration
