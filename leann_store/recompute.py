"""Embedding on demand: the store's path from texts to checked vectors.

Every embedding the store asks for (new documents without caller-supplied
embeddings, the passages a search re-embeds, the rows a codec refresh
rebuilds from, ``LeannStore.embeddings`` for MMR) goes through
:class:`TextEmbedder`, the store's one boundary with the user's model:

* texts are ordered by token count and cut into batches whose padded size
  (texts x longest text) stays within a token budget, so a batch of short
  passages is not padded to the longest one of the whole request
  (transformer models pad to the longest text of a call);
* each batch's answer is checked once (:func:`leann_store._checks.embeddings`:
  a float array of the right shape, finite) and a bad one is a
  :class:`~leann_store.errors.CallbackError`, while an exception raised by
  ``embed`` itself propagates unchanged;
* rows come back in the order asked.

A search hands the index :meth:`TextEmbedder.fetcher`, an id fetcher whose
rows are checked already, so the index only maps them to its metric.  (The
C core still refuses non-finite rows: every input it takes is validated.)

The cross-query cache of recomputed passages is the index's own LRU
(``LeannIndex.cache_bytes``): the store's fetch function is only called for
rows the index does not hold.

>>> import numpy as np
>>> e = TextEmbedder(dim=2, batch_tokens=4, batch_size=8)
>>> e.embed(lambda texts: np.array([[len(t), 1.0] for t in texts]), ["a", "bbb", "cc"])
array([[1., 1.],
       [3., 1.],
       [2., 1.]], dtype=float32)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Sequence

import numpy as np

from . import _checks as checks
from . import errors
from .index import CheckedFetch
from .tokens import CHARS_PER_TOKEN

#: ``embed(texts) -> (len(texts), dim)`` floats: the user's model
TextEmbedFn = Callable[[list[str]], Any]

#: the text whose vector fingerprints a store's model
PROBE_TEXT = "leann-store model fingerprint: the quick brown fox jumps over the lazy dog."
#: cosine between the stored and the current probe vectors above which the
#: models are taken to be the same (batching noise stays far above it)
PROBE_MIN_COSINE = 0.999
#: cosine between embeddings handed to ``add`` and the store's own embedding
#: of the same text below which they are taken to come from another model
#: (looser than the probe's: callers' models may batch or round differently)
GIVEN_MIN_COSINE = 0.99


class TextEmbedder:
    """Token-budgeted, checked calls of a text embedding function."""

    def __init__(self, dim: int, batch_tokens: int = 8192, batch_size: int = 64) -> None:
        self.dim = dim
        self.batch_tokens = batch_tokens
        self.batch_size = batch_size

    def batches(self, tokens: Sequence[int]) -> list[np.ndarray]:
        """Positions grouped into batches (see :func:`length_batches`)."""
        return length_batches(tokens, self.batch_tokens, self.batch_size)

    def embed(self, fn: TextEmbedFn, texts: Sequence[str], tokens: Sequence[int | None] | None = None,
              progress: Any = None) -> np.ndarray:
        """Embed ``texts`` through ``fn`` in token-budgeted batches; rows in
        the order given.  ``tokens``: known counts (None entries are
        estimated); ``progress``: a tqdm-like bar advanced per batch."""
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        counts = [(len(t) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN if c is None else int(c)
                  for t, c in zip(texts, tokens if tokens is not None else [None] * n)]
        for batch in self.batches(counts):
            part = [texts[i] for i in batch]
            out[batch] = self.check(fn(part), len(part), part)
            if progress is not None:
                progress.update(len(part))
        return out

    def check(self, got: Any, n: int, texts: Sequence[str] = ()) -> np.ndarray:
        """``got`` as float32 (n, dim), or a CallbackError saying what is wrong."""
        return checks.embeddings(got, n, self.dim, f"for {n} texts" + (f" (first: {texts[0][:40]!r})" if texts else ""))

    def fetcher(self, fn: TextEmbedFn, inputs: Callable[[np.ndarray], tuple[list[str], list[int | None]]]) -> CheckedFetch:
        """The id fetcher a search hands the index: ``inputs(ids)`` gives
        the texts to embed (and their token counts), embedded here."""
        return CheckedFetch(lambda ids: self.embed(fn, *inputs(ids)))


def with_timeout(fn: TextEmbedFn, seconds: float | None) -> TextEmbedFn:
    """``fn``, or (with ``seconds``) ``fn`` run in a worker thread whose
    answer is awaited ``seconds`` at most: past that a :class:`CallbackError`
    (the thread cannot be stopped; it finishes or hangs on its own, its
    answer unused).

    >>> import time
    >>> slow = with_timeout(lambda texts: time.sleep(1) or [[0.0]], 0.05)
    >>> slow(["x"])
    Traceback (most recent call last):
    leann_store.errors.CallbackError: embed did not answer 1 texts within 0.05 s (embed_timeout)
    """
    if seconds is None:
        return fn

    def call(texts: list[str]) -> Any:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leann-embed")
        try:
            future = pool.submit(fn, texts)
            try:
                return future.result(timeout=seconds)
            except FutureTimeout:
                raise errors.CallbackError(f"embed did not answer {len(texts)} texts within {seconds:g} s "
                                           "(embed_timeout)") from None
        finally:
            pool.shutdown(wait=False)

    return call


def probe(fn: TextEmbedFn) -> np.ndarray:
    """The model's vector for :data:`PROBE_TEXT`: its fingerprint."""
    got = np.asarray(fn([PROBE_TEXT]))
    if got.ndim != 2 or got.shape[0] != 1 or got.shape[1] < 1:
        raise errors.CallbackError(f"embed([text]) must return a (1, dim) float array, got shape {got.shape}")
    return checks.embeddings(got, 1, got.shape[1], "for the probe text")[0]


def probe_mismatch(stored: np.ndarray, new: np.ndarray) -> str | None:
    """Why two fingerprints are not the same model's (None: they are).

    >>> v = np.array([1.0, 2.0], np.float32)
    >>> probe_mismatch(v, v * 1.0001) is None, probe_mismatch(v, v[::-1])
    (True, 'embeds differently (probe cosine 0.8000)')
    """
    if new.shape != stored.shape:
        return f"gives {new.shape[0]}-d vectors, the store's model {stored.shape[0]}-d"
    cos = cosine(stored, new)
    ratio = float(np.linalg.norm(new) / max(float(np.linalg.norm(stored)), 1e-30))
    if cos < PROBE_MIN_COSINE or abs(ratio - 1) > 0.01:
        return f"embeds differently (probe cosine {cos:.4f})"
    return None


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors (0 when either is zero)."""
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 0 else 0.0


def length_batches(lengths: Sequence[int], token_budget: int, max_batch: int) -> list[np.ndarray]:
    """Positions grouped into batches, longest texts first: each batch holds
    at most ``max_batch`` texts and its padded size (texts x its longest
    text) stays within ``token_budget`` (a longer text is a batch of its
    own).  The one batching rule of every embedding call: the store's and
    the command line's model's.

    >>> [b.tolist() for b in length_batches([5, 50, 10, 40], token_budget=100, max_batch=8)]
    [[1, 3], [2, 0]]
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    out: list[np.ndarray] = []
    start = 0
    for i, pos in enumerate(order):
        longest = max(1, int(lengths[order[start]]))
        if i > start and (i - start >= max_batch or (i - start + 1) * longest > token_budget):
            out.append(order[start:i])
            start = i
    if start < len(order):
        out.append(order[start:])
    return out
