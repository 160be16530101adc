"""One index, several Python threads: searches run side by side (the GIL is
released in C) while other threads delete ids or resize the row cache."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import clustered, queries_near
from leann_store import IndexConfig, LeannIndex
from leann_store.errors import InvalidInputError

N, DIM = 2000, 32


@pytest.fixture(scope="module")
def data():
    x = clustered(N, DIM, seed=31)
    return x, queries_near(x, 24, seed=7)


def _run(workers: list) -> None:
    """Start every callable on its own thread; re-raise the first error."""
    errors: list[BaseException] = []

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guard(fn)) for fn in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]


def test_concurrent_searches_match_sequential(data):
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, threads=1))
    index.cache_bytes = 1 << 20  # shared by the threads: a mutex inside
    want = index.search(q, k=10, embed=lambda ids: x[ids]).ids
    got: dict[int, np.ndarray] = {}

    def searcher(t):
        def run():
            for _ in range(5):
                got[t] = index.search(q, k=10, embed=lambda ids: x[ids]).ids
                np.testing.assert_array_equal(got[t], want)
        return run

    _run([searcher(t) for t in range(4)])
    assert len(got) == 4


def test_cache_resize_and_deletes_while_searching(data):
    """Resizing the row cache frees it: a search that still used it would
    read freed memory.  Writers wait for searches and searches for writers."""
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, threads=1))
    stop = threading.Event()
    deleted = set(range(0, N, 97))

    def searcher():
        while not stop.is_set():
            res = index.search(q, k=10, embed=lambda ids: x[ids])
            assert ((res.ids >= 0) & (res.ids < N)).all()

    def resizer():
        try:
            for i in range(300):
                index.cache_bytes = (i % 3) * (64 << 10)
            index.delete(sorted(deleted))
            for i in range(100):
                index.cache_bytes = (i % 2) * (64 << 10)
        finally:
            stop.set()

    _run([searcher, searcher, resizer])
    assert index.deleted_count == len(deleted)
    res = index.search(q, k=10, embed=lambda ids: x[ids])
    assert not set(res.ids.ravel().tolist()) & deleted


def test_stored_vector_searches_beside_deletes(data):
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, threads=1, store_vectors=True))
    victims = list(range(1, N, 50))

    def searcher():
        for _ in range(20):
            res = index.search(q, k=5, threads=2)
            assert ((res.ids >= 0) & (res.ids < N)).all()

    def deleter():
        for v in victims:
            index.delete([v])

    _run([searcher, searcher, deleter])
    assert index.deleted_count == len(victims)


def test_embed_may_search_the_same_index(data):
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, threads=1))
    inner = []

    def embed(ids):
        if not inner:
            inner.append(index.search(q[0], k=3, embed=lambda i: x[i]).ids)
        return x[ids]

    res = index.search(q[1], k=5, embed=embed)
    assert len(res.ids) == 5 and len(inner[0]) == 3


def test_embed_may_not_change_the_index_it_serves(data):
    """Deleting from inside the search's own callback would wait for that
    search forever: it is refused with a clear error, and nothing changes."""
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, threads=1))

    def embed(ids):
        index.delete([int(ids[0])])
        return x[ids]

    with pytest.raises(InvalidInputError, match="inside a search of the same index") as info:
        index.search(q[0], k=5, embed=embed)
    assert "after the search returns" in str(info.value.__cause__ or info.value)
    assert index.deleted_count == 0
    assert len(index.search(q[0], k=5, embed=lambda ids: x[ids]).ids) == 5  # still usable


def test_two_level_batch_on_threads_matches_serial(data):
    """threads=N runs a batch's two-level queries side by side (opt-in: the
    embed function is then called from several threads)."""
    x, q = data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=16, seed=0, threads=1))
    index.cache_bytes = 0
    callers = set()

    def embed(ids):
        callers.add(threading.get_ident())
        return x[ids]

    serial = index.search(q, k=10, embed=embed)
    assert len(callers) == 1  # the default stays on the calling thread
    callers.clear()
    both = threading.Event()

    def side_by_side(ids):
        """The first caller waits for a second thread (a thread pool hands a
        later share to an idle thread when one is done already: on a busy
        machine the first share could otherwise end before the next starts)."""
        callers.add(threading.get_ident())
        if len(callers) >= 2:
            both.set()
        if not both.wait(timeout=60):
            both.set()  # no second thread came: the assertion below says so
        return x[ids]

    par = index.search(q, k=10, embed=side_by_side, threads=3)
    np.testing.assert_array_equal(par.ids, serial.ids)
    np.testing.assert_array_equal(par.distances, serial.distances)
    for key in (k for k in serial.stats if not k.endswith("_us")):  # timings differ run to run
        np.testing.assert_array_equal(par.stats[key], serial.stats[key])
    assert len(callers) >= 2

    def failing(ids):
        if 7 in ids:
            raise KeyError("no passage 7")
        return x[ids]

    with pytest.raises(KeyError) as info:
        index.search(q, k=10, embed=failing, threads=3, allowed=np.arange(N))
    assert any("embed function failed" in n for n in getattr(info.value, "__notes__", []))
    assert len(index.search(q, k=10, embed=embed, threads=3).ids) == len(q)  # still usable
