"""Input checks shared by the index, the codec and the store."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import errors

_BLOCK = 4096  # rows looked at a time

# Squared distances are float32: components beyond this overflow them.
_MAX_ABS = 1e15


def check_finite(x: np.ndarray, name: str) -> None:
    """NaN, infinities and overflowing components are errors.  The common
    case reads each block twice (min, max) and allocates nothing; only a
    failing block is looked at row by row."""
    for s in range(0, x.shape[0], _BLOCK):
        block = x[s:s + _BLOCK]
        lo, hi = float(block.min()), float(block.max())  # NaN propagates
        if np.isfinite(lo) and np.isfinite(hi) and max(-lo, hi) <= _MAX_ABS:
            continue
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = s + int(np.flatnonzero(~finite)[0])
            raise errors.InvalidInputError(f"{name} row {row} contains NaN or infinity")
        row = s + int(np.flatnonzero((np.abs(block) > _MAX_ABS).any(axis=1))[0])
        raise errors.InvalidInputError(
            f"{name} row {row} has a component beyond +-{_MAX_ABS:g}, which overflows "
            "float32 distances; rescale the vectors")


def integer(x: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """``x`` as an int within [lo, hi] (None: unbounded); bools are refused
    (``True`` is an int to Python, never a count to a user).

    >>> integer(3, "k", 1)
    3
    >>> integer(True, "k", 1)
    Traceback (most recent call last):
    leann_store.errors.InvalidInputError: k must be an integer >= 1, got True
    """
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or \
            (lo is not None and x < lo) or (hi is not None and x > hi):
        raise errors.InvalidInputError(f"{name} must be an integer{_range(lo, hi)}, got {x!r}")
    return int(x)


def number(x: Any, name: str, lo: float | None = None, hi: float | None = None, *,
           lo_open: bool = False, hi_open: bool = False) -> float:
    """``x`` as a finite float within the interval (bounds open where said);
    bools are refused.

    >>> number(0.5, "alpha", 0, 1)
    0.5
    >>> number(1, "ratio", 0, 1, lo_open=True)
    1.0
    """
    ok = not isinstance(x, bool) and isinstance(x, (int, float, np.integer, np.floating))
    if ok:
        v = float(x)
        ok = v == v and abs(v) != float("inf")
        ok = ok and (lo is None or (v > lo if lo_open else v >= lo))
        ok = ok and (hi is None or (v < hi if hi_open else v <= hi))
    if not ok:
        lb = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        hb = "" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        where = f" in {lb}, {hb}" if lo is not None and hi is not None else _range(lo, hi)
        raise errors.InvalidInputError(f"{name} must be a number{where}, got {x!r}")
    return float(x)


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo:g}, {hi:g}]"
    if lo is not None:
        return f" >= {lo:g}"
    if hi is not None:
        return f" <= {hi:g}"
    return ""


def str_list(x: Any, name: str) -> list[str]:
    """A list of strings (one string is refused: it is iterable too)."""
    if isinstance(x, str):
        raise errors.InvalidInputError(f"{name} must be a list of strings, not one string")
    out = list(x)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise errors.InvalidInputError(f"{name}[{i}] must be a string, got {type(t).__name__}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as exc:  # before the model sees it: SQLite cannot store it
            raise errors.InvalidInputError(
                f"{name}[{i}] holds {t[exc.start:exc.end]!r}, which is not valid Unicode (a lone surrogate, "
                "as os.fsdecode makes of bytes that are not UTF-8)") from exc
    return out


def per_row(x: Any, n: int, name: str) -> list[Any]:
    """One entry per text (None: a list of None)."""
    if x is None:
        return [None] * n
    if isinstance(x, (str, bytes, Mapping)):
        raise errors.InvalidInputError(f"{name} must be a list with one entry per text")
    out = list(x)
    if len(out) != n:
        raise errors.InvalidInputError(f"{name} has {len(out)} entries for {n} texts")
    return out


def given_embeddings(x: Any, n: int, dim: int) -> np.ndarray:
    """Caller-supplied embeddings as float32 (n, dim), finite.  A float32
    array (a memory-mapped one too) is used as it is, not copied; the
    checks read it a block at a time."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInputError(f"embeddings must be an (n, dim) array of floats: {exc}") from exc
    if arr.ndim != 2 or arr.shape[0] != n:
        raise errors.InvalidInputError(f"embeddings have shape {arr.shape}; expected ({n}, {dim})")
    if arr.shape[1] != dim:
        raise errors.DimensionMismatchError(f"embeddings have dimension {arr.shape[1]}, the store has {dim}")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    check_finite(arr, "embeddings")
    return arr


def zero_rows(x: np.ndarray) -> np.ndarray:
    """Positions of all-zero rows, a block at a time (no (n, dim) temporary)."""
    out = [s + np.flatnonzero(~np.any(x[s:s + _BLOCK] != 0, axis=1)) for s in range(0, x.shape[0], _BLOCK)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def embeddings(got: Any, n: int, dim: int, what: str) -> np.ndarray:
    """What an embedding callback returned, as float32 (n, dim) and finite,
    or a :class:`~leann_store.errors.CallbackError` saying what is wrong and
    for which inputs (``what``).  The one check of a model's answer: the
    store's text embedder and the index's id fetcher both use it.

    >>> embeddings([[1.0, 2.0]], 1, 2, "for 1 text").dtype
    dtype('float32')
    >>> embeddings([[1.0]], 1, 2, "for 1 text")
    Traceback (most recent call last):
    leann_store.errors.CallbackError: embed returned shape (1, 1) for 1 text; expected (1, 2)
    """
    try:
        arr = np.asarray(got)
    except Exception as exc:
        raise errors.CallbackError(f"embed returned {type(got).__name__}, not an array, {what}") from exc
    if arr.dtype.kind != "f":  # integers are a truncated answer, not a model's
        raise errors.CallbackError(f"embed must return floats, got dtype {arr.dtype} {what}")
    if arr.shape != (n, dim):
        raise errors.CallbackError(f"embed returned shape {arr.shape} {what}; expected ({n}, {dim})")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise errors.CallbackError(f"embed returned NaN or infinity {what}")
    return arr


def last_occurrence(ids: list[str]) -> list[int]:
    """Positions to keep when ids repeat: the last occurrence of each."""
    last = {x: i for i, x in enumerate(ids)}
    return [i for i, x in enumerate(ids) if last[x] == i]


def query_vector(q: Any, dim: int) -> np.ndarray:
    """One finite float32 query vector of the store's dimension."""
    try:
        arr = np.asarray(q, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInputError(f"query_embedding must be a vector of floats: {exc}") from exc
    if arr.ndim != 1:
        raise errors.InvalidInputError(f"query_embedding must be one vector, got shape {arr.shape}")
    if arr.shape[0] != dim:
        raise errors.DimensionMismatchError(f"query has dimension {arr.shape[0]}, the store has {dim}")
    if not np.isfinite(arr).all():
        raise errors.InvalidInputError("query_embedding contains NaN or infinity")
    return np.ascontiguousarray(arr)
