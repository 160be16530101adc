"""The processes of tests/test_soak.py (run as scripts).

``writer PATH SECONDS SEED``: adds, upserts, deletes, delete_wheres,
flushes and compactions for SECONDS.  Before each call it appends the call
to PATH/../ops.jsonl (so that a reader that sees the commit of a call in
flight can be checked against it), then runs it, then writes the number of
calls done to PATH/../done (8 bytes).

``reader PATH SECONDS SEED THREADS OUT``: opens the store read-only and
searches from THREADS threads; each search records the calls done before
and after it and its hits, to OUT (JSON lines), for the parent to check.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leann_store import LeannStore  # noqa: E402
from store_util import WORDS, HashEmbed, text_vector  # noqa: E402

KEEP = 60  # ids k0..k59: upserted, never delete()d (delete_where may take them)


def text_of(i: str, step: int, rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, 3)) + f" {i} v{step}"


def done_count(base: Path) -> int:
    try:
        with open(base / "done", "rb") as f:
            b = f.read(8)
        return struct.unpack("<q", b)[0] if len(b) == 8 else 0
    except FileNotFoundError:
        return 0


def writer(path: str, seconds: float, seed: int) -> None:
    base = Path(path).parent
    rng = np.random.default_rng(seed)
    store = LeannStore.open(path, HashEmbed())
    ops = open(base / "ops.jsonl", "a")
    done_fd = os.open(base / "done", os.O_RDWR | os.O_CREAT)
    end = time.monotonic() + seconds
    step = done_count(base)
    while time.monotonic() < end:
        step += 1
        r = rng.random()
        if r < 0.55:
            ids = [f"d{int(i)}" for i in rng.integers(0, 400, size=int(rng.integers(1, 20)))]
            if rng.random() < 0.3:
                ids += [f"k{int(i)}" for i in rng.integers(0, KEEP, size=3)]
            ids = list(dict.fromkeys(ids))
            texts = [text_of(i, step, rng) for i in ids]
            metas = [{"g": int(i[1:]) % 4 if i.startswith("k") else int(rng.integers(0, 4)), "step": step}
                     for i in ids]
            call = {"op": "add", "ids": ids, "texts": texts, "metas": metas}
        elif r < 0.8:
            call = {"op": "delete", "ids": [f"d{int(i)}" for i in rng.integers(0, 400, size=int(rng.integers(1, 12)))]}
        elif r < 0.88:
            call = {"op": "delete_where", "filter": {"g": int(rng.integers(0, 4)), "step": {"$lt": step - 20}}}
        elif r < 0.95:
            call = {"op": "flush"}
        else:
            call = {"op": "compact"}
        call["seq"] = step
        ops.write(json.dumps(call) + "\n")
        ops.flush()
        if call["op"] == "add":
            store.add(call["texts"], ids=call["ids"], metadatas=call["metas"])
        elif call["op"] == "delete":
            store.delete(call["ids"])
        elif call["op"] == "delete_where":
            # what it deleted is recorded after the fact from a get of the ids it matched
            gone = [r.id for r in store.find(call["filter"])]
            store.delete_where(call["filter"])
            ops.write(json.dumps({"op": "deleted", "seq": step, "ids": gone}) + "\n")
            ops.flush()
        elif call["op"] == "flush":
            store.flush()
        else:
            store.compact()
        os.pwrite(done_fd, struct.pack("<q", step), 0)
    store.check()
    store.close()


def reader(path: str, seconds: float, seed: int, threads: int, out: str) -> None:
    base = Path(path).parent
    store = LeannStore.open(path, HashEmbed(), read_only=True)
    lock = threading.Lock()
    f = open(out, "w")
    end = time.monotonic() + seconds
    errors: list[str] = []

    def run(slot: int) -> None:
        rng = np.random.default_rng(seed * 100 + slot)
        try:
            while time.monotonic() < end:
                q = text_vector(" ".join(rng.choice(WORDS, 2)))
                g = int(rng.integers(0, 4))
                flt = {"g": g} if rng.random() < 0.4 else None
                k = int(rng.integers(1, 12))
                before = done_count(base)
                hits = store.search(q, k=k, filter=flt)
                after = done_count(base)
                rec = {"q": q.tolist(), "k": k, "g": g if flt else None, "a": before, "b": after,
                       "hits": [[h.id, h.text, h.metadata.get("g"), h.distance] for h in hits]}
                with lock:
                    f.write(json.dumps(rec) + "\n")
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            errors.append(f"{type(exc).__name__}: {exc}")

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=seconds + 120)
    if any(t.is_alive() for t in ts):
        errors.append("deadlock: a reader thread did not finish")
    f.close()
    store.close()
    if errors:
        print("READER ERRORS", errors[:3], file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "writer":
        writer(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    else:
        reader(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
