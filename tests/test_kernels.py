"""The code-lookup kernels and float distance kernels against numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import leann_store
from conftest import clustered
from leann_store import IndexConfig, LeannIndex, native

KERNELS = native.available_kernels()
ACCUMULATE = (8, 16)
CODE_BYTES = (4, 8, 16, 32)


def reference_scan(codes: np.ndarray, table: np.ndarray, accumulate: int) -> np.ndarray:
    """total = sum_i table[i, nibble_i(code)]; byte j holds subspace 2j in its low
    nibble and 2j+1 in its high nibble; 8-bit accumulation saturates at 255."""
    codes = np.asarray(codes, dtype=np.uint8)
    n, cb = codes.shape
    nib = np.empty((n, 2 * cb), dtype=np.int64)
    nib[:, 0::2] = codes & 0x0F
    nib[:, 1::2] = codes >> 4
    t = np.asarray(table, dtype=np.int64)
    total = t[np.arange(2 * cb)[None, :], nib].sum(axis=1)
    if accumulate == 8:
        total = np.minimum(total, 255)
    return total.astype(np.uint16)


def test_kernel_list_sane():
    assert "scalar" in KERNELS
    assert native.best_kernel() in KERNELS
    assert set(KERNELS) <= set(native.KERNELS)


@st.composite
def codes_and_table(draw):
    cb = draw(st.sampled_from(CODE_BYTES))
    n = draw(st.integers(1, 70))
    codes = draw(hnp.arrays(np.uint8, (n, cb)))
    kind = draw(st.sampled_from(["random", "max", "zero", "mixed"]))
    if kind == "max":
        table = np.full((2 * cb, 16), 255, dtype=np.uint8)
    elif kind == "zero":
        table = np.zeros((2 * cb, 16), dtype=np.uint8)
    elif kind == "mixed":
        table = draw(hnp.arrays(np.uint8, (2 * cb, 16), elements=st.sampled_from([0, 1, 127, 128, 254, 255])))
    else:
        table = draw(hnp.arrays(np.uint8, (2 * cb, 16)))
    return codes, table


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("accumulate", ACCUMULATE)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=codes_and_table())
def test_scan_codes_matches_numpy(kernel, accumulate, data):
    codes, table = data
    got = native.scan_codes(codes, table, accumulate, kernel)
    assert got.dtype == np.uint16 and got.shape == (codes.shape[0],)
    np.testing.assert_array_equal(got, reference_scan(codes, table, accumulate))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("accumulate", ACCUMULATE)
@pytest.mark.parametrize("code_bytes", CODE_BYTES)
def test_scan_codes_every_size_and_block_tail(kernel, accumulate, code_bytes):
    """Deterministic sweep: every n in 1..70 (full and partial blocks of 16)."""
    rng = np.random.default_rng(code_bytes * 100 + accumulate)
    for n in list(range(1, 35)) + [47, 48, 49, 63, 64, 65, 70]:
        codes = rng.integers(0, 256, size=(n, code_bytes), dtype=np.uint8)
        table = rng.integers(0, 256, size=(2 * code_bytes, 16), dtype=np.uint8)
        np.testing.assert_array_equal(native.scan_codes(codes, table, accumulate, kernel),
                                      reference_scan(codes, table, accumulate), err_msg=f"n={n}")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("accumulate", ACCUMULATE)
@pytest.mark.parametrize("code_bytes", CODE_BYTES)
def test_scan_codes_extremes(kernel, accumulate, code_bytes):
    n = 37
    codes = np.full((n, code_bytes), 0xFF, dtype=np.uint8)
    table = np.full((2 * code_bytes, 16), 255, dtype=np.uint8)
    got = native.scan_codes(codes, table, accumulate, kernel)
    expected = 255 if accumulate == 8 else 255 * 2 * code_bytes
    assert (got == expected).all()
    # only the selected nibble entries count: a table that is 255 everywhere
    # except at the chosen entries gives 0
    codes = np.zeros((n, code_bytes), dtype=np.uint8)
    table[:, 0] = 0
    assert (native.scan_codes(codes, table, accumulate, kernel) == 0).all()
    # one subspace at a time: catches nibble order / table permutation mistakes
    for sub in range(2 * code_bytes):
        t = np.zeros((2 * code_bytes, 16), dtype=np.uint8)
        t[sub] = np.arange(16, dtype=np.uint8) * 3 + sub
        c = np.zeros((16, code_bytes), dtype=np.uint8)
        vals = np.arange(16, dtype=np.uint8)
        c[:, sub // 2] = vals << 4 if sub % 2 else vals
        np.testing.assert_array_equal(native.scan_codes(c, t, accumulate, kernel),
                                      (vals.astype(np.uint16) * 3 + sub), err_msg=f"subspace {sub}")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("accumulate", ACCUMULATE)
@settings(max_examples=25, deadline=None)
@given(data=codes_and_table())
def test_every_kernel_equals_scalar(kernel, accumulate, data):
    codes, table = data
    np.testing.assert_array_equal(native.scan_codes(codes, table, accumulate, kernel),
                                  native.scan_codes(codes, table, accumulate, "scalar"))


@pytest.mark.parametrize("accumulate", ACCUMULATE)
def test_auto_kernel_matches_reference(accumulate):
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, size=(50, 16), dtype=np.uint8)
    table = rng.integers(0, 256, size=(32, 16), dtype=np.uint8)
    np.testing.assert_array_equal(native.scan_codes(codes, table, accumulate, "auto"),
                                  reference_scan(codes, table, accumulate))


def test_scan_codes_bad_arguments():
    codes = np.zeros((3, 8), dtype=np.uint8)
    table = np.zeros((16, 16), dtype=np.uint8)
    with pytest.raises(leann_store.InvalidInputError):
        native.scan_codes(codes, table, 16, "not-a-kernel")
    with pytest.raises(leann_store.InvalidInputError):
        native.scan_codes(codes, np.zeros((8, 16), dtype=np.uint8), 16, "scalar")
    with pytest.raises(leann_store.InvalidInputError):
        native.scan_codes(np.zeros((3, 6), dtype=np.uint8), np.zeros((12, 16), dtype=np.uint8), 16, "scalar")
    with pytest.raises(leann_store.InvalidInputError):
        native.scan_codes(codes, table, 4, "scalar")


# ---- float distances --------------------------------------------------------------
def _check_float(kernel: str, metric: int, a: np.ndarray, b: np.ndarray) -> None:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if metric == native.METRIC_L2:
        ref = float(((a64 - b64) ** 2).sum())
        scale = ref
    else:
        ref = -float(a64 @ b64)
        scale = float(np.abs(a64 * b64).sum())  # cancellation: relative to the terms
    got = native.float_distance(a, b, metric, kernel)
    assert isinstance(got, float)
    assert abs(got - ref) <= 1e-4 * scale + 1e-30, (kernel, metric, a.shape[0], got, ref)
    assert np.isclose(got, ref, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("metric", [native.METRIC_L2, native.METRIC_IP], ids=["l2", "ip"])
def test_float_distance_all_dims(kernel, metric):
    rng = np.random.default_rng(11)
    for d in range(1, 131):
        a = rng.normal(size=d).astype(np.float32)
        b = rng.normal(size=d).astype(np.float32)
        _check_float(kernel, metric, a, b)
        # same-sign data: no cancellation, so plain rtol 1e-4 applies to IP too
        a, b = np.abs(a), np.abs(b)
        got = native.float_distance(a, b, metric, kernel)
        ref = (((a.astype(np.float64) - b) ** 2).sum() if metric == native.METRIC_L2
               else -(a.astype(np.float64) @ b))
        np.testing.assert_allclose(got, ref, rtol=1e-4, err_msg=f"d={d}")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("metric", [native.METRIC_L2, native.METRIC_IP], ids=["l2", "ip"])
@settings(max_examples=30, deadline=None)
@given(d=st.integers(1, 130), seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_float_distance_property(kernel, metric, d, seed, scale):
    rng = np.random.default_rng(seed)
    a = (rng.normal(size=d) * scale).astype(np.float32)
    b = (rng.normal(size=d) * scale).astype(np.float32)
    _check_float(kernel, metric, a, b)


@pytest.mark.parametrize("kernel", KERNELS)
def test_float_distance_identities(kernel):
    for d in (1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 130):
        a = np.arange(1, d + 1, dtype=np.float32) / d
        assert native.float_distance(a, a, native.METRIC_L2, kernel) == 0.0
        np.testing.assert_allclose(native.float_distance(a, a, native.METRIC_IP, kernel),
                                   -float((a.astype(np.float64) ** 2).sum()), rtol=1e-5)
        z = np.zeros(d, dtype=np.float32)
        assert native.float_distance(a, z, native.METRIC_IP, kernel) == 0.0


@pytest.mark.parametrize("kernel", KERNELS)
def test_float_kernels_agree_with_scalar(kernel):
    rng = np.random.default_rng(3)
    for d in range(1, 131):
        a, b = rng.normal(size=(2, d)).astype(np.float32)
        for metric in (native.METRIC_L2, native.METRIC_IP):
            x = native.float_distance(a, b, metric, kernel)
            y = native.float_distance(a, b, metric, "scalar")
            assert abs(x - y) <= 1e-4 * float(np.abs(a * b).sum() + ((a - b) ** 2).sum()), (d, metric)


def test_float_distance_bad_arguments():
    a = np.ones(4, dtype=np.float32)
    with pytest.raises(leann_store.InvalidInputError):
        native.float_distance(a, a, native.METRIC_L2, "avx9000")
    with pytest.raises(leann_store.InvalidInputError):
        native.float_distance(a, np.ones(5, dtype=np.float32))
    with pytest.raises(leann_store.InvalidInputError):
        native.float_distance(a, a, 7, "scalar")
    with pytest.raises(leann_store.InvalidInputError):
        native.float_distance(np.ones(0, dtype=np.float32), np.ones(0, dtype=np.float32))
    # unknown kernel errors are input errors, hence ValueError and LeannError too
    with pytest.raises(ValueError):
        native.float_distance(a, a, native.METRIC_L2, "")
    with pytest.raises(leann_store.LeannError):
        native.scan_codes(np.zeros((1, 4), np.uint8), np.zeros((8, 16), np.uint8), 16, "SCALAR")


@pytest.mark.parametrize("name", sorted(set(native.KERNELS) - set(KERNELS)))
def test_unavailable_kernel_is_rejected(name):
    """Kernels this CPU/build lacks are refused with an input error, not run."""
    with pytest.raises(leann_store.InvalidInputError):
        native.scan_codes(np.zeros((1, 4), np.uint8), np.zeros((8, 16), np.uint8), 16, name)
    with pytest.raises(leann_store.InvalidInputError):
        native.float_distance(np.ones(3, np.float32), np.ones(3, np.float32), native.METRIC_L2, name)


@st.composite
def codec_and_points(draw):
    msub = draw(st.sampled_from([8, 16, 32, 64]))
    dsub = draw(st.integers(1, 5))
    n = draw(st.integers(1, 40))
    # small integer grids make exact ties between centroids common
    grid = draw(st.booleans())
    elems = st.integers(-3, 3).map(float) if grid else st.floats(-4, 4, width=32)
    cent = draw(hnp.arrays(np.float32, (msub, 16, dsub), elements=elems))
    if draw(st.booleans()):  # duplicated centroids: equal distances everywhere
        cent[:, 8:] = cent[:, :8]
    proj = draw(hnp.arrays(np.float32, (n, msub * dsub), elements=elems))
    return cent, proj


def reference_encode(cent: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """Nearest centroid per subspace (float32 sums in dimension order, first
    index on ties), nibbles packed low first."""
    msub, _, dsub = cent.shape
    y = proj.reshape(len(proj), msub, 1, dsub)
    d = np.zeros((len(proj), msub, 16), dtype=np.float32)
    for k in range(dsub):
        t = y[..., k] - cent[None, :, :, k]
        d += t * t
    a = d.argmin(-1).astype(np.uint8)
    return (a[:, 0::2] | (a[:, 1::2] << 4)).astype(np.uint8)


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=codec_and_points())
def test_encode_kernel_equals_scalar_and_reference(kernel, data):
    cent, proj = data
    codec = native.NativeCodec(cent, 1.0, 16)
    got = codec.encode(proj, threads=1, kernel=kernel)
    np.testing.assert_array_equal(got, codec.encode(proj, threads=1, kernel="scalar"))
    np.testing.assert_array_equal(got, reference_encode(cent, proj))


def reference_vadt(sdt: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Row nibble_i(code) of each subspace i's symmetric table, permuted as
    the scan kernels read tables: per group of 4 code bytes, the 4 low-nibble
    rows then the 4 high-nibble rows."""
    cb = len(code)
    out = np.empty((cb // 4, 2, 4, 16), dtype=np.uint8)
    for r in range(cb):
        out[r // 4, 0, r % 4] = sdt[2 * r, code[r] & 15]
        out[r // 4, 1, r % 4] = sdt[2 * r + 1, code[r] >> 4]
    return out.reshape(-1)


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=codec_and_points(), codes=hnp.arrays(np.uint8, (3, 32)))
def test_vadt_kernel_equals_scalar_and_reference(kernel, data, codes):
    """The builder's virtual ADT (a code's SDT rows, permuted) is the same
    table whichever kernel's variant writes it."""
    cent, _ = data
    codec = native.NativeCodec(cent, 0.05, 16)
    sdt = codec.sdt()
    for code in codes[:, :codec.code_bytes]:
        got = codec.vadt(code, kernel)
        np.testing.assert_array_equal(got, codec.vadt(code, "scalar"))
        np.testing.assert_array_equal(got, reference_vadt(sdt, code))


def test_vadt_bad_arguments():
    codec = native.NativeCodec(np.zeros((8, 16, 2), np.float32), 1.0, 16)
    with pytest.raises(leann_store.InvalidInputError):
        codec.vadt(np.zeros(3, np.uint8))
    with pytest.raises(leann_store.InvalidInputError):
        codec.vadt(np.zeros(4, np.uint8), "no-such-kernel")


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=60, deadline=None)
@given(d=hnp.arrays(np.uint16, st.integers(0, 64),
                    elements=st.one_of(st.integers(0, 65535), st.integers(0, 40), st.sampled_from([65534, 65535]))),
       lim=st.one_of(st.integers(0, 65535), st.integers(0, 40), st.sampled_from([0, 65535])))
def test_mask_le_kernel_equals_scalar_and_reference(kernel, d, lim):
    """The walk's bound filter: bit i set iff d[i] <= lim, nothing past n."""
    want = sum(1 << i for i, v in enumerate(d.tolist()) if v <= lim)
    assert native.mask_le(d, lim, kernel) == want
    assert native.mask_le(d, lim, "scalar") == want


@pytest.mark.parametrize("kernel", KERNELS)
def test_mask_le_every_length_ignores_the_padding(kernel):
    """Every n from 0 to 64 on totals at, just above and just below the bound;
    the kernels read whole blocks of 16, and the entries past n (here all
    passing the bound) must stay out of the mask."""
    rng = np.random.default_rng(3)
    for n in range(65):
        d = rng.choice(np.array([99, 100, 101, 0, 65535], np.uint16), size=n)
        want = sum(1 << i for i, v in enumerate(d.tolist()) if v <= 100)
        assert native.mask_le(d, 100, kernel) == want, n


def test_mask_le_bad_arguments():
    with pytest.raises(leann_store.InvalidInputError):
        native.mask_le(np.zeros(65, np.uint16), 1)
    with pytest.raises(leann_store.InvalidInputError):
        native.mask_le(np.zeros(4, np.int32), 1)
    with pytest.raises(leann_store.InvalidInputError):
        native.mask_le(np.zeros(4, np.uint16), 70000)
    with pytest.raises(leann_store.InvalidInputError):
        native.mask_le(np.zeros(4, np.uint16), 1, "no-such-kernel")


@pytest.mark.parametrize("store_vectors", [False, True], ids=["vector-free", "stored"])
def test_flash_builds_are_identical_on_every_kernel(monkeypatch, tmp_path, store_vectors):
    """Code distances are integers and the encoders round as the scalar one
    does, so a Flash build (one thread) writes the same file whichever kernel
    LEANN_KERNEL forces: an index does not depend on the CPU it was built on."""
    x = clustered(1500, 48, seed=3)
    files = {}
    for kernel in KERNELS:
        monkeypatch.setenv("LEANN_KERNEL", kernel)
        index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, threads=1, store_vectors=store_vectors))
        path = tmp_path / f"{kernel}.leann"
        index.save(path)
        files[kernel] = path.read_bytes()
    assert all(b == files["scalar"] for b in files.values()), [k for k, b in files.items() if b != files["scalar"]]
