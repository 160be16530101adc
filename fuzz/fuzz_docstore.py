"""Fuzzes opening a store whose docstore someone else wrote: a real store
(a graph generation and a delta segment) is copied, the input rewrites its
SQLite file with statements from a small grammar (meta values of the wrong
type or size, rows with wrong types, NULLs, absurd node numbers, vectors of
the wrong length or NaN, dropped or re-created tables with another schema,
triggers and views, raw damage to the file's pages), then the store is
opened read-only and for writing and used: count, get, find, search, check,
add, delete, flush.

Each call must work or raise a leann_store error (LeannError); anything
else, or a hang (-timeout), is a finding.  Set LEANN_FUZZ_SURVEY=1 to record
the distinct findings (exception type and the frame that raised it) in
LEANN_FUZZ_SURVEY_OUT instead of stopping at the first.

Guidance: atheris's Python bytecode coverage of leann_store (store,
docstore, filters, config) plus the C library's when the instrumented
extension is in place (fuzz/common.py).

    python fuzz/fuzz_docstore.py CORPUS_DIR [libFuzzer flags]
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import sys
import traceback
from pathlib import Path

import common

common.setup()

import atheris  # noqa: E402

with atheris.instrument_imports(include=["leann_store"]):
    import numpy as np  # noqa: E402
    from leann_store import LeannStore, StoreConfig  # noqa: E402
    from leann_store.errors import LeannError  # noqa: E402

sys.path.insert(0, str(common.HERE.parent / "tests"))
from store_util import HashEmbed  # noqa: E402

SCRATCH = common.scratch()
BASE = SCRATCH / "base"
WORK = SCRATCH / "work"
EMBED = HashEmbed()
SURVEY = os.environ.get("LEANN_FUZZ_SURVEY")
SURVEY_OUT = os.environ.get("LEANN_FUZZ_SURVEY_OUT", "docstore-survey.txt")
_seen: dict[str, str] = {}


def _base_store() -> None:
    cfg = StoreConfig(graph_rows=16, merge_rows=64)
    s = LeannStore.open(BASE, EMBED, cfg)
    rng = np.random.default_rng(0)
    words = "alpha beta gamma delta epsilon zeta eta theta".split()
    s.add([" ".join(rng.choice(words, 3)) for _ in range(24)],
          metadatas=[{"i": i, "tag": words[i % 8], "l": [i, "x"]} for i in range(24)], ids=[f"d{i}" for i in range(24)])
    s.add(["late one", "late two"], ids=["late1", "late2"], metadatas=[{"i": 100}, None])
    s.delete(["d3"])
    s.close()


_base_store()

META_KEYS = ["schema", "format", "config", "model", "probe", "dim", "generation", "version", "created", "fp",
             "nope"]
VALUES = [None, "", "0", "1", "-1", "2", "7", "99999999999999999999", "1e309", "nan", "abc", "[]", "{}", "[1,2]",
          "null", "\udcff" if False else "\u00ff", b"\x00\xff", 0, -1, 1, 2**62, 1.5, float("inf"), "x" * 5000]
DOC_COLS = ["id", "text", "embed_text", "metadata", "tokens", "node"]
DOC_VALUES = [None, "", "d5", "x", 0, -1, 1, 5, 23, 24, 25, 2**31, 2**62, -(2**63), 1.5, b"\x80abc", b"",
              '{"i": 1}', "{", "[]", '{"i": NaN}', "null", '"str"', "\u00ff" * 100]


def _mutate(db: str, fdp: atheris.FuzzedDataProvider) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            kind = fdp.ConsumeIntInRange(0, 13)
            pick = lambda xs: xs[fdp.ConsumeIntInRange(0, len(xs) - 1)]  # noqa: E731
            try:
                if kind == 0:
                    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (pick(META_KEYS), pick(VALUES)))
                elif kind == 1:
                    conn.execute("DELETE FROM meta WHERE key = ?", (pick(META_KEYS),))
                elif kind == 2:
                    conn.execute(f"UPDATE docs SET {pick(DOC_COLS)} = ? WHERE rowid = ?",
                                 (pick(DOC_VALUES), fdp.ConsumeIntInRange(0, 30)))
                elif kind == 3:
                    conn.execute("INSERT INTO docs (id, text, embed_text, metadata, tokens, node) VALUES (?,?,?,?,?,?)",
                                 tuple(pick(DOC_VALUES) for _ in range(6)))
                elif kind == 4:
                    n = fdp.ConsumeIntInRange(0, 80)
                    conn.execute("INSERT OR REPLACE INTO vecs VALUES (?, ?)",
                                 (fdp.ConsumeIntInRange(0, 30), fdp.ConsumeBytes(n) if fdp.ConsumeBool()
                                  else struct.pack("<16f", *([float("nan")] * 16))))
                elif kind == 5:
                    conn.execute(f"DELETE FROM {pick(['docs', 'vecs', 'meta'])} WHERE rowid % 3 = ?",
                                 (fdp.ConsumeIntInRange(0, 2),))
                elif kind == 6:
                    t = pick(["docs", "vecs", "meta"])
                    conn.execute(f"DROP TABLE IF EXISTS {t}")
                    if fdp.ConsumeBool():
                        conn.execute(f"CREATE TABLE {t} (rowid INTEGER PRIMARY KEY, key, value, id, text, vec)")
                elif kind == 7:
                    conn.execute("CREATE TRIGGER IF NOT EXISTS t_ins AFTER INSERT ON docs BEGIN "
                                 "INSERT INTO meta VALUES ('trig', leann_like('a', 'a')); END")
                elif kind == 8:
                    conn.execute("CREATE VIEW IF NOT EXISTS v AS SELECT load_extension('/nonexistent')")
                elif kind == 9:
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(
                        {pick(["index", "graph_rows", "merge_rows", "bogus"]): pick([None, -1, 0, "x", {}, 10**9])}),))
                elif kind == 10:
                    conn.execute("ALTER TABLE docs ADD COLUMN extra DEFAULT 1")
                elif kind == 11:
                    conn.execute("UPDATE docs SET node = node + ?", (fdp.ConsumeIntInRange(-30, 30),))
                elif kind == 12:
                    conn.execute(f"PRAGMA user_version = {fdp.ConsumeIntInRange(0, 9)}")
                else:
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'probe'",
                                 (json.dumps([fdp.ConsumeRegularFloat() for _ in range(fdp.ConsumeIntInRange(0, 17))]),))
            except sqlite3.Error:
                pass
    finally:
        conn.close()
    if fdp.ConsumeIntInRange(0, 7) == 0:  # raw damage to a page
        size = os.path.getsize(db)
        with open(db, "r+b") as f:
            for _ in range(fdp.ConsumeIntInRange(1, 8)):
                f.seek(fdp.ConsumeIntInRange(0, max(0, size - 1)))
                f.write(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16)) or b"\xff")


def _use(store: LeannStore, fdp: atheris.FuzzedDataProvider, writable: bool) -> None:
    store.count()
    store.get(["d1", "d5", "late1", "nope"])
    store.find({"tag": "beta"}, limit=5)
    q = EMBED(["alpha beta"])[0]
    store.search(q, k=fdp.ConsumeIntInRange(1, 30), filter={"i": {"$lt": 12}} if fdp.ConsumeBool() else None)
    store.check()
    if writable:
        store.add(["new doc alpha"], ids=[f"n{fdp.ConsumeIntInRange(0, 3)}"])
        store.delete(["d7"])
        store.flush()
        store.search(q, k=3)


def _finding(exc: BaseException) -> None:
    if not SURVEY:
        raise exc
    tb = traceback.extract_tb(exc.__traceback__)
    inner = [f for f in tb if "leann_store" in f.filename] or tb[-1:]
    where = f"{type(exc).__name__} at {Path(inner[-1].filename).name}:{inner[-1].lineno} ({inner[-1].line})"
    if where not in _seen:
        _seen[where] = f"{type(exc).__name__}: {exc}"[:300]
        with open(SURVEY_OUT, "w") as f:
            for k, v in sorted(_seen.items()):
                f.write(f"{k}\n    {v}\n")


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.copytree(BASE, WORK)
    (WORK / "LOCK").unlink(missing_ok=True)
    _mutate(str(WORK / "docstore.sqlite"), fdp)
    for writable in (False, True):
        store = None
        try:
            store = LeannStore.open(WORK, EMBED, read_only=not writable, check_model=fdp.ConsumeBool())
            _use(store, fdp, writable)
        except LeannError:
            pass
        except FileNotFoundError as exc:  # the documented answer for a folder without a store's settings
            if "no store" not in str(exc):
                _finding(exc)
        except Exception as exc:  # noqa: BLE001 - every other exception is the finding
            _finding(exc)
        finally:
            if store is not None:
                try:
                    store.close()
                except LeannError:
                    pass
                except Exception as exc:  # noqa: BLE001
                    _finding(exc)


if __name__ == "__main__":
    common.run(one_input)
