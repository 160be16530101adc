"""The docstore: one SQLite database per store (stdlib ``sqlite3``, WAL).

Table ``docs`` holds one row per live document: the external string id, the
text, the string that was embedded when it differs from the text, metadata as
JSON (types kept exactly: see :func:`leann_store.filters.check_metadata`),
a token count (filled lazily, see :mod:`leann_store.tokens`), and ``node``,
its node in the current graph generation.  A row without a node waits in the
exact delta segment, and table ``vecs`` holds its vector (float32 bytes) until
a merge puts it in the graph and drops the vector; kept apart from ``docs``,
the vectors leave whole free pages behind (``auto_vacuum=INCREMENTAL`` hands
them back) rather than half-empty document pages.  Table ``meta`` holds the
store's settings, the model fingerprint, the graph generation and a write
counter.  The FTS5 table ``keywords`` is the keyword index over each row's
embedded text, kept equal to ``docs`` by triggers inside every write's own
transaction (see :mod:`leann_store.keywords`).  Schema 1 (before the keyword
index) is upgraded on the first writable open: one transaction indexes every
row (a progress bar when large); a read-only open of such a store searches
densely only.

Every write is one transaction; with ``journal_mode=WAL`` and
``synchronous=FULL`` a committed transaction survives power loss and kill -9.
Readers use one connection per thread; a read transaction gives a search a
consistent snapshot while a writer commits beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import errors, keywords
from .filters import Filter, register_sql_functions

FILENAME = "docstore.sqlite"
SCHEMA_VERSION = 2
#: schemas a read-only open accepts (1: no keyword index yet)
_READABLE = ("1", "2")
#: host parameters per statement (SQLite's default limit is 32766)
_CHUNK = 900
#: bytes the write-ahead log is truncated to after a checkpoint
_WAL_LIMIT = 8 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    embed_text TEXT,
    metadata TEXT NOT NULL,
    tokens INTEGER,
    node INTEGER UNIQUE
);
CREATE TABLE IF NOT EXISTS vecs (rowid INTEGER PRIMARY KEY, vec BLOB NOT NULL);
"""


#: columns each table must have (a docstore someone else wrote may not)
_COLUMNS = {"meta": {"key", "value"}, "docs": {"id", "text", "embed_text", "metadata", "tokens", "node"},
            "vecs": {"vec"}}
#: SQLite's words for a damaged or foreign database
_CORRUPT_WORDS = ("malformed", "not a database", "no such table", "no such column", "has no column",
                  "columns but", "file is encrypted", "unsupported file format", "database corrupt")


def _leann_error(exc: sqlite3.Error, path: str) -> errors.LeannError:
    """The package's error for a SQLite one: CorruptDocstoreError for a
    damaged or foreign file, DocstoreError for the rest (disk full, I/O,
    locked); the original is chained by the caller."""
    text = str(exc)
    cls = errors.CorruptDocstoreError if any(w in text for w in _CORRUPT_WORDS) else errors.DocstoreError
    return cls(f"docstore {path!r}: {text}")


class _Cursor(sqlite3.Cursor):
    """A cursor whose SQLite errors are leann_store errors (which are
    still ``sqlite3.DatabaseError`` instances)."""

    def _path(self) -> str:
        return str(getattr(self.connection, "leann_path", "?"))

    def _fail(self, exc: sqlite3.Error) -> errors.LeannError:
        return _leann_error(exc, self._path())

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """The one mapping of what SQLite raises to the package's errors."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, errors.LeannError):
                raise
            raise self._fail(exc) from exc
        except UnicodeDecodeError as exc:  # text that is not UTF-8
            raise errors.CorruptDocstoreError(f"docstore {self._path()!r}: {exc}") from exc
        except UnicodeEncodeError as exc:  # a caller's string SQLite cannot hold; a write rolls back
            raise _not_unicode(exc) from exc

    def execute(self, *args: Any) -> "_Cursor":  # type: ignore[override]
        with self._translated():
            return super().execute(*args)

    def executemany(self, *args: Any) -> "_Cursor":  # type: ignore[override]
        with self._translated():
            return super().executemany(*args)

    def fetchone(self) -> Any:
        with self._translated():
            return super().fetchone()

    def fetchall(self) -> list[Any]:
        with self._translated():
            return super().fetchall()

    def __next__(self) -> Any:
        with self._translated():
            return super().__next__()


class _Connection(sqlite3.Connection):
    """A connection whose cursors are :class:`_Cursor` objects."""

    leann_path = "?"

    def cursor(self, factory: Any = _Cursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, params: Any = ()) -> Any:  # type: ignore[override]
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, params: Any) -> Any:  # type: ignore[override]
        return self.cursor().executemany(sql, params)

    def executescript(self, script: str) -> Any:  # type: ignore[override]
        try:
            return super().executescript(script)
        except sqlite3.DatabaseError as exc:
            raise _leann_error(exc, self.leann_path) from exc

    def commit(self) -> None:
        try:
            super().commit()
        except sqlite3.DatabaseError as exc:
            raise _leann_error(exc, self.leann_path) from exc

    def rollback(self) -> None:
        try:
            super().rollback()
        except sqlite3.DatabaseError as exc:
            raise _leann_error(exc, self.leann_path) from exc


class Docstore:
    """SQLite access for one store directory (see the module docs)."""

    def __init__(self, directory: str, read_only: bool = False,
                 progress: Callable[[int, str], Any] | None = None) -> None:
        """``progress(total, what)``: a context manager giving a bar (or
        None) for long work, here the keyword index of an upgraded store."""
        self.path = os.path.join(directory, FILENAME)
        self.read_only = read_only
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        if not read_only:
            conn = self._conn()
            conn.executescript(_SCHEMA)
            self._fix_auto_vacuum(conn)
            if self.get_meta("schema") is None:
                with self.write() as cur:
                    cur.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                    self._build_keywords(cur, None)
        elif not os.path.exists(self.path):
            raise FileNotFoundError(f"no docstore at {self.path!r}")
        self._check_schema()
        schema = self.get_meta("schema")
        if schema not in (_READABLE if read_only else ("1", str(SCHEMA_VERSION))):
            raise errors.CorruptIndexError(
                f"{self.path!r}: docstore schema {schema!r} is not supported (expected {SCHEMA_VERSION})")
        if not read_only and (schema != str(SCHEMA_VERSION) or self.get_meta("keywords") != keywords.prep_key()
                              or not keywords.exists(self._conn())):
            self._upgrade(progress)
        #: whether the keyword index exists (a read-only open of a schema-1 store has none)
        self.has_keywords = keywords.exists(self._conn())

    def _upgrade(self, progress: Callable[[int, str], Any] | None) -> None:
        """(Re)build the keyword index over every row and mark the schema
        current, in one transaction: a store written before the index
        existed, or one whose text preparation changed."""
        total = self.count()
        bar_cm = progress(total, "keyword index") if progress is not None else contextlib.nullcontext(None)
        with bar_cm as bar, self.write() as cur:
            self._build_keywords(cur, bar.update if bar is not None else None)
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    @staticmethod
    def _build_keywords(cur: sqlite3.Cursor, progress: Callable[[int], Any] | None) -> None:
        keywords.build(cur, progress)
        Docstore.set_meta(cur, {"keywords": keywords.prep_key()})

    def _check_schema(self) -> None:
        """The tables and columns this module reads are there, and the file
        holds no trigger or view of its own (a docstore someone sent could
        otherwise change rows as we write them); the keyword index's own
        objects (names starting with ``keywords``) are allowed."""
        conn = self._conn()
        objects = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
        for kind, name in objects:
            if kind in ("trigger", "view") and not str(name).startswith("keywords"):
                raise errors.CorruptDocstoreError(
                    f"docstore {self.path!r} holds a {kind} {name!r} that leann-store did not make: refused")
        tables = {str(name) for kind, name in objects if kind == "table"}
        for table, want in _COLUMNS.items():
            if table not in tables:
                raise errors.CorruptDocstoreError(f"docstore {self.path!r} has no table {table!r}")
            have = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
            if not want <= have:
                raise errors.CorruptDocstoreError(
                    f"docstore {self.path!r}: table {table!r} lacks columns {sorted(want - have)}")

    def meta_int(self, key: str, cur: sqlite3.Cursor | None = None) -> int:
        """An integer setting (0 when absent); a value that is no
        non-negative integer is a CorruptDocstoreError."""
        row = (cur or self._conn()).execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return _as_count(None if row is None else row[0], key, self.path)

    @staticmethod
    def exists(directory: str) -> bool:
        """Whether ``directory`` holds a docstore (and so a store)."""
        return os.path.isfile(os.path.join(directory, FILENAME))

    def _fix_auto_vacuum(self, conn: sqlite3.Connection) -> None:
        """Stores written before auto_vacuum took effect never gave pages
        back: switch them to incremental (a one-time ``VACUUM``, which
        rewrites the file compactly)."""
        if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")

    # ---- connections ------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.read_only:
                uri = "file:" + self.path + "?mode=ro"
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None,
                                       factory=_Connection)
            else:
                conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       factory=_Connection)
            conn.leann_path = self.path
            try:
                # a docstore is a file someone may have sent: its schema
                # (triggers, views, defaults) may call no function that is not
                # innocuous, our own included, and nothing loads an extension
                # (both before anything reads the schema: SQLite checks a
                # schema's use of a function when it parses the schema, and only
                # of functions registered by then)
                conn.execute("PRAGMA trusted_schema=OFF")
                if hasattr(conn, "enable_load_extension"):
                    conn.enable_load_extension(False)
                register_sql_functions(conn)
                if not self.read_only:
                    # before WAL: setting the journal mode writes the header, after
                    # which a new database keeps auto_vacuum=NONE
                    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                    conn.execute("PRAGMA journal_mode=WAL")
                    # the WAL file shrinks back to this after a checkpoint (a merge
                    # that drops 16k vectors would otherwise leave it at its peak)
                    conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=30000")
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()
        self._local = threading.local()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: committed (durably) when the block ends,
        rolled back if it raises."""
        if self.read_only:
            raise errors.InvalidInputError("this store was opened read-only")
        conn = self._conn()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction on this thread's connection: every read inside
        sees the same committed state (nested uses join the outer one)."""
        conn = self._conn()
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # starts the WAL snapshot now
            yield
        finally:
            conn.rollback()

    # ---- meta ---------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def all_meta(self) -> dict[str, str]:
        return {k: v for k, v in self._conn().execute("SELECT key, value FROM meta")}

    def version(self) -> int:
        """The write counter (bumped by every committed write)."""
        return self.meta_int("version")

    def generation(self) -> int:
        """The graph generation the rows' nodes refer to (0: no graph)."""
        return self.meta_int("generation")

    @staticmethod
    def bump_version(cur: sqlite3.Cursor) -> int:
        """Bump the write counter inside a write transaction; returns it."""
        row = cur.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        version = _as_count(None if row is None else row[0], "version",
                            getattr(cur.connection, "leann_path", "?")) + 1
        cur.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(version),))
        return version

    @staticmethod
    def set_meta(cur: sqlite3.Cursor, items: dict[str, Any]) -> None:
        cur.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in items.items()])

    # ---- rows -----------------------------------------------------------------
    def count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM docs").fetchone()[0])

    @staticmethod
    def delete_ids(cur: sqlite3.Cursor, ids: Sequence[str]) -> tuple[list[int], list[int]]:
        """Delete rows by external id; returns (graph nodes freed, delta rowids freed)."""
        nodes: list[int] = []
        rows: list[int] = []
        for part in _chunks(list(ids)):
            marks = ",".join("?" * len(part))
            found = cur.execute(f"SELECT rowid, node, coalesce(embed_text, text) FROM docs WHERE id IN ({marks})",
                                part).fetchall()
            for rowid, node, _ in found:
                if node is None:
                    rows.append(int(rowid))
                else:
                    nodes.append(int(node))
            keywords.delete_rows(cur, ((int(r), t) for r, _, t in found))
            cur.execute(f"DELETE FROM docs WHERE id IN ({marks})", part)
        for part in _chunks(rows):
            cur.execute(f"DELETE FROM vecs WHERE rowid IN ({','.join('?' * len(part))})", part)
        return nodes, rows

    @staticmethod
    def clear(cur: sqlite3.Cursor) -> None:
        """Delete every row (the settings stay); the keyword index is
        emptied whole."""
        keywords.clear(cur)
        cur.execute("DELETE FROM docs")
        cur.execute("DELETE FROM vecs")

    @staticmethod
    def insert(cur: sqlite3.Cursor, rows: Sequence[tuple[Any, ...]]) -> list[int]:
        """Insert (id, text, embed_text, metadata_json, tokens, node, vec) rows
        (vec None for rows in the graph); returns their rowids, numbered on
        from the largest in use (two statements for the whole batch)."""
        start = int(cur.execute("SELECT coalesce(max(rowid), 0) FROM docs").fetchone()[0]) + 1
        rowids = list(range(start, start + len(rows)))
        cur.executemany("INSERT INTO docs (rowid, id, text, embed_text, metadata, tokens, node) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", ((rid, *r[:6]) for rid, r in zip(rowids, rows)))
        cur.executemany("INSERT INTO vecs VALUES (?, ?)",
                        ((rid, r[6]) for rid, r in zip(rowids, rows) if r[6] is not None))
        keywords.add_rows(cur, ((rid, r[2] if r[2] is not None else r[1]) for rid, r in zip(rowids, rows)))
        return rowids

    @staticmethod
    def assign_nodes(cur: sqlite3.Cursor, rowids: np.ndarray) -> None:
        """Row ``rowids[i]`` becomes node i of a new graph generation (its
        vector is dropped); every other row must be in the delta."""
        cur.execute("UPDATE docs SET node = NULL WHERE node IS NOT NULL")
        cur.executemany("UPDATE docs SET node = ? WHERE rowid = ?",
                        ((i, int(r)) for i, r in enumerate(rowids.tolist())))
        cur.execute("DELETE FROM vecs")

    @staticmethod
    def append_nodes(cur: sqlite3.Cursor, rowids: np.ndarray, first: int) -> None:
        """Delta rows ``rowids[i]`` become nodes ``first + i`` of the graph
        (their vectors are dropped)."""
        cur.executemany("UPDATE docs SET node = ? WHERE rowid = ?",
                        ((first + i, int(r)) for i, r in enumerate(rowids.tolist())))
        for part in _chunks([int(r) for r in rowids.tolist()]):
            cur.execute(f"DELETE FROM vecs WHERE rowid IN ({','.join('?' * len(part))})", part)

    @staticmethod
    def renumber_nodes(cur: sqlite3.Cursor, rowids: np.ndarray, nodes: np.ndarray) -> None:
        """Graph rows ``rowids[i]`` move to node ``nodes[i]`` (a compaction:
        every graph row is named, so no two rows ever hold one node)."""
        cur.execute("UPDATE docs SET node = -1 - node WHERE node IS NOT NULL")  # out of the way (UNIQUE)
        cur.executemany("UPDATE docs SET node = ? WHERE rowid = ?",
                        ((int(n), int(r)) for r, n in zip(rowids.tolist(), nodes.tolist())))

    def graph_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(nodes, rowids) of the rows in the graph."""
        got = self._conn().execute("SELECT node, rowid FROM docs WHERE node IS NOT NULL").fetchall()
        if any(type(n) is not int for n, _ in got):
            raise errors.CorruptDocstoreError(f"docstore {self.path!r}: a row's graph node is not an integer")
        a = np.array(got, dtype=np.int64).reshape(-1, 2)
        return a[:, 0].copy(), a[:, 1].copy()

    def delta_rows(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(rowids, float32 vectors) of the rows in the delta segment, by rowid."""
        got = self._conn().execute("SELECT rowid, vec FROM vecs ORDER BY rowid").fetchall()
        rowids = np.array([r for r, _ in got], dtype=np.int64)
        vecs = np.empty((len(got), dim), dtype=np.float32)
        for i, (_, blob) in enumerate(got):
            if not isinstance(blob, bytes) or len(blob) != 4 * dim:
                size = f"{len(blob)} bytes" if isinstance(blob, bytes) else f"a {type(blob).__name__}"
                raise errors.CorruptDocstoreError(f"{self.path!r}: delta row {got[i][0]} holds a vector of "
                                                  f"{size}, expected {4 * dim} bytes")
            vecs[i] = np.frombuffer(blob, dtype=np.float32)
        return rowids, vecs

    _COLS = "rowid, id, text, embed_text, metadata"

    def by_ids(self, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """id -> (rowid, id, text, embed_text, metadata_json) of the ids present."""
        out: dict[str, tuple[Any, ...]] = {}
        conn = self._conn()
        for part in _chunks(list(ids)):
            marks = ",".join("?" * len(part))
            for row in conn.execute(f"SELECT {self._COLS} FROM docs WHERE id IN ({marks})", part):
                out[row[1]] = row
        return out

    def by_rowids(self, rowids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
        """rowid -> (rowid, id, text, embed_text, metadata_json) of the rows present."""
        out: dict[int, tuple[Any, ...]] = {}
        conn = self._conn()
        for part in _chunks([int(r) for r in rowids]):
            marks = ",".join("?" * len(part))
            for row in conn.execute(f"SELECT {self._COLS} FROM docs WHERE rowid IN ({marks})", part):
                out[int(row[0])] = row
        return out

    def embed_inputs(self, rowids: Sequence[int]) -> tuple[list[str], list[int | None]]:
        """The strings to re-embed for rows (in the order given) and their
        token counts where known; a missing row is an UnknownIdError."""
        got: dict[int, tuple[str, int | None]] = {}
        conn = self._conn()
        for part in _chunks([int(r) for r in rowids]):
            marks = ",".join("?" * len(part))
            for rowid, text, tokens in conn.execute(
                    f"SELECT rowid, coalesce(embed_text, text), tokens FROM docs WHERE rowid IN ({marks})", part):
                got[int(rowid)] = (row_text(text), tokens if isinstance(tokens, int) and tokens >= 0 else None)
        missing = [r for r in rowids if int(r) not in got]
        if missing:
            raise errors.UnknownIdError(f"docstore rows {missing[:8]} are gone")
        return [got[int(r)][0] for r in rowids], [got[int(r)][1] for r in rowids]

    def records(self, flt: Filter | None, limit: int | None = None) -> list[tuple[Any, ...]]:
        """(rowid, id, text, embed_text, metadata_json) of the rows a filter
        matches (all for None), oldest first."""
        return self.select(flt, self._COLS, limit)

    def matching_rows(self, flt: Filter | None) -> list[tuple[int, int | None]]:
        """(rowid, node) of the rows a filter matches (node None: delta)."""
        return self.select(flt, "rowid, node")

    def ids_matching(self, flt: Filter | None) -> list[str]:
        """External ids of the rows a filter matches."""
        return [r[0] for r in self.select(flt, "id")]

    def select(self, flt: Filter | None, columns: str = "rowid, node", limit: int | None = None) -> list[tuple]:
        """Rows matching a compiled filter (every row for None), by rowid.
        A callable filter is applied in Python on each row's metadata."""
        conn = self._conn()
        if flt is not None and flt.sql is None:  # a Python callable
            out = []
            for row in conn.execute(f"SELECT {columns}, metadata FROM docs ORDER BY rowid"):
                if flt.matches(row_metadata(row[-1])):
                    out.append(row[:-1])
                    if limit is not None and len(out) >= limit:
                        break
            return out
        where = "" if flt is None else f" WHERE {flt.sql}"
        lim = "" if limit is None else f" LIMIT {int(limit)}"
        params = {} if flt is None else dict(flt.params)
        try:
            return conn.execute(f"SELECT {columns} FROM docs{where} ORDER BY rowid{lim}", params).fetchall()
        except sqlite3.OperationalError as exc:  # pragma: no cover - a compiler bug, not user input
            raise errors.FilterError(f"filter could not run: {exc}") from exc

    def keyword_search(self, text: str, depth: int, flt: Filter | None,
                       accept: Callable[[int], bool] | None = None) -> list[tuple[float, int]]:
        """The ``depth`` best rows for ``text`` by BM25 as (score, rowid),
        best first (score higher is better), among the rows a compiled
        filter matches (its SQL in the same statement; a callable filter
        through ``accept(rowid)``, which the caller derives from it)."""
        if not self.has_keywords:
            raise errors.InvalidInputError(
                f"{self.path!r} was written by an earlier version and has no keyword index yet; open it once "
                "without read_only=True to build it")
        sql = flt.sql if flt is not None else None
        params = dict(flt.params) if flt is not None and flt.sql is not None else None
        try:
            return keywords.search(self._conn(), text, depth, where=sql, params=params, accept=accept)
        except sqlite3.OperationalError as exc:  # pragma: no cover - a query builder bug, not user input
            raise errors.FilterError(f"keyword search could not run: {exc}") from exc

    def fill_token_counts(self, count: Any) -> int:
        """Compute missing token counts with ``count(texts) -> list[int]``."""
        todo = self._conn().execute(
            "SELECT rowid, coalesce(embed_text, text) FROM docs WHERE tokens IS NULL").fetchall()
        if not todo:
            return 0
        counts = count([row_text(t) for _, t in todo])
        with self.write() as cur:
            cur.executemany("UPDATE docs SET tokens = ? WHERE rowid = ?",
                            ((int(c), int(r)) for (r, _), c in zip(todo, counts)))
        return len(todo)

    def space(self) -> dict[str, int]:
        """How the docstore file's bytes divide: ``text`` (texts and
        embedded strings), ``metadata``, ``vectors`` (the delta's),
        ``keyword_index``, ``free`` (pages kept for reuse), ``other``
        (SQLite's structures, ids, keys) and ``file`` (the database and its
        log on disk); payload bytes, so pages' slack counts as ``other``."""
        conn = self._conn()
        text, meta = conn.execute("SELECT coalesce(sum(length(CAST(text AS BLOB))), 0) + "
                                  "coalesce(sum(length(CAST(embed_text AS BLOB))), 0), "
                                  "coalesce(sum(length(CAST(metadata AS BLOB))), 0) FROM docs").fetchone()
        vecs = conn.execute("SELECT coalesce(sum(length(vec)), 0) FROM vecs").fetchone()[0]
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * page
        keywords = self._keyword_bytes(conn)
        total = self.nbytes()
        out = {"text": int(text), "metadata": int(meta), "vectors": int(vecs), "keyword_index": keywords,
               "free": free}
        out["other"] = max(0, total - sum(out.values()))
        out["file"] = total
        return out

    @staticmethod
    def _keyword_bytes(conn: sqlite3.Connection) -> int:
        """Bytes of the keyword index's tables (0 when there is none)."""
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'keywords%'")]
        if not names:
            return 0
        try:
            marks = ",".join("?" * len(names))
            return int(conn.execute(f"SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({marks})",
                                    names).fetchone()[0])
        except sqlite3.Error:  # SQLite built without the dbstat table
            return 0

    def nbytes(self) -> int:
        """Bytes of the database and its write-ahead log on disk."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(self.path + suffix)
        return total

    def integrity_problems(self) -> list[str]:
        """SQLite's own integrity check plus the table's invariants."""
        conn = self._conn()
        out = [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        bad = conn.execute("SELECT count(*) FROM docs WHERE json_valid(metadata) = 0").fetchone()[0]
        if bad:
            out.append(f"{bad} rows hold invalid metadata JSON")
        bad = conn.execute("SELECT count(*) FROM docs LEFT JOIN vecs ON docs.rowid = vecs.rowid "
                           "WHERE (docs.node IS NULL) = (vecs.rowid IS NULL)").fetchone()[0]
        if bad:
            out.append(f"{bad} rows are neither in the graph nor in the delta, or in both")
        bad = conn.execute("SELECT count(*) FROM vecs WHERE rowid NOT IN (SELECT rowid FROM docs)").fetchone()[0]
        if bad:
            out.append(f"{bad} delta vectors belong to no document")
        if self.has_keywords and not self.read_only:  # (FTS5 runs its check as a write statement)
            out += keywords.integrity_problems(conn)
            bad = conn.execute(f"SELECT (SELECT count(*) FROM {keywords.TABLE}) - (SELECT count(*) FROM docs)"
                               ).fetchone()[0]
            if bad:
                out.append(f"the keyword index holds {bad:+d} rows against the documents")
        return out

    def release_free_pages(self) -> None:
        """Give the file's free pages back (after a merge dropped vectors),
        and the log's: a checkpoint, which truncates it to ``_WAL_LIMIT``."""
        with contextlib.suppress(sqlite3.Error):
            self._conn().execute("PRAGMA incremental_vacuum").fetchall()  # runs only as rows are read
            self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def defragment(self, slack: float = 0.15) -> bool:
        """Rewrite the file (``VACUUM``) when more than ``slack`` of it is
        unused: deleted rows leave pages part-empty, which no incremental
        vacuum gives back.  Called after a compaction, when deletes have
        piled up; returns whether it rewrote.  Needs SQLite's dbstat table
        (without it, nothing is done)."""
        conn = self._conn()
        try:
            total, unused = conn.execute("SELECT coalesce(sum(pgsize), 0), coalesce(sum(unused), 0) "
                                         "FROM dbstat WHERE aggregate = FALSE").fetchone()
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * \
                int(conn.execute("PRAGMA page_size").fetchone()[0])
            if not total or (int(unused) + free) <= slack * (int(total) + free):
                return False
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            return False
        return True

    def backup(self, dest_path: str) -> None:
        """A consistent, compacted copy of the database (``VACUUM INTO``)."""
        self._conn().execute("VACUUM INTO ?", (dest_path,))


def _not_unicode(exc: UnicodeEncodeError) -> errors.InvalidInputError:
    bad = exc.object[exc.start:exc.end] if isinstance(exc.object, str) else "?"
    return errors.InvalidInputError(
        f"a string holds {bad!r}, which is not valid Unicode (a lone surrogate, as os.fsdecode makes of "
        "bytes that are not UTF-8): it cannot be stored or looked up")


def row_metadata(text: Any) -> dict[str, Any]:
    """A row's metadata, decoded; what no leann-store wrote (not JSON, not
    an object) is a CorruptDocstoreError."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise errors.CorruptDocstoreError(f"a docstore row's metadata is not a JSON object: {str(text)[:60]!r}")
    return value


def row_text(text: Any, what: str = "text") -> str:
    """A row's text; a value of another type is a CorruptDocstoreError."""
    if not isinstance(text, str):
        raise errors.CorruptDocstoreError(f"a docstore row's {what} is a {type(text).__name__}, not text")
    return text


def _as_count(value: Any, key: str, path: str) -> int:
    """A stored counter (text of a non-negative integer; None: 0)."""
    if value is None or value == "":
        return 0
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if n < 0 or n >= 2**62 or isinstance(value, (bytes, float)):
        raise errors.CorruptDocstoreError(f"docstore {path!r}: setting {key!r} is {str(value)[:40]!r}, "
                                          "not a count")
    return n


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
