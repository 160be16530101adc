#!/usr/bin/env python3
"""LeannStore benchmark on the devcorpus: bulk add, filtered search, overhead.

Data: ``../shared/bench/devcorpus`` (real passages, all-MiniLM-L6-v2
embeddings, two query sets: one-line summaries and short keyword queries).
The embed function looks passages up in the stored embeddings by text, so
recompute counts are the real ones and timings leave the model out.

1. Bulk add: ``LeannStore.add`` of N passages in one call with precomputed
   embeddings (a fresh store each run) against a bare ``LeannIndex.build``
   of the same rows, and Chroma (``chromadb.PersistentClient``, the same
   embeddings, cosine space) adding the same documents.  Medians of
   ``--runs`` runs, run interleaved.
2. Filtered search: every passage gets ``bucket = i % 1000``; the filters
   ``bucket < 500 / 50 / 1`` match 50% / 5% / 0.1%.  Per query set: recall@10
   against exact search over the allowed rows, how many queries got k hits,
   mean recomputes, and the filter's own cost per query for a new filter
   (first use after a write) and for a repeated one.
3. Store overhead: the same queries through ``LeannStore.search`` and through
   the store's own ``LeannIndex`` with a lookup-by-id embed (identical
   recomputes): the median per-query difference.
4. Adds in batches (``--batch``, default 1000, with embeddings), as RAG
   applications add documents all day: total time against a bare build and
   the one-call add (interleaved, medians of ``--runs``), the passages its
   merges re-embedded (none: merges insert in C), recall@10 and mean
   recomputes at the default search and index bytes per passage against the
   one-call store; Chroma's time for the same batched adds, and hnswlib's and
   FAISS HNSW's (M=32, efConstruction 200, every core: time, bytes, recall@10
   at ef 64).
5. Compaction: delete 30% of a one-call store, ``compact()``: its time and
   embed calls (zero), recall@10 against a fresh store of the rest.
6. Growth: ``--first`` rows (5000) in one add, then batches to N: with
   ``graph_rows=first`` (the graph and its codec built on those rows, the
   rest inserted) and with the default ``graph_rows`` (exact until 16k rows,
   then built), against the one-call store; with the codec drift each ends
   at.
7. Merge policy: ``merge_rows`` 512 / 2048 / 8192 (``--merge-rows``): the
   batched adds' time, and what a full delta costs each query (its exact
   search) and keeps (its vectors).

Usage: python benchmarks/store_bench.py [--n 50000] [--queries 300] [--runs 3] [--parts 1,2,3,4,5,6,7] [--quick]
Prints a table and writes JSON to benchmarks/results/.
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

from leann_store import LeannIndex, LeannStore, StoreConfig  # noqa: E402
from leann_store.store import exact_distances  # noqa: E402


def load(n: int, nq: int):
    emb = np.load(CORPUS / "emb_f16.npy")[:n].astype(np.float32)
    texts = []
    with gzip.open(CORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    qsets = {"summary": np.load(CORPUS / "qemb_f16.npy")[:nq].astype(np.float32),
             "short": np.load(CORPUS / "qemb_short_f16.npy")[:nq].astype(np.float32)}
    return emb, texts, qsets


class Lookup:
    """embed(texts) by looking the passages' stored embeddings up."""

    def __init__(self, emb: np.ndarray, texts: list[str]) -> None:
        self.emb = emb
        self.row = {}
        for i, t in enumerate(texts):
            self.row.setdefault(t, i)
        self.probe = np.random.default_rng(0).normal(size=emb.shape[1]).astype(np.float32)
        self.calls = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        return np.stack([self.emb[self.row[t]] if t in self.row else self.probe for t in texts])


def exact_topk(emb: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    sims = q @ emb.T
    if allowed is not None:
        sims[:, ~allowed] = -np.inf
    part = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def chroma_add(emb: np.ndarray, texts: list[str], metas: list[dict], ids: list[str],
               batch: int | None = None) -> float | None:
    """Seconds Chroma takes to add the rows, ``batch`` a call (None: its largest batch)."""
    try:
        import chromadb
    except ImportError:
        return None
    tmp = tempfile.mkdtemp(prefix="chroma-bench-")
    try:
        client = chromadb.PersistentClient(path=tmp)
        col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
        step = batch or (client.get_max_batch_size() if hasattr(client, "get_max_batch_size") else 5000)
        t = time.perf_counter()
        for s in range(0, len(texts), step):
            col.add(ids=ids[s:s + step], documents=texts[s:s + step], metadatas=metas[s:s + step],
                    embeddings=emb[s:s + step])
        return time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_and_one_call(emb, texts, metas, ids) -> tuple[float, float, LeannStore, str]:
    """A bare ``LeannIndex.build`` of every row, then a fresh store's one
    ``add`` of them: (build s, add s, the open store, its directory)."""
    t = time.perf_counter()
    LeannIndex.build(emb)
    build_s = time.perf_counter() - t
    path = tempfile.mkdtemp(prefix="leann-store-bench-")
    store = LeannStore.open(path, embed=Lookup(emb, texts), model="lookup")
    t = time.perf_counter()
    store.add(texts, metadatas=metas, ids=ids, embeddings=emb)
    return build_s, time.perf_counter() - t, store, path


def bulk_add(emb, texts, metas, ids, runs: int) -> tuple[dict, str]:
    store_t, build_t, chroma_t = [], [], []
    path = ""
    for run in range(runs):
        b, a, store, path = build_and_one_call(emb, texts, metas, ids)
        build_t.append(b)
        store_t.append(a)
        stats = store.stats()
        store.close()
        if run < runs - 1:
            shutil.rmtree(path)
        c = chroma_add(emb, texts, metas, ids)
        if c is not None:
            chroma_t.append(c)
        print(f"  run {run + 1}: store add {store_t[-1]:.2f} s, bare build {build_t[-1]:.2f} s"
              + (f", chroma {chroma_t[-1]:.2f} s" if chroma_t else ""), flush=True)
    med = statistics.median
    out = {"store_add_s": med(store_t), "bare_build_s": med(build_t),
           "store_over_build": med(store_t) / med(build_t),
           "chroma_add_s": med(chroma_t) if chroma_t else None,
           "store_over_chroma": med(store_t) / med(chroma_t) if chroma_t else None,
           "index_bytes": stats["index_bytes"], "bytes_per_passage": stats["bytes_per_passage"],
           "docstore_bytes": stats["docstore_bytes"], "runs": runs}
    return out, path


def filtered(store: LeannStore, emb: np.ndarray, qsets: dict, k: int) -> list[dict]:
    n = emb.shape[0]
    bucket = np.arange(n) % 1000
    rows = []
    for name, lim in (("50%", 500), ("5%", 50), ("0.1%", 1)):
        flt = {"bucket": {"$lt": lim}}
        allowed = bucket < lim
        for qname, q in qsets.items():
            truth = exact_topk(emb, q, k, allowed)
            rec, full, recomputed, new_ms, rep_ms = [], 0, [], [], []
            for i in range(len(q)):
                if i % 25 == 0:  # a write drops the filter cache: the next use is a new filter
                    store.add(["cache breaker"], ids=["breaker"], metadatas=[{"bucket": -1}],
                              embeddings=emb[:1], check_model=False)  # not the text's vector, on purpose
                    store.delete(["breaker"])
                    hits = store.search(q[i], k=k, filter=flt)
                    new_ms.append(hits.stats["filter_ms"])
                hits = store.search(q[i], k=k, filter=flt)
                rep_ms.append(hits.stats["filter_ms"])
                got = {int(h.id) for h in hits}
                rec.append(len(got & set(truth[i].tolist())) / k)
                full += len(hits) == k
                recomputed.append(hits.stats["recomputed"])
            rows.append({"filter": name, "queries": qname, "recall@10": float(np.mean(rec)),
                         "k_every_time": full == len(q), "full": full, "n": len(q),
                         "recomputed_mean": float(np.mean(recomputed)),
                         "filter_ms_new": statistics.median(new_ms), "filter_ms_repeated": statistics.median(rep_ms)})
            r = rows[-1]
            print(f"  {name:>5} {qname:>7}: recall@10 {r['recall@10']:.3f}, k hits {full}/{len(q)}, "
                  f"recomputed {r['recomputed_mean']:.0f}, filter {r['filter_ms_new']:.1f} ms new / "
                  f"{r['filter_ms_repeated']:.3f} ms repeated", flush=True)
    return rows


def overhead(store: LeannStore, emb: np.ndarray, qsets: dict, k: int, runs: int) -> dict:
    # the store's own graph: identical recomputes on both paths
    st = store._gen.state if hasattr(store, "_gen") else store._state
    index, node_row = st.index, st.node_row
    assert index is not None
    rows_of = node_row.astype(np.int64)
    ids_of = np.array([int(r.id) for r in store.get([str(i) for i in range(emb.shape[0])])])
    del ids_of
    row_to_id = {}
    with store._docs.snapshot():
        for rowid, ext in store._docs._conn().execute("SELECT rowid, id FROM docs"):
            row_to_id[int(rowid)] = int(ext)
    vec_of_node = emb[np.array([row_to_id[int(r)] for r in rows_of])]

    def bare_embed(ids):
        return vec_of_node[ids]

    out = {}
    for qname, q in qsets.items():
        diffs, bare_ms, store_ms, same = [], [], [], 0
        for i in range(len(q)):
            tb, ts = [], []
            for _ in range(runs):
                index.cache_bytes = 0
                t = time.perf_counter()
                res = index.search(q[i], k=k, embed=bare_embed)
                tb.append(time.perf_counter() - t)
                t = time.perf_counter()
                hits = store.search(q[i], k=k)
                ts.append(time.perf_counter() - t)
            same += int(res.stats["recomputed"]) == hits.stats["recomputed"]
            bare_ms.append(min(tb) * 1e3)
            store_ms.append(min(ts) * 1e3)
            diffs.append((min(ts) - min(tb)) * 1e3)
        index.cache_bytes = 16 << 20
        out[qname] = {"bare_ms_p50": statistics.median(bare_ms), "store_ms_p50": statistics.median(store_ms),
                      "overhead_ms_p50": statistics.median(diffs), "same_recomputes": same, "n": len(q)}
        o = out[qname]
        print(f"  {qname:>7}: bare {o['bare_ms_p50']:.2f} ms, store {o['store_ms_p50']:.2f} ms, overhead "
              f"{o['overhead_ms_p50']:.2f} ms (same recomputes {same}/{len(q)})", flush=True)
    return out


def recall_at(store: LeannStore, emb: np.ndarray, q: np.ndarray, k: int,
              rows: np.ndarray | None = None) -> tuple[float, float]:
    """recall@10 at the default search against exact search over ``rows``
    (all by default; ids are row numbers), and the mean recomputes."""
    rows = np.arange(len(emb)) if rows is None else rows
    truth = rows[exact_topk(emb[rows], q, k)]
    got, rec = [], []
    for i in range(len(q)):
        hits = store.search(q[i], k=k)
        got.append({int(h.id) for h in hits})
        rec.append(hits.stats["recomputed"])
    return (float(np.mean([len(g & set(truth[i].tolist())) / k for i, g in enumerate(got)])),
            float(np.mean(rec)))


def _recalls(store, emb, qsets, k, rows=None) -> dict:
    return {qname: recall_at(store, emb, q, k, rows) for qname, q in qsets.items()}


def _add_in_batches(store: LeannStore, emb, texts, metas, ids, lo: int, hi: int, batch: int) -> None:
    for s in range(lo, hi, batch):
        e = min(hi, s + batch)
        store.add(texts[s:e], metadatas=metas[s:e], ids=ids[s:e], embeddings=emb[s:e])


def batched(emb, texts, metas, ids, qsets: dict, k: int, batch: int, runs: int) -> dict:
    """Part 4: the same rows added in batches, against one call and a bare
    build (interleaved, medians of ``runs``)."""
    times, bulk_t, build_t, reembedded = [], [], [], []
    for run in range(runs):
        b, a, bulk, bulk_path = build_and_one_call(emb, texts, metas, ids)
        build_t.append(b)
        bulk_t.append(a)
        lookup = Lookup(emb, texts)
        path = tempfile.mkdtemp(prefix="leann-store-batched-")
        store = LeannStore.open(path, embed=lookup, model="lookup")
        probe_calls = lookup.calls
        t = time.perf_counter()
        _add_in_batches(store, emb, texts, metas, ids, 0, len(texts), batch)
        times.append(time.perf_counter() - t)
        reembedded.append(lookup.calls - probe_calls)
        print(f"  run {run + 1}: batches {times[-1]:.2f} s, one call {bulk_t[-1]:.2f} s, bare build "
              f"{build_t[-1]:.2f} s", flush=True)
        if run < runs - 1:
            for st_, pth in ((store, path), (bulk, bulk_path)):
                st_.close()
                shutil.rmtree(pth, ignore_errors=True)
    st = store.stats()
    med = statistics.median
    out = {"batch": batch, "runs": runs, "seconds": med(times), "one_call_s": med(bulk_t),
           "bare_build_s": med(build_t), "over_bare_build": med(times) / med(build_t),
           "reembedded": max(reembedded), "merges": st["generation"], "delta_rows": st["delta_rows"],
           "bytes_per_passage": st["bytes_per_passage"],
           "bulk_bytes_per_passage": bulk.stats()["bytes_per_passage"],
           "recall": _recalls(store, emb, qsets, k), "bulk_recall": _recalls(bulk, emb, qsets, k)}
    for st_, pth in ((store, path), (bulk, bulk_path)):
        st_.close()
        shutil.rmtree(pth, ignore_errors=True)
    out["chroma_s"] = chroma_add(emb, texts, metas, ids, batch)
    out["peers"] = peers_batched(emb, qsets, k, batch)
    c = out["chroma_s"]
    print(f"  batches of {batch}: {out['seconds']:.2f} s = {out['over_bare_build']:.2f}x a bare build "
          f"({out['bare_build_s']:.2f} s), one call {out['one_call_s']:.2f} s; {out['reembedded']} passages "
          f"re-embedded, {out['merges']} generations ({st['delta_rows']} rows still exact), "
          f"{out['bytes_per_passage']:.1f} B/passage (one call: {out['bulk_bytes_per_passage']:.1f})"
          + (f"; Chroma {c:.2f} s" if c is not None else ""), flush=True)
    for qname in qsets:
        (r, m), (br, bm) = out["recall"][qname], out["bulk_recall"][qname]
        print(f"    {qname:>7}: recall@10 {r:.3f} @ {m:.1f} recomputes (one call: {br:.3f} @ {bm:.1f})", flush=True)
    return out


def merge_policy(emb, texts, metas, ids, batch: int, sizes: list[int], qsets: dict) -> list[dict]:
    """Part 7: ``merge_rows`` against what it costs: the batched adds' total
    time, the delta's exact search per query at its largest (the store's own
    ``exact_distances`` over that many rows) and the bytes its vectors keep."""
    rows = []
    q = next(iter(qsets.values()))
    for m in sizes:
        path = tempfile.mkdtemp(prefix="leann-store-merge-")
        store = LeannStore.open(path, embed=Lookup(emb, texts), model="lookup", config=StoreConfig(merge_rows=m))
        t = time.perf_counter()
        _add_in_batches(store, emb, texts, metas, ids, 0, len(texts), batch)
        add_s = time.perf_counter() - t
        gens = store.stats()["generation"]
        store.close()
        shutil.rmtree(path, ignore_errors=True)
        x = emb[:m]
        sq = np.einsum("ij,ij->i", x, x)
        ts = []
        for i in range(min(len(q), 100)):
            t = time.perf_counter()
            d = exact_distances("cosine", q[i], x, sq)
            np.argsort(d, kind="stable")[:10]
            ts.append(time.perf_counter() - t)
        row = {"merge_rows": m, "add_s": add_s, "generations": gens,
               "delta_search_ms_at_full": statistics.median(ts) * 1e3, "delta_bytes_at_full": int(x.nbytes)}
        rows.append(row)
        print(f"  merge_rows {m}: batched adds {add_s:.2f} s ({gens} generations); a full delta costs "
              f"{row['delta_search_ms_at_full']:.2f} ms a query and keeps {x.nbytes / 1e6:.1f} MB of vectors",
              flush=True)
    return rows


def peers_batched(emb: np.ndarray, qsets: dict, k: int, batch: int) -> dict:
    """hnswlib and FAISS HNSW (M=32, efConstruction 200, every core) taking
    the same rows in the same batches: seconds, bytes per passage of their
    saved index, recall@10 at ef 64 (vectors normalised: cosine)."""
    out: dict = {}
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    truths = {qn: exact_topk(emb, q, k) for qn, q in qsets.items()}
    qn_ = {qn: q / np.linalg.norm(q, axis=1, keepdims=True) for qn, q in qsets.items()}
    try:
        import hnswlib
    except ImportError:
        hnswlib = None
    if hnswlib is not None:
        h = hnswlib.Index(space="ip", dim=x.shape[1])
        h.init_index(max_elements=len(x), M=32, ef_construction=200, random_seed=0)
        h.set_num_threads(os.cpu_count() or 1)
        t = time.perf_counter()
        for s in range(0, len(x), batch):
            h.add_items(x[s:s + batch], np.arange(s, min(len(x), s + batch)))
        secs = time.perf_counter() - t
        h.set_ef(64)
        with tempfile.TemporaryDirectory() as d:
            h.save_index(os.path.join(d, "h.bin"))
            nbytes = os.path.getsize(os.path.join(d, "h.bin"))
        rec = {qn: float(np.mean([len(set(h.knn_query(q, k=k)[0][0].tolist()) & set(truths[qn][i].tolist())) / k
                                  for i, q in enumerate(qn_[qn])])) for qn in qsets}
        out["hnswlib"] = {"seconds": secs, "bytes_per_passage": nbytes / len(x), "recall@10": rec}
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        f = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        f.hnsw.efConstruction = 200
        t = time.perf_counter()
        for s in range(0, len(x), batch):
            f.add(np.ascontiguousarray(x[s:s + batch]))
        secs = time.perf_counter() - t
        f.hnsw.efSearch = 64
        nbytes = len(faiss.serialize_index(f))
        rec = {}
        for qn in qsets:
            _, got = f.search(np.ascontiguousarray(qn_[qn]), k)
            rec[qn] = float(np.mean([len(set(got[i].tolist()) & set(truths[qn][i].tolist())) / k
                                     for i in range(len(got))]))
        out["faiss-hnsw"] = {"seconds": secs, "bytes_per_passage": nbytes / len(x), "recall@10": rec}
    for name, r in out.items():
        print(f"  {name}: batches of {batch} {r['seconds']:.2f} s, {r['bytes_per_passage']:.0f} B/passage, recall@10 "
              + " / ".join(f"{v:.3f}" for v in r["recall@10"].values()), flush=True)
    return out


def compaction(emb, texts, metas, ids, qsets: dict, k: int, share: float = 0.3) -> dict:
    """Part 5: delete ``share`` of a one-call store, compact, against a
    fresh store of the rest."""
    lookup = Lookup(emb, texts)
    path = tempfile.mkdtemp(prefix="leann-store-compact-")
    store = LeannStore.open(path, embed=lookup, model="lookup", config=StoreConfig(compact_fraction=1.0))
    store.add(texts, metadatas=metas, ids=ids, embeddings=emb)
    rng = np.random.default_rng(0)
    gone = np.sort(rng.choice(len(texts), size=int(share * len(texts)), replace=False))
    keep = np.setdiff1d(np.arange(len(texts)), gone)
    store.delete([ids[i] for i in gone.tolist()])
    before = _recalls(store, emb, qsets, k, keep)
    calls = lookup.calls
    t = time.perf_counter()
    store.compact()
    compact_s = time.perf_counter() - t
    embed_calls = lookup.calls - calls
    after = _recalls(store, emb, qsets, k, keep)
    bpp = store.stats()["bytes_per_passage"]
    store.close()
    shutil.rmtree(path, ignore_errors=True)
    fpath = tempfile.mkdtemp(prefix="leann-store-fresh-")
    fresh = LeannStore.open(fpath, embed=Lookup(emb, texts), model="lookup")
    t = time.perf_counter()
    fresh.add([texts[i] for i in keep], metadatas=[metas[i] for i in keep], ids=[ids[i] for i in keep],
              embeddings=emb[keep])
    fresh_s = time.perf_counter() - t
    ref = _recalls(fresh, emb, qsets, k, keep)
    fbpp = fresh.stats()["bytes_per_passage"]
    fresh.close()
    shutil.rmtree(fpath, ignore_errors=True)
    out = {"deleted": len(gone), "compact_s": compact_s, "fresh_add_s": fresh_s, "embed_calls": embed_calls,
           "recall_tombstoned": before, "recall": after, "fresh_recall": ref, "bytes_per_passage": bpp,
           "fresh_bytes_per_passage": fbpp}
    print(f"  deleted {len(gone)}, compacted in {compact_s:.2f} s with {embed_calls} embed calls "
          f"(fresh store of the rest: {fresh_s:.2f} s); {bpp:.1f} B/passage (fresh {fbpp:.1f})", flush=True)
    for qname in qsets:
        print(f"    {qname:>7}: recall@10 {after[qname][0]:.3f} @ {after[qname][1]:.1f} (tombstoned "
              f"{before[qname][0]:.3f} @ {before[qname][1]:.1f}; fresh {ref[qname][0]:.3f} @ {ref[qname][1]:.1f})",
              flush=True)
    return out


def growth(emb, texts, metas, ids, qsets: dict, k: int, first: int, batch: int) -> dict:
    """Part 6: ``first`` rows in one add, then batches to all of them: with
    the graph (and its codec) built on the first rows, and with the default
    ``graph_rows``, against a one-call store."""
    out: dict = {"first": first, "batch": batch}
    for name, cfg in ((f"graph_rows={first}", StoreConfig(graph_rows=first)), ("default", StoreConfig())):
        lookup = Lookup(emb, texts)
        path = tempfile.mkdtemp(prefix="leann-store-grow-")
        store = LeannStore.open(path, embed=lookup, model="lookup", config=cfg)
        calls = lookup.calls
        t = time.perf_counter()
        store.add(texts[:first], metadatas=metas[:first], ids=ids[:first], embeddings=emb[:first])
        _add_in_batches(store, emb, texts, metas, ids, first, len(texts), batch)
        st = store.stats()
        out[name] = {"seconds": time.perf_counter() - t, "embed_calls": lookup.calls - calls,
                     "recall": _recalls(store, emb, qsets, k), "bytes_per_passage": st["bytes_per_passage"],
                     "drift": st["codec"]["drift"], "last_merge": st["last_merge"]["kind"]}
        store.close()
        shutil.rmtree(path, ignore_errors=True)
        o = out[name]
        print(f"  {name}: {o['seconds']:.2f} s, {o['embed_calls']} embed calls, codec drift {o['drift']:.3f}, "
              f"{o['bytes_per_passage']:.1f} B/passage; "
              + ", ".join(f"{q} {r:.3f} @ {m:.1f}" for q, (r, m) in o["recall"].items()), flush=True)
    path = tempfile.mkdtemp(prefix="leann-store-grow-")
    store = LeannStore.open(path, embed=Lookup(emb, texts), model="lookup")
    store.add(texts, metadatas=metas, ids=ids, embeddings=emb)
    out["one_call_recall"] = _recalls(store, emb, qsets, k)
    store.close()
    shutil.rmtree(path, ignore_errors=True)
    print("  one call: " + ", ".join(f"{q} {r:.3f} @ {m:.1f}" for q, (r, m) in out["one_call_recall"].items()),
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000, help="rows per add in parts 4 and 6")
    ap.add_argument("--first", type=int, default=5000, help="rows of the first build in part 6")
    ap.add_argument("--parts", default="1,2,3,4,5,6,7", help="which parts to run, e.g. 4,5,6")
    ap.add_argument("--merge-rows", default="512,2048,8192", help="merge_rows values of part 7")
    ap.add_argument("--quick", action="store_true", help="n=20k, 100 queries, 1 run")
    args = ap.parse_args()
    if args.quick:
        args.n, args.queries, args.runs = 20_000, 100, 1
    parts = {int(p) for p in args.parts.split(",") if p.strip()}
    if not CORPUS.exists():
        sys.exit(f"the devcorpus is not at {CORPUS.resolve()} (see benchmarks/README.md)")
    emb, texts, qsets = load(args.n, args.queries)
    ids = [str(i) for i in range(len(texts))]
    metas = [{"bucket": i % 1000, "source": "devcorpus"} for i in range(len(texts))]
    k = 10
    print(f"devcorpus: {len(texts)} passages, {args.queries} queries per set, {os.cpu_count()} cores", flush=True)
    add = filt = over = batch = comp = grow = policy = None
    if parts & {1, 2, 3}:
        print("1. bulk add (precomputed embeddings)", flush=True)
        add, path = bulk_add(emb, texts, metas, ids, args.runs)
        store = LeannStore.open(path, embed=Lookup(emb, texts), model="lookup")
        if 2 in parts:
            print("2. filtered search", flush=True)
            filt = filtered(store, emb, qsets, k)
        if 3 in parts:
            print("3. store overhead over a bare LeannIndex search", flush=True)
            over = overhead(store, emb, qsets, k, args.runs)
        store.close()
        shutil.rmtree(path, ignore_errors=True)
    if 4 in parts:
        print(f"4. adds in batches of {args.batch}", flush=True)
        batch = batched(emb, texts, metas, ids, qsets, k, args.batch, args.runs)
    if 5 in parts:
        print("5. delete 30%, then compact", flush=True)
        comp = compaction(emb, texts, metas, ids, qsets, k)
    if 6 in parts:
        print(f"6. growth from {args.first} rows in batches of {args.batch}", flush=True)
        grow = growth(emb, texts, metas, ids, qsets, k, args.first, args.batch)
    if 7 in parts:
        print(f"7. merge policy: merge_rows {args.merge_rows}", flush=True)
        policy = merge_policy(emb, texts, metas, ids, args.batch, [int(m) for m in args.merge_rows.split(",")], qsets)

    print("\n| measure | value |\n|---|---|")
    if add is not None:
        print(f"| store.add of {len(texts)} (s) | {add['store_add_s']:.2f} |")
        print(f"| bare LeannIndex.build (s) | {add['bare_build_s']:.2f} |")
        print(f"| store / build | {add['store_over_build']:.2f}x |")
        if add["chroma_add_s"] is not None:
            print(f"| Chroma add (s) | {add['chroma_add_s']:.2f} (store {add['store_over_chroma']:.2f}x of it) |")
        print(f"| index bytes / passage | {add['bytes_per_passage']:.1f} |")
    for r in filt or []:
        print(f"| filter {r['filter']} {r['queries']}: recall@10, k hits, filter ms new / repeated | "
              f"{r['recall@10']:.3f}, {r['full']}/{r['n']}, {r['filter_ms_new']:.1f} / {r['filter_ms_repeated']:.3f} |")
    for q, o in (over or {}).items():
        print(f"| overhead per query, {q} (ms) | {o['overhead_ms_p50']:.2f} |")
    if batch is not None:
        print(f"| adds in batches of {batch['batch']} (s) | {batch['seconds']:.2f} "
              f"({batch['over_bare_build']:.2f}x a bare build, {batch['seconds'] / batch['one_call_s']:.2f}x one "
              f"call; Chroma {batch['chroma_s'] if batch['chroma_s'] is None else round(batch['chroma_s'], 2)}) |")
        print(f"| passages re-embedded by merges | {batch['reembedded']} |")
        for name, r in batch["peers"].items():
            print(f"| {name}, same batches: s, B/passage, recall@10 at ef 64 | {r['seconds']:.2f}, "
                  f"{r['bytes_per_passage']:.0f}, " + " / ".join(f"{v:.3f}" for v in r["recall@10"].values()) + " |")
        print(f"| batched B/passage (one call) | {batch['bytes_per_passage']:.1f} ({batch['bulk_bytes_per_passage']:.1f}) |")
        for q in qsets:
            (r, m), (br, bm) = batch["recall"][q], batch["bulk_recall"][q]
            print(f"| batched recall@10 @ recomputes, {q} (one call) | {r:.3f} @ {m:.1f} ({br:.3f} @ {bm:.1f}) |")
    if comp is not None:
        print(f"| compaction after deleting {comp['deleted']} (s, embed calls) | {comp['compact_s']:.2f}, "
              f"{comp['embed_calls']} (fresh store of the rest {comp['fresh_add_s']:.2f} s) |")
        for q in qsets:
            (r, m), (fr, fm) = comp["recall"][q], comp["fresh_recall"][q]
            print(f"| compacted recall@10, {q} (fresh) | {r:.3f} @ {m:.1f} ({fr:.3f} @ {fm:.1f}) |")
    if grow is not None:
        for name in (f"graph_rows={grow['first']}", "default"):
            g = grow[name]
            print(f"| grown {grow['first']} -> {len(texts)}, {name}: s, embed calls, drift | {g['seconds']:.2f}, "
                  f"{g['embed_calls']}, {g['drift']:.3f} |")
            for q in qsets:
                (r, m), (br, bm) = g["recall"][q], grow["one_call_recall"][q]
                print(f"| grown ({name}) recall@10, {q} (one call) | {r:.3f} @ {m:.1f} ({br:.3f} @ {bm:.1f}) |")
    for r in policy or []:
        print(f"| merge_rows {r['merge_rows']}: batched adds s, full-delta search ms, MB kept | {r['add_s']:.2f}, "
              f"{r['delta_search_ms_at_full']:.2f}, {r['delta_bytes_at_full'] / 1e6:.1f} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"store_bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"n": len(texts), "queries": args.queries, "machine": platform.machine(),
                               "cores": os.cpu_count(), "bulk_add": add, "filtered": filt, "overhead": over,
                               "batched": batch, "compaction": comp, "growth": grow, "merge_policy": policy},
                              indent=2))
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
