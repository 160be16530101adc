"""Durability: children writing to a store are SIGKILLed at random instants.

Each child applies a deterministic sequence of adds, upserts, deletes and
delete_wheres (merges into the graph and compactions happen often: ``merge_rows`` is small)
and reports on a pipe after every call that returned.  After the kill the
store must reopen, pass its consistency check and hold exactly what the
reference holds after the last reported call, or after the one in flight
(which may have committed just before the kill), with a keyword index that
holds exactly those documents.  ``LEANN_CRASH_KILLS``
sets the number of kills (default 100).
"""

from __future__ import annotations

import os
import random
import signal
import time

import numpy as np
import pytest

from leann_store import LeannStore, StoreConfig
from store_util import WORDS, HashEmbed, Reference, text_vector

KILLS = int(os.environ.get("LEANN_CRASH_KILLS", "100"))
CFG = StoreConfig.from_options(graph_rows=16, merge_rows=16)


def operations(seed: int):
    """The child's calls, as (name, args) with args fixed by the seed alone."""
    rng = np.random.default_rng(seed)
    for step in range(10_000):
        r = rng.random()
        if r < 0.6:
            n = int(rng.integers(1, 30))
            ids = [f"d{int(i)}" for i in rng.integers(0, 150, size=n)]
            texts = [" ".join(rng.choice(WORDS, 3)) + f" s{seed}" for _ in ids]
            metas = [{"g": int(rng.integers(0, 5)), "seed": seed, "step": step} for _ in ids]
            yield "add", (texts, metas, ids, bool(rng.random() < 0.5))
        elif r < 0.9:
            yield "delete", ([f"d{int(i)}" for i in rng.integers(0, 150, size=int(rng.integers(1, 8)))],)
        else:
            yield "delete_where", ({"g": int(rng.integers(0, 5)), "step": {"$lt": step - 5}},)


def apply(target, op):
    name, args = op
    if name == "add":
        texts, metas, ids, vectors = args
        emb = np.stack([text_vector(t) for t in texts]) if vectors else None
        if isinstance(target, Reference):
            target.add(texts, metas, ids)
        else:
            target.add(texts, metadatas=metas, ids=ids, embeddings=emb)
    elif name == "delete":
        target.delete(args[0])
    else:
        target.delete_where(args[0])


def child(path: str, seed: int, fd: int) -> None:
    store = LeannStore.open(path, embed=HashEmbed(), config=CFG)
    os.write(fd, b"r\n")
    for i, op in enumerate(operations(seed)):
        apply(store, op)
        os.write(fd, f"{i}\n".encode())


def run_child(path: str, seed: int, kill_after: float) -> int:
    """Fork a writer, kill it kill_after seconds after it opened the store;
    returns how many calls it reported as returned."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            child(path, seed, w)
        finally:
            os._exit(0)
    os.close(w)
    buf = b""
    with os.fdopen(r, "rb", buffering=0) as f:
        while b"r\n" not in buf:
            chunk = f.read(64)
            if not chunk:
                break
            buf += chunk
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        buf += f.read()
    lines = [x for x in buf.decode().split("\n") if x and x != "r"]
    return int(lines[-1]) + 1 if lines else 0


def snapshot(store: LeannStore) -> dict:
    return {r.id: (r.text, r.metadata) for r in store.find()}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_at_random_instants(tmp_path):
    path = str(tmp_path / "store")
    LeannStore.open(path, embed=HashEmbed(), config=CFG).close()
    ref = Reference()
    rnd = random.Random(1234)
    merges_seen = set()
    for kill in range(KILLS):
        seed = 1000 + kill
        done = run_child(path, seed, rnd.uniform(0.02, 0.8))
        ops = operations(seed)
        for _ in range(done):
            apply(ref, next(ops))
        store = LeannStore.open(path, embed=HashEmbed())
        store.check()
        got = snapshot(store)
        if got != ref.docs:  # the call in flight committed before the kill
            apply(ref, next(ops))
            assert got == ref.docs, f"kill {kill}: store differs from the reference after {done} calls"
        q = text_vector("alpha beta")
        assert len(store.search(q, k=5)) == min(5, len(ref.docs))
        # the keyword index committed and rolled back with the rows: every text holds a word
        # of WORDS, so a query of all of them finds exactly the documents
        every = store.search(None, k=len(ref.docs) + 5, text=" ".join(WORDS), mode="keyword")
        assert sorted(h.id for h in every) == sorted(ref.docs) and every.stats["keyword"] == len(ref.docs)
        merges_seen.add(store.stats()["generation"])
        store.close()
    assert max(merges_seen) >= 5  # kills landed in a store that kept merging
