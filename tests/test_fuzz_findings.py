"""What the fuzzers (fuzz/) found, each kept as a test with its input."""

from __future__ import annotations

import time

import numpy as np
import pytest

from leann_store import LeannStore
from leann_store.errors import InvalidInputError
from leann_store.filters import compile_filter, like
from store_util import HashEmbed


@pytest.fixture()
def store():
    s = LeannStore.temporary(HashEmbed())
    yield s
    s.close()


def test_composite_equality_on_a_number_or_non_json_text(store):
    """fuzz_filters: {"b": [null, null]} on a document whose b is a number
    (or a string that is no JSON) raised sqlite3.OperationalError from the
    SQL helper: SQLite evaluated leann_json_eq although its JSON-type guard
    was false."""
    store.add(["one", "two", "three", "four"],
              metadatas=[{}, {"b": 9007199254740992}, {"b": "abc"}, {"b": [None, None]}], ids=["1", "2", "3", "4"])
    for spec, want in (({"b": [None, None]}, ["4"]), ({"b": {"$ne": [None, None]}}, ["1", "2", "3"]),
                       ({"b": {"$in": [1]}}, []), ({"b": {"x": 1}}, [])):
        assert sorted(r.id for r in store.find(spec)) == want
        hits = store.search(np.ones(store.dim, dtype=np.float32), k=4, filter=spec)
        assert sorted(h.id for h in hits) == want


def test_metadata_cannot_hold_nul(store):
    """fuzz_filters: {"a": {"$like": "\\u0000"}} matched {"a": "\\u0000"} in
    Python but not in SQL: SQLite's JSON functions end a string at U+0000.
    Such metadata is refused, naming the key, and nothing is added."""
    for meta in ({"a": "\0"}, {"a": "x\0y"}, {"a\0": 1}, {"a": ["ok", "\0"]}, {"a": {"b\0": 1}}):
        with pytest.raises(InvalidInputError, match="U\\+0000"):
            store.add(["text"], metadatas=[meta])
    assert store.count() == 0


def test_like_takes_time_linear_in_the_value():
    """$like was one regex (.*a.*a.*b): a 100-character value against
    '%a%a%a%a%a%a%b' backtracked for 33 s on this machine (n**7)."""
    f = compile_filter({"t": {"$like": "%a%a%a%a%a%a%b"}})
    t0 = time.perf_counter()
    assert not f.matches({"t": "a" * 100}) and not like("a" * 20_000 + "c", "%a_a%a_a%a%b")
    assert f.matches({"t": "a" * 100 + "b"})
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("value,pattern,want", [
    ("", "", True), ("", "%", True), ("a", "", False), ("abc", "a%c", True), ("abc", "%b%", True),
    ("abc", "_b_", True), ("abc", "__", False), ("a%b", "a%b", True), ("aXbXb", "%b%b", True),
    ("ab", "%a%b%", True), ("ba", "%a%b%", False), ("é", "_", True), ("x.y", "x_y", True),
    ("abc", "a%%c", True), ("abcab", "ab%ab", True), ("ab", "ab%ab", False),
])
def test_like_cases(value, pattern, want):
    assert like(value, pattern) is want
