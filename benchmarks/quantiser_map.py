#!/usr/bin/env python3
"""How well each ranking code orders the devcorpus: bytes against recomputes.

A vector-free search re-embeds candidates in order of their code distance,
so the quantiser that ranks the true neighbours earliest needs the fewest
recomputes.  This map takes the graph out of the question: for every query
all N passages are ranked by code distance (the float asymmetric table of
the query against each code), and it reports how far down that order a
search must recompute to hold 9 of the exact top 10 (recall@10 = 0.9 for
that query): the mean and p90 over queries, and recall@10 after 50 and 100
recomputes.  Both devcorpus query sets.

Quantisers at each code size (bytes per passage):

* ``pq4``: the index's codec (4-bit PQ, 2 subspaces a byte, PCA with
  balanced subspaces), as ``IndexConfig.search_subspaces`` builds it;
* ``opq4``: the same with an OPQ rotation learnt inside the PCA space
  (``train_codec(rotation_iterations=8)``);
* ``pq8``: 8-bit PQ (256 centroids, a subspace a byte) on the same PCA
  projection: what a scan kernel without 16-entry shuffles would cost.

Usage: python benchmarks/quantiser_map.py [--n 50000] [--queries 300] [--bytes 16,32,40,64]
Prints a table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS = REPO / ".." / "shared" / "bench" / "devcorpus"
RESULTS = HERE / "results"
sys.path.insert(0, str(REPO))

from leann_store.codec import _unpack, fit_pca, train_codec  # noqa: E402


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def kmeans256(x: np.ndarray, rng: np.random.Generator, iterations: int = 12) -> np.ndarray:
    """Lloyd's k-means with 256 centroids on one subspace's rows."""
    cent = x[rng.choice(len(x), size=256, replace=False)].copy()
    for _ in range(iterations):
        d = (x ** 2).sum(1)[:, None] - 2 * x @ cent.T + (cent ** 2).sum(1)[None, :]
        a = d.argmin(1)
        for j in range(256):
            m = a == j
            cent[j] = x[m].mean(0) if m.any() else x[rng.integers(len(x))]
    return cent


class PQ8:
    """8-bit PQ on a codec's PCA projection (msub = bytes subspaces)."""

    def __init__(self, base, x_train: np.ndarray, nbytes: int, rng: np.random.Generator) -> None:
        self.base, self.m = base, nbytes
        p = base.project(x_train)
        self.dsub = p.shape[1] // nbytes
        self.cents = [kmeans256(p[:, i * self.dsub:(i + 1) * self.dsub], rng) for i in range(nbytes)]

    def encode(self, x: np.ndarray) -> np.ndarray:
        p = self.base.project(x)
        out = np.empty((len(x), self.m), dtype=np.uint8)
        for i, c in enumerate(self.cents):
            s = p[:, i * self.dsub:(i + 1) * self.dsub]
            out[:, i] = ((s ** 2).sum(1)[:, None] - 2 * s @ c.T + (c ** 2).sum(1)[None, :]).argmin(1)
        return out

    def distances(self, q: np.ndarray, codes: np.ndarray) -> np.ndarray:
        p = self.base.project(q[None, :])[0]
        tables = np.stack([((c - p[i * self.dsub:(i + 1) * self.dsub]) ** 2).sum(1) for i, c in enumerate(self.cents)])
        return tables[np.arange(self.m)[None, :], codes].sum(1)


class PQ4:
    """The index's own codec, distances from its float table."""

    def __init__(self, codec) -> None:
        self.codec = codec

    def encode(self, x: np.ndarray) -> np.ndarray:
        return _unpack(self.codec.encode(x))

    def distances(self, q: np.ndarray, codes: np.ndarray) -> np.ndarray:
        c = self.codec
        p = c.project(q[None, :])[0].reshape(c.num_subspaces, 1, -1)
        tables = ((c.centroids - p) ** 2).sum(-1)  # (msub, 16)
        return tables[np.arange(c.num_subspaces)[None, :], codes].sum(1)


def evaluate(q_model, codes: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    need, r50, r100 = [], [], []
    for qi, q in enumerate(queries):
        order = np.argsort(q_model.distances(q, codes), kind="stable")
        pos = np.sort(np.flatnonzero(np.isin(order, truth[qi])))  # positions of the true top 10
        need.append(int(pos[8]) + 1)
        r50.append(float((pos < 50).mean()))
        r100.append(float((pos < 100).mean()))
    return {"mean": float(np.mean(need)), "p90": float(np.percentile(need, 90)),
            "recall@10_after_50": float(np.mean(r50)), "recall@10_after_100": float(np.mean(r100))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--bytes", default="16,32,40,64")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not CORPUS.exists():
        sys.exit(f"the devcorpus is not at {CORPUS.resolve()} (see benchmarks/README.md)")
    x = normalise(np.load(CORPUS / "emb_f16.npy")[:args.n].astype(np.float32))
    qsets = {"summary": normalise(np.load(CORPUS / "qemb_f16.npy")[:args.queries].astype(np.float32)),
             "short": normalise(np.load(CORPUS / "qemb_short_f16.npy")[:args.queries].astype(np.float32))}
    truth = {k: np.argsort(-(q @ x.T), axis=1)[:, :10] for k, q in qsets.items()}
    rng = np.random.default_rng(args.seed)
    sample = x[np.sort(rng.choice(len(x), size=min(len(x), 32768), replace=False))]
    pca = fit_pca(sample)
    rows = []
    for nbytes in [int(b) for b in args.bytes.split(",")]:
        msub = 2 * nbytes
        kinds = {}
        t = time.perf_counter()
        base = train_codec(sample, num_subspaces=msub, seed=args.seed, pca=pca)
        kinds["pq4"] = (PQ4(base), time.perf_counter() - t)
        t = time.perf_counter()
        kinds["opq4"] = (PQ4(train_codec(sample, num_subspaces=msub, seed=args.seed, pca=pca,
                                         rotation_iterations=8)), time.perf_counter() - t)
        t = time.perf_counter()
        kinds["pq8"] = (PQ8(base, sample[:16384], nbytes, rng), time.perf_counter() - t)
        for kind, (model, train_s) in kinds.items():
            codes = model.encode(x)
            row = {"bytes": nbytes, "quantiser": kind, "train_s": train_s}
            for qname, q in qsets.items():
                row[qname] = evaluate(model, codes, q, truth[qname])
            rows.append(row)
            print(f"{nbytes:>3} B {kind:>5}: " + "  ".join(
                f"{qn} mean {row[qn]['mean']:.1f} p90 {row[qn]['p90']:.0f} r@50 {row[qn]['recall@10_after_50']:.3f}"
                for qn in qsets), flush=True)
    print("\n| bytes | quantiser | summaries: mean / p90 recomputes to 9 of 10, recall@10 after 50 | "
          "short: the same |\n|---|---|---|---|")
    for r in rows:
        cells = [f"{r[q]['mean']:.1f} / {r[q]['p90']:.0f}, {r[q]['recall@10_after_50']:.3f}" for q in qsets]
        print(f"| {r['bytes']} | {r['quantiser']} | {cells[0]} | {cells[1]} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"quantiser_map-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"n": len(x), "queries": args.queries, "rows": rows}, indent=2))
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
