"""LlamaIndex ``MetadataFilters`` -> the leann-store filter dict (Mongo style).

Pure conversion, no evaluation: ``leann_store`` applies the result inside the
search.  Every ``FilterOperator`` and ``FilterCondition`` of llama-index-core
maps onto the store's field and logical operators, and nested
``MetadataFilters`` nest (the core's own ``build_metadata_filter_fn`` refuses
them).  The missing-key rule is the store's, which is LlamaIndex's: a filter
on a key a node lacks matches only ``NE`` and ``NIN`` (and ``IS_EMPTY``, which
asks exactly that).

Keys reach nested metadata with dots (``"author.name"``), as in the store.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

StoreFilter = Dict[str, Any]


def _as_list(value: Any) -> List[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _op(name: str, listed: bool = False) -> Callable[[str, Any], StoreFilter]:
    def make(key: str, value: Any) -> StoreFilter:
        return {key: {name: _as_list(value) if listed else value}}

    return make


def _text_match(key: str, value: Any) -> StoreFilter:
    # a case-sensitive substring of a string field: `$contains` alone would
    # also match an element of a list field; `$icontains` holds it to strings
    return {"$and": [{key: {"$contains": value}}, {key: {"$icontains": value}}]}


#: the store's filter for one LlamaIndex operator, given (key, value)
_FIELD_OPS: Dict[FilterOperator, Callable[[str, Any], StoreFilter]] = {
    FilterOperator.EQ: _op("$eq"),
    FilterOperator.NE: _op("$ne"),
    FilterOperator.GT: _op("$gt"),
    FilterOperator.GTE: _op("$gte"),
    FilterOperator.LT: _op("$lt"),
    FilterOperator.LTE: _op("$lte"),
    FilterOperator.IN: _op("$in", listed=True),
    FilterOperator.NIN: _op("$nin", listed=True),
    # the store's `$in` on a list field is "any element among the values"
    FilterOperator.ANY: _op("$in", listed=True),
    FilterOperator.ALL: _op("$all", listed=True),
    FilterOperator.TEXT_MATCH: _text_match,
    FilterOperator.TEXT_MATCH_INSENSITIVE: _op("$icontains"),
    FilterOperator.CONTAINS: _op("$contains"),
    FilterOperator.IS_EMPTY: lambda key, _value: {key: {"$empty": True}},
}

_CONDITIONS = {
    FilterCondition.AND: "$and",
    FilterCondition.OR: "$or",
    # LlamaIndex's NOT matches when none of the filters match
    FilterCondition.NOT: "$nor",
}


def _field_filter(f: MetadataFilter) -> StoreFilter:
    op = FilterOperator(f.operator)
    try:
        make = _FIELD_OPS[op]
    except KeyError:  # an operator added to llama-index-core after this adapter
        raise ValueError(
            f"filter operator {op.name} ({op.value!r}) on key {f.key!r} is not supported "
            f"by LeannVectorStore; supported: {', '.join(o.name for o in _FIELD_OPS)}"
        ) from None
    return make(f.key, f.value)


def to_store_filter(filters: Optional[Union[MetadataFilters, MetadataFilter]]) -> Optional[StoreFilter]:
    """The store's filter dict for ``filters``; None when there is nothing to filter on.

    >>> from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
    >>> to_store_filter(MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=">")]))
    {'$and': [{'year': {'$gt': 2020}}]}
    """
    if filters is None:
        return None
    if isinstance(filters, MetadataFilter):
        return _field_filter(filters)
    parts = [p for p in (to_store_filter(f) for f in filters.filters) if p is not None]
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if not parts:
        # an empty group selects every node; so does an empty NOT ("none of no filters")
        return None
    return {_CONDITIONS[condition]: parts}


def all_of(*parts: Optional[StoreFilter]) -> Optional[StoreFilter]:
    """AND of the given store filters, None entries skipped."""
    present = [p for p in parts if p is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else {"$and": present}
