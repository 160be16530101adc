"""Soak: one writer process adds, upserts, deletes, delete_wheres, merges
and compacts while reader processes (read_only=True), each with several
threads, search.  Every hit of every search is checked against the
committed states the search may have seen (those between the writer's
progress before it and after it, plus the call then in flight): the id held
exactly that text then, the filter holds, the distance is the exact one for
that text, the hits are in order and k of them; nothing crashes or hangs,
and the store ends at exactly the writer's last state and passes check().

``LEANN_SOAK_SECONDS`` (default 15) sets the duration; by hand:
``LEANN_SOAK_SECONDS=1800 nice -n 19 python -m pytest tests/test_soak.py -s``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from bisect import bisect_right
from pathlib import Path

import numpy as np

from leann_store import LeannStore, StoreConfig
from store_util import HashEmbed, text_vector

SECONDS = float(os.environ.get("LEANN_SOAK_SECONDS", "15"))
READERS, THREADS = 2, 3
WORKER = str(Path(__file__).resolve().parent / "soak_worker.py")


@functools.lru_cache(maxsize=1 << 16)
def unit_vector(text: str) -> np.ndarray:
    """``text``'s vector, normalised (texts recur across millions of hits)."""
    x = text_vector(text).astype(np.float64)
    return x / np.linalg.norm(x)


def cos_dist(q: np.ndarray, text: str) -> float:
    q64 = q.astype(np.float64)
    return float(1.0 - unit_vector(text) @ q64 / np.linalg.norm(q64))


def test_soak(tmp_path):
    path = tmp_path / "store"
    s = LeannStore.open(path, HashEmbed(), StoreConfig(graph_rows=32, merge_rows=32))
    ids = [f"k{i}" for i in range(60)] + [f"d{i}" for i in range(100)]
    texts = [f"alpha beta {i} v0" for i in ids]
    metas = [{"g": int(i[1:]) % 4, "step": 0} for i in ids]
    s.add(texts, ids=ids, metadatas=metas)
    s.close()
    history: dict[str, list[tuple[int, str | None, int | None]]] = {
        i: [(0, t, m["g"])] for i, t, m in zip(ids, texts, metas)}

    procs = [subprocess.Popen([sys.executable, WORKER, "writer", str(path), str(SECONDS), "1"],
                              stderr=subprocess.PIPE, text=True)]
    outs = [tmp_path / f"reader{r}.jsonl" for r in range(READERS)]
    procs += [subprocess.Popen([sys.executable, WORKER, "reader", str(path), str(SECONDS), str(r + 2), str(THREADS),
                                str(outs[r])], stderr=subprocess.PIPE, text=True) for r in range(READERS)]
    for p in procs:
        _, err = p.communicate(timeout=SECONDS + 600)
        assert p.returncode == 0, err[-3000:]

    calls = 0
    with open(tmp_path / "ops.jsonl") as f:
        for line in f:
            c = json.loads(line)
            if c["op"] == "add":
                calls += 1
                for i, t, m in zip(c["ids"], c["texts"], c["metas"]):
                    history.setdefault(i, []).append((c["seq"], t, m["g"]))
            elif c["op"] in ("delete", "deleted"):
                calls += c["op"] == "delete"
                for i in c["ids"]:
                    history.setdefault(i, []).append((c["seq"], None, None))
            else:
                calls += 1
    seqs = {i: [h[0] for h in hs] for i, hs in history.items()}
    # live documents per state (seq) and per g: a search with a filter on g
    # finds min(k, that many) in some state it could have seen
    events = sorted((seq, i, g) for i, hs in history.items() for seq, _, g in hs)
    cur: dict[str, int | None] = {}
    counts: dict[int, list[int]] = {}  # seq -> [all, g0, g1, g2, g3]
    c = [0] * 5
    for seq, i, g in events:
        old = cur.get(i)
        if old is not None:
            c[0] -= 1
            c[1 + old] -= 1
        if g is not None:
            c[0] += 1
            c[1 + g] += 1
        cur[i] = g
        counts[seq] = list(c)
    last_seq = max(counts)
    order = sorted(counts)

    def live(v: int, g: int | None) -> int:
        at = counts[order[max(bisect_right(order, v) - 1, 0)]]
        return at[0] if g is None else at[1 + g]

    def possible(i: str, a: int, b: int) -> set[tuple[str | None, int | None]]:
        """(text, g) the id may have had in some state a..b."""
        hs = history.get(i, [])
        lo = bisect_right(seqs.get(i, []), a) - 1
        hi = bisect_right(seqs.get(i, []), b)
        return {(t, g) for _, t, g in hs[max(lo, 0):hi]} if hs else set()

    searches = hits_checked = 0
    for out in outs:
        with open(out) as f:
            for line in f:
                rec = json.loads(line)
                searches += 1
                q = np.array(rec["q"], dtype=np.float32)
                a, b = rec["a"], rec["b"] + 1
                want = {min(rec["k"], live(v, rec["g"])) for v in range(a, min(b, last_seq) + 1)}
                assert len(rec["hits"]) in want, (len(rec["hits"]), want, rec)
                dists = [h[3] for h in rec["hits"]]
                assert dists == sorted(dists), rec
                assert len({h[0] for h in rec["hits"]}) == len(rec["hits"]), rec
                for i, text, g, d in rec["hits"]:
                    assert (text, g) in possible(i, a, b), (i, text, g, a, b, history.get(i))
                    assert rec["g"] is None or g == rec["g"], rec
                    assert abs(d - cos_dist(q, text)) < 1e-4, (d, cos_dist(q, text))
                    hits_checked += 1
    assert searches > 20 * READERS and calls > 20

    final = {i: hs[-1][1] for i, hs in history.items() if hs[-1][1] is not None}
    s = LeannStore.open(path, HashEmbed(), read_only=True)
    try:
        s.check()
        held = {r.id: r.text for r in s.find(None)}
        assert held == final
    finally:
        s.close()
    print(f"soak: {SECONDS:.0f} s, {calls} writer calls, {searches} searches from {READERS}x{THREADS} reader threads, "
          f"{hits_checked} hits checked")
