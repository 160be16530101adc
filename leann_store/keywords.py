"""The keyword index: an SQLite FTS5 table over the text each passage was
embedded from, written beside the ``docs`` rows, searched with BM25.

Kept in step by the docstore.  The three ``Docstore`` methods that add and
remove rows (``insert``, ``delete_ids``, ``clear``; upserts and
``delete_where`` go through them) write the index in the same statement
sequence, inside the same transaction, so it commits and rolls back with the
rows: exactly as durable as the documents.  Not by triggers: a docstore opens
with ``trusted_schema=OFF`` (a file someone sent must not run functions from
its schema), under which a trigger can neither call a Python function nor
write an FTS5 table.  Graph renumbering (merges, compaction) only touches
``docs.node``; the index is keyed by ``docs.rowid``, which never changes.

Why contentless (``content=''``).  The text already lives in ``docs``; a
contentless table stores only the inverted index.  Removing a row from it
takes the exact tokens it was indexed with, which the docstore gets by
preparing the old row's text again with :func:`prepare` -- deterministic for
one :data:`PREP_VERSION` and one Unicode database; :func:`prep_key` names
both, is recorded in ``meta``, and a change rebuilds the index on open.

Text preparation (:func:`prepare`) runs in Python before FTS5's tokenizer
sees it: ``unicode61`` (case folding, accents
removed) under the Porter stemmer (``files`` finds ``file``).  Identifiers
are kept whole and split into their parts: ``getNeighborsByHeuristic2`` ->
``getneighborsbyheuristic2 get neighbors by heuristic 2``,
``configure_file`` -> ``configurefile configure file``, ``os.path.join`` ->
``ospathjoin os path join``; runs of CJK characters become overlapping
bigrams (and their single characters), since they carry no spaces between
words.  The choice was measured against FTS5's own tokenizers (raw text with
``unicode61``, Porter, ``trigram``) on labelled keyword queries:
``benchmarks/keyword_tokenizers.py``.

A query goes through the same preparation, and every term is quoted before
it joins the ``OR`` expression: user text never reaches FTS5 syntax or SQL.

>>> prepare("getNeighborsByHeuristic2 calls os.path.join")
'getneighborsbyheuristic2 get neighbors by heuristic 2 calls ospathjoin os path join'
>>> match_expression("configure_file?  NEAR(\\"x\\") OR *")
'"configurefile" OR "configure" OR "file" OR "near" OR "x" OR "or"'
>>> prepare("東京都に住む")
'東京 京都 都に に住 住む 東 京 都 に 住 む'
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from typing import Any, Callable, Iterable

#: bump when :func:`prepare` changes the tokens it emits (stores rebuild their index on open)
PREP_VERSION = 1
TABLE = "keywords"
#: the FTS5 tokenizer behind :func:`prepare` (chosen by measurement, see the module docs)
TOKENIZER = "porter unicode61 remove_diacritics 2"
#: most distinct query terms kept (a pasted page must not become a 5,000-term OR)
MAX_QUERY_TERMS = 64

# ---- text preparation ---------------------------------------------------------
# A run: a word, or words joined by '.', '::' or '->' (a qualified identifier).
_RUN = re.compile(r"\w+(?:(?:\.|::|->)\w+)*")
_WORD = re.compile(r"\w+")
_CJK = ("\u1100-\u11ff\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
        "\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f")
_CJK_SPLIT = re.compile(f"([{_CJK}]+)")
_IS_CJK = re.compile(f"[{_CJK}]")
# parts of an identifier: ACRONYM before a Capitalised word, Capitalised or
# lower words (any non-ASCII letter counts as lower case), ACRONYMs, digits
_PART = re.compile(r"[A-Z]+(?=[A-Z][^\W\d_A-Z])|[A-Z]?[^\W\d_A-Z]+|[A-Z]+|\d+")
_PLAIN = re.compile(r"[a-z]+|[0-9]+")


def prep_key() -> str:
    """What the stored index's tokens depend on: :data:`PREP_VERSION`, the
    Unicode version of ``re``/``unicodedata`` and the tokenizer."""
    return f"{PREP_VERSION}/{unicodedata.unidata_version}/{TOKENIZER}"


def _word_terms(word: str, out: list[str]) -> None:
    """Terms of one \\w+ word (no CJK in it): whole, then its parts."""
    if _PLAIN.fullmatch(word):  # most words: one part, the word itself
        out.append(word)
        return
    parts = _PART.findall(word)
    whole = "".join(parts).lower() if parts else word.replace("_", "").lower()
    if whole:
        out.append(whole)
    if len(parts) > 1:
        out.extend(p.lower() for p in parts)


def _cjk_terms(run: str, out: list[str], unigrams: bool) -> None:
    if len(run) == 1:
        out.append(run)
        return
    out.extend(run[i:i + 2] for i in range(len(run) - 1))
    if unigrams:
        out.extend(run)


def terms(text: str, *, query: bool = False) -> list[str]:
    """The index terms of a text, in order (the query side skips CJK
    unigrams when it has the bigrams).

    >>> terms("HTTPServer.serve_forever()")
    ['httpserverserveforever', 'httpserver', 'http', 'server', 'serveforever', 'serve', 'forever']
    >>> terms("Café crème")
    ['café', 'crème']
    """
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    cjk = _IS_CJK.search(text) is not None
    for run in _RUN.findall(text):
        if "." in run or ":" in run or ">" in run:
            words = _WORD.findall(run)
            # a qualified name: also the whole, joined
            joined = "".join(w.replace("_", "") for w in words).lower()
            if joined and (not cjk or not _IS_CJK.search(joined)):
                out.append(joined)
        else:
            words = [run]
        for word in words:
            if not cjk:
                _word_terms(word, out)
                continue
            for piece in _CJK_SPLIT.split(word):
                if not piece:
                    continue
                if _IS_CJK.match(piece):
                    _cjk_terms(piece, out, unigrams=not query)
                else:
                    _word_terms(piece, out)
    return out


def prepare(text: str | None) -> str:
    """The string FTS5 indexes for a passage's text (see the module docs)."""
    return " ".join(terms(text or ""))


def match_expression(text: str) -> str | None:
    """A safe FTS5 MATCH expression for user text: its distinct terms, each
    a quoted string, joined by OR (BM25 ranks passages holding more and
    rarer terms first); None when the text holds no term."""
    seen: dict[str, None] = {}
    for t in terms(text, query=True):
        seen.setdefault(t, None)
        if len(seen) >= MAX_QUERY_TERMS:
            break
    if not seen:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in seen)


# ---- schema ---------------------------------------------------------------------
def schema(table: str = TABLE, tokenizer: str = TOKENIZER) -> str:
    """The FTS5 table (contentless: the texts live in ``docs``)."""
    return f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5(body, content='', tokenize='{tokenizer}');"


def drop(cur: sqlite3.Cursor, table: str = TABLE) -> None:
    """Remove the index (before a rebuild), and the triggers an unreleased
    development version kept it with."""
    for suffix in ("ai", "ad", "au"):
        cur.execute(f"DROP TRIGGER IF EXISTS {table}_{suffix}")
    cur.execute(f"DROP TABLE IF EXISTS {table}")


def add_rows(cur: sqlite3.Cursor, rows: Iterable[tuple[int, str | None]], table: str = TABLE) -> None:
    """Index (rowid, embedded text) pairs, in the caller's transaction.

    The docstore writes the index itself, beside the rows, rather than
    through triggers: a docstore opens with ``trusted_schema=OFF`` (a file
    someone sent must not run functions from its schema), and under it a
    trigger may not call a Python function or write an FTS5 table."""
    cur.executemany(f"INSERT INTO {table}(rowid, body) VALUES (?, ?)", ((r, prepare(t)) for r, t in rows))


def delete_rows(cur: sqlite3.Cursor, rows: Iterable[tuple[int, str | None]], table: str = TABLE) -> None:
    """Take (rowid, embedded text) pairs out of the index: a contentless
    FTS5 table deletes by the terms a row was indexed with."""
    cur.executemany(f"INSERT INTO {table}({table}, rowid, body) VALUES ('delete', ?, ?)",
                    ((r, prepare(t)) for r, t in rows))


def clear(cur: sqlite3.Cursor, table: str = TABLE) -> None:
    """Empty the index whole."""
    cur.execute(f"INSERT INTO {table}({table}) VALUES ('delete-all')")


def exists(conn: sqlite3.Connection, table: str = TABLE) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (table,)).fetchone() is not None


def build(cur: sqlite3.Cursor, progress: Callable[[int], None] | None = None, table: str = TABLE,
          chunk: int = 2000) -> int:
    """Create the index and fill it from every ``docs`` row (one transaction:
    the caller's); ``progress(n)`` after each chunk.  Returns rows indexed."""
    drop(cur, table)
    cur.execute(schema(table))
    last = 0
    done = 0
    while True:
        rows = cur.execute("SELECT rowid, coalesce(embed_text, text) FROM docs WHERE rowid > ? ORDER BY rowid "
                           "LIMIT ?", (last, chunk)).fetchall()
        if not rows:
            return done
        cur.executemany(f"INSERT INTO {table}(rowid, body) VALUES (?, ?)", ((r, prepare(t)) for r, t in rows))
        last = rows[-1][0]
        done += len(rows)
        if progress is not None:
            progress(len(rows))


# ---- retrieval ---------------------------------------------------------------------
def search(conn: sqlite3.Connection, text: str, depth: int, *, where: str | None = None,
           params: dict[str, Any] | None = None, accept: Callable[[int], bool] | None = None,
           table: str = TABLE) -> list[tuple[float, int]]:
    """The ``depth`` best passages for ``text`` by BM25, as (score, rowid),
    best first, score = -bm25 (higher is better).

    ``where``/``params``: an SQL condition over ``docs`` (a compiled filter),
    applied in the same statement; ``accept(rowid)``: a Python test applied
    while reading, for filters SQL cannot express."""
    expr = match_expression(text)
    if expr is None or depth <= 0:
        return []
    args: dict[str, Any] = dict(params or {})
    args["kw_match"] = expr
    if where is None:
        sql = (f"SELECT rowid, bm25({table}) AS s FROM {table} WHERE {table} MATCH :kw_match ORDER BY s")
    else:
        sql = (f"SELECT k.rowid, bm25({table}) AS s FROM {table} AS k JOIN docs ON docs.rowid = k.rowid "
               f"WHERE {table} MATCH :kw_match AND ({where}) ORDER BY s")
    if accept is None:
        sql += f" LIMIT {int(depth)}"
    out: list[tuple[float, int]] = []
    for rowid, score in conn.execute(sql, args):
        if accept is None or accept(int(rowid)):
            out.append((-float(score), int(rowid)))
            if len(out) >= depth:
                break
    return out


def integrity_problems(conn: sqlite3.Connection, table: str = TABLE) -> list[str]:
    """FTS5's own check of the index structure."""
    try:
        conn.execute(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 0)")
    except sqlite3.DatabaseError as exc:
        return [f"keyword index: {exc}"]
    return []
