"""One filter model for metadata: a Mongo-style dict, compiled to SQL.

A filter is either a dict in the operator language below or a Python
callable ``fn(metadata: dict) -> bool`` (slower: every document's metadata is
decoded and passed to it).  A dict filter compiles to one SQL expression over
the docstore's JSON metadata, with every key path and value bound as a
parameter (nothing from the filter is ever spliced into the SQL text), and
the same filter also evaluates in Python (:meth:`Filter.matches`), with the
same answer for every document: the tests hold the two to each other.

Language::

    {"genre": "scifi"}                       # bare value: equality
    {"year": {"$gte": 2000, "$lt": 2010}}    # several operators on a key: AND
    {"genre": "scifi", "year": 2001}         # several keys: AND
    {"$or": [{"a": 1}, {"b": {"$in": [2, 3]}}]}
    {"author.name": "Le Guin"}               # dotted keys reach into nested dicts

Field operators, and what a *missing* key gives:

=============== ============================================================ =========
operator        matches when the value ...                                   missing
=============== ============================================================ =========
``$eq``         equals (numbers numerically, 1 == 1.0; a bool is never a      no
                number; ``None`` only an explicit null; lists/dicts exactly)
``$ne``         does not equal                                               yes
``$gt`` ...     ``$gt $gte $lt $lte``: number vs number or string vs string   no
                (code point order); other pairs never match
``$in``         is one of the listed scalars; a list value: any element is    no
``$nin``        the negation of ``$in``                                      yes
``$contains``   is a list holding the value, or a string holding it as a      no
                substring
``$icontains``  is a string holding it, ignoring case (``str.lower``)         no
``$like``       is a string matching an SQL LIKE pattern (``%`` any run,      no
                ``_`` one character), case-sensitive
``$all``        is a list holding every listed scalar                         no
``$size``       is a list of that length                                      no
``$exists``     ``True``: the key is present (null included); ``False``: not  by value
``$empty``      ``True``: missing, null, ``[]`` or ``""``; ``False``: other   by value
``$not``        does not satisfy the inner operators                         yes
=============== ============================================================ =========

Logical operators: ``$and``, ``$or``, ``$nor`` (lists of filters) and
``$not`` (one filter).  An unknown operator, a value of the wrong type or a
malformed filter is a :class:`~leann_store.errors.FilterError` naming the
operator or key.  Keys cannot contain a double quote (SQLite's JSON paths
cannot name them) and dots always separate path segments.

>>> f = compile_filter({"year": {"$gte": 2000}, "tags": {"$contains": "ai"}})
>>> f.matches({"year": 2001, "tags": ["ai", "ml"]}), f.matches({"year": 2001})
(True, False)
>>> compile_filter({"year": {"$gt": "x", "$between": 1}})
Traceback (most recent call last):
...
leann_store.errors.FilterError: unknown operator '$between' on key 'year'
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping, Union

from .errors import FilterError, InvalidInputError

FilterLike = Union[Mapping[str, Any], Callable[[dict], Any], None]

_FIELD_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$icontains",
              "$like", "$all", "$size", "$exists", "$empty", "$not")
_LOGICAL_OPS = ("$and", "$or", "$nor", "$not")
_CMP_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_MISSING = object()


@dataclass(frozen=True)
class Filter:
    """A compiled filter: SQL over the column ``metadata`` (or a callable).

    ``sql``/``params`` are None for a callable filter; ``key`` is a canonical
    string naming the filter (None for callables), for caches.
    """

    sql: str | None
    params: Mapping[str, Any]
    key: str | None
    _match: Callable[[Any], bool]

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a document's metadata satisfies the filter (Python)."""
        return bool(self._match(metadata))


def compile_filter(spec: FilterLike) -> Filter | None:
    """Compile a filter dict or wrap a callable; None stays None.

    >>> compile_filter(None) is None
    True
    >>> compile_filter(lambda m: m.get("lang") == "en").matches({"lang": "en"})
    True
    """
    if spec is None:
        return None
    if callable(spec) and not isinstance(spec, Mapping):
        fn = spec

        def call(meta: Any) -> bool:
            return bool(fn(meta))

        return Filter(None, {}, None, call)
    if not isinstance(spec, Mapping):
        raise FilterError(f"a filter must be a dict or a callable, got {type(spec).__name__}")
    try:
        key = json.dumps(spec, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FilterError(f"filter values must be JSON values: {exc}") from exc
    except RecursionError as exc:
        raise FilterError("the filter nests too deeply") from exc
    return _compile_cached(key)


@lru_cache(maxsize=256)
def _compile_cached(key: str) -> Filter:
    spec = json.loads(key)
    params: Params = {}
    sql = _doc(spec, params)
    match = _doc_py(spec)
    return Filter(sql, params, key, match)


# ---- parsing into SQL --------------------------------------------------------
# Values and paths are bound as named parameters (:p0, :p1, ...), so the SQL
# text never holds anything from the filter and the order of binding is free.
Params = dict[str, Any]


def _bind(params: Params, value: Any) -> str:
    name = f"p{len(params)}"
    params[name] = value
    return ":" + name


def _doc(spec: Any, params: Params) -> str:
    if not isinstance(spec, dict):
        raise FilterError(f"a filter must be a dict, got {type(spec).__name__}")
    if not spec:
        return "1"
    parts = []
    for key, value in spec.items():
        if key.startswith("$"):
            parts.append(_logical(key, value, params))
        else:
            parts.append(_field(key, value, params))
    return " AND ".join(f"({p})" for p in parts)


def _logical(op: str, value: Any, params: Params) -> str:
    if op not in _LOGICAL_OPS:
        raise FilterError(f"unknown operator {op!r} (logical operators: {', '.join(_LOGICAL_OPS)})")
    if op == "$not":
        if not isinstance(value, dict):
            raise FilterError("$not takes one filter dict")
        return f"NOT ({_doc(value, params)})"
    if not isinstance(value, list) or not value:
        raise FilterError(f"{op} takes a non-empty list of filters")
    subs = [_doc(v, params) for v in value]
    if op == "$and":
        return " AND ".join(f"({s})" for s in subs)
    either = " OR ".join(f"({s})" for s in subs)
    return either if op == "$or" else f"NOT ({either})"


def _path(key: str) -> str:
    """A key (dotted) as an SQLite JSON path, each label quoted as stored."""
    if not isinstance(key, str) or not key:
        raise FilterError(f"filter keys must be non-empty strings, got {key!r}")
    segs = key.split(".")
    for s in segs:
        if not s:
            raise FilterError(f"filter key {key!r} has an empty path segment")
        if '"' in s:
            raise FilterError(f"filter key {key!r}: keys containing a double quote cannot be filtered on")
    # metadata is stored with ensure_ascii=False: labels match its raw text
    return "$" + "".join('."' + json.dumps(s, ensure_ascii=False)[1:-1] + '"' for s in segs)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _field(key: str, value: Any, params: Params) -> str:
    path = _bind(params, _path(key))
    if isinstance(value, dict) and any(k.startswith("$") for k in value):
        if not all(isinstance(k, str) and k.startswith("$") for k in value):
            raise FilterError(f"key {key!r}: do not mix operators and plain keys in one dict")
        return " AND ".join(f"({_op(key, path, op, arg, params)})" for op, arg in value.items())
    return _op(key, path, "$eq", value, params)


def _eq_typed(typ: str, val: str, x: Any, params: Params) -> str:
    """SQL: a (JSON type, value) pair equals the scalar or composite x."""
    if x is None:
        return f"{typ} = 'null'"
    if isinstance(x, bool):
        return f"{typ} = '{'true' if x else 'false'}'"
    if _is_number(x):
        return f"({typ} IN ('integer', 'real') AND {val} = {_bind(params, x)})"
    if isinstance(x, str):
        return f"({typ} = 'text' AND {val} = {_bind(params, x)})"
    return f"({typ} IN ('array', 'object') AND leann_json_eq({val}, {_bind(params, json.dumps(x))}))"


def _any_element(path: str, xs: list[Any], params: Params, lists_only: bool) -> str:
    """SQL: some element of the list at path (or the scalar itself unless
    lists_only) equals one of xs."""
    conds = " OR ".join(_eq_typed("j.type", "j.value", x, params) for x in xs)
    guard = f"= 'array'" if lists_only else f"!= 'object'"
    return (f"json_type(metadata, {path}) {guard} AND "
            f"EXISTS (SELECT 1 FROM json_each(metadata, {path}) AS j WHERE {conds})")


def _scalars(key: str, op: str, arg: Any) -> list[Any]:
    if not isinstance(arg, list) or not all(_is_scalar(x) for x in arg):
        raise FilterError(f"{op} on key {key!r} takes a list of scalar values, got {arg!r}")
    return arg


def _op(key: str, path: str, op: str, arg: Any, params: Params) -> str:
    """SQL for one operator on the value at ``path`` (a bound parameter);
    always 0 or 1, never NULL, so that NOT negates it."""
    t, v = f"json_type(metadata, {path})", f"json_extract(metadata, {path})"
    if op not in _FIELD_OPS:
        raise FilterError(f"unknown operator {op!r} on key {key!r}")
    if op == "$eq":
        return f"COALESCE({_eq_typed(t, v, arg, params)}, 0)"
    if op == "$ne":
        return f"NOT ({_op(key, path, '$eq', arg, params)})"
    if op in _CMP_SQL:
        if _is_number(arg):
            kinds = "('integer', 'real')"
        elif isinstance(arg, str):
            kinds = "('text')"
        else:
            raise FilterError(f"{op} on key {key!r} takes a number or a string, got {arg!r}")
        return f"COALESCE({t} IN {kinds} AND {v} {_CMP_SQL[op]} {_bind(params, arg)}, 0)"
    if op == "$in":
        xs = _scalars(key, op, arg)
        return f"COALESCE({_any_element(path, xs, params, False)}, 0)" if xs else "0"
    if op == "$nin":
        return f"NOT ({_op(key, path, '$in', arg, params)})"
    if op == "$contains":
        if not _is_scalar(arg):
            raise FilterError(f"$contains on key {key!r} takes a scalar, got {arg!r}")
        member = _any_element(path, [arg], params, True)
        if not isinstance(arg, str):
            return f"COALESCE({member}, 0)"
        return f"COALESCE(({member}) OR ({t} = 'text' AND instr({v}, {_bind(params, arg)}) > 0), 0)"
    if op in ("$icontains", "$like"):
        if not isinstance(arg, str):
            raise FilterError(f"{op} on key {key!r} takes a string, got {arg!r}")
        test = (f"instr(leann_lower({v}), {_bind(params, arg.lower())}) > 0" if op == "$icontains"
                else f"leann_like({v}, {_bind(params, arg)})")
        return f"COALESCE({t} = 'text' AND {test}, 0)"
    if op == "$all":
        xs = _scalars(key, op, arg)
        each = "".join(f" AND ({_any_element(path, [x], params, True)})" for x in xs)
        return f"COALESCE({t} = 'array'{each}, 0)"
    if op == "$size":
        if isinstance(arg, bool) or not isinstance(arg, int) or arg < 0:
            raise FilterError(f"$size on key {key!r} takes a non-negative integer, got {arg!r}")
        return f"COALESCE({t} = 'array' AND json_array_length(metadata, {path}) = {_bind(params, arg)}, 0)"
    if op in ("$exists", "$empty"):
        if not isinstance(arg, bool):
            raise FilterError(f"{op} on key {key!r} takes true or false, got {arg!r}")
        if op == "$exists":
            cond = f"{t} IS NOT NULL"
        else:
            cond = (f"{t} IS NULL OR {t} = 'null' OR ({t} = 'array' AND json_array_length(metadata, {path}) = 0)"
                    f" OR ({t} = 'text' AND {v} = '')")
        return f"COALESCE({cond}, 0)" if arg else f"NOT COALESCE({cond}, 0)"
    # $not on a field: the inner operators negated
    if not isinstance(arg, dict) or not arg or not all(isinstance(k, str) and k.startswith("$") for k in arg):
        raise FilterError(f"$not on key {key!r} takes a dict of operators, e.g. {{'$gt': 3}}")
    inner = " AND ".join(f"({_op(key, path, o, a, params)})" for o, a in arg.items())
    return f"NOT ({inner})"


# ---- the same filter in Python ------------------------------------------------
def _get(meta: Any, key: str) -> Any:
    cur = meta
    for seg in key.split("."):
        if not isinstance(cur, dict) or seg not in cur:
            return _MISSING
        cur = cur[seg]
    return cur


def _eq(a: Any, b: Any) -> bool:
    """JSON equality: numbers numerically, bools apart from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    return bool(a == b)


def _json_eq(a: Any, b: str) -> bool:
    """SQL helper: the JSON text ``a`` equals ``b``.  SQLite does not promise
    to skip a call whose AND-guard (the JSON type) is false, so ``a`` may be a
    number, NULL or a string that is no JSON: never equal, never an error."""
    if not isinstance(a, str):
        return False
    try:
        value = json.loads(a)
    except ValueError:
        return False
    return _eq(value, json.loads(b))


@lru_cache(maxsize=256)
def _like_parts(pattern: str) -> tuple[tuple[re.Pattern[str], int], ...]:
    """The pattern cut at each ``%``: per piece, a regex of fixed length
    (``_`` any one character) and that length."""
    return tuple((re.compile("".join("." if c == "_" else re.escape(c) for c in piece), re.DOTALL), len(piece))
                 for piece in pattern.split("%"))


def like(value: Any, pattern: str) -> bool:
    """SQL LIKE, case-sensitive: ``%`` any run of characters, ``_`` one.

    Each piece between ``%`` signs matches where it first can (which is
    right for fixed-length pieces), so the time grows with the value's length
    times the pattern's, never exponentially (a translation to one regex,
    ``.*a.*a.*b``, backtracks for seconds on a 100-character value).

    >>> like("leann-store", "le%st_re"), like("abc", "%b"), like(3, "%")
    (True, False, False)
    """
    if not isinstance(value, str):
        return False
    parts = _like_parts(pattern)
    if len(parts) == 1:
        return parts[0][0].fullmatch(value) is not None
    (first, nfirst), (last, nlast) = parts[0], parts[-1]
    end = len(value) - nlast
    if end < nfirst or first.match(value, 0, nfirst) is None or last.fullmatch(value, end) is None:
        return False
    pos = nfirst
    for piece, _ in parts[1:-1]:
        found = piece.search(value, pos, end)
        if found is None:
            return False
        pos = found.end()
    return True


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _doc_py(spec: dict) -> Callable[[Any], bool]:
    tests: list[Callable[[Any], bool]] = []
    for key, value in spec.items():
        if key.startswith("$"):
            tests.append(_logical_py(key, value))
        elif isinstance(value, dict) and value and all(k.startswith("$") for k in value):
            tests.append(_field_py(key, [_op_py(o, a) for o, a in value.items()]))
        else:
            tests.append(_field_py(key, [_op_py("$eq", value)]))
    return lambda m: all(t(m) for t in tests)


def _field_py(key: str, ops: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    """All of ``ops`` on the value at ``key``."""
    return lambda m: all(t(_get(m, key)) for t in ops)


def _logical_py(op: str, value: Any) -> Callable[[Any], bool]:
    if op == "$not":
        inner = _doc_py(value)
        return lambda m: not inner(m)
    subs = [_doc_py(v) for v in value]
    if op == "$and":
        return lambda m: all(s(m) for s in subs)
    if op == "$or":
        return lambda m: any(s(m) for s in subs)
    return lambda m: not any(s(m) for s in subs)


def _op_py(op: str, arg: Any) -> Callable[[Any], bool]:
    """One field operator on the value found (``_MISSING`` when absent)."""
    if op == "$eq":
        return lambda v: v is not _MISSING and _eq(v, arg)
    if op == "$ne":
        return lambda v: not (v is not _MISSING and _eq(v, arg))
    if op in _CMP_SQL:
        cmp = {"$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b,
               "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b}[op]
        if _is_number(arg):
            return lambda v: _is_number(v) and cmp(v, arg)
        return lambda v: isinstance(v, str) and cmp(v, arg)
    if op == "$in":
        return lambda v: (any(_eq(e, x) for e in v for x in arg) if isinstance(v, list)
                          else v is not _MISSING and not isinstance(v, dict) and any(_eq(v, x) for x in arg))
    if op == "$nin":
        inn = _op_py("$in", arg)
        return lambda v: not inn(v)
    if op == "$contains":
        return lambda v: ((isinstance(v, list) and any(_eq(e, arg) for e in v))
                          or (isinstance(v, str) and isinstance(arg, str) and arg in v))
    if op == "$icontains":
        return lambda v: isinstance(v, str) and arg.lower() in v.lower()
    if op == "$like":
        return lambda v: like(v, arg)
    if op == "$all":
        return lambda v: isinstance(v, list) and all(any(_eq(e, x) for e in v) for x in arg)
    if op == "$size":
        return lambda v: isinstance(v, list) and len(v) == arg
    if op == "$exists":
        return lambda v: (v is not _MISSING) == arg
    if op == "$empty":
        return lambda v: (v is _MISSING or v is None or v == [] or v == "") == arg
    inner = [_op_py(o, a) for o, a in arg.items()]  # field-level $not
    return lambda v: not all(t(v) for t in inner)


def register_sql_functions(conn: Any) -> None:
    """The helpers compiled filters call, on one SQLite connection."""
    conn.create_function("leann_json_eq", 2, _json_eq, deterministic=True)
    conn.create_function("leann_like", 2, lambda v, p: like(v, p), deterministic=True)
    conn.create_function("leann_lower", 1, _lower, deterministic=True)


def check_metadata(metadata: Any, where: str = "metadata") -> str:
    """Metadata as JSON text, or an InvalidInputError naming the key whose
    value JSON cannot hold exactly (bytes, datetime, set, NaN, integers
    beyond 64 bits, non-string keys, strings holding U+0000, which SQLite's
    JSON functions cut short).  Flat dicts of plain values, the
    common case, are checked without a recursive walk."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        if not isinstance(metadata, Mapping):
            raise InvalidInputError(f"{where} must be a dict, got {type(metadata).__name__}")
        metadata = dict(metadata)
    for k, v in metadata.items():
        t = type(v)
        if type(k) is str and "\0" not in k and (
                (t is str and "\0" not in v) or t is bool or v is None
                or (t is int and _INT64_MIN <= v <= _INT64_MAX) or (t is float and math.isfinite(v))):
            continue
        try:
            _check_value(metadata, "", where)  # names the first bad key
        except RecursionError as exc:
            raise InvalidInputError(f"{where} nests too deeply") from exc
        break
    return json.dumps(metadata, ensure_ascii=False, allow_nan=False)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _check_value(v: Any, path: str, where: str) -> None:
    if isinstance(v, str) and "\0" in v:
        # SQLite's JSON functions end a string at U+0000: filters would see
        # a shorter value than the document holds
        raise InvalidInputError(f"{where} key {path!r}: strings cannot hold the character U+0000 (NUL)")
    if v is None or isinstance(v, (bool, str)):
        return
    if isinstance(v, int):
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise InvalidInputError(f"{where} key {path!r}: integer {v} does not fit 64 bits")
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            raise InvalidInputError(f"{where} key {path!r}: {v} is not a JSON number")
        return
    if isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _check_value(x, f"{path}[{i}]", where)
        return
    if isinstance(v, Mapping):
        for k, x in v.items():
            if not isinstance(k, str):
                raise InvalidInputError(f"{where} key {path!r}: key {k!r} is not a string")
            if "\0" in k:
                raise InvalidInputError(f"{where} key {k!r}: keys cannot hold the character U+0000 (NUL)")
            _check_value(x, f"{path}.{k}" if path else k, where)
        return
    raise InvalidInputError(
        f"{where} key {path!r}: a {type(v).__name__} cannot be stored as JSON "
        "(use str, int, float, bool, None, lists and dicts)")
