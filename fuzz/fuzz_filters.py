"""Fuzzes the filter compiler (leann_store/filters.py) and holds its two
forms to each other: for every filter the fuzzer builds and every document,
the SQL the filter compiles to (run by SQLite over the JSON metadata, with the
package's SQL functions) and :meth:`Filter.matches` (Python) agree.

Guidance: atheris's Python bytecode coverage of leann_store.filters (and its
comparisons); the filter and the documents are built from the input by a
small grammar (atheris.FuzzedDataProvider) biased to the operator names,
a few shared keys and awkward values.  A filter must compile or raise
FilterError / InvalidInputError; nothing else.

    python fuzz/fuzz_filters.py CORPUS_DIR [libFuzzer flags]
"""

from __future__ import annotations

import json
import sqlite3
import sys

import common

common.setup()

import atheris  # noqa: E402

with atheris.instrument_imports(include=["leann_store.filters"]):
    from leann_store.errors import LeannError  # noqa: E402
    from leann_store.filters import check_metadata, compile_filter, register_sql_functions  # noqa: E402

OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$icontains", "$like", "$all",
       "$size", "$exists", "$empty", "$not", "$and", "$or", "$nor", "$bogus"]
KEYS = ["a", "b", "a.b", "t", "x.y.z", "ü", "", "a..b", 'q"k', "$or", "%_"]
STRINGS = ["", "a", "A", "ab", "%", "_", "a%", "%a%", "a_b", "é", "É", "ß", "\u0130", "x'); DROP TABLE docs;--",
           "\x00", "1", "true", "null"]
NUMBERS = [0, 1, -1, 1.0, 0.5, -0.0, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 1e308, 1e-308, 3]


class Gen:
    def __init__(self, data: bytes) -> None:
        self.fdp = atheris.FuzzedDataProvider(data)

    def pick(self, xs: list):  # type: ignore[no-untyped-def]
        return xs[self.fdp.ConsumeIntInRange(0, len(xs) - 1)]

    def scalar(self):  # type: ignore[no-untyped-def]
        kind = self.fdp.ConsumeIntInRange(0, 6)
        if kind == 0:
            return None
        if kind == 1:
            return self.fdp.ConsumeBool()
        if kind == 2:
            return self.pick(NUMBERS)
        if kind == 3:
            return self.fdp.ConsumeInt(4)
        if kind == 4:
            return self.fdp.ConsumeUnicodeNoSurrogates(self.fdp.ConsumeIntInRange(0, 6))
        return self.pick(STRINGS)

    def value(self, depth: int = 0):  # type: ignore[no-untyped-def]
        kind = self.fdp.ConsumeIntInRange(0, 9)
        if depth < 3 and kind == 8:
            return [self.value(depth + 1) for _ in range(self.fdp.ConsumeIntInRange(0, 3))]
        if depth < 3 and kind == 9:
            return {self.pick(["a", "b", "c", "t"]): self.value(depth + 1)
                    for _ in range(self.fdp.ConsumeIntInRange(0, 2))}
        return self.scalar()

    def doc(self) -> dict:
        d = {}
        for _ in range(self.fdp.ConsumeIntInRange(0, 3)):
            key = self.pick(["a", "b", "t", "x", "ü", "%_"])
            d[key] = self.value()
        return d

    def arg(self, op: str, depth: int):  # type: ignore[no-untyped-def]
        if op in ("$in", "$nin", "$all") and self.fdp.ConsumeIntInRange(0, 4):
            return [self.scalar() for _ in range(self.fdp.ConsumeIntInRange(0, 3))]
        if op in ("$exists", "$empty") and self.fdp.ConsumeIntInRange(0, 4):
            return self.fdp.ConsumeBool()
        if op == "$size" and self.fdp.ConsumeIntInRange(0, 4):
            return self.fdp.ConsumeIntInRange(-1, 3)
        if op == "$not" and self.fdp.ConsumeIntInRange(0, 4):
            return {self.pick(OPS[:15]): self.arg(self.pick(OPS[:15]), depth + 1)}
        return self.value(2)

    def filter(self, depth: int = 0) -> dict:
        f = {}
        for _ in range(self.fdp.ConsumeIntInRange(0 if depth else 1, 3)):
            if depth < 3 and self.fdp.ConsumeIntInRange(0, 3) == 0:
                op = self.pick(["$and", "$or", "$nor", "$not"])
                if op == "$not":
                    f[op] = self.filter(depth + 1)
                else:
                    f[op] = [self.filter(depth + 1) for _ in range(self.fdp.ConsumeIntInRange(0, 3))]
            else:
                key = self.pick(KEYS)
                if self.fdp.ConsumeBool():
                    f[key] = self.value(1)
                else:
                    ops = {}
                    for _ in range(self.fdp.ConsumeIntInRange(1, 2)):
                        op = self.pick(OPS)
                        ops[op] = self.arg(op, depth)
                    f[key] = ops
        return f


CONN = sqlite3.connect(":memory:", isolation_level=None)
register_sql_functions(CONN)
CONN.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")


def one_input(data: bytes) -> None:
    g = Gen(data)
    docs = []
    for _ in range(g.fdp.ConsumeIntInRange(1, 6)):
        d = g.doc()
        try:
            docs.append((d, check_metadata(d)))
        except LeannError:
            pass
    spec = g.filter()
    try:
        f = compile_filter(spec)
    except LeannError:
        return
    assert f is not None and f.sql is not None
    CONN.execute("DELETE FROM docs")
    CONN.executemany("INSERT INTO docs (rowid, metadata) VALUES (?, ?)",
                     [(i, text) for i, (_, text) in enumerate(docs)])
    got = {r[0] for r in CONN.execute(f"SELECT rowid FROM docs WHERE {f.sql}", dict(f.params))}
    want = {i for i, (d, text) in enumerate(docs) if f.matches(json.loads(text))}
    if got != want:
        raise AssertionError(f"filter {json.dumps(spec)} on {[t for _, t in docs]}: SQL matches {sorted(got)}, "
                             f"Python {sorted(want)}")


if __name__ == "__main__":
    common.run(one_input)
