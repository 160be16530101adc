#!/usr/bin/env python3
"""Build benchmark: leann_store (flash / exact) against hnswlib and faiss HNSW.

For every data set and contender the graph is built ``--runs`` times, each
build in a fresh Python subprocess (this script re-invoked with ``--worker``),
and the following are measured:

* build seconds: wall clock of the build call only (for leann_store this
  includes codec training, which is part of its build);
* peak build memory: the subprocess loads the data, imports its library,
  resets the RSS high-water mark (``echo 5 > /proc/self/clear_refs``), reads
  the baseline RSS, builds, then reads ``VmHWM``; peak minus baseline is
  reported in MB (MiB, 2**20 bytes);
* recall@10 at ef = 32, 64, 128 against exact brute-force ground truth, all
  searches ranking by exact float distances.

Every contender gets the same M, efConstruction and thread count (BLAS and
OpenMP thread pools in the worker are pinned to ``--threads`` as well).

Run ``python benchmarks/build_bench.py --help`` for the options; see
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / "cache"
RESULTS = HERE / "results"
DEFAULT_CORPUS = (REPO / ".." / "shared" / "bench" / "devcorpus").resolve()

ALL_CONTENDERS = ("flash", "exact", "hnswlib", "faiss")
EXTRA_CONTENDERS = ("flash-acc8",)
EFS = (32, 64, 128)
K = 10
SYNTH_VERSION = 2  # bump when the generator changes (part of the cache key)


# ---------------------------------------------------------------------------
# worker: one build in a fresh process
# ---------------------------------------------------------------------------
def _proc_status() -> dict[str, int]:
    """VmRSS / VmHWM in bytes from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) * 1024
    return out


def _cpu_jiffies_busy() -> float:
    """System-wide busy CPU seconds (all processes) from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    vals = [int(v) for v in fields]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    busy = sum(vals[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _import_leann(retries: int = 10, wait: float = 30.0):
    """import leann_store, retrying while the native library is being rebuilt."""
    for attempt in range(retries):
        try:
            import leann_store  # noqa: F401
            from leann_store import native  # noqa: F401
            return leann_store
        except Exception as exc:  # ImportError, OSError from a half-written .so ...
            if attempt == retries - 1:
                raise
            print(f"[worker] import leann_store failed ({exc!r}); retrying in {wait:.0f}s",
                  file=sys.stderr, flush=True)
            for name in [m for m in sys.modules if m.startswith("leann_store")]:
                del sys.modules[name]
            time.sleep(wait)
    raise RuntimeError("unreachable")


def _native_lib_info() -> dict:
    from leann_store import _native  # type: ignore[attr-defined]

    path = Path(_native.__file__)
    h = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path), "sha256": h, "mtime": path.stat().st_mtime}


def worker(spec_path: str, out_path: str) -> None:
    import numpy as np

    spec = json.loads(Path(spec_path).read_text())
    contender = spec["contender"]
    threads = spec["threads"]
    M, efc, metric = spec["M"], spec["ef_construction"], spec["metric"]

    x = np.load(spec["data"])  # fully resident before the baseline
    q = np.load(spec["queries"])
    gt = np.load(spec["gt"])
    n, d = x.shape
    assert x.dtype == np.float32 and x.flags.c_contiguous

    extra: dict = {}
    if contender in ("flash", "exact", "flash-acc8"):
        leann_store = _import_leann()
        from leann_store import IndexConfig, LeannIndex

        extra["native_lib"] = _native_lib_info()
        # store_vectors: the graph is searched with exact distances, so its
        # quality is measured apart from code error (and hnswlib keeps its
        # vectors too); prune=False is its default then
        kw = dict(metric=metric, M=M, ef_construction=efc, threads=threads, seed=spec["seed"],
                  builder="exact" if contender == "exact" else "flash", store_vectors=True)
        if contender != "exact":
            for key in ("num_subspaces", "pca_dim", "accumulate"):
                if spec.get(key) is not None:
                    kw[key] = spec[key]
            if contender == "flash-acc8":
                kw["accumulate"] = 8
        cfg = IndexConfig(**kw)

        def build():
            return LeannIndex.build(x, cfg, progress=False)

        def search(index, ef):
            return index.search(q, k=K, ef=ef, threads=threads).ids
    elif contender == "hnswlib":
        import hnswlib

        space = {"l2": "l2", "cosine": "cosine"}[metric]

        def build():
            index = hnswlib.Index(space=space, dim=d)
            index.init_index(max_elements=n, ef_construction=efc, M=M, random_seed=spec["seed"] + 100)
            index.set_num_threads(threads)
            index.add_items(x, np.arange(n), num_threads=threads)
            return index

        def search(index, ef):
            index.set_ef(ef)
            labels, _ = index.knn_query(q, k=K, num_threads=threads)
            return labels
    elif contender == "faiss":
        import faiss

        faiss.omp_set_num_threads(threads)
        fmetric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT

        def build():
            index = faiss.IndexHNSWFlat(d, M, fmetric)
            index.hnsw.efConstruction = efc
            index.add(x)
            return index

        def search(index, ef):
            index.hnsw.efSearch = ef
            _, labels = index.search(q, K)
            return labels
    else:
        raise SystemExit(f"unknown contender {contender!r}")

    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _proc_status()
    busy0, cpu0, t0 = _cpu_jiffies_busy(), time.process_time(), time.perf_counter()
    index = build()
    t1 = time.perf_counter()
    cpu1, busy1 = time.process_time(), _cpu_jiffies_busy()
    after = _proc_status()

    own_cpu = cpu1 - cpu0
    res = {
        "contender": contender,
        "n": n, "dim": d, "metric": metric,
        "build_s": t1 - t0,
        "build_cpu_s": own_cpu,
        # busy CPU seconds of *other* processes during the build (contention check)
        "foreign_cpu_s": max(0.0, (busy1 - busy0) - own_cpu),
        "baseline_rss_mb": base["VmRSS"] / 2**20,
        "hwm_mb": after["VmHWM"] / 2**20,
        "peak_mb": (after["VmHWM"] - base["VmRSS"]) / 2**20,
        "retained_mb": (after["VmRSS"] - base["VmRSS"]) / 2**20,
        "loadavg_before": spec.get("loadavg_before"),
    }
    if contender in ("flash", "exact", "flash-acc8"):
        bs = dict(index.build_stats)
        res["build_stats"] = bs
        res["build_stats_per_vector"] = {k: v / n for k, v in bs.items()}
        res["index_memory_bytes"] = index.memory_bytes
        res["leann_config"] = index.config_dict()
        c = index.codec
        if c is not None:
            res["codec"] = {"num_subspaces": c.num_subspaces, "pca_dim": c.pca_dim,
                            "code_bytes": c.code_bytes, "accumulate": c.accumulate,
                            "explained_variance": c.explained_variance, "scale": c.scale}

    recall, search_s = {}, {}
    for ef in spec["efs"]:
        s0 = time.perf_counter()
        ids = np.asarray(search(index, ef))
        search_s[str(ef)] = time.perf_counter() - s0
        hits = sum(len(np.intersect1d(ids[i], gt[i, :K])) for i in range(len(q)))
        recall[str(ef)] = hits / (len(q) * K)
    res["recall"] = recall
    res["search_s"] = search_s
    Path(out_path).write_text(json.dumps(res))


# ---------------------------------------------------------------------------
# data sets
# ---------------------------------------------------------------------------
# Generator parameters (part of the cache key).  They were calibrated so that
# the neighbourhood statistics resemble real sentence embeddings (the MiniLM
# dev corpus, 20k x 384): relative contrast mean-dist / NN-dist ~1.5 (real
# 1.55), local intrinsic dimension (MLE, k=20/100) ~40/32 (real 28/28), 66% of
# the variance in the top-64 global principal components (real 61%), and 45%
# of the energy of query-to-neighbour differences in those components (real
# 48%).  Fully random per-cluster subspaces would put only ~9% there, which no
# real embedding model does.
SYNTH_PARAMS = dict(dim=768, clusters=100, rank=128, alpha=0.5, beta=1.5, centre_var=1.0,
                    within_var=2.0, noise_var=0.05)


def make_synthetic(n: int, nq: int, dim: int = 768, clusters: int = 100, rank: int = 128,
                   alpha: float = 0.5, beta: float = 1.5, centre_var: float = 1.0,
                   within_var: float = 2.0, noise_var: float = 0.05, seed: int = 1234):
    """Clustered, anisotropic embedding-like data (float32), deterministic for seed.

    * a global anisotropy: a random rotation U with a power-law spectrum
      g_j ~ j^-beta over all ``dim`` directions (A = U diag(sqrt(g)), trace 1);
    * ``clusters`` centres ~ N(0, centre_var * A A^T);
    * cluster sizes from a Dirichlet(2) draw (uneven, like topics);
    * each cluster: its own ``rank``-dimensional subspace spanned by ``rank``
      draws from the global anisotropic Gaussian (so local directions lean
      towards the globally dominant ones, as in real embeddings),
      orthonormalised, with a power-law spectrum lambda_i ~ i^-alpha scaled
      to a total variance of ``within_var``;
    * isotropic Gaussian noise of total variance ``noise_var``.

    Data and queries are n + nq independent draws from the same mixture, split
    after a random permutation, so no query is in the data.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    total = n + nq
    U, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    g = np.arange(1, dim + 1, dtype=np.float64) ** (-beta)
    g /= g.sum()
    A = U * np.sqrt(g)
    centres = (rng.standard_normal((clusters, dim)) @ A.T) * np.sqrt(centre_var)
    weights = rng.dirichlet(np.full(clusters, 2.0))
    assign = rng.choice(clusters, size=total, p=weights)
    spectrum = np.arange(1, rank + 1, dtype=np.float64) ** (-alpha)
    spectrum *= within_var / spectrum.sum()
    sd = np.sqrt(spectrum)
    noise_sd = np.sqrt(noise_var / dim)
    out = np.empty((total, dim), dtype=np.float32)
    for c in range(clusters):
        rows = np.flatnonzero(assign == c)
        basis, _ = np.linalg.qr(A @ rng.standard_normal((dim, rank)))  # (dim, rank) orthonormal
        coef = rng.standard_normal((len(rows), rank)) * sd
        out[rows] = centres[c] + coef @ basis.T + rng.standard_normal((len(rows), dim)) * noise_sd
    perm = rng.permutation(total)
    out = out[perm]
    return np.ascontiguousarray(out[:n]), np.ascontiguousarray(out[n:])


def ground_truth(x, q, metric: str, k: int = K, chunk: int = 8192):
    """Exact top-k ids by brute force (float64 matmul in chunks of the data)."""
    import numpy as np

    qd = q.astype(np.float64)
    if metric == "cosine":
        qd /= np.linalg.norm(qd, axis=1, keepdims=True)
    best_d = np.full((len(q), 0), np.inf)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for s in range(0, len(x), chunk):
        xd = x[s:s + chunk].astype(np.float64)
        if metric == "cosine":
            xd /= np.linalg.norm(xd, axis=1, keepdims=True)
            dist = -(qd @ xd.T)
        else:
            dist = (xd ** 2).sum(1)[None, :] - 2.0 * (qd @ xd.T)  # + |q|^2, constant per row
        kk = min(k, dist.shape[1])
        part = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
        cand_d = np.concatenate([best_d, np.take_along_axis(dist, part, 1)], 1)
        cand_i = np.concatenate([best_i, part + s], 1)
        order = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
        best_d = np.take_along_axis(cand_d, order, 1)
        best_i = np.take_along_axis(cand_i, order, 1)
    return best_i


def prepare_dataset(name: str, n: int, nq: int, corpus: Path, seed: int, dim: int | None = None) -> dict:
    """Create (or reuse) cached float32 data, queries and ground truth .npy files.

    dim: dimension of the synthetic data (None: ``SYNTH_PARAMS``'s 768)."""
    import numpy as np

    CACHE.mkdir(parents=True, exist_ok=True)
    params = dict(SYNTH_PARAMS, **({} if dim is None else {"dim": dim}))
    if name == "synthetic":
        ptag = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
        key = f"synthetic-v{SYNTH_VERSION}-n{n}-q{nq}-p{ptag}-s{seed}"
        metric = "l2"
    else:
        key = f"real-minilm-n{n}-q{nq}"
        metric = "cosine"
    data_p, q_p, gt_p = (CACHE / f"{key}-{part}.npy" for part in ("data", "queries", "gt10"))
    if not (data_p.exists() and q_p.exists()):
        t0 = time.perf_counter()
        if name == "synthetic":
            x, q = make_synthetic(n, nq, seed=seed, **params)
        else:
            emb = np.load(corpus / "emb_f16.npy", mmap_mode="r")
            qemb = np.load(corpus / "qemb_f16.npy", mmap_mode="r")
            if n > emb.shape[0] or nq > qemb.shape[0]:
                raise SystemExit(f"real corpus has {emb.shape[0]} passages / {qemb.shape[0]} "
                                 f"queries; asked for n={n}, queries={nq}")
            # float16 -> float32, re-normalised in float32 so that every contender
            # (inner product in faiss, cosine in hnswlib / leann) sees unit vectors
            x = np.asarray(emb[:n]).astype(np.float32)
            q = np.asarray(qemb[:nq]).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            q /= np.linalg.norm(q, axis=1, keepdims=True)
        np.save(data_p, np.ascontiguousarray(x, dtype=np.float32))
        np.save(q_p, np.ascontiguousarray(q, dtype=np.float32))
        print(f"  generated {key} in {time.perf_counter() - t0:.1f}s", flush=True)
    if not gt_p.exists():
        t0 = time.perf_counter()
        x, q = np.load(data_p, mmap_mode="r"), np.load(q_p)
        np.save(gt_p, ground_truth(x, q, metric))
        print(f"  ground truth for {key} in {time.perf_counter() - t0:.1f}s", flush=True)
    shape = np.load(data_p, mmap_mode="r").shape
    return {"name": name, "key": key, "generator": params if name == "synthetic" else None,
            "source": None if name == "synthetic" else str(corpus), "metric": metric, "n": shape[0], "dim": shape[1],
            "queries_n": nq, "data": str(data_p), "queries": str(q_p), "gt": str(gt_p)}


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------
def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> tuple[float, float]:
    """Wait (up to max_wait s) until other processes use < threshold cores.

    Returns (seconds waited, last measured foreign load in cores).  This
    process is idle while it measures, so all busy CPU time is foreign.
    """
    t0 = time.perf_counter()
    while True:
        b0 = _cpu_jiffies_busy()
        time.sleep(1.0)
        load = _cpu_jiffies_busy() - b0
        waited = time.perf_counter() - t0
        if load < threshold or waited >= max_wait:
            return waited, load


def run_one(ds: dict, contender: str, args, run_idx: int) -> dict:
    waited, load = wait_for_quiet(args.max_idle_wait)
    with tempfile.TemporaryDirectory(prefix="build_bench-") as tmp:
        spec_p, out_p = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec = {"contender": contender, "data": ds["data"], "queries": ds["queries"],
                "gt": ds["gt"], "metric": ds["metric"], "M": args.M,
                "ef_construction": args.ef_construction, "threads": args.threads,
                "seed": args.seed, "efs": list(EFS), "num_subspaces": args.num_subspaces,
                "pca_dim": args.pca_dim, "accumulate": args.accumulate,
                "loadavg_before": os.getloadavg()[0]}
        spec_p.write_text(json.dumps(spec))
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
            env[var] = str(args.threads)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_p), str(out_p)]
        proc = subprocess.run(cmd, env=env, cwd=str(REPO), timeout=args.worker_timeout)
        if proc.returncode != 0 or not out_p.exists():
            raise RuntimeError(f"{contender} run {run_idx} on {ds['name']} failed "
                               f"(exit code {proc.returncode})")
        res = json.loads(out_p.read_text())
    res["run"] = run_idx
    res["idle_wait_s"] = waited
    res["foreign_load_before"] = load  # cores busy with other processes just before
    # contended: other processes used > 10% of the machine during the build
    res["contended"] = res["foreign_cpu_s"] > 0.1 * res["build_s"] * (os.cpu_count() or 1)
    return res


def summarise(runs: list[dict]) -> dict:
    med = statistics.median
    first = runs[0]
    s = {
        "runs": len(runs),
        "build_s_median": med(r["build_s"] for r in runs),
        "build_s_all": [r["build_s"] for r in runs],
        "peak_mb_median": med(r["peak_mb"] for r in runs),
        "peak_mb_all": [r["peak_mb"] for r in runs],
        "retained_mb_median": med(r["retained_mb"] for r in runs),
        "recall_first_run": first["recall"],
        "recall_median": {ef: med(r["recall"][ef] for r in runs) for ef in first["recall"]},
        "search_s_median": {ef: med(r["search_s"][ef] for r in runs) for ef in first["search_s"]},
        "foreign_cpu_s_max": max(r["foreign_cpu_s"] for r in runs),
        "build_cpu_s_median": med(r["build_cpu_s"] for r in runs),
        "contended_runs": sum(bool(r["contended"]) for r in runs),
    }
    if "build_stats_per_vector" in first:
        s["build_stats_per_vector_median"] = {
            k: med(r["build_stats_per_vector"][k] for r in runs) for k in first["build_stats_per_vector"]}
    if "codec" in first:
        s["codec"] = first["codec"]
    if "index_memory_bytes" in first:
        s["index_memory_mb"] = first["index_memory_bytes"] / 2**20
    return s


def print_table(ds: dict, summary: dict[str, dict], threads: int) -> None:
    name = f"{ds['name']} (n={ds['n']}, d={ds['dim']}, metric={ds['metric']}, queries={ds['queries_n']})"
    print()
    print("=" * len(name))
    print(name)
    print("=" * len(name))
    hdr = (f"{'contender':<11} {'runs':>4} {'busy':>4} {'build s':>9} {'peak MB':>9} {'kept MB':>8} "
           f"{'R@10 ef32':>9} {'ef64':>6} {'ef128':>6}  {'evals/vec':>9}")
    print(hdr)
    print("-" * len(hdr))
    for c, s in summary.items():
        r = s["recall_median"]
        ev = s.get("build_stats_per_vector_median", {}).get("distance_evals")
        evs = f"{ev:9.0f}" if ev is not None else f"{'-':>9}"
        print(f"{c:<11} {s['runs']:>4} {s['contended_runs']:>4} {s['build_s_median']:9.2f} {s['peak_mb_median']:9.1f} "
              f"{s['retained_mb_median']:8.1f} {r['32']:9.4f} {r['64']:6.4f} {r['128']:6.4f}  {evs}")
    print("(build s and peak MB: medians over runs; recall: median over runs; kept MB: RSS still"
          " held after the build;\n busy: runs during which other processes used >10% of the CPUs)")
    for c, s in summary.items():
        if "codec" in s:
            cd = s["codec"]
            print(f"  {c}: codec {cd['num_subspaces']} subspaces x 4 bit ({cd['code_bytes']} B/vec), "
                  f"pca_dim {cd['pca_dim']} (explained var {cd['explained_variance']:.3f}), "
                  f"accumulate {cd['accumulate']}")
    if "hnswlib" in summary:
        h = summary["hnswlib"]
        print()
        print("vs hnswlib      speed-up   mem ratio   recall delta @ef64")
        for c, s in summary.items():
            if c == "hnswlib":
                continue
            sp = h["build_s_median"] / s["build_s_median"]
            mr = s["peak_mb_median"] / h["peak_mb_median"] if h["peak_mb_median"] > 0 else float("nan")
            dr = s["recall_median"]["64"] - h["recall_median"]["64"]
            print(f"  {c:<13} {sp:8.2f}x {mr:10.2f}x   {dr:+.4f}")
    worst = max(s["foreign_cpu_s_max"] for s in summary.values())
    print(f"(max CPU-seconds used by other processes during one build: {worst:.1f}; "
          f"machine has {os.cpu_count()} cores, builds use {threads} threads)")


def print_scaling(rows: list[dict]) -> None:
    """One line per (data set, size): each contender's median build seconds,
    its speed-up over hnswlib and its median recall@10 at ef = 64."""
    contenders = list(rows[0]["summary"])
    print("\nscaling: median build s, speed-up over hnswlib, recall@10 at ef 64")
    print(f"{'data set':<10} {'n':>8} {'dim':>4}  " + "  ".join(f"{c:>24}" for c in contenders))
    for r in rows:
        s = r["summary"]
        h = s.get("hnswlib", {}).get("build_s_median")
        cells = []
        for c in contenders:
            t = s[c]["build_s_median"]
            speed = f"{h / t:6.2f}x" if h else " " * 7
            cells.append(f"{t:8.2f}s {speed} {s[c]['recall_median']['64']:.4f}")
        print(f"{r['dataset']:<10} {r['n']:>8} {r['dim']:>4}  " + "  ".join(f"{c:>24}" for c in cells))


def machine_info() -> dict:
    from importlib import metadata

    import numpy as np

    def ver(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    info = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "hnswlib": ver("hnswlib"),
        "faiss": ver("faiss-cpu"),
        "psutil": ver("psutil"),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        pass
    try:
        leann_store = _import_leann()
        from leann_store import native

        info["leann_store"] = leann_store.__version__
        info["leann_best_kernel"] = native.best_kernel()
        info["leann_kernels"] = native.available_kernels()
        info["leann_native_lib"] = _native_lib_info()
    except Exception as exc:  # pragma: no cover
        info["leann_store_error"] = repr(exc)
    try:
        info["git_head"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                          text=True).stdout.strip() or None
        info["git_dirty_files"] = len(subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
            text=True).stdout.splitlines())
    except OSError:
        pass
    return info


REAL_MAX = 50_000  # passages in the devcorpus


def _sizes(text: str) -> list[int]:
    """``--n``: one size or a comma list, each a positive integer."""
    try:
        sizes = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 50000 or 10000,25000,50000, got {text!r}")
    if not sizes or sizes[0] < 100:
        raise argparse.ArgumentTypeError(f"sizes must be at least 100, got {text!r}")
    return sizes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=("synthetic", "real", "both"), default="both")
    p.add_argument("--n", type=_sizes, default=None,
                   help="vectors per data set, or a comma list of sizes for a scaling study, each built "
                        "separately (default: synthetic 100000, real 50000; real sizes are capped at the "
                        "corpus's 50000 passages)")
    p.add_argument("--dim", type=int, default=None,
                   help="dimension of the synthetic data (default 768; e.g. 384 for MiniLM's)")
    p.add_argument("--queries", type=int, default=None, help="queries per data set (default 1000)")
    p.add_argument("--M", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=None, help="builds per contender (default 3)")
    p.add_argument("--contenders", default=",".join(ALL_CONTENDERS),
                   help=f"comma list from {ALL_CONTENDERS + EXTRA_CONTENDERS}")
    p.add_argument("--with-acc8", action="store_true", help="also run flash-acc8 (flash with accumulate=8)")
    p.add_argument("--num-subspaces", type=int, default=None, help="leann flash codec (default: library)")
    p.add_argument("--pca-dim", type=int, default=None, help="leann flash codec (default: library)")
    p.add_argument("--accumulate", type=int, default=None, choices=(8, 16),
                   help="leann flash codec (default: library)")
    p.add_argument("--quick", action="store_true",
                   help="quick mode: n=20000 for both data sets, runs=1, 200 queries")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="directory with emb_f16.npy, qemb_f16.npy")
    p.add_argument("--seed", type=int, default=0, help="index seeds (synthetic data uses its own fixed seed)")
    p.add_argument("--data-seed", type=int, default=1234, help="seed of the synthetic data")
    p.add_argument("--max-idle-wait", type=float, default=None,
                   help="before each build wait up to this many seconds for other processes to go "
                        "quiet (default 10, quick mode 3)")
    p.add_argument("--worker-timeout", type=float, default=3600.0, help="seconds per build subprocess")
    p.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        worker(*args.worker)
        return 0

    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if args.with_acc8 and "flash-acc8" not in contenders:
        contenders.append("flash-acc8")
    bad = [c for c in contenders if c not in ALL_CONTENDERS + EXTRA_CONTENDERS]
    if bad:
        p.error(f"unknown contenders {bad}")
    if args.dim is not None and not SYNTH_PARAMS["rank"] <= args.dim <= 65536:
        p.error(f"--dim must be in [{SYNTH_PARAMS['rank']}, 65536] (the synthetic clusters are "
                f"{SYNTH_PARAMS['rank']}-dimensional), got {args.dim}")
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    if args.max_idle_wait is None:
        args.max_idle_wait = 3.0 if args.quick else 10.0
    nq = args.queries if args.queries is not None else (200 if args.quick else 1000)
    sizes = {"synthetic": [100_000], "real": [50_000]}
    if args.quick:
        sizes = {"synthetic": [20_000], "real": [20_000]}
    if args.n is not None:
        sizes = {"synthetic": args.n, "real": sorted({min(n, REAL_MAX) for n in args.n})}
    datasets = ["synthetic", "real"] if args.dataset == "both" else [args.dataset]

    t_start = time.perf_counter()
    info = machine_info()
    print(f"machine: {info.get('cpu_count')} cpus ({info.get('cpu_model')}), numpy {info['numpy']}, "
          f"hnswlib {info['hnswlib']}, faiss {info['faiss']}, leann_store {info.get('leann_store')} "
          f"(kernel {info.get('leann_best_kernel')})")
    print(f"settings: M={args.M} efConstruction={args.ef_construction} threads={args.threads} "
          f"runs={runs} contenders={','.join(contenders)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    paths = []
    scaling: list[dict] = []
    for name, size in [(name, size) for name in datasets for size in sizes[name]]:
        print(f"\n[{name}] preparing data (n={size})", flush=True)
        seed = args.data_seed if name == "synthetic" else 0
        ds = prepare_dataset(name, size, nq, args.corpus, seed, args.dim if name == "synthetic" else None)
        raw: dict[str, list[dict]] = {c: [] for c in contenders}
        # interleave contenders within each round so slow drift hits all alike
        for r in range(runs):
            for c in contenders:
                res = run_one(ds, c, args, r)
                raw[c].append(res)
                print(f"  [{name}] run {r + 1}/{runs} {c:<10} build {res['build_s']:7.2f}s  "
                      f"peak {res['peak_mb']:8.1f} MB  recall@10 ef64 {res['recall']['64']:.4f}"
                      f"  (other procs {res['foreign_cpu_s']:.1f} cpu-s{', BUSY' if res['contended'] else ''}; "
                      f"waited {res['idle_wait_s']:.0f}s for quiet)", flush=True)
        summary = {c: summarise(raw[c]) for c in contenders}
        libs = {r["native_lib"]["sha256"] for rs in raw.values() for r in rs if "native_lib" in r}
        if len(libs) > 1:
            print(f"WARNING: the leann_store native library changed during the benchmark "
                  f"({len(libs)} different builds); results mix versions", flush=True)
        print_table(ds, summary, args.threads)
        out = {
            "dataset": {k: v for k, v in ds.items()},
            "settings": {"M": args.M, "ef_construction": args.ef_construction, "threads": args.threads,
                         "runs": runs, "k": K, "efs": list(EFS), "quick": args.quick, "seed": args.seed,
                         "data_seed": args.data_seed if name == "synthetic" else None,
                         "synthetic_dim": args.dim if name == "synthetic" else None,
                         "num_subspaces": args.num_subspaces, "pca_dim": args.pca_dim,
                         "accumulate": args.accumulate, "contenders": contenders,
                         "argv": sys.argv[1:]},
            "machine": info,
            "native_lib_consistent": len(libs) <= 1,
            "summary": summary,
            "ratios_vs_hnswlib": {
                c: {"build_speedup": summary["hnswlib"]["build_s_median"] / s["build_s_median"],
                    "peak_mem_ratio": (s["peak_mb_median"] / summary["hnswlib"]["peak_mb_median"]
                                       if summary["hnswlib"]["peak_mb_median"] > 0 else None),
                    "recall_delta_ef64": s["recall_median"]["64"] - summary["hnswlib"]["recall_median"]["64"]}
                for c, s in summary.items()} if "hnswlib" in summary else None,
            "raw": raw,
        }
        suffix = "" if len(sizes[name]) == 1 else f"-n{size}"
        path = RESULTS / f"build_bench-{name}{suffix}-{stamp}.json"
        path.write_text(json.dumps(out, indent=1))
        paths.append(path)
        print(f"\nJSON: {path}", flush=True)
        scaling.append({"dataset": name, "n": ds["n"], "dim": ds["dim"], "summary": summary})
    if any(len(sizes[name]) > 1 for name in datasets):
        print_scaling(scaling)
    print(f"\ntotal time {time.perf_counter() - t_start:.0f}s")
    for path in paths:
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
