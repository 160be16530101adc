#!/usr/bin/env python3
"""Hybrid search benchmark: dense, keyword (BM25) and hybrid through LeannStore.search.

Data: ``../shared/bench/devcorpus``.  One store of the 50,000 passages (ids
as in the corpus, the stored embeddings added as they are; the embed
function looks passages up by text, so recompute counts are the real ones
and timings leave the model out), default settings.

1. Relevance on ``queries_labeled.jsonl`` (all 2,000 keyword queries with
   known answers): hit@10 (any passage of the query's own docstring in the
   top 10) and MRR@10 of the store's dense, keyword and hybrid searches,
   with ``--variants`` of the hybrid options beside the default.
2. Overlap on the summary and short query sets (``queries.jsonl``,
   ``queries_short.jsonl``): the mean share of hybrid's top 10 that dense's
   top 10 also holds, and how often they are the same set.
3. Cost: per query, ``--runs`` timed dense and hybrid searches in
   alternating order after a warm-up dense search (so both find the same
   warm caches); the median of the per-query differences (hybrid - dense),
   and the keyword side's own median ms.  Passages scored exactly per query
   (recomputed + cache hits) of dense against hybrid's dense side: equal
   for every query is the claim.
4. Size: the keyword index's bytes per passage beside the graph's.

This machine may be shared: timings are medians, and say so.

Usage: python benchmarks/hybrid_bench.py [--n 50000] [--queries 2000] [--runs 3]
       [--variants "rrf_k=10;alpha=0.5"] [--store DIR (reuse/keep the built store)]
Prints tables and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS = REPO / ".." / "shared" / "bench" / "devcorpus"
RESULTS = HERE / "results"
sys.path.insert(0, str(REPO))

from leann_store import LeannStore  # noqa: E402


class Lookup:
    """embed(texts) by looking the passages' stored embeddings up."""

    def __init__(self, emb: np.ndarray, texts: list[str]) -> None:
        self.emb = emb
        self.row: dict[str, int] = {}
        for i, t in enumerate(texts):
            self.row.setdefault(t, i)
        self.probe = np.random.default_rng(0).normal(size=emb.shape[1]).astype(np.float32)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.emb[self.row[t]] if t in self.row else self.probe for t in texts])


def load(n: int):
    emb = np.load(CORPUS / "emb_f16.npy")[:n].astype(np.float32)
    ids, texts = [], []
    with gzip.open(CORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            ids.append(d["id"])
            texts.append(d["text"])
            if len(texts) == n:
                break
    return emb, ids, texts


def queries(name: str, emb_name: str, nq: int) -> tuple[list[dict], np.ndarray]:
    qs = [json.loads(line) for line in open(CORPUS / name, encoding="utf-8")][:nq]
    return qs, np.load(CORPUS / emb_name)[:nq].astype(np.float32)


def parse_variants(spec: str) -> list[dict]:
    out = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        opts = {}
        for kv in part.split(","):
            key, val = kv.split("=")
            opts[key.strip()] = float(val) if "." in val else int(val)
        out.append(opts)
    return out


def relevance(store: LeannStore, qs: list[dict], qemb: np.ndarray, runs: list[tuple[str, dict]]) -> dict:
    out = {}
    for name, opts in runs:
        hits = rr = 0.0
        t = time.perf_counter()
        for q, e in zip(qs, qemb):
            got = [h.id for h in store.search(e, 10, text=q["text"], **opts)]
            rel = set(q["relevant"])
            for pos, x in enumerate(got):
                if x in rel:
                    hits += 1
                    rr += 1 / (pos + 1)
                    break
        out[name] = {"options": opts, "hit10": hits / len(qs), "mrr10": rr / len(qs),
                     "seconds": time.perf_counter() - t}
        print(f"  {name:28} hit@10 {hits / len(qs):.3f}  MRR@10 {rr / len(qs):.3f}", flush=True)
    return out


def overlap(store: LeannStore, qs: list[dict], qemb: np.ndarray) -> dict:
    shares, same = [], 0
    for q, e in zip(qs, qemb):
        d = {h.id for h in store.search(e, 10)}
        h = {h.id for h in store.search(e, 10, text=q["text"], mode="hybrid")}
        shares.append(len(d & h) / 10)
        same += d == h
    return {"mean_overlap": float(np.mean(shares)), "identical": same / len(qs)}


def cost(store: LeannStore, qs: list[dict], qemb: np.ndarray, runs: int) -> dict:
    diffs, dense_ms, kw_ms, equal, scored_d, scored_h = [], [], [], 0, [], []
    for i, (q, e) in enumerate(zip(qs, qemb)):
        store.search(e, 10)  # warm-up: the caches now hold what this query needs
        for r in range(runs):
            order = ("dense", "hybrid") if (i + r) % 2 == 0 else ("hybrid", "dense")
            ms = {}
            for mode in order:
                hits = store.search(e, 10, text=q["text"], mode=mode)
                ms[mode] = hits.stats["ms"]
                if mode == "hybrid":
                    kw_ms.append(hits.stats["keyword_ms"])
                    sh = hits.stats["recomputed"] + hits.stats["cache_hits"]
                else:
                    sd = hits.stats["recomputed"] + hits.stats["cache_hits"]
            diffs.append(ms["hybrid"] - ms["dense"])
            dense_ms.append(ms["dense"])
            if r == 0:
                equal += sd == sh
                scored_d.append(sd)
                scored_h.append(sh)
    return {"added_ms_median": statistics.median(diffs), "dense_ms_median": statistics.median(dense_ms),
            "keyword_side_ms_median": statistics.median(kw_ms),
            "scored_per_query_dense": float(np.mean(scored_d)), "scored_per_query_hybrid": float(np.mean(scored_h)),
            "queries_with_equal_scoring": equal / len(qs)}


def relevance_and_overlap(store: LeannStore, qs: list[dict], qemb: np.ndarray, args: argparse.Namespace,
                          result: dict) -> None:
    """Parts 1 and 2 (see the module docs)."""
    print(f"relevance, {len(qs)} labeled queries:")
    runs = [("dense", {"mode": "dense"}), ("keyword", {"mode": "keyword"}), ("hybrid", {"mode": "hybrid"})]
    runs += [("hybrid " + ",".join(f"{k}={v}" for k, v in o.items()), {"mode": "hybrid", **o})
             for o in parse_variants(args.variants)]
    result["labeled"] = relevance(store, qs, qemb, runs)
    result["overlap"] = {}
    for name, qf, ef in (("summary", "queries.jsonl", "qemb_f16.npy"),
                         ("short", "queries_short.jsonl", "qemb_short_f16.npy")):
        sq, se = queries(qf, ef, args.queries)
        result["overlap"][name] = ov = overlap(store, sq, se)
        print(f"overlap of hybrid's top 10 with dense's, {name} ({len(sq)} q): mean {ov['mean_overlap']:.3f}, "
              f"identical sets {ov['identical']:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cost-queries", type=int, default=500)
    ap.add_argument("--variants", default="rrf_k=10;alpha=0.5;keyword_depth=10")
    ap.add_argument("--only-cost", action="store_true", help="skip relevance and overlap (timings only)")
    ap.add_argument("--store", default=None, help="store directory to reuse (built there if absent, kept)")
    args = ap.parse_args()

    emb, ids, texts = load(args.n)
    path = args.store or tempfile.mkdtemp(prefix="hybrid-bench-")
    fresh = not os.path.exists(os.path.join(path, "docstore.sqlite"))
    t = time.perf_counter()
    store = LeannStore.open(path, embed=Lookup(emb, texts), model="lookup")
    if fresh:
        store.add(texts, metadatas=[{"i": i} for i in range(len(texts))], ids=ids, embeddings=emb)
    build_s = time.perf_counter() - t
    st = store.stats()
    result: dict = {"n": st["documents"], "platform": platform.platform(), "cpus": os.cpu_count(),
                    "build_s": build_s if fresh else None,
                    "bytes_per_passage": {"graph": st["bytes_per_passage"],
                                          "keywords": st["keyword_bytes"] / st["documents"]}}
    print(f"store: {st['documents']} passages ({'built in %.0f s' % build_s if fresh else 'reused'}); bytes per "
          f"passage: graph {st['bytes_per_passage']:.0f}, keyword index {st['keyword_bytes'] / st['documents']:.0f}")
    try:
        qs, qemb = queries("queries_labeled.jsonl", "qemb_labeled_f16.npy", args.queries)
        if not args.only_cost:
            relevance_and_overlap(store, qs, qemb, args, result)
        cq = args.cost_queries
        result["load_average"] = os.getloadavg()
        result["cost"] = c = cost(store, qs[:cq], qemb[:cq], args.runs)
        print(f"cost ({cq} labeled queries x {args.runs} runs, medians; load average "
              f"{result['load_average'][0]:.1f} on {os.cpu_count()} cores): dense "
              f"{c['dense_ms_median']:.2f} ms, hybrid adds {c['added_ms_median']:.2f} ms (keyword side "
              f"{c['keyword_side_ms_median']:.2f} ms); passages scored exactly per query: dense "
              f"{c['scored_per_query_dense']:.1f}, hybrid {c['scored_per_query_hybrid']:.1f}, equal on "
              f"{100 * c['queries_with_equal_scoring']:.1f}% of queries")
    finally:
        store.close()
        if not args.store:
            shutil.rmtree(path, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    dest = RESULTS / f"hybrid_bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.write_text(json.dumps(result, indent=2))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
