"""LeannStore: documents in, documents out; the one class every adapter maps onto.

A store is a directory::

    docstore.sqlite     documents, metadata, settings, model fingerprint,
                        the current graph generation (SQLite, WAL)
    graph-<G>.leann     the vector-free graph index of generation G
    LOCK                held (flock) by the one process that may write

Durability.  SQLite is the single commit point.  Every write call (``add``,
``delete``, ``delete_where``, ``clear``) is one SQLite transaction, committed
with ``synchronous=FULL`` before the call returns, so an acknowledged write
survives kill -9 and power loss, and a write killed in flight leaves no trace.
New rows first land in the *delta segment*: their vectors are stored in their
docstore rows and searched exactly beside the graph (so a small store is an
exact store).  The first graph is built from those vectors when the store
reaches ``StoreConfig.graph_rows`` rows.  Later, each time the delta reaches
``merge_rows``, a merge inserts its rows into the graph in C (no
re-embedding; existing nodes keep their numbers) and drops their vectors.
Every write is one commit of :mod:`leann_store.generations`, which owns the
graph's lifecycle: a new graph is written as ``graph-<G+1>.leann`` (atomic:
temp file, fsync, rename), then one transaction names its nodes and
generation G+1.  A crash before that commit leaves an orphan file that the
next writer removes; a crash after it leaves the old file, removed the same
way.  A merge or compaction that fails after a write committed (a full disk)
does not fail that write: it is retried after the next one.  Deletes and replaced versions of
graph rows simply lose their docstore row; a node without a row is a
tombstone (applied to the index when it is loaded), never returned, still
walked.  Past ``compact_fraction`` of deleted nodes (or on :meth:`compact`)
the graph is compacted from its codes alone: no ``embed`` call.

The codec that codes the graph is trained when the graph is built, on
``graph_rows`` rows at least (fewer only through :meth:`flush`).  Each merge
measures how well it codes the new rows; when they code much worse than the
rows it was trained on (the corpus changed), a
:class:`~leann_store.errors.CodecDriftWarning` says so, and
:meth:`refresh_codec` retrains it by re-embedding every row.

Concurrency.  Searches run from many threads beside one writer: a search reads
an immutable snapshot of the in-memory state and one SQLite read transaction;
writers are serialised by a lock.  A second process (or a second open store in
this process) asking to write gets :class:`StoreLockedError` naming the pid that
holds the lock; ``read_only=True`` opens see the last committed state and pick
up later commits on their next search.

>>> import numpy as np
>>> def embed(texts):                       # any model: texts -> float vectors
...     return np.array([[t.count("a"), t.count("b"), len(t) % 5 + 1.0] for t in texts])
>>> with LeannStore.temporary(embed=embed) as store:
...     ids = store.add(["aa b", "bbb", "a"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3}], ids=["x", "y", "z"])
...     [h.id for h in store.search(embed(["aab"])[0], k=2)]
...     [h.id for h in store.search(embed(["aab"])[0], k=2, filter={"n": {"$gte": 2}})]
...     store.delete(["x"]), len(store)
['x', 'z']
['z', 'y']
(1, 2)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
import weakref
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from . import _checks as checks
from . import errors, fusion
from .config import StoreConfig, config_diff
from .docstore import FILENAME as DOCSTORE_FILE
from .docstore import Docstore, row_metadata, row_text
from .generations import Generations, State, now
from .filters import Filter, FilterLike, check_metadata, compile_filter
from .index import AllowedBits, CheckedFetch, LeannIndex
from .options import SearchOptions
from .recompute import PROBE_TEXT  # noqa: F401  (the store's fingerprint text, importable from here)
from .recompute import GIVEN_MIN_COSINE, TextEmbedder, TextEmbedFn, cosine, probe, probe_mismatch, with_timeout
from .scores import similarity
from .tokens import count_tokens

FORMAT = "leann-store/store"
_FILTER_CACHE = 32  # compiled filters' allowed sets kept per store
#: coding error of newly merged rows over the graph's at its build above
#: which the store warns that the codec no longer fits (CodecDriftWarning)
CODEC_DRIFT_WARN = 1.25
#: rows a codec must have been trained on for that warning
DRIFT_MIN_ROWS = 2048


@dataclass(frozen=True)
class Record:
    """A stored document: ``embed_text`` is the string that was embedded
    (the text itself unless the caller said otherwise)."""

    id: str
    text: str
    metadata: dict[str, Any]
    embed_text: str


@dataclass(frozen=True)
class Hit:
    """A search result: ``distance`` as the metric defines it (ascending;
    NaN where the dense side did not score the hit), ``score``, higher is
    better (dense: :func:`leann_store.scores.similarity`; keyword: BM25;
    hybrid: the fused score), and ``found_by``, the side(s) that found it
    (``"dense"``, ``"keyword"``)."""

    id: str
    text: str
    metadata: dict[str, Any]
    distance: float
    score: float = float("nan")
    found_by: tuple[str, ...] = ("dense",)


@dataclass(frozen=True)
class _Allowed:
    """A filter's allowed set at one write version: the graph's part as the
    walk's packed bitset, its count of live nodes, and the delta's mask."""

    version: int
    bits: AllowedBits | None
    graph: int
    delta: np.ndarray


class Hits(list):  # type: ignore[type-arg]
    """The hits of one search, best first, with ``stats``: ``mode``,
    ``recomputed`` (passages re-embedded), ``embed_calls``, ``cache_hits``,
    ``graph``, ``delta`` and ``keyword`` (candidates from each segment and
    side), ``filter_ms``, ``keyword_ms`` (keyword modes), ``ms``."""

    stats: dict[str, Any]


_SIDES = ("dense", "keyword")


class LeannStore:
    """A durable document store with a vector-free graph index.

    Open it with :meth:`open` (a directory) or :meth:`temporary`.  ``embed``
    is ``embed(texts: list[str]) -> (len(texts), dim)`` floats from the model
    that embeds documents; the store calls it for documents added without
    embeddings and to re-embed the few passages a search needs.
    """

    def __init__(self, path: str, embed: TextEmbedFn, config: StoreConfig | None, *, model: str | None,
                 check_model: bool, read_only: bool, progress: bool | None,
                 embed_timeout: float | None = None) -> None:
        self._closed = True
        if not callable(embed):
            raise errors.InvalidInputError("embed must be callable: embed(texts) -> (len(texts), dim) floats")
        if config is not None and not isinstance(config, StoreConfig):
            raise errors.InvalidInputError("config must be a StoreConfig (see StoreConfig.from_options)")
        self.path = os.path.abspath(os.fspath(path))
        self.read_only = read_only
        self.progress = progress
        self._raw_embed = embed  # (its name is what a store records as the model)
        self._embed_timeout = None if embed_timeout is None else checks.number(
            embed_timeout, "embed_timeout", 0, None, lo_open=True)
        self._embed = with_timeout(embed, self._embed_timeout)
        self._write_lock = threading.RLock()
        self._cache_lock = threading.Lock()
        self._filter_cache: dict[str, _Allowed] = {}
        self._given_checked = False
        self._check_model = check_model
        self._defer = False  # inside deferred_graph(): no graph work until it ends
        #: why the last merge or compaction after a write failed (retried after the next write)
        self._deferred: str | None = None
        self._lock_file: Any = None
        self._temp_finalizer: Any = None
        created = False
        if read_only:
            if not os.path.isdir(self.path):
                raise FileNotFoundError(f"no store at {self.path!r}")
        else:
            created = not os.path.exists(self.path)
            os.makedirs(self.path, exist_ok=True)
            self._take_lock()
        try:
            self._docs = Docstore(self.path, read_only=read_only, progress=self._bar)
            self._init_meta(config, model, check_model)
            self._dim = self._docs.meta_int("dim")
            self._embedder = TextEmbedder(self.dim, self.config.batch_tokens, self.config.batch_size)
            self._gen = Generations(self.path, self._docs, self._dim, read_only=read_only,
                                    on_swap=self._filter_cache.clear)
        except BaseException:
            self._release_lock()
            if hasattr(self, "_docs"):
                self._docs.close()
            if created:  # a failed first open leaves nothing behind
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        self._closed = False

    # ---- opening ------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], embed: TextEmbedFn, config: StoreConfig | None = None, *,
             model: str | None = None, check_model: bool = True, read_only: bool = False,
             progress: bool | None = None, embed_timeout: float | None = None) -> "LeannStore":
        """Open (or create) the store in directory ``path``.

        Args:
            embed: ``embed(texts) -> (n, dim)`` floats, the document model.
            config: None uses the stored settings (or the defaults for a new
                store); a config that differs from the stored one is an error.
            model: the model's name, recorded with a probe vector; None: the
                function's qualified name.  Reopening with a model whose probe
                vector (or dimension) differs is a :class:`ModelMismatchError`.
            check_model: False skips that check (no probe is embedded) and
                that of embeddings handed to :meth:`add`.
            read_only: open without the write lock (many processes may).
            progress: progress bars on long work (None: when stderr is a
                terminal and the work is large).
            embed_timeout: seconds one ``embed`` call may take (None: no
                limit).  A call that takes longer fails the write or search
                that made it with a :class:`CallbackError`, and nothing
                changes; the call itself cannot be interrupted and finishes
                (or hangs) in a worker thread, its answer unused.
        """
        return cls(os.fspath(path), embed, config, model=model, check_model=check_model,
                   read_only=read_only, progress=progress, embed_timeout=embed_timeout)

    @classmethod
    def temporary(cls, embed: TextEmbedFn, config: StoreConfig | None = None, *, model: str | None = None,
                  progress: bool | None = None, embed_timeout: float | None = None) -> "LeannStore":
        """A store in a new temporary directory, removed on :meth:`close`,
        garbage collection or interpreter exit (arguments as :meth:`open`)."""
        tmp = tempfile.mkdtemp(prefix="leann-store-")
        try:
            store = cls(tmp, embed, config, model=model, check_model=True, read_only=False, progress=progress,
                        embed_timeout=embed_timeout)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        store._temp_finalizer = weakref.finalize(store, _remove_temporary, store._docs, tmp)
        return store

    def _take_lock(self) -> None:
        f = open(os.path.join(self.path, "LOCK"), "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise errors.StoreLockedError(
                f"store {self.path!r} is locked for writing by pid {holder}; close it there, "
                "or open this one with read_only=True") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def _release_lock(self) -> None:
        """Unlock, and clear the pid so no stale one is left behind.  The file
        itself stays: removing it could let two writers lock two files of one
        name (one opened before the removal, one created after)."""
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_file.seek(0)
                self._lock_file.truncate()
                self._lock_file.flush()
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _init_meta(self, config: StoreConfig | None, model: str | None, check_model: bool) -> None:
        meta = self._docs.all_meta()
        name = model if model is not None else _qualified_name(self._raw_embed)
        if "config" not in meta:  # a new store
            if self.read_only:
                raise FileNotFoundError(f"no store at {self.path!r} (the directory holds no store yet)")
            vec = probe(self._embed)
            self._config = config or StoreConfig()
            with self._docs.write() as cur:
                Docstore.set_meta(cur, {"format": FORMAT, "config": self._config.to_json(), "model": name,
                                        "probe": json.dumps([float(x) for x in vec]), "dim": str(len(vec)),
                                        "generation": "0", "version": "0", "created": now()})
            return
        if meta.get("format") != FORMAT:
            raise errors.CorruptIndexError(f"{self.path!r} is not a leann-store store")
        try:
            stored = StoreConfig.from_json(meta["config"])
            stored_probe = np.array(json.loads(meta.get("probe", "null")), dtype=np.float32) if check_model else None
            if stored_probe is not None and (stored_probe.ndim != 1 or not np.isfinite(stored_probe).all()):
                raise ValueError("the model probe is not a vector")
        except (errors.InvalidInputError, ValueError, TypeError) as exc:
            raise errors.CorruptDocstoreError(f"store {self.path!r}: its settings are damaged: {exc}") from exc
        if config is not None and config != stored:
            diff = config_diff(stored, config)
            raise errors.InvalidInputError(
                f"store {self.path!r} was created with other settings ({diff}); open it with config=None "
                "to use the stored ones")
        self._config = stored
        if check_model:
            assert stored_probe is not None
            why = probe_mismatch(stored_probe, probe(self._embed))
            if why:
                raise errors.ModelMismatchError(
                    f"store {self.path!r} was built with model {meta.get('model')!r}; the embed function given "
                    f"({name!r}) {why}; open with the same model, or check_model=False if you are sure")

    # ---- properties ------------------------------------------------------------
    @property
    def config(self) -> StoreConfig:
        return self._config

    @property
    def metric(self) -> str:
        return self._config.metric

    @property
    def dim(self) -> int:
        """Dimension of the model's vectors (from the probe at creation)."""
        return self._dim

    @property
    def has_keywords(self) -> bool:
        """Whether the store has its keyword index (keyword and hybrid search):
        always, but for a read-only open of a store an earlier version wrote
        and no writable open has upgraded yet."""
        return self._docs.has_keywords

    @property
    def model(self) -> str:
        """The embedding model's name recorded when the store was created."""
        return self._docs.get_meta("model") or ""

    def count(self) -> int:
        """Documents in the store."""
        self._check_open()
        with self._gen.read() as st:
            return st.documents

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"LeannStore({self.path!r}, documents={self.count()}, metric={self.metric!r})"

    # ---- writes ------------------------------------------------------------------
    def add(self, texts: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None] | None = None,
            ids: Sequence[str | None] | None = None, embeddings: Any = None,
            embed_texts: Sequence[str | None] | None = None, *, check_model: bool = True) -> list[str]:
        """Add or replace documents (upsert by id); returns their ids.

        Args:
            texts: the documents' texts.
            metadatas: one dict (JSON values) or None per text.
            ids: one string or None (a new uuid) per text; an existing id is
                replaced.  A repeated id: the last occurrence wins.
            embeddings: (n, dim) floats the caller already has; used to index,
                never kept once the rows are in the graph.  None: ``embed``.
            embed_texts: the exact string that was embedded, per text, when it
                differs from the text (None entries: the text).
            check_model: the first embeddings given to an open store are
                checked against ``embed`` on one row, since a search
                re-embeds with ``embed`` and vectors from another model would
                be compared with unrelated ones (a :class:`ModelMismatchError`);
                False when they come from ``embed`` itself.  A store opened
                with ``check_model=False`` never checks.

        Durable when it returns; all or nothing if interrupted.
        """
        self._check_writable()
        texts = checks.str_list(texts, "texts")
        n = len(texts)
        metas = [check_metadata(m, f"metadatas[{i}]") for i, m in
                 enumerate(checks.per_row(metadatas, n, "metadatas"))]
        ids_out = [uuid.uuid4().hex if i is None else i for i in checks.per_row(ids, n, "ids")]
        for i, x in enumerate(ids_out):
            if not isinstance(x, str) or not x:
                raise errors.InvalidInputError(f"ids[{i}] must be a non-empty string, got {x!r}")
        etexts = checks.per_row(embed_texts, n, "embed_texts")
        for i, e in enumerate(etexts):
            if e is not None and not isinstance(e, str):
                raise errors.InvalidInputError(f"embed_texts[{i}] must be a string or None")
        checks.str_list([e for e in etexts if e is not None], "embed_texts")  # valid Unicode, as texts
        emb_in = [e if e is not None else t for t, e in zip(texts, etexts)]
        if n == 0:
            return []
        if embeddings is not None:
            vecs = checks.given_embeddings(embeddings, n, self.dim)
        else:
            with self._bar(n, "embedding") as bar:
                vecs = self._embedder.embed(self._embed, emb_in, progress=bar)
        if self.metric == "cosine":
            zero = checks.zero_rows(vecs)
            if zero.size:
                raise errors.InvalidInputError(f"row {int(zero[0])} has a zero embedding, which has no cosine")
        if embeddings is not None and check_model:
            self._check_given_model(vecs[0], emb_in[0])
        keep = checks.last_occurrence(ids_out)  # positions kept, in order
        rows = [(ids_out[i], texts[i], etexts[i] if etexts[i] != texts[i] else None, metas[i]) for i in keep]
        if len(keep) < n:  # (no copy of a large, perhaps memory-mapped, input without repeats)
            vecs = vecs[keep]
        with self._write_lock:
            self._add_locked(rows, vecs)
        return ids_out

    def _check_given_model(self, given: np.ndarray, embed_text: str) -> None:
        """Vectors handed to :meth:`add` must come from the model that will
        re-embed them: checked once per open store, on one row."""
        if self._given_checked or not self._check_model:
            return
        ours = self._embedder.embed(self._embed, [embed_text])[0]
        cos = cosine(ours, given)
        if cos < GIVEN_MIN_COSINE:
            raise errors.ModelMismatchError(
                f"the embeddings given to add() were not made by this store's embed function "
                f"({self.model!r}; cosine {cos:.3f} on the same text).  A search re-embeds passages with "
                "that function, so give the model that made the embeddings, or leave embeddings out")
        self._given_checked = True

    def _add_locked(self, rows: list[tuple[str, str, str | None, str]], vecs: np.ndarray) -> None:
        st = self._gen.state
        # The first graph is built straight from vectors in hand: the delta's and these.
        if (not self._defer and st.index is None
                and len(st.delta_rows) + len(rows) >= self._config.graph_rows):
            self._first_graph(st, rows, vecs)
            return

        def edit(cur: Any) -> tuple[list[int], list[int], list[int]]:
            nodes, gone = Docstore.delete_ids(cur, [r[0] for r in rows])
            rowids = Docstore.insert(cur, [(i, t, e, m, None, None, v.tobytes())
                                           for (i, t, e, m), v in zip(rows, vecs)])
            return nodes, gone, rowids

        self._gen.commit(edit, lambda r, gen, version: _after_delete(
            st, r[0], r[1], version, add=(np.array(r[2], dtype=np.int64), vecs)))
        self._maintain()

    def _first_graph(self, st: State, rows: list[tuple[str, str, str | None, str]], vecs: np.ndarray) -> None:
        """Generation 1 from the delta plus new rows, all in one commit."""
        ids = [r[0] for r in rows]
        with self._docs.snapshot():
            replaced = {int(v[0]) for v in self._docs.by_ids(ids).values()}
        keep = np.array([i for i, r in enumerate(st.delta_rows.tolist()) if r not in replaced], dtype=np.int64)
        allv = np.concatenate([st.delta_vecs[keep], vecs]) if keep.size else vecs
        index = self._build(allv)
        base = len(keep)

        def edit(cur: Any) -> list[int]:
            if replaced:  # upserts (a new store's bulk load has none)
                Docstore.delete_ids(cur, ids)
            if base:
                Docstore.assign_nodes(cur, st.delta_rows[keep])
            return Docstore.insert(cur, [(i, t, e, m, None, base + j, None) for j, (i, t, e, m) in enumerate(rows)])

        self._gen.commit(edit, lambda rowids, gen, version: st.graph_only(
            index, np.concatenate([st.delta_rows[keep], np.array(rowids, dtype=np.int64)]), gen, version, self.dim),
            graph=index, kind="build", meta=_codec_meta(index.coding_error(_sample(allv)), len(allv)))

    @contextlib.contextmanager
    def deferred_graph(self) -> Iterator[None]:
        """Adds inside the block go to the exact delta segment only; the
        graph is built (or the delta merged) once, when the block ends
        without an error (:meth:`flush`).  For bulk loads in many batches
        (``leann_store.distributed.build_store`` uses it): one build instead
        of a first build and merges.  Each add is still durable when it
        returns.

        >>> import numpy as np
        >>> with LeannStore.temporary(embed=lambda t: np.ones((len(t), 4))) as store:
        ...     with store.deferred_graph():
        ...         _ = store.add(["a", "b"], embeddings=np.eye(4)[:2], check_model=False)
        ...         _ = store.add(["c", "d"], embeddings=np.eye(4)[2:], check_model=False)
        ...     store.stats()["search"], len(store)
        ('graph', 4)
        """
        self._check_writable()
        with self._write_lock:  # other threads' writes wait for the block
            self._defer = True
            try:
                yield
            finally:
                self._defer = False
            self.flush()

    def flush(self) -> None:
        """Merge the delta segment into the graph now, compact the graph if
        it holds deleted rows (from its codes: no ``embed`` call), and fill
        in token counts not yet computed."""
        self._check_writable()
        with self._write_lock:
            st = self._gen.state
            if st.index is None:
                if len(st.delta_rows) >= 2:  # one row: nothing to build a graph on; keep it exact
                    self._first_graph(st, [], np.zeros((0, self.dim), np.float32))
            elif len(st.delta_rows):
                self._merge(st)
            st = self._gen.state
            if st.index is not None and st.graph_live < len(st.node_row):
                self._compact(st)
            self._docs.fill_token_counts(count_tokens)
            self._deferred = None

    def compact(self) -> None:
        """Drop deleted rows from the graph now, rebuilding the lists that
        linked them from the stored codes (no ``embed`` call).  Merges and
        deletes compact by themselves once ``compact_fraction`` of the
        graph is deleted."""
        self._check_writable()
        with self._write_lock:
            st = self._gen.state
            if st.index is not None and st.graph_live < len(st.node_row):
                self._compact(st)

    def _maintain(self) -> None:
        """Merge and compact when the thresholds say so, after a write that
        has committed.  Its failure (a full disk, say) does not undo or fail
        that write: the work is retried after the next write, and a
        :class:`~leann_store.errors.MaintenanceWarning` says why it waits."""
        if self._defer:
            return
        try:
            self._maintain_now()
        except Exception as exc:  # the write that called us is durable already
            first = self._deferred is None
            self._deferred = f"{type(exc).__name__}: {exc}"
            if first:
                warnings.warn(f"store {self.path!r}: merging or compacting after a write failed and will be "
                              f"retried after the next write ({self._deferred})",
                              errors.MaintenanceWarning, stacklevel=4)
        else:
            self._deferred = None

    def _maintain_now(self) -> None:
        st = self._gen.state
        cfg = self._config
        d = len(st.delta_rows)
        if st.index is not None and d >= cfg.merge_rows and d >= cfg.merge_fraction * st.graph_live:
            self._merge(st)
        st = self._gen.state
        dead = len(st.node_row) - st.graph_live
        if st.index is not None and dead and dead >= cfg.compact_fraction * len(st.node_row):
            if st.graph_live:
                self._compact(st)
            else:
                self._clear_graph(st, keep_delta=True)

    def _merge(self, st: State) -> None:
        """Put the delta segment into the graph: its rows are inserted in C
        (nodes ``len(graph)`` on; no node is renumbered) and their vectors
        dropped, with no ``embed`` call."""
        assert st.index is not None
        index = st.index.with_added(st.delta_vecs)
        ref = float(self._docs.get_meta("codec_error") or "nan")
        error = index.coding_error(_sample(st.delta_vecs))
        drift = error / ref if ref > 0 else float("nan")
        self._gen.commit(lambda cur: Docstore.append_nodes(cur, st.delta_rows, len(st.node_row)),
                         lambda _, gen, version: st.graph_only(
                             index, np.concatenate([st.node_row, st.delta_rows]), gen, version, self.dim),
                         graph=index, kind="insert",
                         meta={"codec_drift": repr(drift)} if np.isfinite(drift) else None)
        if int(self._docs.get_meta("codec_trained_rows") or 0) >= DRIFT_MIN_ROWS:
            self._warn_drift(drift)  # (a codec trained on few rows codes any new row worse)

    def refresh_codec(self) -> None:
        """Retrain the codec and rebuild the graph over every row, re-embedded
        through ``embed`` (with a progress bar): the cure when the rows
        added since the graph was built code much worse than the rows it
        was trained on (``stats()["codec"]["drift"]``; a warning says when).
        It costs one ``embed`` of every document."""
        self._check_writable()
        with self._write_lock:
            st = self._gen.state
            live = np.flatnonzero(st.node_row >= 0)
            rowids = st.node_row[live]
            total = len(rowids) + len(st.delta_rows)
            if total == 0:
                self._clear_graph(st)
                return
            if total < 2:
                return
            with self._docs.snapshot():
                texts, toks = self._docs.embed_inputs(rowids.tolist())
            with self._bar(len(texts), "re-embedding every row") as bar:
                gvecs = self._embedder.embed(self._embed, texts, toks, progress=bar)
            order = np.concatenate([rowids, st.delta_rows])
            vecs = np.concatenate([gvecs, st.delta_vecs]) if len(st.delta_rows) else gvecs
            index = self._build(vecs)
            self._gen.commit(lambda cur: Docstore.assign_nodes(cur, order),
                             lambda _, gen, version: st.graph_only(index, order, gen, version, self.dim),
                             graph=index, kind="refresh",
                             meta=_codec_meta(index.coding_error(_sample(vecs)), len(order)))

    def _compact(self, st: State) -> None:
        """The graph without its deleted nodes, from its codes alone."""
        assert st.index is not None
        index, mapping = st.index.compacted()
        live = mapping >= 0
        node_row = np.full(len(index), -1, dtype=np.int64)
        node_row[mapping[live]] = st.node_row[live]
        self._gen.commit(lambda cur: Docstore.renumber_nodes(cur, node_row, np.arange(len(node_row))),
                         lambda _, gen, version: st.with_delta(st.delta_rows, st.delta_vecs, st.delta_sq,
                                                               index=index, node_row=node_row,
                                                               generation=gen, version=version),
                         graph=index, kind="compact")

    def _warn_drift(self, drift: float) -> None:
        if drift > CODEC_DRIFT_WARN and not getattr(self, "_drift_warned", False):
            self._drift_warned = True
            warnings.warn(
                f"store {self.path!r}: rows added since the graph was built code {drift:.2f}x worse than the "
                "rows its codec was trained on; recall may drop.  store.refresh_codec() retrains it "
                "(it re-embeds every document)", errors.CodecDriftWarning, stacklevel=4)

    def _build(self, vecs: np.ndarray) -> LeannIndex:
        return LeannIndex.build(vecs, self._config.index, progress=self.progress)

    def delete(self, ids: Iterable[str]) -> int:
        """Delete documents by id (missing ids are ignored); returns how many were."""
        self._check_writable()
        id_list = [ids] if isinstance(ids, str) else list(ids)
        for x in id_list:
            if not isinstance(x, str):
                raise errors.InvalidInputError(f"ids must be strings, got {x!r}")
        if not id_list:
            return 0
        return self._delete(lambda cur: Docstore.delete_ids(cur, id_list))

    def delete_where(self, filter: FilterLike) -> int:
        """Delete every document a filter matches; returns how many were."""
        self._check_writable()
        flt = compile_filter(filter)
        if flt is None:
            raise errors.FilterError("delete_where needs a filter (use clear() to delete everything)")
        return self._delete(lambda cur: Docstore.delete_ids(cur, self._docs.ids_matching(flt)))

    def _delete(self, edit: Callable[[Any], tuple[list[int], list[int]]]) -> int:
        """One delete transaction (nothing committed when nothing matched)."""
        with self._write_lock:
            st = self._gen.state

            deleted = []

            def run(cur: Any) -> tuple[list[int], list[int]]:
                nodes, rows = edit(cur)
                if not nodes and not rows:
                    raise _NothingToCommit
                deleted.append(len(nodes) + len(rows))
                return nodes, rows

            try:
                self._gen.commit(run, lambda r, gen, version: _after_delete(st, r[0], r[1], version),
                                 release=True)
            except _NothingToCommit:
                return 0
            self._maintain()
            return deleted[0]

    def clear(self) -> None:
        """Delete every document (the settings and model stay)."""
        self._check_writable()
        with self._write_lock:
            self._clear_graph(self._gen.state)

    def _clear_graph(self, st: State, keep_delta: bool = False) -> None:
        """No graph any more: every document deleted, or (``keep_delta``)
        only the graph's, which are all deleted already."""
        def edit(cur: Any) -> None:
            if not keep_delta:
                Docstore.clear(cur)

        if keep_delta:
            self._gen.commit(edit, lambda _, gen, version: st.with_delta(
                st.delta_rows, st.delta_vecs, st.delta_sq, index=None, node_row=_NO_NODES,
                generation=gen, version=version), graph=None)
        else:
            self._gen.commit(edit, lambda _, gen, version: st.graph_only(None, _NO_NODES, gen, version, self.dim),
                             graph=None, release=True)
        self._gen.remove_stale()

    def _check_writable(self) -> None:
        if self._closed:
            raise errors.InvalidInputError("the store is closed")
        if self.read_only:
            raise errors.InvalidInputError("this store was opened read-only")

    # ---- reads ----------------------------------------------------------------
    def get(self, ids: Iterable[str]) -> list[Record]:
        """Documents by id, in the order asked; missing ids are skipped."""
        self._check_open()
        id_list = [ids] if isinstance(ids, str) else list(ids)
        found = self._docs.by_ids([i for i in id_list if isinstance(i, str)])
        return [_record(found[i]) for i in id_list if isinstance(i, str) and i in found]

    def find(self, filter: FilterLike = None, limit: int | None = None) -> list[Record]:
        """Documents a filter matches (all for None), oldest first."""
        self._check_open()
        flt = compile_filter(filter)
        got = self._docs.records(flt, limit)
        return [_record(r) for r in got]

    def search(self, query_embedding: Any, k: int = 4, filter: FilterLike = None, *, text: str | None = None,
               mode: str | None = None, embed: TextEmbedFn | None = None, options: SearchOptions | None = None,
               **search_options: Any) -> Hits:
        """The k best documents for a query, best first.

        ``mode`` (or ``options.mode``) says what ranks them:

        * ``"dense"`` (default): nearest to ``query_embedding``, with exact
          distances (cosine: ``1 - cos``, l2: squared Euclidean, ip:
          ``-<q, x>``) and scores (higher is better, see
          :mod:`leann_store.scores`);
        * ``"keyword"``: BM25 over the keyword index for ``text``
          (``query_embedding`` may be None); ``score`` is the BM25 score,
          ``distance`` NaN; k hits whenever k matching documents hold a
          query term;
        * ``"hybrid"``: both lists fused (reciprocal rank, or weighted by
          ``alpha``: see :class:`~leann_store.options.SearchOptions`);
          ``score`` is the fused score, ``distance`` the exact distance
          where the dense side found the hit (NaN otherwise).  The dense
          side re-embeds what a dense search of k does.

        Each hit's ``found_by`` names the side(s) that found it.  ``filter``
        (a dict or a callable, see :mod:`leann_store.filters`) acts inside
        both sides, so k hits come back whenever k documents match.
        ``embed`` overrides the store's function for this call.  ``options``
        and keyword arguments of the same names (``ef``, ``rerank_ratio``,
        ``batch_size``, ``max_recompute``, ``confidence``, ``alpha``,
        ``rrf_k``, ``dense_depth``, ``keyword_depth``) say how it runs.

        >>> import numpy as np
        >>> def embed(texts):
        ...     return np.array([[t.count("a") + 1.0, t.count("b") + 1.0] for t in texts])
        >>> with LeannStore.temporary(embed=embed) as store:
        ...     _ = store.add(["configure_file copies a file", "a b", "bbb"], ids=["cf", "ab", "b"])
        ...     hits = store.search(embed(["configure file"])[0], k=2, text="configure file", mode="hybrid")
        ...     [(h.id, h.found_by) for h in hits]
        ...     [h.id for h in store.search(None, k=1, text="configureFile", mode="keyword")]
        [('cf', ('dense', 'keyword')), ('ab', ('dense',))]
        ['cf']
        """
        self._check_open()
        t0 = time.perf_counter()
        k = checks.integer(k, "k", 1)
        opts = SearchOptions.of(options, **search_options) if mode is None else \
            SearchOptions.of(options, mode=mode, **search_options)
        dense = opts.mode != "keyword"
        if opts.mode != "dense" and (not isinstance(text, str) or not text.strip()):
            raise errors.InvalidInputError(f"mode {opts.mode!r} needs the query's text (text='...'), got {text!r}")
        q = checks.query_vector(query_embedding, self.dim) if dense else None
        fn = with_timeout(embed, self._embed_timeout) if embed is not None else self._embed
        stats: dict[str, Any] = {"mode": opts.mode, "recomputed": 0, "embed_calls": 0, "cache_hits": 0,
                                 "graph": 0, "delta": 0, "keyword": 0}
        flt = compile_filter(filter)
        dense_k, kw_k = opts.depths(k) if opts.mode == "hybrid" else (k, k)
        with self._gen.read() as st:
            tf = time.perf_counter()
            allowed = self._allowed(flt, st) if dense else None
            stats["filter_ms"] = (time.perf_counter() - tf) * 1e3
            near: list[tuple[float, int]] = []
            if q is not None:
                if st.index is not None:
                    gopts = opts.replace(mode="dense") if opts.mode != "dense" else opts
                    if opts.time_budget_ms is not None:  # what the store spent so far counts too
                        spent = (time.perf_counter() - t0) * 1e3
                        gopts = gopts.replace(time_budget_ms=max(opts.time_budget_ms - spent, 1e-3))
                    near += self._search_graph(st, q, dense_k, allowed, fn, stats, gopts)
                delta = self._search_delta(st, q, dense_k, allowed)
                stats["delta"] = len(delta)
                near += delta
                near.sort()
                near = near[:dense_k]
            words: list[tuple[float, int]] = []
            if opts.mode != "dense":
                tk = time.perf_counter()
                words = self._docs.keyword_search(text or "", kw_k, flt, self._accept(flt))
                stats["keyword"] = len(words)
                stats["keyword_ms"] = (time.perf_counter() - tk) * 1e3
            ranked = self._rank(opts, near, words)[:k]
            docs = self._docs.by_rowids([r for r, _, _, _ in ranked])
        hits = Hits()
        for r, dist, score, sides in ranked:
            if r in docs:
                _, i, body, _, meta = docs[r]
                hits.append(Hit(row_text(i, "id"), row_text(body), row_metadata(meta), dist, score, sides))
        stats["ms"] = (time.perf_counter() - t0) * 1e3
        hits.stats = stats
        return hits

    def _rank(self, opts: SearchOptions, near: list[tuple[float, int]],
              words: list[tuple[float, int]]) -> list[tuple[int, float, float, tuple[str, ...]]]:
        """(rowid, distance, score, found_by) best first, by the mode."""
        nan = float("nan")
        if opts.mode == "dense":
            return [(r, d, similarity(self.metric, d), ("dense",)) for d, r in near]
        if opts.mode == "keyword":
            return [(r, nan, s, ("keyword",)) for s, r in words]
        dist = {r: d for d, r in near}
        scored = [(-d, r) for d, r in near]  # higher is better on both sides
        fused = fusion.rrf([scored, words], k=opts.rrf_k) if opts.alpha is None else \
            fusion.weighted(scored, words, opts.alpha)
        return [(r, dist.get(r, nan), s, tuple(_SIDES[i] for i in sides)) for s, r, sides in fused]

    def _accept(self, flt: Filter | None) -> Callable[[int], bool] | None:
        """A callable filter as a rowid test for the keyword side (a dict
        filter runs as SQL in the keyword statement itself)."""
        if flt is None or flt.sql is not None:
            return None
        return {int(r) for r, _ in self._docs.matching_rows(flt)}.__contains__

    def _allowed(self, flt: Filter | None, st: State) -> _Allowed | None:
        """What a filter allows in each segment, cached per write version for
        dict filters (the graph's part packed once, as the walk reads it);
        None: no filter."""
        if flt is None:
            return None
        if flt.key is not None:
            hit = self._filter_cache.get(flt.key)
            if hit is not None and hit.version == st.version:
                return hit
        rows = self._docs.matching_rows(flt)
        nodes = np.array([n for _, n in rows if n is not None], dtype=np.int64)
        delta = np.array([r for r, n in rows if n is None], dtype=np.int64)
        gmask = np.zeros(len(st.node_row), dtype=bool)
        gmask[nodes[nodes < len(st.node_row)]] = True
        gmask &= st.node_row >= 0
        bits = st.index.allowed_bits(gmask) if st.index is not None else None
        got = _Allowed(st.version, bits, int(gmask.sum()), np.isin(st.delta_rows, delta))
        if flt.key is not None:
            with self._cache_lock:
                if len(self._filter_cache) >= _FILTER_CACHE:
                    self._filter_cache.pop(next(iter(self._filter_cache)))
                self._filter_cache[flt.key] = got
        return got

    def _search_graph(self, st: State, q: np.ndarray, k: int, allowed: _Allowed | None,
                      fn: TextEmbedFn, stats: dict[str, Any], opts: SearchOptions) -> list[tuple[float, int]]:
        assert st.index is not None
        n_ok = st.graph_live if allowed is None else allowed.graph
        if n_ok == 0:
            return []
        res = st.index.search(q, k=min(k, n_ok), embed=self._node_fetcher(st, fn),
                              allowed=allowed.bits if allowed is not None else None, options=opts)
        for key in ("recomputed", "embed_calls", "cache_hits", "stopped", "engine_us", "fetch_us"):
            if key in res.stats:
                stats[key] = stats.get(key, 0) + int(res.stats[key])
        out = [(float(d), int(st.node_row[i])) for i, d in zip(res.ids.tolist(), res.distances.tolist())
               if i >= 0 and st.node_row[i] >= 0]
        stats["graph"] = len(out)
        return out

    def _node_fetcher(self, st: State, fn: TextEmbedFn) -> CheckedFetch:
        """Graph nodes -> their rows' stored embed strings -> ``fn``."""
        return self._embedder.fetcher(fn, lambda nodes: self._docs.embed_inputs(st.node_row[nodes].tolist()))

    def _search_delta(self, st: State, q: np.ndarray, k: int, allowed: _Allowed | None) -> list[tuple[float, int]]:
        rows, vecs, sq = st.delta_rows, st.delta_vecs, st.delta_sq
        if allowed is not None:
            rows, vecs, sq = rows[allowed.delta], vecs[allowed.delta], sq[allowed.delta]
        if len(rows) == 0:
            return []
        d = exact_distances(self.metric, q, vecs, sq)
        top = np.argsort(d, kind="stable")[:k]
        return [(float(d[i]), int(rows[i])) for i in top]

    def embeddings(self, ids: Sequence[str], *, embed: TextEmbedFn | None = None) -> np.ndarray:
        """Embeddings of documents (float32, in the order asked): delta rows
        from their stored vectors, graph rows re-embedded through ``embed``
        (for MMR).  An unknown id is an :class:`UnknownIdError`."""
        self._check_open()
        id_list = list(ids)
        out = np.empty((len(id_list), self.dim), dtype=np.float32)
        with self._gen.read() as st:
            found = self._docs.by_ids(id_list)
            missing = [i for i in id_list if i not in found]
            if missing:
                raise errors.UnknownIdError(f"unknown ids: {missing[:8]}")
            rowids = np.array([found[i][0] for i in id_list], dtype=np.int64)
            pos = {int(r): j for j, r in enumerate(st.delta_rows.tolist())}
            redo = []
            for j, r in enumerate(rowids.tolist()):
                if r in pos:
                    out[j] = st.delta_vecs[pos[r]]
                else:
                    redo.append(j)
            if redo:
                texts, toks = self._docs.embed_inputs(rowids[redo].tolist())
                out[redo] = self._embedder.embed(embed or self._embed, texts, toks)
        return out

    # ---- upkeep -----------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Documents, tombstones, bytes and settings, as a dict.

        ``search`` is ``"exact"`` while the store holds fewer than
        ``config.graph_rows`` documents: it then keeps their vectors and
        scans them (``bytes_per_passage`` counts those vectors); from
        ``graph_rows`` on it is ``"graph"``, the vector-free index.
        ``docstore_space`` splits the docstore file: ``text``,
        ``metadata``, ``vectors`` (the delta's), ``keyword_index``,
        ``free`` (pages the file holds for reuse) and ``other`` (SQLite's
        own structures, ids and row keys).
        """
        self._check_open()
        with self._gen.read() as st:
            meta = self._docs.all_meta()
            space = self._docs.space()
        index_bytes = self._gen.graph_bytes() if st.index is not None else 0
        docs = st.documents
        ic = self._config.index
        return {
            "documents": docs,
            "search": "graph" if st.index is not None else "exact",
            "graph_rows": st.graph_live,
            "delta_rows": len(st.delta_rows),
            "deleted": len(st.node_row) - st.graph_live,
            "index_bytes": index_bytes,
            "bytes_per_passage": (index_bytes + int(st.delta_vecs.nbytes)) / docs if docs else 0.0,
            "delta_bytes": int(st.delta_vecs.nbytes),
            "docstore_bytes": space["file"],
            "docstore_space": space,
            "keyword_bytes": space["keyword_index"],
            "dim": self.dim,
            "metric": self.metric,
            "model": meta.get("model"),
            "codec": _codec_stats(st.index, meta),
            "graph": {"M": ic.M, "hub_degree": ic.resolved_hub_degree, "degree": ic.resolved_degree},
            "generation": st.generation,
            "last_merge": json.loads(meta["last_merge"]) if "last_merge" in meta else None,
            "maintenance_deferred": self._deferred,
            "created": meta.get("created"),
        }

    def check(self) -> None:
        """The store's consistency check; raises CorruptIndexError listing
        every problem found: SQLite integrity, the index file's checksums,
        the id maps both ways, every live node reachable, graph invariants."""
        self._check_open()
        problems = self._docs.integrity_problems() + self._gen.problems()
        if problems:
            raise errors.CorruptIndexError(f"store {self.path!r}: " + "; ".join(problems))

    @staticmethod
    def is_store(path: str | os.PathLike[str]) -> bool:
        """Whether directory ``path`` holds a store (its docstore file)."""
        return Docstore.exists(os.fspath(path))

    def snapshot(self, dest: str | os.PathLike[str], *, replace: bool = False) -> None:
        """Write a consistent copy of the store to directory ``dest``: the
        docstore through SQLite (``VACUUM INTO``) and the current graph file,
        taken under the write lock.

        ``dest`` may be absent or empty; with ``replace=True`` it may also
        hold a store, which is replaced whole (the copy is written beside it
        and renamed in: ``dest`` holds the old store or the new one, never
        half of either).  Any other non-empty directory is refused.  The
        store's own directory: nothing to copy (every write is durable when
        it returns); the delta is merged (:meth:`flush`) if writable.
        """
        self._check_open()
        target = Path(os.path.abspath(os.fspath(dest)))
        if target.exists() and target.resolve() == Path(self.path).resolve():
            if not self.read_only:
                self.flush()
            return
        if target.exists() and any(target.iterdir()):
            if not self.is_store(target):
                raise errors.StoreExistsError(f"{str(target)!r} is a non-empty directory that holds no store; "
                                              "choose an empty or new one")
            if not replace:
                raise errors.StoreExistsError(f"{str(target)!r} already holds a store (replace=True replaces it)")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.saving-{uuid.uuid4().hex}")
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
        try:
            staging.mkdir()
            with self._write_lock:
                st = self._gen.state
                if st.index is not None:
                    shutil.copyfile(self._gen.graph_file(st.generation), staging / f"graph-{st.generation}.leann")
                self._docs.backup(str(staging / DOCSTORE_FILE))
            if target.exists():
                target.rename(retired)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(retired, ignore_errors=True)

    def close(self) -> None:
        """Release the write lock and the database; a temporary store is removed."""
        if self._closed:
            return
        with self._write_lock:
            self._closed = True
            self._docs.close()
            self._release_lock()
        if self._temp_finalizer is not None:
            self._temp_finalizer()

    def _check_open(self) -> None:
        if self._closed:
            raise errors.InvalidInputError("the store is closed")

    def __enter__(self) -> "LeannStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._closed:
                self._docs.close()
                self._release_lock()

    def _bar(self, total: int, what: str) -> Any:
        show = self.progress
        if show is None:
            import sys
            show = total >= 2000 and sys.stderr.isatty()
        if not show:
            return contextlib.nullcontext(None)
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=what, unit="passage")


# ---- helpers -------------------------------------------------------------------
def exact_distances(metric: str, q: np.ndarray, x: np.ndarray, sq: np.ndarray | None = None) -> np.ndarray:
    """Distances of float32 rows x (squared norms ``sq``) to query q, as the
    index reports them.  ``einsum`` keeps the product on this thread: a
    threaded BLAS matrix-vector product costs more than it saves at these
    sizes, on a busy machine most of all."""
    dots = np.einsum("ij,j->i", x, q)
    if sq is None:
        sq = np.einsum("ij,ij->i", x, x)
    if metric == "ip":
        return -dots
    qq = float(np.dot(q, q))
    if metric == "cosine":
        return 1.0 - dots / np.maximum(np.sqrt(sq) * np.sqrt(qq), 1e-30)
    return np.maximum(sq - 2.0 * dots + qq, 0.0)


def _codec_stats(index: LeannIndex | None, meta: Mapping[str, str]) -> dict[str, Any] | None:
    """The search codes' shape and fit (None without a graph): ``error``,
    the coding error of the rows it was trained on, and ``drift``, that of
    the last merged rows over it (see :data:`CODEC_DRIFT_WARN`)."""
    codec = index.search_codec if index is not None else None
    if codec is None:
        return None
    return {"subspaces": codec.num_subspaces, "bits": codec.bits, "code_bytes": codec.code_bytes,
            "pca_dim": codec.pca_dim,
            "error": float(meta["codec_error"]) if "codec_error" in meta else None,
            "drift": float(meta["codec_drift"]) if "codec_drift" in meta else None}


class _NothingToCommit(Exception):
    """Raised inside a delete's transaction when nothing matched: rolled back, no new version."""


_NO_NODES = np.zeros(0, np.int64)


def _after_delete(st: State, nodes: list[int], rows: list[int], version: int,
                  add: tuple[np.ndarray, np.ndarray] | None = None) -> State:
    """The state after a committed delete (and add to the delta)."""
    node_row = st.node_row
    if nodes:
        node_row = node_row.copy()
        node_row[nodes] = -1
        assert st.index is not None
        st.index.delete(np.array(nodes, dtype=np.int64))
    delta_rows, delta_vecs, delta_sq = st.delta_rows, st.delta_vecs, st.delta_sq
    if rows:
        keep = ~np.isin(delta_rows, np.array(rows, dtype=np.int64))
        delta_rows, delta_vecs, delta_sq = delta_rows[keep], delta_vecs[keep], delta_sq[keep]
    if add is not None:
        delta_rows = np.concatenate([delta_rows, add[0]])
        delta_vecs = np.concatenate([delta_vecs, add[1]])
        delta_sq = np.concatenate([delta_sq, np.einsum("ij,ij->i", add[1], add[1])])
    return State(st.index, node_row, delta_rows, delta_vecs, st.generation, version, delta_sq)


def _codec_meta(codec_error: float, rows: int) -> dict[str, str]:
    """What a newly trained codec records: its coding error on the rows it
    was trained on (the reference of later drift) and their count."""
    return {"codec_error": repr(codec_error), "codec_drift": "1.0", "codec_trained_rows": str(rows)}


def _sample(x: np.ndarray, rows: int = 4096) -> np.ndarray:
    """At most ``rows`` rows of x, evenly spread (deterministic)."""
    return x if len(x) <= rows else x[np.linspace(0, len(x) - 1, rows).astype(np.int64)]


def _record(row: tuple[Any, ...]) -> Record:
    _, i, text, etext, meta = row
    text = row_text(text)
    return Record(row_text(i, "id"), text, row_metadata(meta), row_text(etext, "embedded text") if etext is not None
                  else text)


def _qualified_name(fn: Any) -> str:
    owner = getattr(fn, "__self__", None)
    if owner is not None:
        return f"{type(owner).__module__}.{type(owner).__qualname__}.{getattr(fn, '__name__', '')}"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _remove_temporary(docs: Docstore, path: str) -> None:
    docs.close()
    shutil.rmtree(path, ignore_errors=True)
