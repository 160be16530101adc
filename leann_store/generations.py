"""The graph's lifecycle in one place: generations, the state snapshot, one commit.

A store's searchable state is the graph file ``graph-<G>.leann`` of the
current generation G, the docstore rows that name their graph node (or wait
in the exact delta segment with their vectors), and a write counter.  Every
write of the store -- an add to the delta, a delete, the first graph, a merge,
a codec refresh, a compaction, a clear -- is one :meth:`Generations.commit`:

1. a new graph (if the write makes one) is saved as ``graph-<G+1>.leann``
   (temp file, fsync, rename: never half-written);
2. one SQLite transaction runs the write's row edits, names the generation,
   records what happened and bumps the write counter -- the one commit point;
   if it fails, the new file is removed and nothing changed;
3. the in-memory :class:`State` is swapped whole (searches in flight keep the
   snapshot they hold), and the old generation's file is removed;
4. when the write dropped rows or vectors, their pages go back to the file
   system.

A crash between 1 and 2 leaves an orphan file, one after 2 an old file: the
next writer to open the store removes both (:meth:`Generations.remove_stale`).
Readers (:meth:`Generations.read`) see the in-memory state and one SQLite
read transaction of the same write counter.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from . import errors
from .docstore import Docstore
from .index import LeannIndex

T = TypeVar("T")
#: ``commit(graph=KEEP)``: the write leaves the graph as it is
KEEP: Any = object()
_EMPTY_ROWS = np.zeros(0, np.int64)
#: times a load retries when a writer removed the generation it read (each
#: retry reads a newer commit, so a few suffice unless writers commit nonstop)
_LOAD_TRIES = 50


@dataclass(frozen=True)
class State:
    """What a search reads: replaced whole by writers, never mutated (the
    index's tombstones aside, which the index guards itself)."""

    index: LeannIndex | None
    node_row: np.ndarray      #: graph node -> docstore rowid, -1 for tombstones
    delta_rows: np.ndarray    #: rowids of the delta segment
    delta_vecs: np.ndarray    #: their vectors (float32, rows as given)
    generation: int
    version: int
    delta_sq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  #: their squared norms

    #: graph nodes that hold a document (counted once)
    graph_live: int = field(init=False)

    def __post_init__(self) -> None:
        if len(self.delta_sq) != len(self.delta_rows):
            object.__setattr__(self, "delta_sq", np.einsum("ij,ij->i", self.delta_vecs, self.delta_vecs))
        object.__setattr__(self, "graph_live", int((self.node_row >= 0).sum()))

    @property
    def documents(self) -> int:
        return self.graph_live + len(self.delta_rows)

    def with_delta(self, rows: np.ndarray, vecs: np.ndarray, sq: np.ndarray | None = None, *,
                   generation: int | None = None, version: int | None = None,
                   index: Any = KEEP, node_row: np.ndarray | None = None) -> "State":
        """This state with another delta segment (and whatever else is named)."""
        return State(self.index if index is KEEP else index,
                     self.node_row if node_row is None else node_row, rows, vecs,
                     self.generation if generation is None else generation,
                     self.version if version is None else version,
                     sq if sq is not None else np.zeros(0, np.float32))

    def graph_only(self, index: LeannIndex | None, node_row: np.ndarray, generation: int, version: int,
                   dim: int) -> "State":
        """A state whose every row is in the graph (the delta is empty)."""
        return State(index, node_row, _EMPTY_ROWS, np.zeros((0, dim), np.float32), generation, version)


class Generations:
    """Owns a store's graph files, its in-memory state and the docstore's
    node columns (see the module docs)."""

    def __init__(self, path: str, docs: Docstore, dim: int, *, read_only: bool,
                 on_swap: Callable[[], None] = lambda: None) -> None:
        self.path = path
        self.docs = docs
        self.dim = dim
        self.read_only = read_only
        self._on_swap = on_swap  # called with the swap lock held (the store drops its filter cache)
        self._lock = threading.Lock()
        self._state = self.load()
        if not read_only:
            self.remove_stale()

    # ---- files ---------------------------------------------------------------
    def graph_file(self, generation: int) -> str:
        return os.path.join(self.path, f"graph-{generation}.leann")

    def remove_stale(self) -> None:
        """Remove every graph file but the current generation's (orphans of
        a crash before or after a commit)."""
        keep = os.path.basename(self.graph_file(self._state.generation))
        for name in os.listdir(self.path):
            if name.startswith("graph-") and name != keep:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(self.path, name))

    def graph_bytes(self) -> int:
        """Bytes of the current graph file (0 without a graph)."""
        st = self._state
        return os.path.getsize(self.graph_file(st.generation)) if st.index is not None else 0

    # ---- reading -------------------------------------------------------------
    @property
    def state(self) -> State:
        """The state of the last commit (a writer's view: call with the
        store's write lock held to build on it)."""
        return self._state

    def load(self) -> State:
        """The committed state, read inside one read transaction.  A writer
        in another process may commit a newer generation and remove this
        one's file between the transaction and the file's load: then the
        newer state is read (a read-only open races writers this way)."""
        for attempt in range(_LOAD_TRIES):
            with self.docs.snapshot():
                version = self.docs.version()
                gen = self.docs.generation()
                nodes, rowids = self.docs.graph_rows()
                delta_rows, delta_vecs = self.docs.delta_rows(self.dim)
            try:
                return self._state_of(gen, version, nodes, rowids, delta_rows, delta_vecs)
            except FileNotFoundError:
                if attempt + 1 == _LOAD_TRIES or self.docs.generation() == gen:
                    raise  # the file of the current generation is missing: a real loss
        raise AssertionError("unreachable")  # pragma: no cover

    def _state_of(self, gen: int, version: int, nodes: np.ndarray, rowids: np.ndarray,
                  delta_rows: np.ndarray, delta_vecs: np.ndarray) -> State:
        index = None
        node_row = np.full(0, -1, dtype=np.int64)
        if gen > 0:
            index = LeannIndex.load(self.graph_file(gen))
            node_row = np.full(len(index), -1, dtype=np.int64)
            if nodes.size and (nodes.min() < 0 or nodes.max() >= len(index)):
                raise errors.CorruptIndexError(f"store {self.path!r}: docstore names nodes outside the graph")
            node_row[nodes] = rowids
            dead = np.flatnonzero(node_row < 0)
            if dead.size:
                index.delete(dead)
        elif nodes.size:
            raise errors.CorruptIndexError(f"store {self.path!r}: rows name graph nodes but no graph exists")
        return State(index, node_row, delta_rows, delta_vecs, gen, version)

    @contextlib.contextmanager
    def read(self) -> Iterator[State]:
        """A read snapshot: one SQLite read transaction and the in-memory
        state of the same write counter.  A writer swaps its state just after
        its commit, so a reader that lands in between waits for it; a
        read-only store loads the newer state inside its snapshot."""
        for _ in range(10_000):
            with self.docs.snapshot():
                version = self.docs.version()
                st = self._state
                if st.version != version and self.read_only:
                    try:
                        st = self.load()
                    except FileNotFoundError:  # the writer swapped graph files: a newer snapshot has it
                        continue
                    with self._lock:
                        if st.version > self._state.version:
                            self._state = st
                            self._on_swap()
                if st.version == version:
                    yield st
                    return
            time.sleep(0.0005)
        raise errors.NativeError("internal: the store's state did not settle")  # pragma: no cover

    def problems(self) -> list[str]:
        """What disagrees between the docstore's node columns, the state in
        memory and the graph file on disk (empty: consistent)."""
        out: list[str] = []
        with self.read() as st:
            nodes, rowids = self.docs.graph_rows()
            drows, _ = self.docs.delta_rows(self.dim)
            n_docs = self.docs.count()
        if n_docs != len(nodes) + len(drows):
            out.append(f"{n_docs} documents but {len(nodes)} graph rows and {len(drows)} delta rows")
        if st.index is None:
            if len(nodes):
                out.append("rows name graph nodes but the store has no graph")
        else:
            try:
                disk = LeannIndex.load(self.graph_file(st.generation))
            except errors.LeannError as exc:
                out.append(f"index file: {exc}")
                disk = None
            if disk is not None and len(disk) != len(st.index):
                out.append(f"index file holds {len(disk)} nodes, memory {len(st.index)}")
            expect = np.full(len(st.index), -1, dtype=np.int64)
            if nodes.size and (nodes.min() < 0 or nodes.max() >= len(expect)):
                out.append("docstore names nodes outside the graph")
            else:
                expect[nodes] = rowids
            if not np.array_equal(expect, st.node_row):
                out.append("node -> row map in memory differs from the docstore")
            for node in range(len(st.index)):
                if st.index.is_deleted(node) != (expect[node] < 0):
                    out.append(f"node {node}: tombstone disagrees with the docstore")
                    break
            out += graph_problems(st.index)
        if not np.array_equal(np.sort(drows), np.sort(st.delta_rows)):
            out.append("delta rows in memory differ from the docstore")
        return out

    # ---- the one transition ----------------------------------------------------
    def commit(self, edit: Callable[[sqlite3.Cursor], T], state: Callable[[T, int, int], State], *,
               graph: Any = KEEP, kind: str | None = None, meta: dict[str, Any] | None = None,
               release: bool = False) -> State:
        """Commit one write (see the module docs) and return the new state.

        Args:
            edit: the write's row edits, run inside the transaction; what it
                returns is handed to ``state``.
            state: ``state(edit_result, generation, version)`` -> the new
                in-memory state (called after the commit).
            graph: the new graph (None: no graph any more); ``KEEP``: the
                write leaves the graph and its generation as they are.
            kind: what made the new graph ("build", "insert", "refresh",
                "compact", "clear"), recorded as the last merge.
            meta: settings to record in the same transaction.
            release: give free pages back after the commit (the write
                dropped rows or vectors).
        """
        old = self._state
        new_graph = graph is not KEEP
        gen = old.generation if not new_graph else (old.generation + 1 if graph is not None else 0)
        if new_graph and graph is not None:
            graph.save(self.graph_file(gen))
        try:
            with self.docs.write() as cur:
                result = edit(cur)
                items = dict(meta or {})
                if new_graph:
                    items["generation"] = str(gen)
                    rows = len(graph) if graph is not None else 0
                    items["last_merge"] = json.dumps({"at": now(), "rows": rows, "generation": gen, "kind": kind})
                if items:
                    Docstore.set_meta(cur, items)
                version = Docstore.bump_version(cur)
        except BaseException:
            if new_graph and graph is not None:
                with contextlib.suppress(OSError):
                    os.remove(self.graph_file(gen))
            raise
        st = state(result, gen, version)
        self._swap(st)
        if kind == "compact":  # deletes have piled up: their rows' part-empty pages too
            self.docs.defragment()
        if new_graph or release:
            self.docs.release_free_pages()
        return st

    def _swap(self, st: State) -> None:
        with self._lock:
            old = self._state.generation
            self._state = st
            self._on_swap()
        if old != st.generation:
            with contextlib.suppress(OSError):
                os.remove(self.graph_file(old))


def graph_problems(index: LeannIndex) -> list[str]:
    """Neighbour ids in range, no self links, degrees within caps, every
    live node reachable from the entry point."""
    n = len(index)
    out: list[str] = []
    seen = np.zeros(n, dtype=bool)
    stack = [index.entry_point]
    seen[index.entry_point] = True
    for level in range(index.max_level, 0, -1):
        for node in range(n):
            if index.level(node) >= level:
                nb = index.neighbors(node, level)
                if len(nb) > index.max_degree(level):
                    out.append(f"node {node} has {len(nb)} links at level {level}")
    while stack:
        node = stack.pop()
        nb = index.neighbors(node, 0)
        if nb.size and (nb.min() < 0 or nb.max() >= n or (nb == node).any()):
            out.append(f"node {node} has an invalid link")
            continue
        if len(nb) > index.max_degree(0):
            out.append(f"node {node} has {len(nb)} links at level 0")
        fresh = nb[~seen[nb]]
        seen[fresh] = True
        stack.extend(fresh.tolist())
        # upper levels lead down to level 0 through the same nodes
    unreached = [i for i in np.flatnonzero(~seen).tolist() if not index.is_deleted(i)]
    if unreached:
        out.append(f"{len(unreached)} live nodes are unreachable (first: {unreached[:5]})")
    return out


def now() -> str:
    """UTC time as the store records it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
