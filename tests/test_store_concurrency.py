"""Many threads searching while one thread writes (the frameworks' async
methods run in thread pools): every hit is a document that existed at some
point with exactly that text, filters hold, nothing deadlocks."""

from __future__ import annotations

import threading
import time

import numpy as np

from leann_store import LeannStore, StoreConfig
from store_util import WORDS, HashEmbed, text_vector

SECONDS = 4.0


def test_eight_searchers_and_a_writer(tmp_path):
    store = LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=StoreConfig.from_options(graph_rows=32, merge_rows=32))
    rng = np.random.default_rng(0)
    ever: dict[str, set[str]] = {}  # id -> every text it ever had
    ever_lock = threading.Lock()

    def texts(n):
        return [" ".join(rng.choice(WORDS, 3)) for _ in range(n)]

    first = texts(100)
    ids = [f"d{i}" for i in range(100)]
    for i, t in zip(ids, first):
        ever.setdefault(i, set()).add(t)
    store.add(first, ids=ids, metadatas=[{"g": i % 4} for i in range(100)])
    stop = threading.Event()
    failures: list[BaseException] = []
    searches = [0] * 8

    def writer():
        wrng = np.random.default_rng(1)
        try:
            while not stop.is_set():
                ids = [f"d{int(i)}" for i in wrng.integers(0, 200, size=8)]
                tx = [" ".join(wrng.choice(WORDS, 3)) for _ in ids]
                with ever_lock:
                    for i, t in zip(ids, tx):
                        ever.setdefault(i, set()).add(t)
                store.add(tx, ids=ids, metadatas=[{"g": int(i[1:]) % 4} for i in ids])
                store.delete([f"d{int(i)}" for i in wrng.integers(0, 200, size=3)])
                if wrng.random() < 0.05:
                    store.flush()
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def searcher(slot):
        srng = np.random.default_rng(100 + slot)
        try:
            while not stop.is_set():
                q = text_vector(" ".join(srng.choice(WORDS, 2)))
                g = int(srng.integers(0, 4))
                flt = {"g": g} if slot % 2 else None
                hits = store.search(q, k=5, filter=flt)
                assert len(hits) == 5
                for h in hits:
                    with ever_lock:
                        assert h.text in ever[h.id]
                    assert flt is None or h.metadata["g"] == g
                    assert int(h.id[1:]) % 4 == h.metadata["g"]
                searches[slot] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=searcher, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "deadlock: a thread did not finish"
    assert not failures, failures[0]
    assert all(n > 0 for n in searches)
    store.check()
    store.close()
