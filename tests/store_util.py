"""Helpers for the store tests: a deterministic text embedding (the same in
every process), and a brute-force reference store."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import numpy as np

from leann_store.filters import compile_filter

DIM = 16


def _base(word: str, dim: int, salt: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256((salt + word).encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=dim)


def text_vector(text: str, dim: int = DIM, salt: str = "") -> np.ndarray:
    """Sum of per-word random vectors: texts sharing words are near."""
    words = text.split() or [""]
    return np.sum([_base(w, dim, salt) for w in words], axis=0).astype(np.float32)


class HashEmbed:
    """A deterministic text model, ``embed(texts)``, with a call log; another
    ``salt`` or ``dim`` is another model."""

    def __init__(self, dim: int = DIM, salt: str = "") -> None:
        self.dim = dim
        self.salt = salt
        self.calls = 0
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.calls += 1
            self.texts.extend(texts)
        return np.stack([text_vector(t, self.dim, self.salt) for t in texts])


WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
         "tau upsilon phi chi psi omega").split()


def random_text(rng: np.random.Generator, words: int = 4) -> str:
    return " ".join(rng.choice(WORDS, size=words).tolist())


def cosine_distances(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    return 1.0 - (x64 @ q64) / (np.linalg.norm(x64, axis=1) * np.linalg.norm(q64))


class Reference:
    """What the store should hold: id -> (text, metadata)."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[str, dict[str, Any]]] = {}

    def add(self, texts: list[str], metas: list[dict[str, Any]], ids: list[str]) -> None:
        for t, m, i in zip(texts, metas, ids):
            self.docs.pop(i, None)
            self.docs[i] = (t, m)

    def delete(self, ids: list[str]) -> None:
        for i in ids:
            self.docs.pop(i, None)

    def delete_where(self, flt: Any) -> None:
        f = compile_filter(flt)
        for i in [i for i, (_, m) in self.docs.items() if f.matches(m)]:
            del self.docs[i]

    def search(self, q: np.ndarray, k: int, flt: Any = None) -> list[tuple[float, str]]:
        f = compile_filter(flt)
        items = [(i, t) for i, (t, m) in self.docs.items() if f is None or f.matches(m)]
        if not items:
            return []
        d = cosine_distances(q, np.stack([text_vector(t) for _, t in items]))
        order = np.argsort(d, kind="stable")[:k]
        return [(float(d[j]), items[j][0]) for j in order]
