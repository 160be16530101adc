"""The index file: round trips, atomic saves, and damaged files that must be
rejected cleanly (never a crash)."""

from __future__ import annotations

import copy
import os
import pickle
import struct

import numpy as np
import pytest

from conftest import clustered, queries_near
from leann_store import IndexConfig, LeannIndex
from leann_store.errors import CorruptIndexError

N, DIM = 1500, 24


@pytest.fixture(scope="module")
def data():
    x = clustered(N, DIM, seed=4)
    return x, queries_near(x, 20, seed=8)


def embed_of(x):
    return lambda ids: x[ids]


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    x, _ = data
    index = LeannIndex.build(x, IndexConfig(metric="cosine", M=12, seed=0, hub_cache_bytes=4096))
    index.delete([3, 5, 8])
    path = tmp_path_factory.mktemp("idx") / "a.leann"
    written = index.save(path)
    return index, path, written


def sections(blob: bytes) -> list[tuple[str, int, int]]:
    (count,) = struct.unpack_from("<I", blob, 16)
    (table,) = struct.unpack_from("<Q", blob, 24)
    out = []
    for i in range(count):
        tag, off, length = struct.unpack_from("<8sQQ", blob, table + 32 * i)
        out.append((tag.rstrip(b"\0").decode(), off, length))
    return out


def test_round_trip_gives_identical_results(saved, data):
    index, path, written = saved
    x, q = data
    assert written == os.path.getsize(path) == index.nbytes
    back = LeannIndex.load(path)
    for ix in (index, back):
        ix.cache_bytes = 0
    a = index.search(q, k=10, ef=48, embed=embed_of(x))
    b = back.search(q, k=10, ef=48, embed=embed_of(x))
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)
    for key in (k for k in a.stats if not k.endswith("_us")):  # timings differ run to run
        np.testing.assert_array_equal(a.stats[key], b.stats[key])
    assert back.config == index.config and back.deleted_count == 3 and back.hub_cache_size == index.hub_cache_size
    assert back.nbytes == index.nbytes and len(back) == N and back.dim == DIM
    for v in (0, 17, N - 1):
        np.testing.assert_array_equal(index.neighbors(v), back.neighbors(v))
    back.save(path.parent / "b.leann")  # a loaded index saves again, byte for byte
    assert (path.parent / "b.leann").read_bytes() == path.read_bytes()


def test_stored_vector_index_round_trip(data, tmp_path):
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=12, seed=0, store_vectors=True))
    index.save(tmp_path / "v.leann")
    back = LeannIndex.load(tmp_path / "v.leann")
    a, b = index.search(q, k=5), back.search(q, k=5)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)


def test_pickle_and_deepcopy_round_trip(saved, data):
    """Pickling goes through the index file: the copy searches alike, keeps
    the deletions and cache budget, and is independent of the original."""
    index, path, _ = saved
    x, q = data
    index.cache_bytes = 12345 * 1024
    try:
        back = pickle.loads(pickle.dumps(index))
        twin = copy.deepcopy(index)
    finally:
        index.cache_bytes = 0
    assert back.cache_bytes == twin.cache_bytes == 12345 * 1024
    for ix in (back, twin):
        ix.cache_bytes = 0
        assert ix.config == index.config and ix.deleted_count == index.deleted_count == 3
        a = index.search(q, k=10, ef=48, embed=embed_of(x))
        b = ix.search(q, k=10, ef=48, embed=embed_of(x))
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.distances, b.distances)
    twin.delete([0, 1])
    assert twin.deleted_count == 5 and index.deleted_count == 3 and not index.is_deleted(0)


def test_sections_are_the_documented_ones(saved):
    _, path, _ = saved
    tags = [t for t, _, _ in sections(path.read_bytes())]
    for tag in ("META", "UMETA", "CODEC", "CODES", "LVL00", "TOMB", "HUBS", "CALIB"):
        assert tag in tags
    assert "VECTORS" not in tags


def test_truncation_at_every_section_boundary(saved, tmp_path):
    _, path, _ = saved
    blob = path.read_bytes()
    cuts = {0, 1, 7, 8, 47, 48, len(blob) - 1, len(blob) - 4}
    for _, off, length in sections(blob):
        cuts |= {off, off + 1, off + length // 2, off + length - 1, off + length}
    bad = tmp_path / "cut.leann"
    for cut in sorted(c for c in cuts if 0 <= c < len(blob)):
        bad.write_bytes(blob[:cut])
        with pytest.raises(CorruptIndexError, match="cut.leann"):
            LeannIndex.load(bad)


def test_random_byte_flips_are_caught(saved, tmp_path):
    _, path, _ = saved
    blob = path.read_bytes()
    rng = np.random.default_rng(0)
    bad = tmp_path / "flip.leann"
    named = 0
    for pos in rng.choice(len(blob), size=300, replace=False):
        damaged = bytearray(blob)
        damaged[pos] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(damaged))
        with pytest.raises(CorruptIndexError) as info:
            LeannIndex.load(bad)
        named += "section" in str(info.value) or "header" in str(info.value) or "table" in str(info.value)
    assert named >= 250  # nearly every message says where the damage is


def test_checksum_failure_names_the_section(saved, tmp_path):
    _, path, _ = saved
    blob = bytearray(path.read_bytes())
    for tag, off, length in sections(bytes(blob)):
        if tag == "CODES":
            blob[off + length // 2] ^= 0xFF
    bad = tmp_path / "codes.leann"
    bad.write_bytes(bytes(blob))
    with pytest.raises(CorruptIndexError, match="CODES"):
        LeannIndex.load(bad)


def test_not_an_index_and_missing_files(tmp_path):
    junk = tmp_path / "junk.leann"
    junk.write_bytes(b"hello world" * 20)
    with pytest.raises(CorruptIndexError):
        LeannIndex.load(junk)
    with pytest.raises(OSError):
        LeannIndex.load(tmp_path / "missing.leann")


def test_missing_or_forbidden_file_is_a_leann_error_and_an_os_error(tmp_path):
    """A missing file is a FileNotFoundError, a forbidden one a
    PermissionError, a directory an OSError: each a leann_store error too,
    carrying the system's errno."""
    import errno

    from leann_store.errors import IndexFileError, LeannError

    with pytest.raises(FileNotFoundError) as info:
        LeannIndex.load(tmp_path / "missing.leann")
    assert isinstance(info.value, LeannError) and isinstance(info.value, IndexFileError)
    assert info.value.errno == errno.ENOENT and "missing.leann" in str(info.value)
    with pytest.raises(IndexFileError) as info:
        LeannIndex.load(tmp_path)
    assert info.value.errno == errno.EISDIR
    locked = tmp_path / "locked.leann"
    locked.write_bytes(b"x" * 100)
    os.chmod(locked, 0)
    try:
        if os.access(locked, os.R_OK):  # root ignores permissions
            pytest.skip("running as root: cannot make a file unreadable")
        with pytest.raises(PermissionError) as info:
            LeannIndex.load(locked)
        assert isinstance(info.value, LeannError) and info.value.errno == errno.EACCES
    finally:
        os.chmod(locked, 0o600)


def test_calibration_round_trips_and_bad_calibration_is_corrupt(saved, tmp_path):
    """The adaptive stop's calibration is saved (a loaded index stops where
    the original does); a decreasing one is refused on load."""
    index, path, _ = saved
    back = LeannIndex.load(path)
    np.testing.assert_array_equal(index._h.calibration(), back._h.calibration())
    blob = bytearray(path.read_bytes())
    for tag, off, length in sections(bytes(blob)):
        if tag == "CALIB":
            blob[off:off + 8] = struct.pack("<ff", 1.0, 0.0)  # decreasing
    bad = tmp_path / "calib.leann"
    bad.write_bytes(bytes(blob))
    with pytest.raises(CorruptIndexError):  # the checksum, or the values
        LeannIndex.load(bad)


def test_save_into_a_missing_directory(saved, tmp_path):
    index, _, _ = saved
    with pytest.raises(OSError, match="No such file"):
        index.save(tmp_path / "no" / "such" / "dir.leann")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_old_file(saved, tmp_path):
    index, _, _ = saved
    target = tmp_path / "keep.leann"
    index.save(target)
    before = target.read_bytes()
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: cannot make the directory read-only")
        with pytest.raises(OSError):
            index.save(target)
    finally:
        os.chmod(tmp_path, 0o700)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.leann"]


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bit by bit: the checksum format.c writes."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _as_older_version(path, dest, layout: int) -> None:
    """Rewrite a file that this version wrote with the code-distance
    estimator (META word 15 = 0, no EST section: what layouts 2 and 3
    held) as format version ``layout`` wrote it: layout 2 also drops the
    code-bits word (4-bit codes)."""
    blob = bytearray(path.read_bytes())
    (count,) = struct.unpack_from("<I", blob, 16)
    (table,) = struct.unpack_from("<Q", blob, 24)
    assert "EST" not in [tag for tag, _, _ in sections(bytes(blob))]
    for i, (tag, off, length) in enumerate(sections(bytes(blob))):
        if tag == "META":
            words = list(struct.unpack_from("<16Q", blob, off))
            assert words[0] == 4 and words[14] == 4 and words[15] == 0  # layout 4: 4-bit codes, code estimate
            words[0] = layout
            if layout < 3:
                words[14] = 0
            struct.pack_into("<16Q", blob, off, *words)
            struct.pack_into("<I", blob, table + 32 * i + 24, _crc32c(bytes(blob[off:off + length])))
    struct.pack_into("<I", blob, table + 32 * count, _crc32c(bytes(blob[table:table + 32 * count])))
    struct.pack_into("<I", blob, 8, layout)
    struct.pack_into("<I", blob, 40, _crc32c(bytes(blob[:40])))
    dest.write_bytes(bytes(blob))


@pytest.fixture(scope="module")
def saved_code(data, tmp_path_factory):
    """An index ranking by code distances, as every index before format
    version 4 did (its calibration measured for them), saved."""
    from leann_store import native
    from leann_store.codec import code_error_quantiles

    x, _ = data
    index = LeannIndex.build(x, IndexConfig(metric="cosine", M=12, seed=0))
    assert index._h.estimator()[0] == native.EST_NORMALISED
    index._h.set_estimator(native.EST_CODE)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    index._h.set_calibration(code_error_quantiles(index.search_codec, index._h.search_codec().bias, xn,
                                                  native.CALIB_LEVELS, len(x)))
    path = tmp_path_factory.mktemp("idx") / "code.leann"
    index.save(path)
    return index, path


@pytest.mark.parametrize("layout", [2, 3])
def test_older_files_still_load(saved_code, data, tmp_path, layout):
    """A file as format versions 2 and 3 wrote it (no estimator word:
    code distances rank the candidates and calibrate the stop) loads and
    searches as the original, adaptive stop included."""
    index, path = saved_code
    x, q = data
    old = tmp_path / f"v{layout}.leann"
    _as_older_version(path, old, layout)
    back = LeannIndex.load(old)
    for ix in (index, back):
        ix.cache_bytes = 0
    assert back.search_codec.bits == 4
    assert back._h.estimator() == (0, 0.0) and back._h.calibration() is not None
    a = index.search(q, k=10, ef=48, embed=embed_of(x))
    b = back.search(q, k=10, ef=48, embed=embed_of(x))
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.stats["recomputed"], b.stats["recomputed"])


def test_estimator_round_trip(saved, data):
    """The normalised estimate (cosine: norm 1) and its calibration come
    back from the file, and the loaded index searches as the original."""
    from leann_store import native

    index, path, _ = saved
    x, q = data
    back = LeannIndex.load(path)
    assert back._h.estimator() == (native.EST_NORMALISED, 1.0) == index._h.estimator()
    np.testing.assert_array_equal(back._h.calibration(), index._h.calibration())
    for ix in (index, back):
        ix.cache_bytes = 0
    a = index.search(q, k=10, embed=embed_of(x))
    b = back.search(q, k=10, embed=embed_of(x))
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.stats["recomputed"], b.stats["recomputed"])


def test_unknown_estimator_is_rejected(saved, tmp_path):
    """A META estimator word this version does not know is a corrupt file,
    not a crash or a silent fallback."""
    _, path, _ = saved
    blob = bytearray(path.read_bytes())
    (count,) = struct.unpack_from("<I", blob, 16)
    (table,) = struct.unpack_from("<Q", blob, 24)
    for i, (tag, off, length) in enumerate(sections(bytes(blob))):
        if tag == "META":
            struct.pack_into("<Q", blob, off + 15 * 8, 7)
            struct.pack_into("<I", blob, table + 32 * i + 24, _crc32c(bytes(blob[off:off + length])))
    struct.pack_into("<I", blob, table + 32 * count, _crc32c(bytes(blob[table:table + 32 * count])))
    bad = tmp_path / "bad.leann"
    bad.write_bytes(bytes(blob))
    with pytest.raises(CorruptIndexError, match="estimator"):
        LeannIndex.load(bad)
