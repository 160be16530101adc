"""``leann-store mcp``: the command's indexes as tools for coding agents.

A stdio server on the official Model Context Protocol SDK (``mcp`` 2.x, its
``MCPServer``; the ``mcp`` extra).  One process: each index's model is loaded
once, at start, and kept warm; every tool call runs on a worker thread, so
``ping`` and other requests are answered while a search runs.  Logs go to
stderr only (stdout is the protocol).  A tool that fails answers with a tool
error naming the problem, and the server lives on.

Tools (names and arguments are fixed, agents and docs rely on them):

* ``search(query, index=None, k=5, filter=None, mode=None)``: hits, best
  first, each with ``source`` (the path as the build named it), ``lines``
  (the passage's first and last line in its file), ``heading``, ``score`` and
  ``text``;
* ``list_indexes()``: name, path, documents, passages, model, bytes on disk;
* ``index_info(index)``: what ``leann-store info --json`` shows;
* ``build(index, paths)``: indexes new and changed files with the index's
  own model and says what changed; paths outside the folders the server was
  started with are refused unless ``--allow-build-anywhere``.

::

    leann-store mcp --index kb --index ~/notes-kb
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cli

#: the most hits one search may ask for
MAX_K = 100
#: search modes: the command's (``leann-store search --mode``)
MODES = cli.MODES

log = logging.getLogger("leann_store.mcp")


class ToolFailure(Exception):
    """A tool call's failure, reported to the client as a tool error."""


@dataclass
class _Index:
    name: str
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    searcher: Any = None

    def open(self) -> Any:
        """The warm searcher (the model loads once per process and model)."""
        if self.searcher is None:
            args = argparse.Namespace(filter=None, model=None, k=5, max_recompute=None, confidence=None,
                                      json=True, mode=None)
            self.searcher = cli._Searcher(self.path, args, cli._Out(quiet=True))
        return self.searcher

    def reset(self) -> None:
        if self.searcher is not None:
            self.searcher.close()
            self.searcher = None


class Indexes:
    """The server's state and its tools' logic (no protocol here: testable alone)."""

    def __init__(self, paths: list[str], *, roots: list[str] | None = None,
                 allow_anywhere: bool = False) -> None:
        self.indexes: dict[str, _Index] = {}
        for p in paths:
            path = cli._require_index(p).resolve()
            name = path.name
            while name in self.indexes:
                name = f"{path.parent.name}/{name}"
            self.indexes[name] = _Index(name, path)
        self.allow_anywhere = allow_anywhere
        self.roots = [Path(r).resolve() for r in (roots or [os.getcwd()])]
        for ix in self.indexes.values():
            rec = cli._read_build_record(ix.path)
            self.roots += [Path(r).resolve() for r in rec.get("sources", []) if Path(r).is_dir()]

    def warm(self) -> float:
        """Load every index's model now; seconds taken."""
        t0 = time.perf_counter()
        for ix in self.indexes.values():
            with ix.lock:
                ix.open()
        return time.perf_counter() - t0

    def close(self) -> None:
        for ix in self.indexes.values():
            with ix.lock:
                ix.reset()

    def _pick(self, index: str | None) -> _Index:
        if index is None:
            if len(self.indexes) == 1:
                return next(iter(self.indexes.values()))
            raise ToolFailure(f"several indexes are served: name one of {sorted(self.indexes)}")
        if index in self.indexes:
            return self.indexes[index]
        resolved = str(Path(index).expanduser().resolve())
        for ix in self.indexes.values():
            if str(ix.path) == resolved:
                return ix
        raise ToolFailure(f"unknown index {index!r}: the indexes are {sorted(self.indexes)}")

    def search(self, query: str, index: str | None = None, k: int = 5, filter: dict[str, Any] | None = None,
               mode: str | None = None) -> list[dict[str, Any]]:
        if not isinstance(query, str) or not query.strip():
            raise ToolFailure("the query is empty: ask something")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ToolFailure(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
        if mode is not None and mode not in MODES:
            raise ToolFailure(f"unknown mode {mode!r}: the modes are {list(MODES)}")
        if filter is not None and not isinstance(filter, dict):
            raise ToolFailure("filter must be an object, e.g. {\"source\": \"docs/ops.md\"}")
        ix = self._pick(index)
        with ix.lock:
            searcher = ix.open()
            try:
                flt = cli._parse_filter(None if filter is None else json.dumps(filter), searcher.paths)
            except cli.CommandError as exc:
                raise ToolFailure(str(exc).replace("--filter", "filter", 1)) from None
            try:
                hits, timing = searcher.answer(query, k=k, flt=flt, mode=mode)
            except cli.CommandError as exc:
                raise ToolFailure(str(exc)) from None
            log.info("search %r on %s: %d hits in %.0f ms", query[:80], ix.name, len(hits), timing["total_ms"])
            return [{"source": searcher.paths.show(h.metadata.get("source", h.id)),
                     "lines": _lines(h), "heading": h.metadata.get("heading"),
                     "score": round(float(h.score), 6), "text": h.text} for h in hits]

    def list_indexes(self) -> list[dict[str, Any]]:
        out = []
        for ix in self.indexes.values():
            info, _ = cli.index_info(ix.path)
            out.append({"name": ix.name, "path": str(ix.path), "documents": info["documents"],
                        "passages": info["passages"], "model": info["model"],
                        "bytes_on_disk": sum(f.stat().st_size for f in ix.path.rglob("*") if f.is_file())})
        return out

    def index_info(self, index: str) -> dict[str, Any]:
        return cli.index_info(self._pick(index).path)[0]

    def build(self, index: str, paths: list[str]) -> dict[str, Any]:
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
            raise ToolFailure("paths must be a non-empty list of files and folders")
        ix = self._pick(index)
        for p in paths:
            real = Path(p).expanduser().resolve()
            if not self.allow_anywhere and not any(real == r or r in real.parents for r in self.roots):
                raise ToolFailure(f"{p} is outside the folders this server was started with "
                                  f"({', '.join(map(str, self.roots))}); start it with "
                                  "--allow-build-anywhere to index it")
        rec = cli._read_build_record(ix.path)
        args = argparse.Namespace(sources=paths, index=str(ix.path), model=None,
                                  chunk_size=rec.get("chunk_size", cli.sources.DEFAULT_CHUNK_SIZE),
                                  overlap=rec.get("overlap"), graph_rows=None, dry_run=False, quiet=True,
                                  follow_symlinks=False)
        with ix.lock:
            ix.reset()  # the next search opens the index as the build left it
            printed = io.StringIO()
            try:
                with contextlib.redirect_stdout(printed):
                    code = cli.cmd_build(args, cli._Out(quiet=True))
            except cli.CommandError as exc:
                raise ToolFailure(str(exc)) from None
            if code != cli.EXIT_OK:
                raise ToolFailure(f"build failed ({code}): {printed.getvalue()[-500:]}")
        return dict(args.result)


def _lines(hit: Any) -> list[int] | None:
    first = hit.metadata.get("line")
    if not isinstance(first, int):
        return None
    return [first, first + hit.text.count("\n")]


def make_server(state: Indexes) -> Any:
    """The MCP server over ``state`` (the SDK is imported here, not before)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server: Any = MCPServer("leann-store", instructions=(
        "Search local leann-store indexes of code and documentation: `search` returns passages with "
        "their file and lines; `list_indexes` names the indexes; `build` re-indexes changed files."))

    def guarded(fn: Any) -> Any:
        def call(*a: Any, **kw: Any) -> Any:
            try:
                return fn(*a, **kw)
            except ToolFailure as exc:
                raise ToolError(str(exc)) from None
            except cli.CommandError as exc:
                raise ToolError(str(exc)) from None
            except Exception as exc:  # the server lives on; the client reads what failed
                log.exception("tool %s failed", fn.__name__)
                raise ToolError(f"{type(exc).__name__}: {exc}") from None
        return call

    @server.tool(description="Passages of an index most related to `query`, best first: source file, "
                             "lines, heading, score and text. `filter`: metadata filter, e.g. "
                             "{\"source\": \"docs/ops.md\"}. `index` may be left out when one is served.")
    def search(query: str, index: str | None = None, k: int = 5, filter: dict[str, Any] | None = None,
               mode: str | None = None) -> list[dict[str, Any]]:
        return guarded(state.search)(query, index=index, k=k, filter=filter, mode=mode)

    @server.tool(description="The indexes this server serves: name, path, documents, passages, model, bytes.")
    def list_indexes() -> list[dict[str, Any]]:
        return guarded(state.list_indexes)()

    @server.tool(description="What `leann-store info` shows of one index, as JSON.")
    def index_info(index: str) -> dict[str, Any]:
        return guarded(state.index_info)(index)

    @server.tool(description="Index new and changed files under `paths` into `index` (incremental, with the "
                             "index's own model); returns the files and passages added, changed, removed.")
    def build(index: str, paths: list[str]) -> dict[str, Any]:
        return guarded(state.build)(index, paths)

    return server


def cmd_mcp(args: argparse.Namespace, out: Any) -> int:
    """``leann-store mcp``: serve the indexes over stdio until stdin closes."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING if args.quiet else logging.INFO,
                        format="leann-store mcp: %(message)s")
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise cli.CommandError("the MCP server needs the mcp package: pip install 'leann-store[mcp]'",
                               cli.EXIT_NO_MODEL) from None
    t0 = time.perf_counter()
    state = Indexes(args.index, roots=args.root, allow_anywhere=args.allow_build_anywhere)
    state.warm()
    log.info("serving %s; ready in %.1f s", ", ".join(state.indexes), time.perf_counter() - t0)
    server = make_server(state)
    try:
        server.run("stdio")
    finally:
        state.close()
    return cli.EXIT_OK
