"""Flash codec training (numpy) and the C codec: determinism, shapes, tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import leann_store
from leann_store import InvalidInputError, train_codec
from leann_store.codec import Codec, choose_pca_dim

from conftest import clustered


def unpack(codes: np.ndarray) -> np.ndarray:
    out = np.empty((codes.shape[0], codes.shape[1] * 2), dtype=np.int64)
    out[:, 0::2] = codes & 15
    out[:, 1::2] = codes >> 4
    return out


def nearest_centroids(codec: Codec, proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, msub) float64 squared distances to every centroid -> (argmin ids, dists)."""
    m, _, dsub = codec.centroids.shape
    p = proj.astype(np.float64).reshape(len(proj), m, 1, dsub)
    d = ((p - codec.centroids.astype(np.float64)[None]) ** 2).sum(-1)  # (n, m, 16)
    return d.argmin(-1), d


@pytest.fixture(scope="module")
def data():
    return clustered(1500, 64, seed=3)


@pytest.fixture(scope="module")
def codec16(data):
    return train_codec(data, num_subspaces=16, seed=0)


# ---- determinism -------------------------------------------------------------
@pytest.mark.parametrize("accumulate", [8, 16])
def test_same_seed_same_codec(data, accumulate):
    a = train_codec(data, num_subspaces=16, seed=7, accumulate=accumulate)
    b = train_codec(data, num_subspaces=16, seed=7, accumulate=accumulate)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.components, b.components)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.scale == b.scale
    assert a.accumulate == b.accumulate == accumulate
    np.testing.assert_array_equal(a.encode(data), b.encode(data))
    np.testing.assert_array_equal(a.sdt(), b.sdt())
    np.testing.assert_array_equal(a.adt(data[0]), b.adt(data[0]))


def test_different_seeds_run_and_may_differ(data):
    codecs = [train_codec(data, num_subspaces=16, seed=s) for s in range(4)]
    for c in codecs:
        assert c.pca_dim == codecs[0].pca_dim
        assert c.encode(data[:10]).shape == (10, 8)
    # k-means seeding comes from the seed: not every seed can give the same centroids
    assert not all(np.array_equal(c.centroids, codecs[0].centroids) for c in codecs[1:])


def test_encode_threads_do_not_change_codes(data, codec16):
    np.testing.assert_array_equal(codec16.encode(data, threads=1), codec16.encode(data, threads=2))
    np.testing.assert_array_equal(codec16.encode(data, threads=1), codec16.encode(data, threads=0))


# ---- shapes and pca_dim ---------------------------------------------------------
@pytest.mark.parametrize("num_subspaces", [8, 16, 32, 64])
def test_code_shape(data, num_subspaces):
    c = train_codec(data, num_subspaces=num_subspaces, seed=0)
    codes = c.encode(data)
    assert codes.dtype == np.uint8
    assert codes.shape == (len(data), num_subspaces // 2)
    assert c.code_bytes == num_subspaces // 2
    assert c.num_subspaces == num_subspaces
    assert c.centroids.shape == (num_subspaces, 16, c.pca_dim // num_subspaces)
    assert c.components.shape == (c.pca_dim, data.shape[1])
    assert c.mean.shape == (data.shape[1],)
    assert c.dim == data.shape[1]
    assert c.mean.dtype == c.components.dtype == c.centroids.dtype == np.float32
    assert c.scale > 0 and np.isfinite(c.scale)
    assert c.sdt().shape == (num_subspaces, 16, 16)
    assert c.adt(data[0]).shape == (num_subspaces, 16)


@pytest.mark.parametrize("num_subspaces,pca_dim", [(8, 8), (8, 24), (16, 32), (16, 64), (32, 32), (16, 80)])
def test_pca_dim_respected(data, num_subspaces, pca_dim):
    c = train_codec(data, num_subspaces=num_subspaces, pca_dim=pca_dim, seed=0)
    assert c.pca_dim == pca_dim
    assert c.project(data[:5]).shape == (5, pca_dim)
    assert c.centroids.shape[2] == pca_dim // num_subspaces


@pytest.mark.parametrize("num_subspaces,pca_dim", [(16, 24), (16, 8), (32, 48), (8, 12), (16, 0), (16, -16)])
def test_pca_dim_not_multiple_rejected(data, num_subspaces, pca_dim):
    with pytest.raises(InvalidInputError):
        train_codec(data, num_subspaces=num_subspaces, pca_dim=pca_dim)


@pytest.mark.parametrize("num_subspaces", [8, 16, 32, 64])
@pytest.mark.parametrize("variance", [0.3, 0.8, 0.95, 1.0])
def test_auto_pca_dim_range(data, num_subspaces, variance):
    c = train_codec(data, num_subspaces=num_subspaces, pca_variance=variance, seed=0, iterations=3)
    m = num_subspaces
    assert c.pca_dim % m == 0
    assert m <= c.pca_dim <= 4 * m
    assert 0.0 < c.explained_variance <= 1.0 + 1e-9


def test_choose_pca_dim_rule():
    eig = np.array([10.0, 5, 3, 1, 0.5, 0.25, 0.25] + [0.0] * 57)
    # 80% of 20 = 16 -> 3 components (10+5+3 = 18) -> rounded up to 8, within [8, 32]
    assert choose_pca_dim(eig, 8, 0.8) == 8
    assert choose_pca_dim(np.ones(200), 8, 1.0) == 32  # clipped to 4m
    assert choose_pca_dim(np.ones(200), 16, 0.5) == 64  # 100 -> clipped to 4m = 64
    assert choose_pca_dim(np.ones(40), 16, 0.5) == 32  # 20 -> 32
    assert choose_pca_dim(np.zeros(10), 8, 0.8) == 8  # degenerate variance


def test_subspace_variance_balanced(data):
    """Greedy balancing spreads variance over subspaces far better than cutting
    the PCA components into contiguous groups in eigenvalue order."""
    m = 16
    c = train_codec(data, num_subspaces=m, pca_dim=64, seed=0)
    var = c.project(data).astype(np.float64).var(0)
    balanced = var.reshape(m, -1).sum(1)
    contiguous = np.sort(var)[::-1].reshape(m, -1).sum(1)
    ratio_bal = balanced.max() / balanced.min()
    ratio_cont = contiguous.max() / contiguous.min()
    assert ratio_bal < ratio_cont
    assert ratio_bal < 0.5 * ratio_cont  # measured: ~2.2 vs ~300 on this data


def test_components_orthonormal(codec16):
    comp = codec16.components.astype(np.float64)
    np.testing.assert_allclose(comp @ comp.T, np.eye(codec16.pca_dim), atol=1e-4)


def test_project_matches_formula(data, codec16):
    expected = (data.astype(np.float64) - codec16.mean) @ codec16.components.T.astype(np.float64)
    np.testing.assert_allclose(codec16.project(data), expected, rtol=1e-4, atol=1e-4)
    # a 1-D vector is one row
    np.testing.assert_allclose(codec16.project(data[3]), codec16.project(data[3:4]), rtol=1e-6)


def test_project_into_equals_project_and_centres_in_place(data, codec16):
    block = data[:300].copy()
    out = np.full((300, codec16.pca_dim), np.nan, dtype=np.float32)
    got = codec16.project_into(block, out)
    assert got is out
    np.testing.assert_allclose(out, codec16.project(data[:300]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(block, data[:300] - codec16.mean, rtol=1e-6, atol=1e-6)


def test_project_into_rejects_wrong_blocks(data, codec16):
    out = np.empty((10, codec16.pca_dim), dtype=np.float32)
    with pytest.raises(leann_store.DimensionMismatchError):
        codec16.project_into(data[:10, :32].copy(), out)
    with pytest.raises(leann_store.DimensionMismatchError):
        codec16.project_into(data[:10].astype(np.float64), out)


# ---- encoding and tables ---------------------------------------------------------------
def _assert_nearest(codec: Codec, x: np.ndarray) -> None:
    proj = codec.project(x)
    got = unpack(codec.encode(x))
    ids, d = nearest_centroids(codec, proj)
    mismatch = got != ids
    if mismatch.any():
        # only float32-vs-float64 near ties may differ
        n_idx, s_idx = np.nonzero(mismatch)
        d_got = d[n_idx, s_idx, got[n_idx, s_idx]]
        d_best = d[n_idx, s_idx, ids[n_idx, s_idx]]
        np.testing.assert_allclose(d_got, d_best, rtol=1e-4, atol=1e-6)
        assert mismatch.mean() < 1e-3


@pytest.mark.parametrize("num_subspaces", [8, 16, 32, 64])
def test_encode_is_nearest_centroid(data, num_subspaces):
    codec = train_codec(data, num_subspaces=num_subspaces, seed=1)
    _assert_nearest(codec, data)


def test_encode_native_on_projection_equals_encode(data, codec16):
    np.testing.assert_array_equal(codec16.native.encode(codec16.project(data)), codec16.encode(data))


@pytest.mark.parametrize("accumulate", [8, 16])
def test_adt_matches_numpy_quantisation(data, accumulate):
    codec = train_codec(data, num_subspaces=16, pca_dim=32, seed=0, accumulate=accumulate)
    for row in (0, 1, 17, 500):
        proj = codec.project(data[row])[0]
        _, d = nearest_centroids(codec, proj[None])
        expected = np.minimum(255, np.floor(d[0] / codec.scale + 0.5))
        got = codec.adt(data[row]).astype(np.int64)
        assert got.shape == (16, 16) and codec.adt(data[row]).dtype == np.uint8
        assert np.abs(got - expected).max() <= 1, row
        assert (got == expected).mean() > 0.99


def test_adt_of_far_vector_saturates(codec16, data):
    far = data[0] + 1e3
    assert (codec16.adt(far) == 255).all()


def test_adt_argmin_is_code(data, codec16):
    """The smallest table entry of each subspace is at the vector's own code
    (up to quantisation ties)."""
    for row in range(20):
        table = codec16.adt(data[row]).astype(int)
        code = unpack(codec16.encode(data[row:row + 1]))[0]
        assert (table[np.arange(16), code] == table.min(1)).all()


@pytest.mark.parametrize("num_subspaces", [8, 16, 32])
def test_sdt_symmetric_zero_diagonal(data, num_subspaces):
    codec = train_codec(data, num_subspaces=num_subspaces, seed=0)
    sdt = codec.sdt()
    assert sdt.dtype == np.uint8 and sdt.shape == (num_subspaces, 16, 16)
    np.testing.assert_array_equal(sdt, sdt.transpose(0, 2, 1))
    assert (sdt[:, np.arange(16), np.arange(16)] == 0).all()
    # and it is the quantised centroid-centroid distance
    c = codec.centroids.astype(np.float64)
    d = ((c[:, :, None, :] - c[:, None, :, :]) ** 2).sum(-1)
    expected = np.minimum(255, np.floor(d / codec.scale + 0.5))
    assert np.abs(sdt.astype(np.int64) - expected).max() <= 1


def test_scan_of_codes_equals_table_sum(data, codec16):
    """The ADT scored through the lookup kernel gives sum of table entries at the codes."""
    from leann_store import native

    codes = codec16.encode(data[:50])
    table = codec16.adt(data[0])
    expected = table.astype(np.int64)[np.arange(16)[None, :], unpack(codes)].sum(1)
    np.testing.assert_array_equal(native.scan_codes(codes, table, 16), expected)


# ---- low dimension ---------------------------------------------------------------------
@pytest.mark.parametrize("dim,num_subspaces", [(4, 16), (1, 8), (3, 8), (5, 32), (2, 64)])
def test_low_dimension_zero_padded(dim, num_subspaces):
    x = clustered(400, dim, seed=2)
    c = train_codec(x, num_subspaces=num_subspaces, seed=0)
    assert c.pca_dim % num_subspaces == 0 and c.pca_dim >= num_subspaces
    nonzero_rows = np.abs(c.components).sum(1) > 0
    assert nonzero_rows.sum() == dim  # real components; the rest are zero padding
    proj = c.project(x)
    assert np.all(proj[:, ~nonzero_rows] == 0)
    codes = c.encode(x)
    assert codes.shape == (400, num_subspaces // 2)
    _assert_nearest(c, x)
    assert c.explained_variance == pytest.approx(1.0)
    assert c.adt(x[0]).shape == (num_subspaces, 16)


def test_tiny_sample_sizes():
    """Fewer points than centroids still trains (centroids repeat)."""
    for n in (1, 2, 5, 15, 16, 17):
        x = clustered(n, 8, seed=n)
        c = train_codec(x, num_subspaces=8, seed=0)
        assert c.encode(x).shape == (n, 4)
        _assert_nearest(c, x)


# ---- input validation --------------------------------------------------------------------
def test_train_codec_bad_arguments(data):
    with pytest.raises(InvalidInputError):
        train_codec(data, num_subspaces=12)
    with pytest.raises(InvalidInputError):
        train_codec(data, accumulate=4)
    with pytest.raises(InvalidInputError):
        train_codec(data, pca_variance=0.0)
    with pytest.raises(InvalidInputError):
        train_codec(data, pca_variance=1.5)
    with pytest.raises(InvalidInputError):
        train_codec(data[0])  # 1-D
    with pytest.raises(InvalidInputError):
        train_codec(np.zeros((0, 8), np.float32))


def test_codec_dimension_mismatch(codec16, data):
    with pytest.raises(leann_store.DimensionMismatchError):
        codec16.encode(data[:, :32].copy())
    with pytest.raises(leann_store.DimensionMismatchError):
        codec16.native.encode(np.zeros((3, codec16.pca_dim + 1), np.float32))
    with pytest.raises(leann_store.DimensionMismatchError):
        codec16.native.adt(np.zeros(codec16.pca_dim + 1, np.float32))


def test_encode_rejects_non_finite(codec16, data):
    bad = data[:5].copy()
    bad[2, 0] = np.nan
    with pytest.raises(InvalidInputError):
        codec16.encode(bad)
    with pytest.raises(InvalidInputError):
        codec16.adt(np.full(data.shape[1], np.inf, np.float32))


# ---- property ------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 200), dim=st.integers(1, 40), m=st.sampled_from([8, 16, 32]),
       seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-3, 1.0, 100.0]))
def test_encoding_property(n, dim, m, seed, scale):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, dim)) * scale).astype(np.float32)
    c = train_codec(x, num_subspaces=m, seed=seed % 1000, iterations=5)
    codes = c.encode(x)
    assert codes.shape == (n, m // 2) and codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, c.encode(x))  # deterministic
    nib = unpack(codes)
    assert ((nib >= 0) & (nib < 16)).all()
    _assert_nearest(c, x)
    c2 = train_codec(x, num_subspaces=m, seed=seed % 1000, iterations=5)
    np.testing.assert_array_equal(c2.centroids, c.centroids)
    np.testing.assert_array_equal(c2.encode(x), codes)
    sdt = c.sdt()
    np.testing.assert_array_equal(sdt, sdt.transpose(0, 2, 1))
    assert (sdt[:, np.arange(16), np.arange(16)] == 0).all()


def test_shared_pca_gives_the_same_codec(data):
    """Codecs trained on one sample may share its PCA: same result as each
    computing it, and a PCA of other rows is refused."""
    from leann_store.codec import fit_pca

    sample = data[:1000]
    pca = fit_pca(sample)
    for m in (16, 32):
        a = train_codec(sample, num_subspaces=m, seed=3)
        b = train_codec(sample, num_subspaces=m, seed=3, pca=pca)
        for field in ("mean", "components", "centroids"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert a.scale == b.scale
    with pytest.raises(InvalidInputError, match="other rows"):
        train_codec(data[:500], num_subspaces=16, pca=pca)


@pytest.mark.parametrize("num_subspaces", [8, 16, 32, 64])
def test_centroid_sums_equal_bincount(num_subspaces):
    """The C update step's sums are numpy's bincount sums to the bit (each
    centroid adds its rows in row order, in float64), and its counts the
    rows per centroid; wrong shapes are refused."""
    from leann_store import native
    from leann_store.codec import _unpack
    from leann_store.errors import DimensionMismatchError

    rng = np.random.default_rng(num_subspaces)
    dsub = 3
    dp = num_subspaces * dsub
    cent = rng.standard_normal((num_subspaces, 16, dsub)).astype(np.float32)
    nc = native.NativeCodec(cent, 1.0, 16)
    proj = (rng.standard_normal((777, dp)) * 10).astype(np.float32)
    codes = nc.encode(proj)
    sums, counts = nc.centroid_sums(proj, codes)
    assign = _unpack(codes)
    flat = (assign + np.arange(num_subspaces) * 16).ravel()
    np.testing.assert_array_equal(counts, np.bincount(flat, minlength=num_subspaces * 16).reshape(-1, 16))
    data = proj.reshape(777, num_subspaces, dsub).astype(np.float64)
    for c in range(dsub):
        ref = np.bincount(flat, weights=data[:, :, c].ravel(), minlength=num_subspaces * 16)
        np.testing.assert_array_equal(sums[:, :, c], ref.reshape(-1, 16))
    empty_sums, empty_counts = nc.centroid_sums(proj[:0], codes[:0])
    assert not empty_sums.any() and not empty_counts.any()
    with pytest.raises(DimensionMismatchError):
        nc.centroid_sums(proj[:, :-1], codes)
    with pytest.raises(DimensionMismatchError):
        nc.centroid_sums(proj, codes[:-1])


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_one_pass_pca_matches_float64_covariance(offset):
    """fit_pca's one pass over blocks (centred on the first block's mean)
    gives the mean and spectrum of a float64 covariance, even for data far
    from the origin, whose block boundary falls mid-sample."""
    import leann_store.codec as codec_mod
    from leann_store.codec import fit_pca

    rng = np.random.default_rng(8)
    x = (rng.standard_normal((2500, 20)) * np.linspace(3.0, 0.1, 20) + offset).astype(np.float32)
    x[:700] += 0.5  # the first block is not centred like the rest
    old = codec_mod._BLOCK
    codec_mod._BLOCK = 1000
    try:
        pca = fit_pca(x)
    finally:
        codec_mod._BLOCK = old
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(pca.mean, x64.mean(0), rtol=0, atol=1e-6 * max(1.0, offset))
    ref = np.linalg.eigvalsh(np.cov(x64, rowvar=False))[::-1]
    np.testing.assert_allclose(pca.eigvals, np.clip(ref, 0, None), rtol=2e-5, atol=1e-6)
    assert pca.rows == 2500
    with pytest.raises(InvalidInputError, match="non-empty"):
        fit_pca(x[:0])


# ---- one projection for two codecs ---------------------------------------------
def test_projection_columns_of_codecs_on_one_pca(data):
    """Two codecs trained on one PCA fit: the larger projection holds the
    smaller one's columns, and those columns are its projection."""
    from leann_store.codec import fit_pca

    pca = fit_pca(data)
    big = train_codec(data, num_subspaces=32, pca_dim=64, seed=0, pca=pca)
    small = train_codec(data, num_subspaces=16, pca_dim=32, seed=0, pca=pca)
    cols = big.projection_columns(small)
    assert cols is not None and len(set(cols.tolist())) == small.pca_dim
    # equal up to float rounding: BLAS may sum a product of another width in
    # another order (OpenBLAS on AMD EPYC: 2e-6 apart), so never bitwise
    got, want = big.project(data[:200])[:, cols], small.project(data[:200])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
    np.testing.assert_array_equal(big.projection_columns(big), np.arange(big.pca_dim))
    # the smaller projection cannot give the larger one's extra dimensions
    assert small.projection_columns(big) is None


def test_projection_columns_none_across_fits(data):
    """A codec fit on other rows (another mean, other components) shares no
    projection."""
    a = train_codec(data, num_subspaces=16, seed=0)
    b = train_codec(data[:700], num_subspaces=16, seed=0)
    assert a.projection_columns(b) is None
    shifted = Codec(mean=a.mean + 1.0, components=a.components, centroids=a.centroids, scale=a.scale)
    assert a.projection_columns(shifted) is None


def test_opq_rotation_lowers_the_coding_error_and_stays_orthonormal():
    rng = np.random.default_rng(0)
    mix = np.linalg.qr(rng.normal(size=(32, 32)))[0]
    x = ((rng.normal(size=(3000, 32)) * np.linspace(3, 0.3, 32)) @ mix).astype(np.float32)
    plain = train_codec(x, num_subspaces=8, pca_dim=32, seed=0)
    rotated = train_codec(x, num_subspaces=8, pca_dim=32, seed=0, rotation_iterations=8)
    assert rotated.coding_error(x) < plain.coding_error(x)
    c = rotated.components.astype(np.float64)
    assert np.allclose(c @ c.T, np.eye(32), atol=1e-4)  # a rotation inside the PCA space
    # the energy outside the projection is the PCA's either way (all 32 dims kept: none)
    assert np.allclose(np.linalg.norm(rotated.project(x), axis=1), np.linalg.norm(plain.project(x), axis=1),
                       rtol=1e-3, atol=1e-3)
