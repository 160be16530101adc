"""How an index and a store are configured.

:class:`IndexConfig` says how :meth:`LeannIndex.build
<leann_store.LeannIndex.build>` builds a graph (metric, degree, codes,
pruning, threads...); its presets and the defaults its fields resolve to
live beside it.  :class:`StoreConfig` is an ``IndexConfig`` plus the
store's thresholds, saved in the store and reused when it is reopened.

Plain data and validation: this module imports ``errors`` and ``native``'s
limits only.  ``index.py``, ``build.py`` and ``store.py`` read their
settings from here (``leann_store.index`` re-exports the index's names).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _checks as checks
from . import errors, native
from .options import check_confidence

METRICS = ("l2", "cosine", "ip")
BUILDERS = ("flash", "exact")
#: the adaptive stop's confidence: scoring ends once no candidate left could
#: enter the top k unless its estimate error lies beyond the (1 - confidence)
#: quantile of what the query's own scores (cosine, ip) or the index's
#: calibration (l2) say (see LeannIndex.search).  0.85 rather than 0.8 since
#: the query-error stop: it keeps recall@10 at or above the earlier default's
#: (0.945 / 0.925 against 0.942 / 0.919, 21.5 / 22.3 recomputes; at 0.8
#: 0.935 / 0.916 and a 50% filter's recall fell 0.016 / 0.012 below it;
#: docs/internals.md).  On an l2 index (the code-distance stop) 0.85 gives
#: recall@10 0.958 / 0.941 at 39.8 / 46.5 recomputes against 0.946 / 0.928
#: at 34.2 / 40.8 (devcorpus, 300 queries a set).
DEFAULT_CONFIDENCE = 0.85
#: search_subspaces=None without stored vectors, from this input dimension
#: up: the "balanced" preset's 44-byte codes (below it, 16-byte codes: a
#: small vector needs no more).  88 rather than 80 since the normalised
#: estimate: 62.2 against 57.2 B/passage at 50k for recall@10 0.933 / 0.912
#: against 0.924 / 0.901 at 20.3 / 20.5 against 20.8 / 21.3 recomputes
#: (devcorpus, 300 queries a set; docs/internals.md)
DEFAULT_SEARCH_SUBSPACES = 88
BALANCED_MIN_DIM = 256
_SEARCH_SUBSPACES = native.VALID_SUBSPACES
_BUILD_SUBSPACES = tuple(m for m in native.VALID_SUBSPACES if m <= native.MAX_BUILD_SUBSPACES)
#: named presets (IndexConfig.preset): the search codes' size (see preset)
PRESETS: dict[str, dict[str, Any]] = {
    "compact": {"search_subspaces": 32, "search_confidence": 0.995},  # 16-byte codes
    "balanced": {"search_subspaces": None},  # 44-byte codes from 256 dimensions (the default)
    "fast": {"search_subspaces": 96},        # 48-byte codes
}
#: link caps after pruning (IndexConfig.hub_degree / degree).  Measured on
#: 50k MiniLM passages (benchmarks/search_bench.py): 12/4 keep the index near
#: 32 bytes per passage with 16-byte codes; 16/5 and 16/6 cost 35 and 37 bytes
#: for ~0.03-0.05 more recall@10 at the same recompute count.
DEFAULT_HUB_DEGREE = 12
DEFAULT_DEGREE = 4
#: num_subspaces=None: 16-byte build codes up to this input dimension, 32
#: above, and 32 whenever the build prunes (see IndexConfig.num_subspaces)
AUTO_SUBSPACES_MAX_DIM = 512
#: ... and 32-byte build codes from this many rows on: 16-byte codes pick
#: neighbours ever worse as the rows crowd (384-d synthetic, recall@10 at
#: ef=64 of the graph searched exactly, hnswlib's in brackets: 100k 0.956
#: against 0.974 with 32 bytes (0.986); 1M 0.734 against 0.850 (0.915),
#: for 1.3x the build time)
AUTO_SUBSPACES_MAX_ROWS = 100_000


@dataclass(frozen=True)
class IndexConfig:
    """How to build an index.

    Args:
        metric: ``"cosine"``, ``"l2"`` or ``"ip"`` (see :mod:`leann_store.index`).
        M: graph degree; upper layers keep up to M links, the base layer 2M.
        ef_construction: beam width while inserting (quality vs build time).
        builder: ``"flash"`` (HNSW on 4-bit codes, fast) or ``"exact"``
            (the same construction on float distances, for comparison).
        store_vectors: keep full-precision vectors in the index (classic
            HNSW: exact search without an embedding callback).  False (the
            default) keeps no embeddings: searches recompute the few they need
            through ``embed``.
        prune: LEANN's high-degree-preserving pruning of the base layer; None
            (default) prunes exactly when vectors are not stored.
        hub_fraction: share of nodes (most links first) that keep up to
            ``hub_degree`` links when pruning.
        hub_degree: link cap of hubs, of any list filled by reverse links,
            and of upper-level lists after pruning; None means
            ``min(DEFAULT_HUB_DEGREE, M)``.
        degree: link cap of every other node when pruning; None means
            ``min(DEFAULT_DEGREE, hub_degree)``.
        search_subspaces: PQ subspaces of the codes kept for search (8, 16,
            32, 64, 80, 88, 96, 112 or 128: half as many bytes per passage); they
            rank candidates before exact recompute, so they set how many
            recomputes a recall costs.  None: ``DEFAULT_SEARCH_SUBSPACES``
            (88, the "balanced" preset) when vectors are not stored and have
            at least ``BALANCED_MIN_DIM`` (256) dimensions, else 32.  See
            :meth:`preset` for what each size costs and saves.
        search_bits: 4 (16 centroids a subspace, two codes a byte) or 8
            (256 centroids, a byte a subspace: ``search_subspaces`` bytes
            per passage).  8 bits rank better at small codes, but their
            codebook (256 float centroids a subspace) costs bytes per
            passage that only a large corpus amortises, the build takes
            longer and live updates walk on float tables; measured in
            docs/internals.md ("Search codes").
        search_confidence: the adaptive stop's confidence that searches of
            this index use unless they pass their own (``LeannIndex.search``'s
            ``confidence``); None: a fixed count.
        hub_cache_bytes: budget of the persistent hub cache (float16
            embeddings of the most-linked nodes, saved with the index); 0 = off.
        seed: seeds codec training and level assignment; with ``threads=1``
            the whole build is deterministic.
        threads: build threads; None uses every core.
        num_subspaces: PQ subspaces of the build codes (16, 32 or 64 -> 8, 16
            or 32 bytes per code; 8 -> 4 bytes is allowed too).  None (the
            default) picks 32 up to 512 dimensions and 64 above, about one
            code byte per 24 dimensions; 64 whenever the build prunes
            (pruning picks the kept edges by these codes, so finer codes
            keep better edges) and from 100,000 rows on.  Fewer subspaces
            build faster with less memory; the graph's recall falls behind
            an exact-distance graph's as the corpus grows, and 64 keeps it
            closer (:data:`AUTO_SUBSPACES_MAX_ROWS`).  Figures:
            docs/internals.md ("Build codes").
        pca_dim: projected dimension for the codes; None chooses it from
            ``pca_variance``.
        pca_variance: share of variance the automatic PCA dimension keeps.
        accumulate: 16 (integer totals, default) or 8 (saturating 8-bit
            totals as in the Flash paper; measured to cost graph quality).
        codec_sample: vectors sampled to train the codec.
    """

    metric: str = "cosine"
    M: int = 32
    ef_construction: int = 200
    builder: str = "flash"
    store_vectors: bool = False
    prune: bool | None = None
    hub_fraction: float = 0.02
    hub_degree: int | None = None
    degree: int | None = None
    search_subspaces: int | None = None
    search_bits: int = 4
    search_confidence: float | None = DEFAULT_CONFIDENCE
    hub_cache_bytes: int = 0
    seed: int = 0
    threads: int | None = None
    num_subspaces: int | None = None
    pca_dim: int | None = None
    pca_variance: float = 0.8
    accumulate: int = 16
    codec_sample: int = 32768

    def __post_init__(self) -> None:
        def _int(name: str, lo: int, hi: int, value: Any) -> None:
            checks.integer(value, name, lo, hi)

        if self.metric not in METRICS:
            raise errors.InvalidInputError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.builder not in BUILDERS:
            raise errors.InvalidInputError(f"builder must be one of {BUILDERS}, got {self.builder!r}")
        _int("M", native.MIN_M, native.MAX_M, self.M)
        _int("ef_construction", 1, native.MAX_EF_CONSTRUCTION, self.ef_construction)
        _int("seed", 0, 2**63 - 1, self.seed)
        if self.threads is not None:
            _int("threads", 1, native.MAX_THREADS, self.threads)
        if self.num_subspaces is not None and (
                isinstance(self.num_subspaces, bool) or not isinstance(self.num_subspaces, (int, np.integer))
                or self.num_subspaces not in _BUILD_SUBSPACES):
            raise errors.InvalidInputError(
                f"num_subspaces must be 8, 16, 32, 64 or None, got {self.num_subspaces!r}")
        if self.pca_dim is not None:
            _int("pca_dim", 1, native.MAX_PCA_DIM, self.pca_dim)
            if self.num_subspaces is not None and self.pca_dim % self.num_subspaces:
                raise errors.InvalidInputError(
                    f"pca_dim ({self.pca_dim}) must be a multiple of num_subspaces ({self.num_subspaces})")
            if self.num_subspaces is None and self.pca_dim % 64:
                raise errors.InvalidInputError(
                    f"pca_dim ({self.pca_dim}) must be a multiple of 64 when num_subspaces is chosen "
                    "automatically (None, 32 or 64); or set num_subspaces")
        if (isinstance(self.pca_variance, bool) or not isinstance(self.pca_variance, (int, float))
                or not 0 < self.pca_variance <= 1):
            raise errors.InvalidInputError(f"pca_variance must be in (0, 1], got {self.pca_variance!r}")
        if self.accumulate not in (8, 16):
            raise errors.InvalidInputError(f"accumulate must be 8 or 16, got {self.accumulate!r}")
        _int("codec_sample", 16, 10_000_000, self.codec_sample)
        if not isinstance(self.store_vectors, bool):
            raise errors.InvalidInputError("store_vectors must be True or False")
        if self.prune is not None and not isinstance(self.prune, bool):
            raise errors.InvalidInputError("prune must be True, False or None")
        if (isinstance(self.hub_fraction, bool) or not isinstance(self.hub_fraction, (int, float))
                or not 0 <= self.hub_fraction <= 1):
            raise errors.InvalidInputError(f"hub_fraction must be in [0, 1], got {self.hub_fraction!r}")
        if self.hub_degree is not None:
            _int("hub_degree", 1, native.MAX_DEGREE, self.hub_degree)
        if self.degree is not None:
            _int("degree", 1, native.MAX_DEGREE, self.degree)
        if self.degree is not None and self.degree > self.resolved_hub_degree:
            raise errors.InvalidInputError(
                f"degree ({self.degree}) must not exceed hub_degree ({self.resolved_hub_degree})")
        if self.search_subspaces is not None and (
                isinstance(self.search_subspaces, bool)
                or not isinstance(self.search_subspaces, (int, np.integer))
                or self.search_subspaces not in _SEARCH_SUBSPACES):
            raise errors.InvalidInputError(
                f"search_subspaces must be one of {_SEARCH_SUBSPACES} or None, got {self.search_subspaces!r}")
        if isinstance(self.search_bits, bool) or self.search_bits not in (4, 8):
            raise errors.InvalidInputError(f"search_bits must be 4 or 8, got {self.search_bits!r}")
        _int("hub_cache_bytes", 0, 2**48, self.hub_cache_bytes)
        check_confidence(self.search_confidence, "search_confidence")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "IndexConfig":
        """A named configuration, any field overridable.

        Bigger search codes rank candidates better, so a search recomputes
        fewer passages for the same recall.  Measured on the devcorpus (50k
        MiniLM passages, 2000 queries of each set, default search: recall@10
        and mean recomputes, summaries / short keyword queries;
        ``python benchmarks/search_bench.py --tradeoff --queries 2000``):

        ============  ===============  ==============  ==============
        preset        bytes / passage  summaries       short queries
        ============  ===============  ==============  ==============
        ``compact``   31.9             0.943 @ 130     0.908 @ 138
        ``balanced``  62.2             0.945 @ 21      0.925 @ 22
        ``fast``      65.0             0.949 @ 21      0.934 @ 21
        ============  ===============  ==============  ==============

        ``compact`` searches at ``search_confidence=0.995``: its 16-byte
        codes leave much doubt, so its stop needs a high confidence (at
        0.99: 0.936 @ 112 and 0.900 @ 121; at 0.8: 0.768 @ 32 and 0.710 @
        34).  ``balanced`` is the default ``IndexConfig()`` for vectors of
        256 dimensions or more (p95 28 / 31 passages).

        >>> IndexConfig.preset("compact").search_subspaces
        32
        >>> IndexConfig.preset("balanced", metric="l2").metric
        'l2'
        """
        if name not in PRESETS:
            raise errors.InvalidInputError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def resolved_search_subspaces(self, dim: int) -> int:
        """Subspaces of the search codes (``search_subspaces``, or its default)."""
        if self.search_subspaces is not None:
            return int(self.search_subspaces)
        # stored vectors: the codes only steer filtered walks' scans; keep
        # them small (and shared with the build codec's where they match)
        return DEFAULT_SEARCH_SUBSPACES if not self.store_vectors and dim >= BALANCED_MIN_DIM else 32

    def build_subspaces(self, dim: int, rows: int = 0) -> int:
        """PQ subspaces of the build codes for ``rows`` ``dim``-dimensional
        vectors (``num_subspaces``, or the default for None)."""
        if self.num_subspaces is not None:
            return int(self.num_subspaces)
        small = dim <= AUTO_SUBSPACES_MAX_DIM and rows < AUTO_SUBSPACES_MAX_ROWS
        return 32 if small and not self.resolved_prune else 64

    @property
    def resolved_prune(self) -> bool:
        """Whether the build prunes (``prune=None`` -> when vectors are not stored)."""
        return (not self.store_vectors) if self.prune is None else self.prune

    @property
    def resolved_hub_degree(self) -> int:
        return self.hub_degree if self.hub_degree is not None else min(DEFAULT_HUB_DEGREE, self.M)

    @property
    def resolved_degree(self) -> int:
        if self.degree is not None:
            return self.degree
        return min(DEFAULT_DEGREE, self.resolved_hub_degree)


@dataclass(frozen=True)
class StoreConfig:
    """How a store indexes; saved in the store and reused when it is reopened.

    Args:
        index: the graph's :class:`~leann_store.IndexConfig` (metric, degree,
            codes...).  ``store_vectors`` must stay False: the store keeps no
            embeddings once rows are in the graph.
        graph_rows: a store smaller than this is exact: its rows and their
            vectors sit in the delta segment (4 bytes a dimension, searched
            by a matrix product, no recomputes).  The first graph is built
            on this many rows and its codec trained on them: a codec
            trained on the first 16k devcorpus rows ranks the later rows as
            well as a bulk build's (recall@10 at equal recomputes), one
            trained on 2k rows 0.010-0.017 worse.
        merge_rows: once a graph exists, rows the delta collects before a
            merge inserts them into it (in C, without re-embedding) and
            drops their vectors.
        merge_fraction: a merge also waits until the delta holds this share
            of the graph's rows (0: merge at ``merge_rows``).
        compact_fraction: share of the graph's nodes deleted at which a
            write compacts the graph (from its codes: no ``embed`` call).
        batch_tokens: token budget of one ``embed`` call.
        batch_size: most texts in one ``embed`` call.

    >>> StoreConfig.from_options(metric="l2", M=16, graph_rows=500).index.M
    16
    """

    index: IndexConfig = field(default_factory=IndexConfig)
    graph_rows: int = 16384
    merge_rows: int = 2048
    merge_fraction: float = 0.0
    compact_fraction: float = 0.25
    batch_tokens: int = 8192
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.index, IndexConfig):
            raise errors.InvalidInputError("StoreConfig.index must be an IndexConfig")
        if self.index.store_vectors:
            raise errors.InvalidInputError("a store keeps no vectors in its graph: use store_vectors=False")
        for name, lo in (("merge_rows", 16), ("batch_tokens", 1), ("batch_size", 1), ("graph_rows", 2)):
            checks.integer(getattr(self, name), name, lo)
        checks.number(self.merge_fraction, "merge_fraction", 0, 100)
        checks.number(self.compact_fraction, "compact_fraction", 0, 1, lo_open=True)

    @property
    def metric(self) -> str:
        return self.index.metric

    @classmethod
    def from_options(cls, preset: str | None = None, **options: Any) -> "StoreConfig":
        """A config from flat keyword options: ``preset`` names an
        :meth:`IndexConfig.preset` (``"compact"``, ``"balanced"``,
        ``"fast"``), names of :class:`IndexConfig` fields go to the index,
        the others to the store.

        >>> StoreConfig.from_options(preset="compact").index == IndexConfig.preset("compact")
        True
        """
        index_names = {f.name for f in dataclasses.fields(IndexConfig)}
        store_names = {f.name for f in dataclasses.fields(cls)} - {"index"}
        unknown = set(options) - index_names - store_names
        if unknown:
            raise errors.InvalidInputError(
                f"unknown store option(s) {sorted(unknown)}; store options: {sorted(store_names)}, "
                f"index options: {sorted(index_names)}, or preset=")
        index_options = {k: v for k, v in options.items() if k in index_names}
        idx = IndexConfig.preset(preset, **index_options) if preset is not None else IndexConfig(**index_options)
        return cls(index=idx, **{k: v for k, v in options.items() if k in store_names})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StoreConfig":
        """The config :meth:`to_json` wrote; anything else (damaged or
        foreign JSON, unknown or invalid settings) is an InvalidInputError.

        >>> StoreConfig.from_json(StoreConfig().to_json()) == StoreConfig()
        True
        """
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or not isinstance(d.get("index"), dict):
                raise ValueError("not a store config")
            return cls(index=IndexConfig(**d.pop("index")), **d)
        except errors.InvalidInputError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise errors.InvalidInputError(f"not a store config: {exc}") from exc


def config_diff(a: StoreConfig, b: StoreConfig) -> str:
    """The settings where two configs differ, as text for an error message."""
    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    da.update({f"index.{k}": v for k, v in da.pop("index").items()})
    db.update({f"index.{k}": v for k, v in db.pop("index").items()})
    return ", ".join(f"{k}: stored {da[k]!r}, requested {db[k]!r}" for k in sorted(da) if da[k] != db[k])
