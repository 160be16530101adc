"""The ``leann-store`` command: index folders, ask questions, offline.

::

    leann-store build docs/ notes.md --index kb     # incremental: re-run after edits
    leann-store search kb "how do I rotate the logs?" -k 5
    leann-store search kb configure_file --mode keyword  # BM25 only: no model loaded
    leann-store info kb
    leann-store check kb
    leann-store demo                                # the standard library's docstrings

Passages are embedded with the default model (all-MiniLM-L6-v2 from the
``hf`` extra) or ``--model DIR``; the index keeps no embeddings, searches
re-embed the few passages they visit.  ``build`` keeps a content digest per
file in each passage's metadata (``source``, ``file_hash``) and on a re-run
embeds only new and changed files, deleting the passages of changed and
removed ones.

``search --mode`` is ``hybrid`` by default: the dense ranking fused with
BM25 over the store's keyword index.  On the dev corpus's 2,000 labelled
keyword queries it finds the answer in the top 10 more often than either
side alone (``benchmarks/hybrid_bench.py``), the keyword side costs
milliseconds beside the query's embedding, and it re-embeds exactly what a
dense search does.  ``dense`` and ``keyword`` (no model needed) remain.

Exit status: 0 done, 1 failed (a store or model error, printed), 2 bad usage
or a missing path or index, 3 nothing to index, 4 the index was made with
another model, 5 no model installed, 130 interrupted (the index keeps its
last committed state).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import sources
from ..errors import FilterError, LeannError, ModelMismatchError
from ..options import MODES

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_EMPTY, EXIT_MODEL_MISMATCH, EXIT_NO_MODEL = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
#: ``build --ray`` without an address: a local Ray
_LOCAL_RAY = "local"
#: the command's own record in an index directory: how it was built (the
#: store ignores files it does not know)
BUILD_FILE = "leann-cli.json"
#: ``search --mode`` default (see the module docs for why)
DEFAULT_SEARCH_MODE = "hybrid"
#: sample questions of ``demo``
DEMO_QUESTIONS = (
    # (question, what a Python user expects in first place)
    ("How do I parse a JSON string into Python objects?", ("json.loads", "json.decoder.JSONDecoder")),
    ("Run a shell command and capture its output",
     ("subprocess.run", "subprocess.check_output", "subprocess.getoutput", "subprocess.getstatusoutput")),
    ("Create a temporary directory that is removed automatically", ("tempfile.TemporaryDirectory",)),
    ("Find every match of a regular expression in a string", ("re.finditer", "re.findall")),
    ("Copy a file together with its permission bits", ("shutil.copy",)),
    ("Compress bytes with gzip", ("gzip.compress",)),
)
DEMO_LIMIT = 3000


class CommandError(Exception):
    """A failure the command reports in one line, with its exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- output

class _Out:
    """Messages to stderr (silent with --quiet), results to stdout, bars on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def bar(self, total: int | None, desc: str, unit: str = "file") -> Any:
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit=unit, disable=self.quiet, file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5, smoothing=0.1)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _snippet(text: str, width: int = 220) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1].rstrip() + "…"


# ---------------------------------------------------------------- model and store

def _load_model(model: str | None, out: _Out) -> Any:
    from .models import load_model
    t0 = time.perf_counter()
    embedder = load_model(model)
    out.note(f"model {embedder.name} ({embedder.dim}-d, {embedder.threads} threads) "
             f"loaded in {time.perf_counter() - t0:.1f} s; {embedder.note or embedder.runtime}")
    return embedder


def _no_embed(texts: Sequence[str]) -> np.ndarray:
    raise CommandError("this command does not embed (no model loaded)")


def _require_index(path: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise CommandError(f"no index at {path}: build one with `leann-store build SOURCE --index {path}`",
                           EXIT_USAGE)
    if not (p / "docstore.sqlite").is_file():
        raise CommandError(f"{path} is not a leann-store index (no docstore.sqlite in it)", EXIT_USAGE)
    return p


def _read_build_record(index: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((index / BUILD_FILE).read_text()))
    except (OSError, ValueError):
        return {}


def _write_build_record(index: Path, record: dict[str, Any]) -> None:
    """Atomically (temp file, fsync, rename): a crash leaves the old record."""
    # not mkstemp, whose 0600 ignores the umask: the record is made like
    # every other file of the index (0666 less the umask), exclusively
    tmp = str(index / f".leann-cli-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, index / BUILD_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _open_for_reading(index: Path) -> Any:
    """The store without its model: for info, check, and what a command
    decides before it needs the model (no framework is imported)."""
    from ..store import LeannStore
    return LeannStore.open(index, embed=_no_embed, check_model=False, read_only=True, progress=False)


def _model_for(index: Path, model: str | None) -> str | None:
    """--model, else the model directory the index was built with (None: the default)."""
    if model is not None:
        return model
    path = _read_build_record(index).get("model_path")
    return str(path) if path else None


def _mismatch(index: Path, recorded: str | None, wanted: str) -> CommandError:
    """What the command user can do about an index made with another model."""
    return CommandError(
        f"the index {index} was built with the model {recorded!r}, not {wanted!r}: pass "
        "`--model DIR` naming the model folder it was built with, or build a new index "
        f"(`leann-store build SOURCE --index NEW_DIR`)", EXIT_MODEL_MISMATCH)


def _check_model_name(index: Path, recorded: str | None, model: str | None) -> str:
    """The identity of the model ``model`` names, refused before anything
    loads when the index records another model of this command's kind (the
    store's probe check, after loading, catches the rest)."""
    from .models import model_identity, resolve_model_path
    wanted = model_identity(resolve_model_path(model))
    if recorded and recorded.startswith("sentence-transformers:") and recorded != wanted:
        raise _mismatch(index, recorded, wanted)
    return wanted


def _open_with_model(index: Path, embedder: Any, recorded: str | None, **kw: Any) -> Any:
    from ..store import LeannStore
    try:
        return LeannStore.open(index, embed=embedder, model=embedder.identity, **kw)
    except ModelMismatchError:
        raise _mismatch(index, recorded, embedder.identity) from None


def _exact_line(stats: dict[str, Any], threshold: int) -> str | None:
    """Why a store searches exactly (None: it has a graph)."""
    if stats["search"] != "exact":
        return None
    return (f"exact: {stats['documents']} passages, fewer than graph_rows={threshold}, so every vector "
            f"is kept ({stats['bytes_per_passage']:.0f} B/passage) and searched without recomputing; a "
            f"graph (tens of B/passage) is built at {threshold} passages, or sooner with "
            "`build --graph-rows N` on a new index")


# ---------------------------------------------------------------- build

@dataclass
class _Indexed:
    """What the index holds of one source file."""
    ids: list[str] = field(default_factory=list)
    hashes: set[str] = field(default_factory=set)
    chunking: set[str] = field(default_factory=set)


@dataclass
class _Plan:
    new: list[sources.Document] = field(default_factory=list)
    changed: list[sources.Document] = field(default_factory=list)
    unchanged: int = 0
    blank: int = 0                                     # files without text
    removed: list[str] = field(default_factory=list)   # sources whose passages go
    unreadable: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.new or self.changed or self.removed)


def _passage_id(source: str, index: int) -> str:
    """Stable per (file, position): a rebuilt file's passages replace its old ones."""
    return f"{hashlib.blake2b(source.encode(), digest_size=10).hexdigest()}:{index}"


def _under(source: str, roots: Sequence[Path]) -> bool:
    p = Path(source)
    return any(p == r or r in p.parents for r in roots)


def _indexed_files(store: Any) -> dict[str, _Indexed]:
    held: dict[str, _Indexed] = {}
    for rec in store.find(None):
        src = rec.metadata.get("source")
        if not isinstance(src, str):
            continue  # not a passage this command wrote
        entry = held.setdefault(src, _Indexed())
        entry.ids.append(rec.id)
        entry.hashes.add(str(rec.metadata.get("file_hash")))
        entry.chunking.add(str(rec.metadata.get("chunking")))
    return held


def _plan(scan: sources.ScanResult, held: dict[str, _Indexed], chunking: str, out: _Out) -> _Plan:
    plan = _Plan()
    found: set[str] = set()
    with out.bar(len(scan.files), "reading") as bar:
        for path in scan.files:
            src = str(path)
            found.add(src)
            try:
                doc = sources.read_document(path)
                if doc is None:
                    plan.unreadable.append(f"{src} (binary)")
            except (OSError, ValueError) as exc:  # unreadable, or a PDF its parser refuses
                plan.unreadable.append(f"{src} ({exc})")
                doc = None
            bar.update(1)
            if doc is not None and not doc.text.strip():  # no passage to hold: nothing to embed
                plan.blank += 1
                doc = None
            if doc is None:
                if src in held:
                    plan.removed.append(src)
                continue
            old = held.get(src)
            if old is None:
                plan.new.append(doc)
            elif old.hashes == {doc.digest} and old.chunking == {chunking}:
                plan.unchanged += 1
            else:
                plan.changed.append(doc)
    plan.removed += [s for s in held if s not in found and _under(s, scan.roots)]
    return plan


def _print_plan(plan: _Plan, dry_run: bool) -> None:
    verb = "would" if dry_run else "will"
    print(f"{len(plan.new)} new, {len(plan.changed)} changed, {len(plan.removed)} removed, "
          f"{plan.unchanged} unchanged files")
    if dry_run:
        for title, items in (("new", [str(d.path) for d in plan.new]),
                             ("changed", [str(d.path) for d in plan.changed]),
                             ("removed", plan.removed)):
            for s in items[:20]:
                print(f"  {title:8} {s}")
            if len(items) > 20:
                print(f"  {title:8} ... and {len(items) - 20} more")
        if plan.empty():
            print("the index is up to date: nothing would change")
        else:
            print(f"(dry run: nothing was changed; `build` without --dry-run {verb} apply this)")


def _chunk(docs: list[sources.Document], size: int, overlap: int, chunking: str,
           out: _Out) -> tuple[list[str], list[dict[str, Any]], list[str], dict[str, list[str]]]:
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    ids: list[str] = []
    per_file: dict[str, list[str]] = {}
    with out.bar(len(docs), "chunking") as bar:
        for doc in docs:
            src = str(doc.path)
            file_ids = per_file.setdefault(src, [])
            for c in sources.chunk_document(doc, size=size, overlap=overlap):
                pid = _passage_id(src, c.index)
                texts.append(c.text)
                ids.append(pid)
                file_ids.append(pid)
                metas.append({"source": src, "title": doc.title, "heading": c.heading,
                              "chunk": c.index, "line": c.start_line, "kind": doc.kind,
                              "file_hash": doc.digest, "chunking": chunking})
            bar.update(1)
    return texts, metas, ids, per_file


def cmd_build(args: argparse.Namespace, out: _Out) -> int:
    t_start = time.perf_counter()
    size, overlap = args.chunk_size, args.overlap
    if overlap is None:
        overlap = sources.default_overlap(size)
    if size <= 0 or not 0 <= overlap < size:
        raise CommandError(f"need --chunk-size > 0 and 0 <= --overlap < --chunk-size "
                           f"(got {size} and {overlap})", EXIT_USAGE)
    ray = getattr(args, "ray", None)
    actors = getattr(args, "ray_actors", None)
    if actors is not None and (ray is None or actors < 1):
        raise CommandError("--ray-actors N needs --ray and N >= 1", EXIT_USAGE)
    if args.graph_rows is not None and args.graph_rows < 2:
        raise CommandError(f"--graph-rows must be at least 2 (got {args.graph_rows})", EXIT_USAGE)
    chunking = sources.chunking_tag(size, overlap)
    index = Path(args.index)
    exists = (index / "docstore.sqlite").is_file()
    if index.exists() and not index.is_dir():
        raise CommandError(f"--index {args.index} is a file, not a folder", EXIT_USAGE)
    if index.is_dir() and not exists and any(index.iterdir()):
        raise CommandError(f"--index {args.index} is a folder that holds something else than an index",
                           EXIT_USAGE)
    try:
        with out.bar(None, "scanning") as bar:
            scan = sources.scan(args.sources, progress=bar.update,
                                follow_symlinks=getattr(args, "follow_symlinks", False))
    except FileNotFoundError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    for reason, n in sorted(scan.skipped.items()):
        out.note(f"skipped {n}: {reason}")
    if not scan.files and not exists:
        raise CommandError("nothing to index: no .txt .md .rst .py .html .json files under "
                           + " ".join(args.sources), EXIT_EMPTY)

    # what changes, decided without the model: a build with nothing to do never loads it
    held: dict[str, _Indexed] = {}
    recorded = None
    upgrade = False
    if exists:
        store = _open_for_reading(index)
        try:
            held = _indexed_files(store)
            recorded = store.model
            graph_rows = store.config.graph_rows
            upgrade = not store.has_keywords  # written by an earlier version: a writable open adds it
        finally:
            store.close()
        if args.graph_rows is not None and args.graph_rows != graph_rows:
            raise CommandError(f"--index {args.index} was created with --graph-rows {graph_rows}; the "
                               "setting is fixed when an index is created: build into a new --index",
                               EXIT_USAGE)
    plan = _plan(scan, held, chunking, out)
    if args.dry_run:
        _print_plan(plan, dry_run=True)
        return EXIT_OK
    model = _model_for(index, args.model) if exists else args.model
    identity = _check_model_name(index, recorded, model) if exists else None
    if exists and plan.empty():
        for bad in plan.unreadable[:10]:
            out.note(f"skipped {bad}")
        if upgrade:  # no text to embed, so no model: the open itself builds the keyword index
            from ..store import LeannStore
            LeannStore.open(index, embed=_no_embed, check_model=False, progress=not out.quiet).close()
            out.note("added the keyword index (this index was built by an earlier version)")
        return _summary(index, plan, [], 0.0, 0, 0, 0, t_start, args=args)

    from ..config import StoreConfig
    from ..store import LeannStore
    config = None if exists or args.graph_rows is None else StoreConfig.from_options(graph_rows=args.graph_rows)
    embedder: Any = None
    if exists and not (plan.new or plan.changed):  # removals only: no text to embed
        store = LeannStore.open(index, embed=_no_embed, check_model=False, progress=not out.quiet)
    else:
        embedder = _load_model(model, out)
        identity = embedder.identity
        store = _open_with_model(index, embedder, recorded, config=config, progress=not out.quiet)
    embedded0 = embedder.passages if embedder else 0  # from here: the store's model check, then ours
    try:
        now = _indexed_files(store)
        if now.keys() != held.keys() or any(now[s].hashes != held[s].hashes for s in now):
            plan = _plan(scan, now, chunking, out)  # another build ran in between
        held = now
        for bad in plan.unreadable[:10]:
            out.note(f"skipped {bad}")
        out.note(f"{len(plan.new)} new, {len(plan.changed)} changed, {len(plan.removed)} removed, "
                 f"{plan.unchanged} unchanged files")
        docs = plan.new + plan.changed
        texts, metas, ids, per_file = _chunk(docs, size, overlap, chunking, out)
        if not texts and store.count() == 0 and not plan.removed:
            raise CommandError("nothing to index: the files found hold no text", EXIT_EMPTY)
        t_embed = time.perf_counter()
        if texts:
            with out.bar(len(texts), "embedding" if ray is None else "embedding on Ray", unit="passage") as bar:
                vecs = (embedder.embed(texts, progress=bar.update) if ray is None
                        else _embed_on_ray(texts, embedder, ray, actors, bar.update))
            embed_s = time.perf_counter() - t_embed
            out.note(f"writing the index ({len(texts)} passages)...")
            # one call: the store builds its graph straight from these vectors
            store.add(texts, metadatas=metas, ids=ids, embeddings=vecs, check_model=False)  # its own model
        else:
            embed_s = 0.0
        # after the add, so an interrupted build leaves the index as it was:
        # removed files' passages, and changed files' past their new count
        stale = [i for src in plan.removed for i in held[src].ids]
        for d in plan.changed:
            kept = set(per_file.get(str(d.path), ()))
            stale += [i for i in held[str(d.path)].ids if i not in kept]
        deleted = store.delete(stale) if stale else 0
        passages = store.count()
        model_texts = (embedder.passages - embedded0 if embedder else 0) + (len(texts) if ray else 0)
        record = {
            "model": identity, "model_path": str(Path(model).resolve()) if model else None,
            "chunk_size": size, "overlap": overlap, "sources": [str(r) for r in scan.roots],
            "base": os.getcwd(), "last_build": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": plan.unchanged + len(docs), "passages": passages,
            "embedded": len(texts), "model_texts": model_texts, "deleted": deleted,
            "embed_seconds": round(embed_s, 3), "build_seconds": round(time.perf_counter() - t_start, 3),
        }
        _write_build_record(index, record)
    finally:
        store.close()
    return _summary(index, plan, texts, embed_s, model_texts, deleted, len(docs), t_start,
                    loaded=embedder is not None, args=args)


def _embed_on_ray(texts: list[str], embedder: Any, address: str, actors: int | None,
                  progress: Callable[[int], Any]) -> np.ndarray:
    """``texts`` embedded on Ray actors running the model loaded here (its
    files read on each worker: on a cluster, a path every node sees)."""
    try:
        from .. import distributed
        from .models import ActorModel
        # Ray's start-up notes and its own progress log would bury the bar
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        distributed.connect(None if address == _LOCAL_RAY else address, log_level=logging.ERROR)
    except ImportError as exc:
        raise CommandError(f"--ray needs Ray: pip install 'leann-store[ray]' ({exc})", EXIT_USAGE) from None
    except ConnectionError as exc:
        raise CommandError(f"--ray {address}: no Ray cluster there ({exc})", EXIT_USAGE) from None
    vecs = distributed.embed_texts(texts, ActorModel, concurrency=actors,
                                   embedder_args=(str(embedder.path),), progress=progress)
    if vecs.shape != (len(texts), embedder.dim):
        raise CommandError(f"the Ray actors returned vectors of shape {vecs.shape}, the model here "
                           f"{embedder.dim}-d ones", EXIT_FAILED)
    return vecs


def _summary(index: Path, plan: _Plan, texts: list[str], embed_s: float, model_texts: int,
             deleted: int, read: int, t_start: float, loaded: bool = False,
             args: argparse.Namespace | None = None) -> int:
    """``build``'s closing lines, read back from the closed index (the sizes ``info`` shows);
    the same as a dict in ``args.result`` (for the MCP server's ``build`` tool)."""
    store = _open_for_reading(index)
    try:
        stats = store.stats()
        threshold = store.config.graph_rows
    finally:
        store.close()
    if args is not None:
        args.result = {
            "files": {"new": [str(d.path) for d in plan.new], "changed": [str(d.path) for d in plan.changed],
                      "removed": list(plan.removed), "unchanged": plan.unchanged, "without_text": plan.blank},
            "passages": {"embedded": len(texts), "deleted": deleted, "total": stats["documents"]},
            "seconds": round(time.perf_counter() - t_start, 3)}
    print(f"indexed {plan.unchanged + read} files: {len(plan.new)} new, {len(plan.changed)} changed, "
          f"{len(plan.removed)} removed, {plan.unchanged} unchanged"
          + (f" ({plan.blank} without text)" if plan.blank else ""))
    if texts:
        extra = model_texts - len(texts)
        by_store = ("" if extra <= 0 else " (+1 text: the store's model check)" if extra == 1 else
                    f" (+{extra} texts the store embedded itself)")
        rate = len(texts) / embed_s if embed_s > 0 else 0.0
        did = f"embedded {len(texts)} passages in {embed_s:.1f} s ({rate:.1f} passages/s){by_store}, "
    else:
        did = "embedded nothing, " if loaded else "nothing to embed (the model was not loaded), "
    print(did + f"deleted {deleted}; {stats['documents']} passages in {index}; "
          f"index {_size(stats['index_bytes'] + stats['delta_bytes'])}, "
          f"docstore {_size(stats['docstore_bytes'])}; took {time.perf_counter() - t_start:.1f} s")
    exact = _exact_line(stats, threshold)
    if exact:
        print(exact)
    return EXIT_OK


# ---------------------------------------------------------------- search

#: what ends an interactive session besides end of input
_QUIT = frozenset({"exit", "quit", ":q", "\\q"})


@dataclass
class _Paths:
    """Sources as the user names them: relative to the folder the build ran
    in or to an indexed folder, in filters and results; the index keeps them
    absolute (so a build from anywhere recognises its files)."""
    base: Path | None
    roots: list[Path]

    @classmethod
    def of(cls, index: Path) -> "_Paths":
        rec = _read_build_record(index)
        base = Path(rec["base"]) if rec.get("base") else None
        return cls(base, [Path(r) for r in rec.get("sources", []) if not Path(r).suffix])

    def show(self, source: Any) -> Any:
        """A stored source as shown: relative to the build's folder when under it."""
        if not isinstance(source, str) or self.base is None:
            return source
        with contextlib.suppress(ValueError):
            return Path(source).relative_to(self.base).as_posix()
        return source

    def candidates(self, value: Any) -> list[Any]:
        """The stored sources a user's path may mean."""
        if not isinstance(value, str) or not value or os.path.isabs(value):
            return [value]
        bases = [b for b in (self.base, Path.cwd(), *self.roots) if b is not None]
        out = [os.path.normpath(b / value) for b in bases]
        return list(dict.fromkeys(out + [value]))

    def rewrite(self, spec: Any) -> Any:
        """``spec`` with every path under the ``source`` key widened to its candidates."""
        if not isinstance(spec, dict):
            return spec
        out: dict[str, Any] = {}
        for key, value in spec.items():
            if key in ("$and", "$or", "$nor") and isinstance(value, list):
                out[key] = [self.rewrite(v) for v in value]
            elif key == "$not":
                out[key] = self.rewrite(value)
            elif key != "source":
                out[key] = value
            elif not isinstance(value, dict):
                out[key] = {"$in": self.candidates(value)} if isinstance(value, str) else value
            else:
                ops = dict(value)
                for op, many in (("$eq", "$in"), ("$ne", "$nin")):
                    if isinstance(ops.get(op), str) and many not in ops:
                        ops[many] = self.candidates(ops.pop(op))
                for op in ("$in", "$nin"):
                    if isinstance(ops.get(op), list):
                        ops[op] = [c for v in ops[op] for c in self.candidates(v)]
                out[key] = ops
        return out


def _parse_filter(text: str | None, paths: _Paths) -> Any:
    """The --filter JSON, checked before any model loads (exit 2 when bad)."""
    if text is None:
        return None
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"--filter is not JSON: {exc}", EXIT_USAGE) from None
    from ..filters import compile_filter
    try:
        compile_filter(spec)
        spec = paths.rewrite(spec)
        compile_filter(spec)
    except FilterError as exc:
        raise CommandError(f"--filter: {exc}", EXIT_USAGE) from None
    return spec


def _check_query(query: str) -> str:
    if not query.strip():
        raise CommandError("the question is empty: ask something, e.g. "
                           "`leann-store search kb \"how do I rotate the logs?\"`", EXIT_USAGE)
    return query


class _Searcher:
    """One open store and its loaded model, answering question after question."""

    def __init__(self, index: Path, args: argparse.Namespace, out: _Out) -> None:
        self.args = args
        self.paths = _Paths.of(index)
        self.flt = _parse_filter(args.filter, self.paths)
        from ..errors import InvalidInputError
        from ..options import SearchOptions
        given = {k: v for k, v in (("max_recompute", args.max_recompute), ("confidence", args.confidence),
                                   ("quality", getattr(args, "quality", None)),
                                   ("time_budget_ms", getattr(args, "time_budget_ms", None)))
                 if v is not None}
        try:  # checked before any model loads
            self.options = SearchOptions.of(None, **given)
            if self.options.max_recompute is not None and self.options.max_recompute < args.k:
                raise InvalidInputError(f"--max-recompute must be at least -k ({args.k})")
        except InvalidInputError as exc:
            raise CommandError(str(exc).replace("max_recompute", "--max-recompute")
                               .replace("confidence must", "--confidence must")
                               .replace("time_budget_ms", "--time-budget-ms")
                               .replace("quality must", "--quality must"), EXIT_USAGE) from None
        self.mode = getattr(args, "mode", None) or DEFAULT_SEARCH_MODE
        store = _open_for_reading(index)  # its recorded model and keywords, before any model loads
        try:
            recorded = store.model
            self.keywords = keywords = store.has_keywords
        finally:
            store.close()
        if self.mode != "dense" and not keywords:
            if getattr(args, "mode", None) is not None:
                raise CommandError(f"--mode {self.mode}: {index} was built by an earlier version and has no "
                                   f"keyword index yet; `leann-store build ... --index {index}` adds it",
                                   EXIT_USAGE)
            out.note(f"{index} has no keyword index yet (built by an earlier version; a `leann-store build` "
                     "adds it): searching densely")
            self.mode = "dense"
        self.embedder: Any = None
        if self.mode == "keyword":  # BM25 alone: no model to load, nothing embedded
            self.store = _open_for_reading(index)
        else:
            model = _model_for(index, args.model)
            _check_model_name(index, recorded, model)
            self.embedder = _load_model(model, out)
            self.store = _open_with_model(index, self.embedder, recorded, read_only=True, progress=False)
        self.metric = self.store.metric

    def close(self) -> None:
        self.store.close()

    def answer(self, query: str, *, k: int | None = None, flt: Any = ...,
               mode: str | None = None) -> tuple[list[Any], dict[str, Any]]:
        """(hits shown, timings) for ``query``; ``k``, ``flt`` (a parsed
        filter) and ``mode`` default to the command line's."""
        mode = mode or self.mode
        if mode not in MODES:
            raise CommandError(f"unknown mode {mode!r}: the modes are {list(MODES)}", EXIT_USAGE)
        if mode != "dense" and not self.keywords:
            raise CommandError(f"mode {mode}: this index has no keyword index yet (a build adds it)", EXIT_USAGE)
        if mode != "keyword" and self.embedder is None:
            raise CommandError(f"mode {mode} needs the model, and this search was opened keyword-only",
                               EXIT_USAGE)
        t0 = time.perf_counter()
        q = self.embedder.embed_query(query) if self.embedder is not None else None
        t1 = time.perf_counter()
        embed_s = self.embedder.seconds if self.embedder is not None else 0.0
        hits = self.store.search(q, k=k or self.args.k, filter=self.flt if flt is ... else flt,
                                 options=self.options, text=query, mode=mode)
        t2 = time.perf_counter()
        shown = [h for h in hits
                 if not sources.heading_only(h.text, h.metadata.get("heading"), h.metadata.get("kind"))]
        recomputed = int(hits.stats.get("recomputed", 0))
        return shown, {"total_ms": round((t2 - t0) * 1e3, 1), "query_embed_ms": round((t1 - t0) * 1e3, 1),
                       "search_ms": round((t2 - t1) * 1e3, 1),
                       "recompute_ms": round(((self.embedder.seconds if self.embedder is not None else 0.0)
                                              - embed_s) * 1e3, 1),
                       "recomputed": recomputed}

    def show(self, query: str, hits: list[Any], timing: dict[str, Any], *, one_line: bool) -> None:
        if self.args.json:
            results = [{"id": h.id, "score": round(h.score, 6), "found_by": list(h.found_by),
                        "distance": None if math.isnan(h.distance) else h.distance,
                        "source": self.paths.show(h.metadata.get("source")),
                        "path": h.metadata.get("source"), "title": h.metadata.get("title"),
                        "heading": h.metadata.get("heading"), "line": h.metadata.get("line"),
                        "text": h.text, "metadata": h.metadata}
                       for h in hits]
            json.dump({"query": query, "mode": self.mode, "results": results, **timing}, sys.stdout,
                      indent=None if one_line else 1)
            print(flush=True)
            return
        if not hits:
            print("no results" + (" match the filter" if self.flt is not None else ""))
        for rank, h in enumerate(hits, 1):
            src = self.paths.show(h.metadata.get("source", h.id))
            line = h.metadata.get("line")
            where = f"{src}:{line}" if line else str(src)
            heading = h.metadata.get("heading") or h.metadata.get("title") or ""
            print(f"{rank:2}. {h.score:.3f}  {where}"
                  + (f"  [{heading}]" if heading else ""))
            print(f"    {_snippet(h.text)}")
        print(f"{len(hits)} results ({self.mode}) in {timing['total_ms']:.0f} ms (query "
              f"{timing['query_embed_ms']:.0f} ms, "
              f"search {timing['search_ms']:.0f} ms; {timing['recomputed']} passages recomputed in "
              f"{timing['recompute_ms']:.0f} ms)", flush=True)


def cmd_search(args: argparse.Namespace, out: _Out) -> int:
    index = _require_index(args.index)
    if args.k <= 0:
        raise CommandError("-k must be at least 1", EXIT_USAGE)
    if args.query is not None:
        _check_query(args.query)
    searcher = _Searcher(index, args, out)
    try:
        if args.query is not None:
            searcher.show(args.query, *searcher.answer(args.query), one_line=False)
            return EXIT_OK
        return _session(searcher, args, out)
    finally:
        searcher.close()


def _session(searcher: _Searcher, args: argparse.Namespace, out: _Out) -> int:
    """Questions from the terminal or stdin, one a line, the model kept loaded;
    an empty line asks again, ``exit`` or end of input ends."""
    tty = sys.stdin.isatty()
    if tty:
        out.note("ask a question (empty line: nothing, `exit` or Ctrl-D: quit)")
    while True:
        if tty:
            print("? ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            if tty:
                print(file=sys.stderr)
            return EXIT_OK
        query = line.strip()
        if not query:
            continue
        if query.lower() in _QUIT:
            return EXIT_OK
        searcher.show(query, *searcher.answer(query), one_line=True)
        if not args.json and tty:
            print()


# ---------------------------------------------------------------- info, check

def cmd_info(args: argparse.Namespace, out: _Out) -> int:
    index = _require_index(args.index)
    info, exact = index_info(index)
    if args.json:
        json.dump(info, sys.stdout, indent=1)
        print()
        return EXIT_OK
    passages, threshold, index_bytes = info["passages"], info["graph_threshold"], info["index_bytes"]
    codec = info["codec"] or {}
    graph = info["graph"] or {}
    lines = [
        ("index", info["index"]),
        ("documents", f"{info['documents']} files"),
        ("passages", f"{passages} ({info['graph_rows']} in the graph, {info['delta_rows']} in the exact "
                     f"delta segment, {info['deleted']} deleted nodes)"),
        ("index", f"{_size(index_bytes)} ({info['index_bytes_per_passage']} B/passage; graph "
                  f"{_size(info['graph_bytes'])}, delta vectors {_size(info['delta_vector_bytes'])})"),
        ("docstore", f"{_size(info['docstore_bytes'])} (text and metadata; keyword index "
                     f"{_size(info['keyword_index_bytes'])})"),
        ("search", exact or f"graph walk on codes, recomputing the passages it visits (graph built "
                            f"at {threshold} passages)"),
        ("model", f"{info['model']} ({info['dim']}-d, {info['metric']})"),
        ("codec", _codec_line(codec, info["graph_rows"])),
        ("graph degree", f"M={graph.get('M')}, hubs {graph.get('hub_degree')}, others {graph.get('degree')}"),
        ("chunking", f"{info['chunking']} tokens (size/overlap)" if info["chunking"] else "unknown"),
        ("last build", info["last_build"] or "unknown (not built by this command)"),
    ]
    for key, value in lines:
        print(f"{key:15} {value}")
    return EXIT_OK


def index_info(index: Path) -> tuple[dict[str, Any], str | None]:
    """What ``info`` shows of an index, as a dict, and the line saying why it
    is exact (None: it has a graph).  Loads no model."""
    record = _read_build_record(index)
    store = _open_for_reading(index)
    try:
        stats = store.stats()
        threshold = store.config.graph_rows
        if record.get("passages") == stats["documents"] and isinstance(record.get("files"), int):
            files = record["files"]  # as the last build left it (reading every record costs ~1 s at 50k)
        else:
            files = len({r.metadata.get("source") for r in store.find(None)} - {None})
    finally:
        store.close()
    exact = _exact_line(stats, threshold)
    passages = stats["documents"]
    index_bytes = stats["index_bytes"] + stats["delta_bytes"]
    info = {
        "index": str(index.resolve()),
        "documents": files,
        "passages": passages,
        "index_bytes": index_bytes,
        "graph_bytes": stats["index_bytes"],
        "delta_vector_bytes": stats["delta_bytes"],
        "docstore_bytes": stats["docstore_bytes"],
        "keyword_index_bytes": stats["keyword_bytes"],
        "search": stats["search"],
        "exact": exact is not None,
        "graph_threshold": threshold,
        "index_bytes_per_passage": round(stats["bytes_per_passage"], 1),
        "model": stats.get("model"),
        "dim": stats.get("dim"),
        "metric": stats.get("metric"),
        "codec": stats.get("codec"),
        "graph": stats.get("graph"),
        "graph_rows": stats.get("graph_rows"),
        "delta_rows": stats.get("delta_rows"),
        "deleted": stats.get("deleted"),
        "created": stats.get("created"),
        "last_merge": stats.get("last_merge"),
        "last_build": record.get("last_build"),
        "chunking": f"{record['chunk_size']}/{record['overlap']}" if "chunk_size" in record else None,
    }
    return info, exact


def _codec_line(codec: dict[str, Any], graph_rows: int | None) -> str:
    if not graph_rows:
        return "none yet: the store searches its rows exactly until it builds a graph"
    subspaces = codec.get("subspaces", codec.get("search_subspaces"))
    kind = f"{codec.get('bits', 4)}-bit PQ codes"
    parts = [f"{kind}, {subspaces} subspaces" if subspaces else kind]
    if codec.get("code_bytes"):
        parts.append(f"{codec['code_bytes']} B/passage")
    if codec.get("pca_dim"):
        parts.append(f"PCA to {codec['pca_dim']} dims")
    return ", ".join(parts)


def cmd_check(args: argparse.Namespace, out: _Out) -> int:
    index = _require_index(args.index)
    store = _open_for_reading(index)
    try:
        t0 = time.perf_counter()
        store.check()
        n = store.count()
    finally:
        store.close()
    print(f"{index}: consistent ({n} passages, checked in {time.perf_counter() - t0:.2f} s)")
    return EXIT_OK


# ---------------------------------------------------------------- demo

def _hnsw_float32_bytes(vecs: np.ndarray, M: int) -> tuple[int, str]:
    """Bytes of a float32 HNSW index over ``vecs``: hnswlib's saved file when
    hnswlib is installed, else the float32 vectors plus a base layer of 2M
    4-byte links per node (upper layers left out: a lower bound)."""
    n, d = vecs.shape
    try:
        import hnswlib  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return n * d * 4 + n * (2 * M * 4 + 4), f"computed: n*d*4 + n*(2M*4+4), M={M}"
    idx = hnswlib.Index(space="cosine", dim=d)
    idx.init_index(max_elements=n, M=M, ef_construction=200, random_seed=0)
    idx.set_num_threads(max(1, os.cpu_count() or 1))
    idx.add_items(vecs)
    with tempfile.TemporaryDirectory() as tmp:
        f = os.path.join(tmp, "hnsw.bin")
        idx.save_index(f)
        return os.path.getsize(f), f"hnswlib {getattr(hnswlib, '__version__', '')} saved file, M={M}".replace("  ", " ")


def cmd_demo(args: argparse.Namespace, out: _Out) -> int:
    if args.limit <= 0:
        raise CommandError("--limit must be at least 1", EXIT_USAGE)
    if args.index and Path(args.index).exists() and any(Path(args.index).iterdir()):
        raise CommandError(f"--index {args.index} is not empty: the demo writes a new index", EXIT_USAGE)
    t0 = time.perf_counter()
    out.note("reading the standard library's docstrings...")
    passages = sources.stdlib_docstrings(args.limit)
    if not passages:
        raise CommandError("found no standard-library docstrings to index", EXIT_EMPTY)
    out.note(f"{len(passages)} docstring passages from {len({p.module for p in passages})} modules "
             f"({time.perf_counter() - t0:.1f} s)")
    embedder = _load_model(args.model, out)
    texts = [p.text for p in passages]
    summaries = [p.summary for p in passages]  # embedded; the whole docstring is shown
    te = time.perf_counter()
    with out.bar(len(texts), "embedding", unit="passage") as bar:
        vecs = embedder.embed(summaries, progress=bar.update)
    embed_s = time.perf_counter() - te
    from ..config import StoreConfig
    from ..store import LeannStore
    # a graph however few the passages (a store keeps small ones exact by default)
    config = StoreConfig.from_options(metric="cosine", graph_rows=16, merge_rows=16)
    store = (LeannStore.open(args.index, embed=embedder, config=config, model=embedder.identity,
                             progress=not out.quiet)
             if args.index else
             LeannStore.temporary(embed=embedder, config=config, model=embedder.identity,
                                  progress=not out.quiet))
    try:
        tb = time.perf_counter()
        store.add(texts, metadatas=[{"source": p.path, "title": p.qualname, "module": p.module}
                                    for p in passages],
                  ids=[f"{p.qualname}#{i}" for i, p in enumerate(passages)], embeddings=vecs,
                  embed_texts=summaries, check_model=False)
        build_s = time.perf_counter() - tb
        stats = store.stats()
        ours = stats["index_bytes"] + stats["delta_bytes"]
        theirs, how = _hnsw_float32_bytes(vecs, int(stats.get("graph", {}).get("M") or 16))
        n = len(texts)
        print(f"\nindexed {n} passages: embedding {embed_s:.1f} s ({n / embed_s:.1f} passages/s), "
              f"index build {build_s:.1f} s")
        print(f"  leann-store index      {_size(ours):>10}  ({ours / n:7.1f} B/passage)")
        print(f"  float32 HNSW index     {_size(theirs):>10}  ({theirs / n:7.1f} B/passage; {how})")
        if ours:
            print(f"  -> {theirs / ours:.0f}x smaller; both keep the passages' text beside the index "
                  f"(here a {_size(stats['docstore_bytes'])} SQLite docstore)")
        for question, _expected in DEMO_QUESTIONS:
            tq = time.perf_counter()
            hits = store.search(embedder.embed_query(question), k=args.k)
            ms = (time.perf_counter() - tq) * 1e3
            print(f"\nQ: {question}\n   {ms:.0f} ms, {hits.stats.get('recomputed', 0)} passages recomputed")
            for h in hits:
                first = h.text.split("\n", 1)
                body = first[1] if len(first) > 1 else ""
                print(f"   {h.score:.3f}  {h.metadata.get('title')}: {_snippet(body, 110)}")
    finally:
        store.close()
    out.note(f"\ndemo done in {time.perf_counter() - t0:.0f} s; index your own files with "
             "`leann-store build FOLDER --index DIR`")
    return EXIT_OK


def cmd_mcp(args: argparse.Namespace, out: _Out) -> int:
    from .mcp import cmd_mcp as serve  # the SDK only for this command
    return serve(args, out)


# ---------------------------------------------------------------- arguments

def _parser() -> argparse.ArgumentParser:
    from ..config import StoreConfig
    p = argparse.ArgumentParser(
        prog="leann-store", description="Index documents into a tiny-index vector store and search them, offline.",
        epilog="exit status: 0 ok, 1 failed, 2 usage or missing path, 3 nothing to index, "
               "4 index made with another model, 5 no model installed, 130 interrupted")
    from .. import __version__
    p.add_argument("--version", action="version", version=f"leann-store {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def common(sp: argparse.ArgumentParser, model: bool = True) -> None:
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
        if model:
            sp.add_argument("--model", metavar="DIR",
                            help="a local sentence-transformers model directory (default: "
                                 "all-MiniLM-L6-v2 from the hf extra; search: the one the index was built with)")

    b = sub.add_parser("build", help="index files and folders (incremental)",
                       description="Index files and folders (.txt .md .rst .py .html .json, .pdf with the "
                                   "pdf extra); a re-run embeds only new and changed files.")
    b.add_argument("sources", nargs="+", metavar="SOURCE", help="files and folders to index")
    b.add_argument("--index", required=True, metavar="DIR", help="the index directory (created)")
    b.add_argument("--chunk-size", type=int, default=sources.DEFAULT_CHUNK_SIZE, metavar="N",
                   help="tokens per passage at most (default %(default)s)")
    b.add_argument("--overlap", type=int, default=None, metavar="N",
                   help=f"tokens shared by consecutive passages (default {sources.DEFAULT_OVERLAP})")
    b.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")
    b.add_argument("--follow-symlinks", action="store_true",
                   help="follow symbolic links out of the folders named (default: skip them)")
    b.add_argument("--graph-rows", type=int, default=None, metavar="N",
                   help="a new index stays exact (every vector kept, no recomputes) until it holds N "
                        "passages, then builds its graph (default: the store's "
                        f"{StoreConfig.graph_rows})")
    b.add_argument("--ray", nargs="?", const=_LOCAL_RAY, default=None, metavar="ADDRESS",
                   help="embed on a Ray cluster: ADDRESS is `auto` (the cluster this machine runs) or "
                        "ray://HOST:PORT; none: a local Ray (the ray extra; the model's folder must be "
                        "readable on every node)")
    b.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="with --ray: model copies, one CPU each (default: as many as the cluster gives)")
    common(b)
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("search", help="ask an index a question")
    s.add_argument("index", metavar="DIR")
    s.add_argument("query", nargs="?", help="the question; none: a session that reads questions "
                                            "from the terminal or stdin, one a line, the model kept loaded")
    s.add_argument("-k", type=int, default=5, help="results (default %(default)s)")
    s.add_argument("--filter", metavar="JSON", help='metadata filter, e.g. \'{"kind": "markdown"}\'')
    s.add_argument("--mode", choices=MODES, default=None,
                   help="hybrid (default: the embedding and BM25 keywords fused), dense, or keyword "
                        "(BM25 only, no model loaded)")
    s.add_argument("--max-recompute", type=int, metavar="N",
                   help="re-embed at most N passages a question (faster, less exact; at least -k)")
    s.add_argument("--confidence", type=float, metavar="X",
                   help="the adaptive stop, in (0, 1): higher re-embeds more before it stops "
                        "(default: the index's own)")
    s.add_argument("--quality", choices=("fast", "balanced", "exact"), default=None,
                   help="recall against wait: fast re-embeds fewer passages, exact more "
                        "(default: the index's own confidence)")
    s.add_argument("--time-budget-ms", type=float, metavar="MS",
                   help="answer with the best passages found once MS milliseconds are spent")
    s.add_argument("--json", action="store_true",
                   help="results as JSON (in a session: one line per answer)")
    common(s)
    s.set_defaults(func=cmd_search)

    i = sub.add_parser("info", help="what an index holds and its size")
    i.add_argument("index", metavar="DIR")
    i.add_argument("--json", action="store_true", help="as JSON")
    common(i, model=False)
    i.set_defaults(func=cmd_info)

    c = sub.add_parser("check", help="the index's consistency check")
    c.add_argument("index", metavar="DIR")
    common(c, model=False)
    c.set_defaults(func=cmd_check)

    m = sub.add_parser("mcp", help="serve indexes to coding agents over the Model Context Protocol (stdio)",
                       description="A stdio MCP server (the mcp extra): tools search, list_indexes, "
                                   "index_info and build over the given indexes, each model loaded once.")
    m.add_argument("--index", action="append", required=True, metavar="DIR", help="an index to serve (repeat)")
    m.add_argument("--root", action="append", metavar="DIR",
                   help="a folder the build tool may index (repeat; default: the current folder and the "
                        "folders the indexes were built from)")
    m.add_argument("--allow-build-anywhere", action="store_true", help="let the build tool index any path")
    common(m, model=False)
    m.set_defaults(func=cmd_mcp)

    d = sub.add_parser("demo", help="index the standard library's docstrings and answer sample questions")
    d.add_argument("--limit", type=int, default=DEMO_LIMIT, metavar="N",
                   help="docstring passages to index (default %(default)s)")
    d.add_argument("-k", type=int, default=3, help="passages shown per question (default %(default)s)")
    d.add_argument("--index", metavar="DIR", help="keep the demo index here (default: a temporary one)")
    common(d)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns its exit status."""
    args = _parser().parse_args(argv)
    out = _Out(getattr(args, "quiet", False))
    try:
        return int(args.func(args, out))
    except CommandError as exc:
        print(f"leann-store: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("\nleann-store: interrupted; the index keeps its last committed state "
              "(re-run the command to finish)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModelMismatchError:
        print("leann-store: error: the index was built with another model: pass `--model DIR` naming "
              "the model folder it was built with, or build a new index", file=sys.stderr)
        return EXIT_MODEL_MISMATCH
    except LeannError as exc:
        from .models import ModelUnavailableError
        code = EXIT_NO_MODEL if isinstance(exc, ModelUnavailableError) else EXIT_FAILED
        print(f"leann-store: error: {exc}", file=sys.stderr)
        return code
    except FileNotFoundError as exc:
        print(f"leann-store: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `leann-store search ... | head`
        with contextlib.suppress(OSError):
            sys.stdout.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
