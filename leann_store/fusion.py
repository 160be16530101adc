"""Fusing ranked lists: the dense and the keyword side of a hybrid search.

Two rules, both over lists of ``(score, key)`` best first (any score scale):

* :func:`rrf`, reciprocal-rank fusion (Cormack et al. 2009): a key scores
  ``sum(1 / (k + rank))`` over the lists that hold it (rank from 1).  It
  needs no calibration between the sides, which is why it is the default.
* :func:`weighted`: each list's scores min-max normalised to [0, 1], then
  ``alpha * dense + (1 - alpha) * keyword`` (a key missing from a list gets
  0 there); ``alpha = 1`` is dense only, ``0`` keyword only.

Each fused entry also says which lists found the key.

>>> dense = [(0.9, "a"), (0.8, "b"), (0.1, "c")]
>>> kw = [(12.0, "c"), (3.0, "a")]
>>> [(key, sides) for _, key, sides in rrf([dense, kw])]
[('a', (0, 1)), ('c', (0, 1)), ('b', (0,))]
>>> [(key, round(s, 3)) for s, key, _ in weighted(dense, kw, alpha=0.5)]
[('a', 0.5), ('c', 0.5), ('b', 0.438)]
"""

from __future__ import annotations

from typing import Hashable, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)
#: RRF's constant: the rank offset that keeps one list's top entry from dominating
RRF_K = 60


def rrf(lists: Sequence[Sequence[tuple[float, K]]], k: int = RRF_K) -> list[tuple[float, K, tuple[int, ...]]]:
    """Reciprocal-rank fusion: (fused score, key, indices of the lists that
    hold it), best first; ties keep the order of first appearance."""
    score: dict[K, float] = {}
    sides: dict[K, list[int]] = {}
    for li, lst in enumerate(lists):
        for rank, (_, key) in enumerate(lst, start=1):
            score[key] = score.get(key, 0.0) + 1.0 / (k + rank)
            sides.setdefault(key, []).append(li)
    order = sorted(score, key=lambda x: -score[x])
    return [(score[x], x, tuple(sides[x])) for x in order]


def _normalised(lst: Sequence[tuple[float, K]]) -> dict[K, float]:
    if not lst:
        return {}
    scores = [s for s, _ in lst]
    lo, hi = min(scores), max(scores)
    span = hi - lo
    return {key: (1.0 if span <= 0 else (s - lo) / span) for s, key in lst}


def weighted(dense: Sequence[tuple[float, K]], keyword: Sequence[tuple[float, K]],
             alpha: float) -> list[tuple[float, K, tuple[int, ...]]]:
    """Convex combination of min-max normalised scores (higher is better on
    both inputs): (fused score, key, sides), best first, side 0 dense, 1
    keyword."""
    dn, kn = _normalised(dense), _normalised(keyword)
    out: dict[K, float] = {}
    for key in list(dn) + [x for x in kn if x not in dn]:
        out[key] = alpha * dn.get(key, 0.0) + (1.0 - alpha) * kn.get(key, 0.0)
    order = sorted(out, key=lambda x: -out[x])
    return [(out[x], x, tuple(i for i, m in enumerate((dn, kn)) if x in m)) for x in order]
