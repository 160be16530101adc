#!/usr/bin/env python3
"""LlamaIndex-level comparison: LeannVectorStore vs SimpleVectorStore vs FaissVectorStore.

Data: the devcorpus (``../shared/bench/devcorpus``): the first ``--n`` passages
(default 20k), real summary queries and short keyword queries, all-MiniLM-L6-v2
embeddings.  Every contender goes through LlamaIndex as a user would:

  * add: ``VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=...))``
    with the nodes' embeddings already set and LlamaIndex's default insert
    batches of 2048; this includes LlamaIndex's own docstore writes for the
    stores that keep no text (Simple, FAISS), and for LeannVectorStore the
    merges of its delta segment, which (until incremental insertion lands)
    re-embed the graph's rows: their count is reported, since with a real
    model they cost what embedding the corpus costs;
  * bytes on disk: ``storage_context.persist(dir)``, the whole directory, and the
    vector store's own files (LeannVectorStore: its store directory, text and
    metadata included; Simple: ``default__vector_store.json``; FAISS: the index
    file) - Simple and FAISS keep the text in ``docstore.json`` instead;
  * query: ``retriever.retrieve(QueryBundle(query, embedding=...))``, top 10, per
    query latency (median and p95 over the queries), and recall@10 against exact
    inner-product search over the stored float32 embeddings.

The embedding model is a lookup (text -> the corpus's stored vector), so the
recompute that LeannVectorStore does at query time costs a dictionary read:
the latencies are the stores' own; with a real model add the recomputed
passages per query (reported) times the model's cost per passage.

``leann-1batch`` passes ``insert_batch_size=len(nodes)``: one add, the graph
built straight from the nodes' embeddings, no merge.

FAISS runs twice, on one OpenMP thread: ``IndexFlatIP`` (exact; what the
LlamaIndex FAISS docs use) and ``IndexHNSWFlat`` (M=32, efConstruction=200,
efSearch=64).  Every figure
is the median over ``--runs`` runs (fresh store each run).

Usage:  python benchmarks/llamaindex_bench.py                 (~10 min on 2 cores)
        python benchmarks/llamaindex_bench.py --quick         (n=5k, 30 queries, 1 run)
Writes a table to stdout and JSON to benchmarks/results/llamaindex_bench-<time>.json.
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
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / ".." / "shared" / "bench" / "devcorpus"
RESULTS = HERE / "results"
K = 10

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.schema import QueryBundle, TextNode  # noqa: E402


class LookupEmbedding(BaseEmbedding):
    """The corpus's stored embedding of a text (passages and queries alike).

    A text the corpus lacks (LeannStore's model-fingerprint probe) gets a fixed
    pseudo-random unit vector seeded by the text, so the fingerprint is stable."""

    _table: Dict[str, np.ndarray] = PrivateAttr()
    #: passages embedded so far (what a real model would have had to run)
    texts_embedded: int = 0

    def __init__(self, table: Dict[str, np.ndarray]) -> None:
        super().__init__(model_name="devcorpus-lookup:all-MiniLM-L6-v2")
        self._table = table

    @classmethod
    def class_name(cls) -> str:
        return "LookupEmbedding"

    def _vector(self, text: str) -> List[float]:
        v = self._table.get(text)
        if v is None:
            dim = len(next(iter(self._table.values())))
            v = np.random.default_rng(zlib.crc32(text.encode())).normal(size=dim)
            v = v / np.linalg.norm(v)
        return v.tolist()

    def _get_text_embedding(self, text: str) -> List[float]:
        return self._vector(text)

    def _get_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        self.texts_embedded += len(texts)
        return [self._vector(t) for t in texts]

    def _get_query_embedding(self, query: str) -> List[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> List[float]:
        return self._get_query_embedding(query)


def load(corpus: Path, n: int, nq: int):
    emb = np.load(corpus / "emb_f16.npy", mmap_mode="r")[:n].astype(np.float32)
    texts: List[str] = []
    with gzip.open(corpus / "passages.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    query_sets = {}
    for name, qfile, efile in [("summary", "queries.jsonl", "qemb_f16.npy"),
                               ("short", "queries_short.jsonl", "qemb_short_f16.npy")]:
        with open(corpus / qfile, encoding="utf-8") as fh:
            q = [json.loads(line)["text"] for _, line in zip(range(nq), fh)]
        query_sets[name] = (q, np.load(corpus / efile, mmap_mode="r")[:nq].astype(np.float32))
    return texts, emb, query_sets


def exact_top_k(emb: np.ndarray, qemb: np.ndarray, k: int) -> np.ndarray:
    scores = qemb @ emb.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- contenders: each returns (vector_store, files of the vector store after persist) --

def make_leann(embed: BaseEmbedding, dim: int, workdir: Path):
    from llama_index.vector_stores.leann import LeannVectorStore

    vs = LeannVectorStore(path=workdir / "leann-live", embed_model=embed)
    return vs, lambda persist_dir: persist_dir / "default__vector_store.leann"


def make_simple(embed: BaseEmbedding, dim: int, workdir: Path):
    from llama_index.core.vector_stores import SimpleVectorStore

    return SimpleVectorStore(), lambda persist_dir: persist_dir / "default__vector_store.json"


def _faiss_one_thread():
    import faiss

    # one query on one thread, as LeannVectorStore runs it; OpenMP's spinning
    # threads also make flat search erratic on a shared machine
    faiss.omp_set_num_threads(1)
    return faiss


def make_faiss_flat(embed: BaseEmbedding, dim: int, workdir: Path):
    faiss = _faiss_one_thread()
    from llama_index.vector_stores.faiss import FaissVectorStore

    return (FaissVectorStore(faiss_index=faiss.IndexFlatIP(dim)),
            lambda persist_dir: persist_dir / "default__vector_store.json")


def make_faiss_hnsw(embed: BaseEmbedding, dim: int, workdir: Path):
    faiss = _faiss_one_thread()
    from llama_index.vector_stores.faiss import FaissVectorStore

    index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    index.hnsw.efSearch = 64
    return FaissVectorStore(faiss_index=index), lambda persist_dir: persist_dir / "default__vector_store.json"


CONTENDERS: Dict[str, Callable[..., Any]] = {
    "leann": make_leann,
    # all nodes in one add: the store builds its graph straight from their embeddings
    "leann-1batch": make_leann,
    "simple": make_simple,
    "faiss-flat": make_faiss_flat,
    "faiss-hnsw": make_faiss_hnsw,
}


def run_once(name: str, nodes: List[TextNode], embed: LookupEmbedding, query_sets, truths, dim: int,
             measure_disk: bool) -> Dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"li-bench-{name}-"))
    try:
        vs, vs_files = CONTENDERS[name](embed, dim, workdir)
        embedded_before = embed.texts_embedded
        t0 = time.perf_counter()
        ctx = StorageContext.from_defaults(vector_store=vs)
        # VectorStoreIndex's default insert batches (2048 nodes): what users get
        batches = {"insert_batch_size": len(nodes)} if name.endswith("-1batch") else {}
        index = VectorStoreIndex(nodes, storage_context=ctx, embed_model=embed, **batches)
        add_s = time.perf_counter() - t0
        out: Dict[str, Any] = {"add_s": add_s, "embedded_at_add": embed.texts_embedded - embedded_before}
        is_leann = name.startswith("leann")
        if is_leann:
            st = vs.client.stats()
            out["leann"] = {key: st[key] for key in ("index_bytes", "bytes_per_passage", "docstore_bytes",
                                                     "graph_rows", "delta_rows", "delta_bytes")}
        if measure_disk:
            persist_dir = workdir / "storage"
            t0 = time.perf_counter()
            ctx.persist(persist_dir)
            out["persist_s"] = time.perf_counter() - t0
            out["disk_bytes"] = dir_bytes(persist_dir)
            out["vector_store_bytes"] = dir_bytes(vs_files(persist_dir))
        retriever = index.as_retriever(similarity_top_k=K)
        for qs_name, (queries, qemb) in query_sets.items():
            latencies, found = [], []
            embedded_before = embed.texts_embedded
            for text, vec in zip(queries, qemb):
                bundle = QueryBundle(query_str=text, embedding=vec.tolist())
                t0 = time.perf_counter()
                hits = retriever.retrieve(bundle)
                latencies.append(time.perf_counter() - t0)
                found.append([int(h.node.node_id) for h in hits])
            truth = truths[qs_name]
            recall = sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth)) / truth.size
            out[qs_name] = {"recall": recall,
                            "latency_ms_p50": 1e3 * statistics.median(latencies),
                            "latency_ms_p95": 1e3 * float(np.percentile(latencies, 95))}
            if is_leann:
                # passages re-embedded per query, the store's LRU warm across the queries
                out[qs_name]["reembedded_per_query"] = (embed.texts_embedded - embedded_before) / len(queries)
                # exact distances per query (re-embedded or from the LRU)
                exact = [sum(vs.client.search(v, k=K).stats[s] for s in ("recomputed", "cache_hits"))
                         for v in qemb]
                out[qs_name]["exact_per_query"] = float(np.mean(exact))
        if is_leann:
            vs.close()
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def median_of(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    merged: Dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            merged[key] = median_of([r[key] for r in runs])
        else:
            merged[key] = statistics.median(r[key] for r in runs if key in r)
    return merged


def table(results: Dict[str, Dict[str, Any]], n: int, query_sets) -> str:
    names = list(query_sets)
    head = ["store", "add s", "disk MB (all)", "vector store MB"]
    for qs in names:
        head += [f"R@10 {qs}", f"p50 ms {qs}", f"p95 ms {qs}"]
    lines = [f"n = {n} passages, top {K}; medians of runs",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        row = [name, f"{r['add_s']:.2f}", f"{r.get('disk_bytes', 0) / 1e6:.2f}",
               f"{r.get('vector_store_bytes', 0) / 1e6:.2f}"]
        for qs in names:
            row += [f"{r[qs]['recall']:.3f}", f"{r[qs]['latency_ms_p50']:.2f}", f"{r[qs]['latency_ms_p95']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    for name, r in results.items():
        if not name.startswith("leann"):
            continue
        lines.append(f"{name}: index file {r['leann']['index_bytes'] / 1e6:.2f} MB "
                     f"({r['leann']['bytes_per_passage']:.0f} B/passage), live docstore "
                     f"{r['leann']['docstore_bytes'] / 1e6:.2f} MB (text, node JSON, "
                     f"{r['leann']['delta_rows']:.0f} delta rows' vectors); passages embedded during add "
                     f"(merges re-embedding the graph): {r['embedded_at_add']:.0f}")
        lines.append(f"{name} per query: " + "; ".join(
            f"{qs}: {r[qs]['reembedded_per_query']:.1f} re-embedded (LRU warm), "
            f"{r[qs]['exact_per_query']:.0f} exact distances" for qs in names))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=100, help="queries per query set")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--quick", action="store_true", help="n=5000, 30 queries, 1 run")
    ap.add_argument("--json", type=Path, default=None, help="output JSON path")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.queries, args.runs = 5000, 30, 1
    if not (args.corpus / "passages.jsonl.gz").exists():
        print(f"devcorpus not found at {args.corpus}", file=sys.stderr)
        return 2

    texts, emb, query_sets = load(args.corpus, args.n, args.queries)
    table_vectors = {t: v for t, v in zip(texts, emb)}
    for queries, qemb in query_sets.values():
        table_vectors.update(zip(queries, qemb))
    embed = LookupEmbedding(table_vectors)
    truths = {name: exact_top_k(emb, qemb, K) for name, (_, qemb) in query_sets.items()}

    def fresh_nodes() -> List[TextNode]:
        return [TextNode(id_=str(i), text=t, embedding=emb[i].tolist()) for i, t in enumerate(texts)]

    results: Dict[str, Dict[str, Any]] = {}
    raw: Dict[str, List[Dict[str, Any]]] = {}
    for name in args.contenders.split(","):
        runs = []
        for r in range(args.runs):
            runs.append(run_once(name, fresh_nodes(), embed, query_sets, truths, emb.shape[1],
                                 measure_disk=(r == 0)))
            print(f"{name} run {r + 1}/{args.runs}: add {runs[-1]['add_s']:.2f} s", file=sys.stderr, flush=True)
        raw[name] = runs
        results[name] = median_of(runs)

    print(table(results, args.n, query_sets))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.json or RESULTS / f"llamaindex_bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({
        "n": args.n, "queries_per_set": args.queries, "runs": args.runs, "k": K,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "median": results, "runs_raw": raw,
    }, indent=1))
    print(f"JSON: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
