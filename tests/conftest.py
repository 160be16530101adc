"""Shared fixtures and helpers: synthetic clustered data and exact ground truth."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

from leann_store import native

# The command's cache (its ONNX export of the model) lives in one folder per
# test session, never the user's: the first test that loads the model exports
# and verifies it, the rest of the session (subprocesses too) reuse it.
if "LEANN_STORE_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="leann-store-test-cache-")
    os.environ["LEANN_STORE_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


def clustered(n: int, dim: int, seed: int = 0, n_clusters: int = 20, rank: int = 8,
              spread: float = 2.0, noise: float = 0.3) -> np.ndarray:
    """Deterministic float32 data: ``n_clusters`` gaussian clusters (unit-scale
    random centres), each with its own anisotropic low-rank structure (``rank``
    random directions with geometrically decaying scales, overall ``spread``)
    plus isotropic noise of total norm ~``noise``."""
    rng = np.random.default_rng(seed)
    n_clusters = max(1, min(n_clusters, n))
    rank = max(1, min(rank, dim))
    centers = rng.normal(0.0, 1.0, size=(n_clusters, dim))
    bases = rng.normal(0.0, 1.0, size=(n_clusters, rank, dim)) / np.sqrt(dim)
    scales = (rng.uniform(0.5, 1.0, size=(n_clusters, 1)) * spread
              * (0.8 ** np.arange(rank))[None, :])
    labels = rng.integers(0, n_clusters, size=n)
    coeff = rng.normal(0.0, 1.0, size=(n, rank)) * scales[labels]
    low_rank = np.einsum("nr,nrd->nd", coeff, bases[labels])
    x = centers[labels] + low_rank + noise * rng.normal(0.0, 1.0, size=(n, dim)) / np.sqrt(dim)
    return np.ascontiguousarray(x, dtype=np.float32)


def queries_near(data: np.ndarray, nq: int, seed: int = 1, noise: float = 0.05) -> np.ndarray:
    """Queries drawn from the data distribution: perturbed copies of random rows."""
    rng = np.random.default_rng(seed)
    rows = data[rng.integers(0, data.shape[0], size=nq)].astype(np.float64)
    q = rows + noise * rng.normal(0.0, 1.0, size=rows.shape) / np.sqrt(data.shape[1])
    return np.ascontiguousarray(q, dtype=np.float32)


def exact_distances(data: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """(nq, n) float64 distances as the index reports them:
    l2 -> squared Euclidean, cosine -> 1 - cos, ip -> -<q, x>."""
    x = data.astype(np.float64)
    q = np.atleast_2d(queries).astype(np.float64)
    if metric == "l2":
        d = (q * q).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2.0 * q @ x.T
        return np.maximum(d, 0.0)
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        return 1.0 - qn @ xn.T
    if metric == "ip":
        return -(q @ x.T)
    raise ValueError(metric)


def ground_truth(data: np.ndarray, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    """(nq, k) exact nearest ids: argmin squared L2, argmax cosine, argmax inner product."""
    d = exact_distances(data, queries, metric)
    idx = np.argpartition(d, kth=min(k, d.shape[1] - 1), axis=1)[:, :k] if k < d.shape[1] \
        else np.tile(np.arange(d.shape[1]), (d.shape[0], 1))
    order = np.take_along_axis(d, idx, axis=1).argsort(axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


@pytest.fixture(scope="session")
def clustered_data():
    """Factory fixture: ``clustered_data(n, dim, seed)`` -> float32 array (cached)."""
    cache: dict = {}

    def make(n: int, dim: int, seed: int = 0) -> np.ndarray:
        key = (n, dim, seed)
        if key not in cache:
            cache[key] = clustered(n, dim, seed)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def kernels() -> list[str]:
    return native.available_kernels()
