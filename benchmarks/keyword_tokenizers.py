#!/usr/bin/env python3
"""Which keyword tokenizer: BM25 and RRF relevance of candidate FTS5 set-ups.

On ``../shared/bench/devcorpus`` (50,000 passages; ``queries_labeled.jsonl``,
2,000 keyword queries whose relevant passages are known), each candidate
indexes every passage's text in its own FTS5 table and answers every query
with BM25; then its top ``--depth`` is fused (RRF, k = 60) with the exact
dense top ``--depth`` (inner product over the stored embeddings).  A hit is
any relevant passage in the top 10.  Reported: hit@10 and MRR@10 of BM25
and of the fusion, index bytes per passage, build seconds, query ms.

Candidates:
  raw-unicode61   the text as is, FTS5's default tokenizer
  raw-porter      the same with the Porter stemmer
  raw-trigram     FTS5's trigram tokenizer (query: its words of >= 3 characters)
  prep-unicode61  leann_store.keywords.prepare (identifiers whole and split,
                  CJK bigrams), unicode61 with diacritics removed (the store's)
  prep-porter     the same with the Porter stemmer

Usage: python benchmarks/keyword_tokenizers.py [--corpus DIR] [--depth 100] [--queries 2000]
Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leann_store import fusion, keywords  # noqa: E402

_WORDS = re.compile(r"\w+")


def _quoted_or(words: list[str]) -> str | None:
    words = list(dict.fromkeys(w for w in words if w))[:keywords.MAX_QUERY_TERMS]
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words) or None


CANDIDATES = {
    "raw-unicode61": ("unicode61", lambda t: t, lambda q: _quoted_or(_WORDS.findall(q))),
    "raw-porter": ("porter unicode61", lambda t: t, lambda q: _quoted_or(_WORDS.findall(q))),
    "raw-trigram": ("trigram", lambda t: t, lambda q: _quoted_or([w for w in _WORDS.findall(q) if len(w) >= 3])),
    "prep-unicode61": ("unicode61 remove_diacritics 2", keywords.prepare, keywords.match_expression),
    "prep-porter": ("porter unicode61 remove_diacritics 2", keywords.prepare, keywords.match_expression),
}


def load(corpus: Path, nq: int) -> tuple[list[str], list[str], np.ndarray, list[dict], np.ndarray]:
    ids, texts = [], []
    with gzip.open(corpus / "passages.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            ids.append(d["id"])
            texts.append(d["text"])
    emb = np.load(corpus / "emb_f16.npy").astype(np.float32)
    qs = [json.loads(line) for line in open(corpus / "queries_labeled.jsonl", encoding="utf-8")][:nq]
    qemb = np.load(corpus / "qemb_labeled_f16.npy").astype(np.float32)[:nq]
    return ids, texts, emb, qs, qemb


def metrics(ranked: list[list[int]], relevant: list[set[int]]) -> tuple[float, float]:
    hits, rr = 0, 0.0
    for r, rel in zip(ranked, relevant):
        for pos, x in enumerate(r[:10]):
            if x in rel:
                hits += 1
                rr += 1.0 / (pos + 1)
                break
    return hits / len(ranked), rr / len(ranked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "bench" / "devcorpus"))
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    args = ap.parse_args()
    ids, texts, emb, qs, qemb = load(Path(args.corpus), args.queries)
    pos = {x: i for i, x in enumerate(ids)}
    relevant = [{pos[r] for r in q["relevant"] if r in pos} for q in qs]
    scores = qemb @ emb.T
    dense = []
    for row in scores:
        top = np.argpartition(-row, args.depth)[:args.depth]
        top = top[np.argsort(-row[top], kind="stable")]
        dense.append([(float(row[i]), int(i)) for i in top])
    d_hit, d_mrr = metrics([[i for _, i in d] for d in dense], relevant)
    print(f"dense (exact): hit@10 {d_hit:.3f}  MRR@10 {d_mrr:.3f}   ({len(qs)} queries, {len(texts)} passages)")
    results: dict = {"queries": len(qs), "passages": len(texts), "depth": args.depth,
                     "dense": {"hit10": d_hit, "mrr10": d_mrr}, "candidates": {}}
    print(f"{'candidate':16} {'bm25 hit':>9} {'bm25 mrr':>9} {'rrf hit':>8} {'rrf mrr':>8} "
          f"{'B/passage':>10} {'build s':>8} {'q ms':>6}")
    for name in args.candidates.split(","):
        tok, prep, query = CANDIDATES[name]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "kw.sqlite")
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute(f"CREATE VIRTUAL TABLE kw USING fts5(body, content='', tokenize='{tok}')")
            t0 = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO kw(rowid, body) VALUES (?, ?)",
                             ((i + 1, prep(t)) for i, t in enumerate(texts)))
            conn.execute("COMMIT")
            conn.execute("INSERT INTO kw(kw) VALUES ('optimize')")
            build_s = time.perf_counter() - t0
            conn.execute("VACUUM")
            nbytes = os.path.getsize(path)
            ranked_kw, ranked_rrf, ms = [], [], []
            for q, d in zip(qs, dense):
                expr = query(q["text"])
                t1 = time.perf_counter()
                got = [] if expr is None else conn.execute(
                    f"SELECT rowid, bm25(kw) s FROM kw WHERE kw MATCH ? ORDER BY s LIMIT {args.depth}",
                    (expr,)).fetchall()
                ms.append((time.perf_counter() - t1) * 1e3)
                kw = [(-s, int(r) - 1) for r, s in got]
                ranked_kw.append([i for _, i in kw])
                ranked_rrf.append([key for _, key, _ in fusion.rrf([d, kw])])
            conn.close()
        k_hit, k_mrr = metrics(ranked_kw, relevant)
        r_hit, r_mrr = metrics(ranked_rrf, relevant)
        res = {"tokenizer": tok, "bm25": {"hit10": k_hit, "mrr10": k_mrr}, "rrf": {"hit10": r_hit, "mrr10": r_mrr},
               "bytes_per_passage": nbytes / len(texts), "build_s": build_s,
               "query_ms_median": statistics.median(ms)}
        results["candidates"][name] = res
        print(f"{name:16} {k_hit:9.3f} {k_mrr:9.3f} {r_hit:8.3f} {r_mrr:8.3f} {nbytes / len(texts):10.0f} "
              f"{build_s:8.1f} {statistics.median(ms):6.2f}", flush=True)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    dest = out / f"keyword_tokenizers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.write_text(json.dumps(results, indent=2))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
