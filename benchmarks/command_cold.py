"""Wall time of the ``leann-store`` command as a user runs it: one process per command.

Builds (once, into --work) a store of the dev corpus's 50,000 passages with
their precomputed all-MiniLM-L6-v2 vectors and the default model's identity,
so ``leann-store search`` opens it, and a command-built index of a standard
library folder for the no-op ``build``.  Then times, as separate processes,
median of --runs: ``search`` (wall time, and the recompute part the command
reports), ``info``, ``check``, a no-op ``build`` and a usage error.

    python benchmarks/command_cold.py --runs 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "bench" / "devcorpus"
QUERIES = ("parse a JSON document into Python objects", "run a shell command and capture its output",
           "gradient of a tensor", "symbolic integration of a polynomial", "read a CSV file into rows",
           "rotate an image by an angle", "temporary directory removed automatically")


def build_store(path: Path, n: int) -> None:
    from leann_store import LeannStore
    from leann_store.command.models import load_model
    model = load_model()
    texts, metas = [], []
    with gzip.open(CORPUS / "passages.jsonl.gz", "rt") as f:
        for line in f:
            rec = json.loads(line)
            texts.append(rec["text"])
            metas.append({"source": str(rec["metadata"].get("source", "")), "kind": "text"})
            if len(texts) == n:
                break
    vecs = np.load(CORPUS / "emb_f16.npy")[:n].astype(np.float32)
    t0 = time.perf_counter()
    with LeannStore.open(path, embed=model, model=model.identity, progress=True) as store:
        store.add(texts, metadatas=metas, ids=[f"p{i}" for i in range(n)], embeddings=vecs)
    print(f"built {n} passages into {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "leann_store.command.cli", *argv], capture_output=True, text=True)
    return time.perf_counter() - t0, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/leann-command-cold")
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    big = work / f"devcorpus-{args.n}"
    if not (big / "docstore.sqlite").is_file():
        build_store(big, args.n)
    folder = Path(sysconfig.get_paths()["stdlib"]) / "email"
    small = work / "email-kb"
    if not (small / "docstore.sqlite").is_file():
        subprocess.run([sys.executable, "-m", "leann_store.command.cli", "build", str(folder), "--index",
                        str(small), "-q"], check=True)
    timed(["search", str(big), "warm the page cache", "-q"])
    rows: dict[str, list[float]] = {}
    recompute: list[float] = []
    recomputed: list[int] = []
    for r in range(args.runs):
        q = QUERIES[r % len(QUERIES)]
        wall, res = timed(["search", str(big), q, "--json", "-q"])
        assert res.returncode == 0, res.stderr
        got = json.loads(res.stdout)
        rows.setdefault("search (wall)", []).append(wall)
        recompute.append(got["recompute_ms"] / 1e3)
        recomputed.append(got["recomputed"])
        rows.setdefault("search minus recompute", []).append(wall - got["recompute_ms"] / 1e3)
        for name, argv in (("info", ["info", str(big)]), ("check", ["check", str(big)]),
                           ("no-op build", ["build", str(folder), "--index", str(small), "-q"]),
                           ("usage error", ["search", str(big), "  "])):
            wall, res = timed(argv)
            rows.setdefault(name, []).append(wall)
    print(f"{args.n}-passage store, {args.runs} runs each, medians (min-max), one process per command:")
    for name, xs in rows.items():
        print(f"  {name:24} {statistics.median(xs):6.2f} s  ({min(xs):.2f}-{max(xs):.2f})")
    print(f"  recompute part           {statistics.median(recompute):6.2f} s  "
          f"({min(recompute):.2f}-{max(recompute):.2f}); passages recomputed: median "
          f"{statistics.median(recomputed):.0f}")


if __name__ == "__main__":
    main()
