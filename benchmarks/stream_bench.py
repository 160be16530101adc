#!/usr/bin/env python3
"""Peak memory of a build from vectors in memory against the same build from a
memory-mapped ``.npy``, by corpus size.

Each build runs in a fresh subprocess; peak RSS is ``ru_maxrss`` of that
process, which also counts the file's pages while they are mapped in.  The
data are synthetic 384-d vectors with a decaying spectrum (variance of
component i ~ 1/i, like sentence embeddings'), written once to a cache file.
The table gives the build time, peak RSS, the data's size, the final index's
bytes and the peak over the index: the graph under construction (neighbour ids
and their codes side by side, ``2M`` a node) is what a build holds beyond one
chunk of vectors.

    python benchmarks/stream_bench.py --n 50000,100000,200000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CACHE = Path(tempfile.gettempdir()) / "leann-stream-bench"


def data_file(n: int, dim: int) -> Path:
    path = CACHE / f"spectrum-{n}x{dim}.npy"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        x = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        rng = np.random.default_rng(0)
        scale = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype(np.float32)
        for s in range(0, n, 50_000):
            e = min(n, s + 50_000)
            x[s:e] = rng.standard_normal((e - s, dim), dtype=np.float32) * scale
        x.flush()
        del x
        os.replace(tmp, path)
    return path


def worker(path: str, mode: str) -> None:
    from leann_store import IndexConfig, LeannIndex
    x = np.load(path, mmap_mode="r") if mode == "mmap" else np.load(path)
    t = time.perf_counter()
    index = LeannIndex.build(x, IndexConfig(metric="l2"))
    secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "index_bytes": index.nbytes}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="50000,100000,200000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    rows = []
    print(f"{'n':>9} {'input':6} {'build s':>8} {'peak RSS MB':>12} {'data MB':>8} {'index MB':>9} {'peak/index':>10}")
    for n in [int(v) for v in args.n.split(",")]:
        path = data_file(n, args.dim)
        for mode in ("memory", "mmap"):
            out = subprocess.run([sys.executable, __file__, "--worker", str(path), mode], check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            r = json.loads(out) | {"n": n, "input": mode, "data_bytes": n * args.dim * 4}
            rows.append(r)
            print(f"{n:9d} {mode:6} {r['seconds']:8.1f} {r['peak_rss'] / 2**20:12.0f} "
                  f"{r['data_bytes'] / 2**20:8.0f} {r['index_bytes'] / 2**20:9.1f} "
                  f"{r['peak_rss'] / r['index_bytes']:10.1f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
