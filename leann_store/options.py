"""SearchOptions: how one search runs, one type from the adapters to the walk.

:class:`LeannIndex.search <leann_store.LeannIndex.search>`,
:class:`LeannStore.search <leann_store.LeannStore.search>` and both adapters
take the same options, checked here once, when the object is made.  Keyword
arguments of those methods (``ef=64``, ``confidence=0.9``...) are folded into
one :class:`SearchOptions` by :meth:`SearchOptions.of`, so an unknown or
misspelt option is an error naming the known ones wherever it is passed.

>>> opts = SearchOptions(ef=256, confidence=0.9)
>>> opts.replace(max_recompute=60).max_recompute
60
>>> SearchOptions.of(None, ef=32).ef
32
>>> SearchOptions.of(None, eff=32)
Traceback (most recent call last):
leann_store.errors.InvalidInputError: unknown search option 'eff'; the options are: ef, rerank_ratio, batch_size, max_recompute, confidence, time_budget_ms, quality, mode, alpha, rrf_k, dense_depth, keyword_depth
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from . import _checks as checks
from . import errors, native

#: ``confidence`` default: the index's ``IndexConfig.search_confidence``
FROM_CONFIG: Any = "from config"
#: beam width of the classic search over stored vectors
DEFAULT_EF = 64
#: beam width of the two-level search's walk on codes (a code distance costs
#: nanoseconds, so the walk can be wide; it recomputes nothing)
DEFAULT_CODE_EF = 1024
#: share of the code beam scored exactly at most (the adaptive stop's cap)
DEFAULT_RERANK_RATIO = 0.15
#: most passages handed to ``embed`` in one call
DEFAULT_BATCH_SIZE = 32
#: what a store search ranks by: the embedding, keywords (BM25), or both fused
MODES = ("dense", "keyword", "hybrid")
#: ``quality=`` -> the adaptive stop's confidence, measured on the devcorpus
#: (docs/internals.md, "quality"): fast re-embeds ~18 passages a query at
#: recall@10 ~0.92 / 0.89 (summaries / short), balanced ~22 at ~0.945 / 0.925,
#: exact ~44 at ~0.97 on the short queries
QUALITY = {"fast": 0.7, "balanced": 0.85, "exact": 0.99}
#: reciprocal-rank fusion's constant (Cormack et al.)
DEFAULT_RRF_K = 60
#: least keyword candidates a hybrid search fuses (more when k is larger)
MIN_KEYWORD_DEPTH = 20


@dataclass(frozen=True)
class SearchOptions:
    """The options of one search (all optional; the defaults serve most uses).

    Args:
        ef: beam width of the walk (raised to k).  None: ``DEFAULT_EF`` (64)
            for an index that stores vectors, ``DEFAULT_CODE_EF`` (1024) for
            the walk on codes, which recomputes nothing itself.
        rerank_ratio: in (0, 1]: the share of the beam scored exactly at most.
        batch_size: most passages handed to ``embed`` at once.
        max_recompute: hard cap on passages re-embedded per query (None: no
            cap beyond ``rerank_ratio``); must be >= k.
        confidence: the adaptive stop, in (0, 1): higher re-embeds more
            before it stops.  None re-embeds the whole ``rerank_ratio`` share;
            the default reads the index's ``IndexConfig.search_confidence``.
        time_budget_ms: wall-clock budget of one query's search in
            milliseconds (None: none).  Once spent, the search asks
            ``embed`` for no more passages and returns the best k scored so
            far, with ``stats["stopped"]`` 1; it never stops before k are
            scored, so a budget shorter than the first round trip still
            waits for it.
        quality: ``"fast"``, ``"balanced"`` or ``"exact"``: a recall
            preference, read as a measured confidence (:data:`QUALITY`;
            instead of ``confidence``).
        mode: what :meth:`LeannStore.search` ranks by: ``"dense"`` (the
            embedding), ``"keyword"`` (BM25 over the keyword index, no
            embedding needed) or ``"hybrid"`` (both lists fused).  The index
            itself only searches densely.
        alpha: None fuses by reciprocal rank (the default); a number in
            [0, 1] fuses each side's min-max normalised scores as
            ``alpha * dense + (1 - alpha) * keyword`` (1: dense only).
        rrf_k: reciprocal-rank fusion's constant (>= 1).
        dense_depth: dense candidates a hybrid search fuses, at least k (so
            k hits come back whenever k documents match; None: k, so it
            re-embeds exactly what a dense search of k does).
        keyword_depth: keyword candidates it fuses (None: ``max(k, 20)``).
    """

    ef: int | None = None
    rerank_ratio: float = DEFAULT_RERANK_RATIO
    batch_size: int = DEFAULT_BATCH_SIZE
    max_recompute: int | None = None
    confidence: float | None = FROM_CONFIG
    time_budget_ms: float | None = None
    quality: str | None = None
    mode: str = "dense"
    alpha: float | None = None
    rrf_k: int = DEFAULT_RRF_K
    dense_depth: int | None = None
    keyword_depth: int | None = None

    def __post_init__(self) -> None:
        if self.ef is not None:
            object.__setattr__(self, "ef", checks.integer(self.ef, "ef", 1, native.MAX_EF))
        object.__setattr__(self, "rerank_ratio",
                           checks.number(self.rerank_ratio, "rerank_ratio", 0, 1, lo_open=True))
        object.__setattr__(self, "batch_size", checks.integer(self.batch_size, "batch_size", 1, native.MAX_BATCH))
        if self.max_recompute is not None:
            object.__setattr__(self, "max_recompute", checks.integer(self.max_recompute, "max_recompute", 1, 2**62))
        if self.confidence is not FROM_CONFIG and self.confidence is not None:
            object.__setattr__(self, "confidence", check_confidence(self.confidence, "confidence"))
        if self.quality is not None:
            if self.quality not in QUALITY:
                raise errors.InvalidInputError(
                    f"quality must be one of {', '.join(map(repr, QUALITY))}, got {self.quality!r}")
            if self.confidence is not FROM_CONFIG:
                raise errors.InvalidInputError("give quality or confidence, not both (quality names a confidence)")
        if self.time_budget_ms is not None:
            object.__setattr__(self, "time_budget_ms", checks.number(self.time_budget_ms, "time_budget_ms", 0, None,
                                                                     lo_open=True))
        if self.mode not in MODES:
            raise errors.InvalidInputError(f"mode must be one of {', '.join(map(repr, MODES))}, got {self.mode!r}")
        if self.alpha is not None:
            object.__setattr__(self, "alpha", checks.number(self.alpha, "alpha", 0, 1))
        object.__setattr__(self, "rrf_k", checks.integer(self.rrf_k, "rrf_k", 1, 2**31))
        for name in ("dense_depth", "keyword_depth"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, checks.integer(getattr(self, name), name, 1, 2**31))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The options' names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def of(cls, options: "SearchOptions | None" = None, /, **changes: Any) -> "SearchOptions":
        """``options`` (None: the defaults) with ``changes`` applied: the one
        place that turns a method's keyword arguments into options."""
        if options is not None and not isinstance(options, SearchOptions):
            raise errors.InvalidInputError(f"options must be a SearchOptions, got {type(options).__name__}")
        base = options if options is not None else _DEFAULT
        return base.replace(**changes) if changes else base

    def replace(self, **changes: Any) -> "SearchOptions":
        """A copy with ``changes`` (checked like the constructor's)."""
        known = self.names()
        for name in changes:
            if name not in known:
                raise errors.InvalidInputError(
                    f"unknown search option {name!r}; the options are: {', '.join(known)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def pick(cls, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``kwargs`` that name options (for adapters, whose
        methods also receive their framework's own keywords)."""
        return {k: v for k, v in kwargs.items() if k in cls.names()}

    def depths(self, k: int) -> tuple[int, int]:
        """(dense, keyword) candidates a hybrid search of k fuses."""
        return (max(k, self.dense_depth or k), self.keyword_depth or max(k, MIN_KEYWORD_DEPTH))

    def resolved_confidence(self, from_config: float | None) -> float | None:
        """``confidence`` with ``quality`` and the index's default filled in."""
        if self.quality is not None:
            return QUALITY[self.quality]
        return from_config if self.confidence is FROM_CONFIG else self.confidence


def check_confidence(value: Any, name: str) -> float | None:
    """None, or a number in (0, 1)."""
    if value is None:
        return None
    return checks.number(value, name, 0, 1, lo_open=True, hi_open=True)


_DEFAULT = SearchOptions()
