"""One rule from a search's distance to a score, for the command and both adapters.

The store returns distances, ascending (cosine: ``1 - cos``; l2: squared
Euclidean; ip: ``-<q, x>``).  People and frameworks want a score, higher is
better:

* :func:`similarity`: the metric's own similarity -- the cosine, the inner
  product, or ``1 / (1 + squared distance)`` for l2.  ``Hit.score``, the
  command's output and LlamaIndex's ``similarities`` are this.
* :func:`relevance`: the same similarity squeezed into [0, 1], as LangChain's
  relevance scores must be: a negative cosine floors at 0, an inner product
  goes through the logistic (monotone for any vector scale), l2 is already
  in (0, 1].

>>> similarity("cosine", 0.25), relevance("cosine", 1.5)
(0.75, 0.0)
>>> similarity("l2", 3.0)
0.25
>>> similarity("ip", -2.0), round(relevance("ip", -2.0), 4)
(2.0, 0.8808)

Keyword and hybrid hits carry their own score (``Hit.score``: BM25, or the
fused score); :func:`hit_relevance` maps any hit onto [0, 1] by its mode.

>>> hit_relevance("cosine", "hybrid", float("nan"), 2 / 61, rrf_k=60)
1.0
>>> hit_relevance("cosine", "keyword", float("nan"), 3.0)
0.75
"""

from __future__ import annotations

import math

from . import errors


def similarity(metric: str, distance: float) -> float:
    """The metric's similarity for a distance the store returned."""
    d = float(distance)
    if metric == "cosine":
        return 1.0 - d
    if metric == "ip":
        return -d
    if metric == "l2":
        return 1.0 / (1.0 + max(0.0, d))
    raise errors.InvalidInputError(f"unknown metric {metric!r}")


def relevance(metric: str, distance: float) -> float:
    """:func:`similarity` mapped onto [0, 1], higher is better."""
    s = similarity(metric, distance)
    if metric == "cosine":
        return min(1.0, max(0.0, s))
    if metric == "ip":  # the logistic, written so that neither branch overflows
        if s >= 0:
            return 1.0 / (1.0 + math.exp(-s))
        z = math.exp(s)
        return z / (1.0 + z)
    return s


def hit_relevance(metric: str, mode: str, distance: float, score: float, *, rrf_k: int = 60,
                  weighted: bool = False) -> float:
    """A hit's relevance in [0, 1] by the mode that found it: dense, the
    distance's :func:`relevance`; keyword, BM25 as ``s / (1 + s)``; hybrid,
    the fused score over its largest possible value (reciprocal rank: first
    on both lists, ``2 / (rrf_k + 1)``; ``weighted``: already in [0, 1])."""
    if mode == "dense":
        return relevance(metric, distance)
    s = float(score)
    if mode == "keyword":
        return max(0.0, s) / (1.0 + max(0.0, s))
    if mode == "hybrid":
        return min(1.0, max(0.0, s if weighted else s * (rrf_k + 1) / 2.0))
    raise errors.InvalidInputError(f"unknown search mode {mode!r}")
