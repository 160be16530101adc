"""The filter language: every operator, missing keys, type rules, injection,
and the SQL compilation held to the Python evaluation on random filters."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leann_store import FilterError
from leann_store.filters import check_metadata, compile_filter, register_sql_functions

DOCS = [
    {"genre": "scifi", "year": 1999, "rating": 4.5, "tags": ["ai", "space"], "ok": True,
     "author": {"name": "Le Guin", "born": 1929}, "title": "The Dispossessed"},
    {"genre": "fantasy", "year": 2001, "rating": 3.0, "tags": ["magic"], "ok": False,
     "author": {"name": "Tolkien"}, "title": "the hobbit"},
    {"genre": "scifi", "year": 2010, "rating": 5, "tags": [], "ok": True, "title": "Anathem", "note": None},
    {"genre": "poetry", "year": "1850", "tags": ["verse", 1], "title": ""},
    {"year": 1, "ok": 1, "ünï": "ködé", "a'); DROP TABLE docs; --": "x"},
    {},
]


@pytest.fixture(scope="module")
def db():
    conn = sqlite3.connect(":memory:")
    register_sql_functions(conn)
    conn.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")
    conn.executemany("INSERT INTO docs VALUES (?, ?)", [(i, check_metadata(m)) for i, m in enumerate(DOCS)])
    yield conn
    conn.close()


def sql_rows(conn, spec):
    f = compile_filter(spec)
    return [r for (r,) in conn.execute(f"SELECT rowid FROM docs WHERE {f.sql} ORDER BY rowid", dict(f.params))]


def py_rows(spec):
    f = compile_filter(spec)
    return [i for i, m in enumerate(DOCS) if f.matches(m)]


CASES = [
    ({"genre": "scifi"}, [0, 2]),
    ({"genre": {"$eq": "scifi"}}, [0, 2]),
    ({"genre": {"$ne": "scifi"}}, [1, 3, 4, 5]),          # missing keys match $ne
    ({"year": {"$gt": 2000}}, [1, 2]),                    # "1850" is a string: no match
    ({"year": {"$gte": 2001}}, [1, 2]),
    ({"year": {"$lt": 2000}}, [0, 4]),
    ({"year": {"$lte": 1999}}, [0, 4]),
    ({"year": {"$gt": "1000"}}, [3]),                     # strings compare with strings only
    ({"rating": 5.0}, [2]),                               # 5 == 5.0
    ({"ok": True}, [0, 2]),                               # 1 is not True
    ({"ok": 1}, [4]),                                     # True is not 1
    ({"note": None}, [2]),                                # only an explicit null
    ({"genre": {"$in": ["scifi", "poetry"]}}, [0, 2, 3]),
    ({"genre": {"$nin": ["scifi", "poetry"]}}, [1, 4, 5]),
    ({"tags": {"$in": ["ai", "magic"]}}, [0, 1]),         # a list field: any element
    ({"tags": {"$in": [1]}}, [3]),
    ({"tags": {"$contains": "ai"}}, [0]),
    ({"title": {"$contains": "Dis"}}, [0]),               # substring
    ({"title": {"$icontains": "THE"}}, [0, 1, 2]),    # anaTHEm
    ({"title": {"$like": "the %"}}, [1]),                 # case-sensitive
    ({"title": {"$like": "%e_"}}, [0, 2]),
    ({"title": {"$like": "%e%"}}, [0, 1, 2]),
    ({"tags": {"$all": ["ai", "space"]}}, [0]),
    ({"tags": {"$size": 0}}, [2]),
    ({"tags": {"$size": 2}}, [0, 3]),
    ({"note": {"$exists": True}}, [2]),
    ({"note": {"$exists": False}}, [0, 1, 3, 4, 5]),
    ({"tags": {"$empty": True}}, [2, 4, 5]),
    ({"title": {"$empty": True}}, [3, 4, 5]),
    ({"note": {"$empty": True}}, [0, 1, 2, 3, 4, 5]),
    ({"tags": {"$empty": False}}, [0, 1, 3]),
    ({"year": {"$not": {"$gt": 2000}}}, [0, 3, 4, 5]),    # negation matches missing
    ({"author.name": "Tolkien"}, [1]),
    ({"author.born": {"$lt": 1930}}, [0]),
    ({"author": {"name": "Tolkien"}}, [1]),               # whole-dict equality
    ({"ünï": "ködé"}, [4]),
    ({"a'); DROP TABLE docs; --": "x"}, [4]),
    ({"genre": "a'); DROP TABLE docs; --"}, []),
    ({"$and": [{"genre": "scifi"}, {"year": {"$gt": 2000}}]}, [2]),
    ({"$or": [{"genre": "fantasy"}, {"year": 1}]}, [1, 4]),
    ({"$nor": [{"genre": "scifi"}, {"ok": False}]}, [3, 4, 5]),
    ({"$not": {"genre": "scifi"}}, [1, 3, 4, 5]),
    ({"genre": "scifi", "ok": True, "year": {"$gte": 1999, "$lt": 2005}}, [0]),
    ({}, [0, 1, 2, 3, 4, 5]),
]


@pytest.mark.parametrize("spec,expected", CASES, ids=[json.dumps(c[0], ensure_ascii=False) for c in CASES])
def test_operator(db, spec, expected):
    assert sql_rows(db, spec) == expected
    assert py_rows(spec) == expected


def test_injection_leaves_the_table_intact(db):
    for evil in ["x'); DROP TABLE docs; --", '"; DELETE FROM docs; --', "$') OR 1=1 --"]:
        if '"' in evil or evil.startswith("$"):  # not a path label / an operator: refused
            with pytest.raises(FilterError):
                compile_filter({evil: evil})
        else:
            assert sql_rows(db, {evil: evil}) == []
        assert sql_rows(db, {"genre": {"$in": [evil]}}) == []
        assert sql_rows(db, {"title": {"$like": evil}}) == []
    assert db.execute("SELECT count(*) FROM docs").fetchone()[0] == len(DOCS)


def test_parameters_never_reach_the_sql_text():
    f = compile_filter({"k'ey": {"$in": ["v'al", 3]}, "o": {"$like": "%x%"}})
    assert "k'ey" not in f.sql and "v'al" not in f.sql and "%x%" not in f.sql


@pytest.mark.parametrize("bad,word", [
    ({"a": {"$between": [1, 2]}}, "$between"),
    ({"$xor": [{"a": 1}]}, "$xor"),
    ({"a": {"$gt": [1]}}, "$gt"),
    ({"a": {"$gt": None}}, "$gt"),
    ({"a": {"$in": 3}}, "$in"),
    ({"a": {"$in": [[1]]}}, "$in"),
    ({"a": {"$size": -1}}, "$size"),
    ({"a": {"$exists": "yes"}}, "$exists"),
    ({"a": {"$like": 3}}, "$like"),
    ({"a": {"$contains": {"x": 1}}}, "$contains"),
    ({"a": {"$gt": 1, "b": 2}}, "'a'"),
    ({"$and": {"a": 1}}, "$and"),
    ({"$or": []}, "$or"),
    ({"$not": [{"a": 1}]}, "$not"),
    ({"a..b": 1}, "a..b"),
    ({'a"b': 1}, 'a"b'),
    ({"a": {"$not": 3}}, "$not"),
])
def test_malformed_filters_name_the_problem(bad, word):
    with pytest.raises(FilterError) as exc:
        compile_filter(bad)
    assert word in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_non_dict_filter_is_refused():
    with pytest.raises(FilterError):
        compile_filter([{"a": 1}])
    with pytest.raises(FilterError):
        compile_filter({"a": float("nan")})


def test_callable_filter():
    f = compile_filter(lambda m: m.get("year", 0) > 2000)
    assert f.sql is None and f.key is None
    assert f.matches({"year": 2001}) and not f.matches({})


@pytest.mark.parametrize("value,word", [
    (b"bytes", "bytes"), ({1, 2}, "set"), (float("nan"), "nan"), (2**70, "64 bits"), ({"x": object()}, "x"),
])
def test_metadata_that_json_cannot_hold(value, word):
    with pytest.raises(ValueError) as exc:
        check_metadata({"key": value})
    assert "key" in str(exc.value) and word in str(exc.value)


# ---- SQL and Python agree on random filters ----------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 1.0, 2.5]),
                    st.sampled_from(["a", "b", "ab", "", "Ä"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3))
keys = st.sampled_from(["a", "b", "c", "n.x"])
metas = st.fixed_dictionaries({}, optional={"a": values, "b": values, "c": values,
                                            "n": st.fixed_dictionaries({}, optional={"x": values})})


def field_ops():
    return st.one_of(
        scalars.map(lambda v: {"$eq": v}), scalars.map(lambda v: {"$ne": v}),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
                  st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b", ""]))).map(lambda t: {t[0]: t[1]}),
        st.lists(scalars, max_size=3).map(lambda v: {"$in": v}), st.lists(scalars, max_size=3).map(lambda v: {"$nin": v}),
        scalars.map(lambda v: {"$contains": v}), st.sampled_from(["a", "ä", "B"]).map(lambda v: {"$icontains": v}),
        st.sampled_from(["a%", "%b", "_", "%"]).map(lambda v: {"$like": v}),
        st.lists(scalars, max_size=2).map(lambda v: {"$all": v}), st.integers(0, 2).map(lambda v: {"$size": v}),
        st.booleans().map(lambda v: {"$exists": v}), st.booleans().map(lambda v: {"$empty": v}),
    )


leaf = st.builds(lambda k, op: {k: op}, keys, st.one_of(field_ops(), field_ops().map(lambda o: {"$not": o})))
filters = st.recursive(leaf, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda x: {"$and": x}),
    st.lists(inner, min_size=1, max_size=3).map(lambda x: {"$or": x}),
    st.lists(inner, min_size=1, max_size=3).map(lambda x: {"$nor": x}),
    inner.map(lambda x: {"$not": x})), max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(metas, min_size=1, max_size=8), filters)
def test_sql_equals_python(docs, spec):
    conn = sqlite3.connect(":memory:")
    register_sql_functions(conn)
    conn.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")
    conn.executemany("INSERT INTO docs VALUES (?, ?)", [(i, check_metadata(m)) for i, m in enumerate(docs)])
    f = compile_filter(spec)
    got = [r for (r,) in conn.execute(f"SELECT rowid FROM docs WHERE {f.sql} ORDER BY rowid", dict(f.params))]
    assert got == [i for i, m in enumerate(docs) if f.matches(m)]
    conn.close()
