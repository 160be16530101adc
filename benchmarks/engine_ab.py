"""The search engine's own costs, for comparing two versions of leann-store.

A change to the C walk must leave recall, recompute counts, build time and
stored-vector QPS where they were.  This script measures them for whichever
``leann_store`` Python imports, so two checkouts compare side by side:

    git worktree add /tmp/base <commit> && (cd /tmp/base && python leann_store/_build_native.py)
    PYTHONPATH=/tmp/base python benchmarks/engine_ab.py      # the base
    python benchmarks/engine_ab.py                           # this tree

Interleave several runs of each and quote medians (2 noisy cores).
Measured on the devcorpus (50k MiniLM passages, both query sets):
  * the default vector-free index: build time; per set, recall@10, mean
    recomputes and the per-query time of the default search with a lookup
    embed (the walk on codes plus the exact scores, no model), unfiltered
    and with a random 50% filter (the walk with hidden nodes);
  * small filters (2 / 10 / 30% allowed: scanned, not walked): time;
  * ``store_vectors=True``: QPS on one thread at ef 32 / 64 (best of 3),
    and at ef 64 with 1% of the ids deleted (the walk with tombstones).
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parent.parent / ".." / "shared" / "bench" / "devcorpus"


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def topk(x: np.ndarray, q: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    s = q @ x.T
    if allowed is not None:
        mask = np.full(len(x), -np.inf)
        mask[allowed] = 0.0
        s = s + mask
    return np.argsort(-s, axis=1)[:, :10]


def timed_searches(index, q: np.ndarray, **kw) -> tuple[list, float]:
    results, times = [], []
    for row in q:
        t = time.perf_counter()
        results.append(index.search(row, k=10, **kw))
        times.append(time.perf_counter() - t)
    return results, 1000.0 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--queries", type=int, default=300)
    args = p.parse_args()
    if not CORPUS.is_dir():
        sys.exit(f"the devcorpus is not at {CORPUS.resolve()} (see benchmarks/README.md)")
    import leann_store
    from leann_store import IndexConfig, LeannIndex

    x = np.load(CORPUS / "emb_f16.npy")[:args.n].astype(np.float32)
    sets = {"summaries": np.load(CORPUS / "qemb_f16.npy")[:args.queries].astype(np.float32),
            "short": np.load(CORPUS / "qemb_short_f16.npy")[:args.queries].astype(np.float32)}
    out: dict = {"leann_store": str(Path(leann_store.__file__).parent), "n": len(x)}
    t = time.perf_counter()
    index = LeannIndex.build(x, IndexConfig(metric="ip", threads=2), progress=False)
    out["build_s"] = time.perf_counter() - t
    index.cache_bytes = 0
    lookup = lambda ids: x[ids]  # noqa: E731
    half = np.flatnonzero(np.random.default_rng(0).random(len(x)) < 0.5)
    for name, q in sets.items():
        for label, allowed in (("", None), ("_filter50", half)):
            res, ms = timed_searches(index, q, embed=lookup, allowed=allowed)
            out[name + label] = {"recall@10": recall(np.array([r.ids for r in res]), topk(x, q, allowed)),
                                 "recomputed": float(np.mean([r.stats["recomputed"] for r in res])), "ms": ms}
    for share in (0.02, 0.1, 0.3):
        allowed = np.flatnonzero(np.random.default_rng(1).random(len(x)) < share)
        _, ms = timed_searches(index, sets["short"], embed=lookup, allowed=allowed, confidence=None,
                               max_recompute=10)
        out[f"scan_{share}_ms"] = ms
    stored = LeannIndex.build(x, IndexConfig(metric="ip", store_vectors=True, threads=2), progress=False)
    q = sets["short"]
    truth = topk(x, q)

    def qps(ef: int) -> tuple[float, float]:
        best, res = float("inf"), None
        for _ in range(3):
            t = time.perf_counter()
            res = stored.search(q, k=10, ef=ef, threads=1)
            best = min(best, time.perf_counter() - t)
        return len(q) / best, recall(res.ids, truth)

    for ef in (32, 64):
        out[f"stored_ef{ef}_qps"], out[f"stored_ef{ef}_recall@10"] = qps(ef)
    stored.delete(np.arange(0, len(x), 100))
    out["stored_ef64_deleted1%_qps"], _ = qps(64)

    print(f"{out['leann_store']}: n={out['n']}, build {out['build_s']:.2f} s")
    for name in sets:
        for label in ("", "_filter50"):
            r = out[name + label]
            print(f"  {name + label:18} R@10 {r['recall@10']:.3f}  recomputed {r['recomputed']:.1f}  "
                  f"{r['ms']:.2f} ms/query (lookup embed)")
    print("  small filters (scanned) ms/query: " +
          ", ".join(f"{s:.0%} {out[f'scan_{s}_ms']:.2f}" for s in (0.02, 0.1, 0.3)))
    print(f"  stored vectors, 1 thread: ef 32 {out['stored_ef32_qps']:.0f} QPS (R@10 "
          f"{out['stored_ef32_recall@10']:.3f}), ef 64 {out['stored_ef64_qps']:.0f} QPS (R@10 "
          f"{out['stored_ef64_recall@10']:.3f}), ef 64 with 1% deleted {out['stored_ef64_deleted1%_qps']:.0f} QPS")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
