"""Hostile files: what a file someone else made can do is fail to load.

A crafted index file cannot make the loader allocate far beyond its size;
nothing in the package unpickles or evaluates what it reads; the command
does not follow symbolic links out of the folder it indexes unless asked;
the files the store and the command create follow the umask.  (The fuzzers
in fuzz/ do the rest: tests/test_fuzz.py.)"""

from __future__ import annotations

import ast
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from leann_store import IndexConfig, LeannIndex, LeannStore
from leann_store.command import sources
from leann_store.errors import CorruptIndexError
from store_util import HashEmbed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))
from crc import fix_checksums  # noqa: E402
from seeds import sections  # noqa: E402

sys.path.pop(0)


# ---- crafted index files --------------------------------------------------------------
@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> bytes:
    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    p = tmp_path_factory.mktemp("craft") / "s.leann"
    LeannIndex.build(x, IndexConfig(metric="l2", M=4, seed=0, store_vectors=True, hub_cache_bytes=256)).save(p)
    return p.read_bytes()


def crafted(blob: bytes) -> list[tuple[str, bytes]]:
    """Files that announce far more than they hold, checksums made right."""
    out = []
    secs = {t: (o, n) for t, o, n in sections(blob)}
    meta_off = secs["META"][0]
    for word, value in ((1, 2**31), (1, 2**32 - 2), (2, 65536), (8, 64), (9, 64), (12, 2**31)):
        b = bytearray(blob)
        struct.pack_into("<Q", b, meta_off + 8 * word, value)
        out.append((f"META word {word} = {value}", fix_checksums(bytes(b))))
    for tag in ("LVL00", "HUBS", "CODEC", "UMETA"):
        off, n = secs[tag]
        for at, value in ((0, 2**40), (8, 31), (16, 2**40)):
            if at + 8 <= n:
                b = bytearray(blob)
                struct.pack_into("<Q", b, off + at, value)
                out.append((f"{tag} +{at} = {value}", fix_checksums(bytes(b))))
    b = bytearray(blob)
    struct.pack_into("<I", b, 16, 4096)  # a table of 4096 sections in a small file
    out.append(("4096 sections", fix_checksums(bytes(b))))
    return out


PROBE = """
import resource, sys, time
from leann_store import LeannIndex
from leann_store.errors import LeannError
paths = sys.argv[1:]
LeannIndex.load(paths[0])  # warm: imports, first allocations
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
worst = 0.0
for p in paths[1:]:
    t = time.perf_counter()
    try:
        LeannIndex.load(p)
        print("LOADED", p)
    except LeannError:
        pass
    worst = max(worst, time.perf_counter() - t)
print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, "WORST_S", worst)
"""


def test_crafted_counts_fail_fast_without_large_allocations(small_file, tmp_path):
    good = tmp_path / "good.leann"
    good.write_bytes(small_file)
    files = []
    for i, (what, blob) in enumerate(crafted(small_file)):
        p = tmp_path / f"c{i}.leann"
        p.write_bytes(blob)
        files.append(str(p))
        with pytest.raises(CorruptIndexError):
            LeannIndex.load(p)
    out = subprocess.run([sys.executable, "-c", PROBE, str(good), *files], capture_output=True, text=True,
                         check=True).stdout
    assert "LOADED" not in out
    growth_kb = int(out.split("GROWTH_KB")[1].split()[0])
    worst = float(out.split("WORST_S")[1].split()[0])
    assert growth_kb < 16 * 1024, out  # files of ~10 KB: no load may reach for megabytes
    assert worst < 2.0, out


# ---- nothing unpickles ------------------------------------------------------------------
DANGEROUS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("marshal", "load"),
             ("marshal", "loads"), ("shelve", "open"), ("dill", "load"), ("dill", "loads"), ("torch", "load"),
             ("yaml", "load"), ("yaml", "unsafe_load"), ("joblib", "load"), ("cloudpickle", "loads")}


def test_nothing_in_the_package_unpickles_or_evaluates():
    """No call to an unpickler, eval/exec, or numpy.load with allow_pickle,
    anywhere in leann_store or the adapters.  (LeannIndex.__reduce__ pickles
    an index as its file's bytes; unpickling one runs the validated loader
    and nothing else of this package's.)"""
    bad = []
    files = list((ROOT / "leann_store").rglob("*.py")) + list((ROOT / "integrations").rglob("*.py"))
    assert len(files) > 15
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = (f.value.id, f.attr) if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
            if name in DANGEROUS or (isinstance(f, ast.Name) and f.id in ("eval", "exec", "__import__")):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} allow_pickle")
    assert not bad, bad


def test_an_unpickled_index_goes_through_the_loader(small_file):
    """What __reduce__ hands pickle: the loader's function and the file's
    bytes; damaged bytes fail as a damaged file does."""
    import pickle

    from leann_store import index as index_mod

    ix = LeannIndex.load_bytes(small_file) if hasattr(LeannIndex, "load_bytes") else None
    if ix is None:
        fn, args = LeannIndex.__reduce__(index_mod._index_from_bytes(small_file, 0))
    else:  # pragma: no cover
        fn, args = ix.__reduce__()
    assert fn is index_mod._index_from_bytes and isinstance(args[0], bytes)
    bad = bytearray(args[0])
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(CorruptIndexError):
        pickle.loads(pickle.dumps(fn))(bytes(bad), 0)


# ---- symbolic links -------------------------------------------------------------------------
@pytest.fixture
def linked_tree(tmp_path):
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.md").write_text("# Secret\n\nprivate key material\n")
    (outside / "deep" / "more.md").write_text("more private text\n")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# A\n\ntext\n")
    (docs / "sub" / "b.txt").write_text("b text\n")
    (docs / "leak.md").symlink_to(outside / "secret.md")
    (docs / "inside.md").symlink_to(docs / "sub" / "b.txt")
    (docs / "outdir").symlink_to(outside)
    (docs / "sub" / "loop").symlink_to(docs)
    return docs, outside


def test_scan_does_not_follow_links_out_of_the_folder(linked_tree):
    docs, outside = linked_tree
    got = sources.scan([docs])
    real = sorted(p.resolve().relative_to(docs.parent).as_posix() for p in got.files)
    assert real == ["docs/a.md", "docs/sub/b.txt"]
    assert not any(outside in p.resolve().parents for p in got.files)
    assert sum(n for why, n in got.skipped.items() if "symbolic link" in why) == 3  # leak.md, outdir, sub/loop


def test_scan_follows_links_when_asked_and_ends_on_loops(linked_tree):
    docs, outside = linked_tree
    got = sources.scan([docs], follow_symlinks=True)
    real = sorted({p.resolve() for p in got.files})
    assert real == sorted([docs / "a.md", docs / "sub" / "b.txt", outside / "secret.md", outside / "deep" / "more.md"])


# ---- the umask ------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_created_files_follow_the_umask(tmp_path, mask):
    from leann_store.command.cli import _write_build_record

    old = os.umask(mask)
    try:
        path = tmp_path / "store"
        s = LeannStore.open(path, HashEmbed(), __import__("leann_store").StoreConfig(graph_rows=4))
        s.add([f"doc {i} alpha" for i in range(10)])
        s.flush()
        s.close()
        _write_build_record(path, {"x": 1})
    finally:
        os.umask(old)
    names = sorted(os.listdir(path))
    assert any(n.startswith("graph-") for n in names) and "docstore.sqlite" in names, names
    for name in names:
        mode = stat.S_IMODE(os.stat(path / name).st_mode)
        assert mode & mask == 0, (name, oct(mode))
        # 0666 less the umask, or SQLite's 0644 less the umask for its files
        want = {0o666 & ~mask, 0o644 & ~mask} if name.startswith("docstore") else {0o666 & ~mask}
        assert mode in want, (name, oct(mode), oct(mask))


# ---- hostile docstores ---------------------------------------------------------------------
def _store_dir(tmp_path: Path) -> Path:
    from leann_store import StoreConfig

    path = tmp_path / "s"
    s = LeannStore.open(path, HashEmbed(), StoreConfig(graph_rows=8))
    s.add([f"doc {i} alpha" for i in range(12)], ids=[f"d{i}" for i in range(12)], metadatas=[{"i": i} for i in range(12)])
    s.add(["delta row"], ids=["late"])
    s.close()
    return path


def _sql(path: Path, *statements: str) -> None:
    import sqlite3

    conn = sqlite3.connect(path / "docstore.sqlite", isolation_level=None)
    conn.create_function("leann_lower", 1, lambda v: v.lower() if isinstance(v, str) else v, deterministic=True)
    try:
        for st in statements:
            conn.execute(st)
    finally:
        conn.close()


@pytest.mark.parametrize("statement", [
    "CREATE TRIGGER evil AFTER INSERT ON docs BEGIN DELETE FROM docs; END",
    "CREATE VIEW evil AS SELECT load_extension('/tmp/x.so')",
])
def test_docstore_with_its_own_triggers_or_views_is_refused(tmp_path, statement):
    from leann_store.errors import CorruptDocstoreError

    path = _store_dir(tmp_path)
    _sql(path, statement)
    for ro in (True, False):
        with pytest.raises(CorruptDocstoreError, match="evil"):
            LeannStore.open(path, HashEmbed(), read_only=ro)


def test_docstore_schema_cannot_call_the_package_functions(tmp_path):
    """trusted_schema is off, set before the schema is read: an index on
    leann_lower(text) that someone added is refused when the store opens."""
    from leann_store.errors import CorruptDocstoreError

    path = _store_dir(tmp_path)
    _sql(path, "CREATE INDEX sneaky ON docs(leann_lower(text))")
    for ro in (True, False):
        with pytest.raises(CorruptDocstoreError, match="unsafe use of leann_lower"):
            LeannStore.open(path, HashEmbed(), read_only=ro)


@pytest.mark.parametrize("statements,ro", [
    (["UPDATE meta SET value = 'abc' WHERE key = 'version'"], True),
    (["UPDATE meta SET value = '-3' WHERE key = 'generation'"], False),
    (["UPDATE meta SET value = '{' WHERE key = 'config'"], True),
    (["UPDATE meta SET value = '[1, \"x\"]' WHERE key = 'probe'"], False),
    (["DROP TABLE vecs"], True),
    (["ALTER TABLE docs DROP COLUMN tokens"], True),
    (["UPDATE docs SET node = 'x' WHERE node = 1"], True),
    (["UPDATE vecs SET vec = x'00'"], False),
])
def test_docstore_with_bad_settings_or_shapes_is_a_clear_error(tmp_path, statements, ro):
    from leann_store.errors import CorruptDocstoreError, CorruptIndexError

    path = _store_dir(tmp_path)
    _sql(path, *statements)
    with pytest.raises(CorruptDocstoreError) as info:
        LeannStore.open(path, HashEmbed(), read_only=ro)
    assert isinstance(info.value, CorruptIndexError) and "docstore" in str(info.value) or "store" in str(info.value)


def test_docstore_rows_of_the_wrong_type_are_a_clear_error(tmp_path):
    from leann_store.errors import CorruptDocstoreError

    path = _store_dir(tmp_path)
    _sql(path, "UPDATE docs SET metadata = 'not json' WHERE id = 'd1'", "UPDATE docs SET text = x'80ff' WHERE id = 'd2'")
    s = LeannStore.open(path, HashEmbed(), read_only=True)
    try:
        assert s.get(["d3"])[0].metadata == {"i": 3}
        with pytest.raises(CorruptDocstoreError):
            s.get(["d1"])
        with pytest.raises(CorruptDocstoreError):
            s.get(["d2"])
    finally:
        s.close()


@pytest.mark.parametrize("damage", ["garbage", "pages"])
def test_damaged_or_foreign_docstore_file_is_a_clear_error(tmp_path, damage):
    from leann_store.errors import DocstoreError

    path = _store_dir(tmp_path)
    db = path / "docstore.sqlite"
    for extra in ("docstore.sqlite-wal", "docstore.sqlite-shm"):
        (path / extra).unlink(missing_ok=True)
    if damage == "garbage":
        db.write_bytes(os.urandom(8192))
    else:
        blob = bytearray(db.read_bytes())
        for off in range(4096, len(blob), 4096):  # every page after the first
            blob[off:off + 64] = b"\xa5" * 64
        db.write_bytes(bytes(blob))
    with pytest.raises(DocstoreError):
        s = LeannStore.open(path, HashEmbed(), read_only=True)
        try:
            s.get([f"d{i}" for i in range(12)])
            s.check()
        finally:
            s.close()
