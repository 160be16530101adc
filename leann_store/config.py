"""How a store is configured: :class:`StoreConfig` (the index's own
:class:`~leann_store.IndexConfig` plus the store's thresholds), saved in the
store and reused when it is reopened."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .index import IndexConfig


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
        for name, lo in (("merge_rows", 16), ("batch_tokens", 1), ("batch_size", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise errors.InvalidInputError(f"{name} must be an integer >= {lo}, got {v!r}")
        f = self.merge_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 100:
            raise errors.InvalidInputError(f"merge_fraction must be a number in [0, 100], got {f!r}")
        c = self.graph_rows
        if isinstance(c, bool) or not isinstance(c, int) or c < 2:
            raise errors.InvalidInputError(f"graph_rows must be an integer >= 2, got {c!r}")
        f = self.compact_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise errors.InvalidInputError(f"compact_fraction must be a number in (0, 1], got {f!r}")

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
        d = json.loads(text)
        return cls(index=IndexConfig(**d.pop("index")), **d)


def config_diff(a: StoreConfig, b: StoreConfig) -> str:
    """The settings where two configs differ, as text for an error message."""
    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    da.update({f"index.{k}": v for k, v in da.pop("index").items()})
    db.update({f"index.{k}": v for k, v in db.pop("index").items()})
    return ", ".join(f"{k}: stored {da[k]!r}, requested {db[k]!r}" for k in sorted(da) if da[k] != db[k])
