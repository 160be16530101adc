"""Documents for the command line: find files, read their text, cut passages.

``scan`` walks folders the way ``git`` would see them (``.gitignore`` files,
hidden folders, ``.git`` and virtual environments skipped), ``read_document``
turns a file into text with a title and a content digest (HTML through the
standard library's parser; PDF only with ``pypdf``, the ``pdf`` extra), and
``chunk_text`` cuts text into passages of at most ``size`` tokens, preferring
paragraph and heading boundaries (Markdown and reStructuredText headings,
Python ``def``/``class``), each with the heading it falls under and the line
it starts at.  ``stdlib_docstrings`` gives the running interpreter's standard
library docstrings as passages (``leann-store demo``).

>>> [c.heading for c in chunk_text("# Intro\\n\\nHello.\\n\\n# Use\\n\\nRun it.", "markdown", size=8)]
['Intro', 'Use']
"""

from __future__ import annotations

import ast
import bisect
import hashlib
import importlib
import inspect
import os
import re
import sys
import sysconfig
import warnings
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .. import tokens as _tokens

#: file suffix -> how its text is read and where its headings are
SUFFIXES = {
    ".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
    ".rst": "rst", ".py": "python", ".html": "html", ".htm": "html", ".json": "json",
    ".pdf": "pdf",
}
#: folder names never entered (besides hidden ones and virtual environments)
SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "dist-packages"})
#: default passage size and overlap, in tokens: a passage fits the default
#: model's 256-word-piece window
DEFAULT_CHUNK_SIZE = 200
DEFAULT_OVERLAP = 20
#: a passage smaller than this (tokens) joins a neighbour: a section this
#: small ("See also" and a link) answers nothing on its own
MIN_PASSAGE_TOKENS = 32
#: recorded with every passage (``chunking_tag``): bumped when the chunker
#: cuts differently, so the next build re-chunks what an older one cut
CHUNKER_VERSION = "c2"
#: bytes looked at to call a file binary (a NUL byte among them)
_SNIFF = 8192
#: files larger than this are skipped by default (logs, dumps, data files)
DEFAULT_MAX_BYTES = 8 << 20


# ---------------------------------------------------------------- scanning

@dataclass
class ScanResult:
    """Files found, in a stable order, and the count of those passed over by reason."""
    files: list[Path] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)
    root_of: dict[Path, Path] = field(default_factory=dict)  #: the folder each file was found under
    skipped: Counter[str] = field(default_factory=Counter)


def pdf_supported() -> bool:
    """Whether PDF files can be read (the ``pdf`` extra: ``pypdf``)."""
    try:
        import pypdf  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


class _Ignore:
    """The ``.gitignore`` rules in force in one folder: each file's patterns
    apply to paths below its own folder, deeper files overriding shallower
    ones and later patterns earlier ones, as git does."""

    def __init__(self, rules: tuple[tuple[Path, Any], ...] = ()) -> None:
        self.rules = rules

    def extended(self, folder: Path, names: Iterable[str]) -> "_Ignore":
        specs = []
        for name in names:
            f = folder / name
            if f.is_file():
                try:
                    lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
                except OSError:
                    continue
                import pathspec
                specs.append((folder, pathspec.GitIgnoreSpec.from_lines(lines)))
        return _Ignore(self.rules + tuple(specs)) if specs else self

    def ignored(self, path: Path, is_dir: bool) -> bool:
        verdict = None
        for base, spec in self.rules:
            try:
                rel = path.relative_to(base).as_posix()
            except ValueError:
                continue
            result = spec.check_file(rel + "/" if is_dir else rel).include
            if result is not None:
                verdict = result
        return bool(verdict)


def _is_venv(folder: Path) -> bool:
    return (folder / "pyvenv.cfg").is_file() or (folder / "conda-meta").is_dir()


def scan(sources: Sequence[str | os.PathLike[str]], *, gitignore: bool = True,
         max_bytes: int = DEFAULT_MAX_BYTES, progress: Callable[[int], Any] | None = None,
         follow_symlinks: bool = False) -> ScanResult:
    """Files under ``sources`` (folders and files) with a known suffix.

    A file named directly is taken whatever its suffix (read as text).
    ``.gitignore`` files at and below a named folder apply.  A missing source
    is a ``FileNotFoundError`` naming it.  ``progress(n)`` is called with the
    files taken from each folder.

    Symbolic links inside a folder are not followed out of it: a linked
    folder is skipped, a linked file is taken only if it lies inside the
    named folder.  ``follow_symlinks=True`` follows both wherever they lead
    (each real folder is entered once, so a loop of links ends)."""
    result = ScanResult()
    seen: set[Path] = set()
    pdf_ok = pdf_supported()

    def take(path: Path, root: Path) -> None:
        real = path.resolve()
        if real in seen:
            return
        seen.add(real)
        result.files.append(path)
        result.root_of[path] = root

    for source in sources:
        root = Path(source).expanduser().absolute()
        if not root.exists():
            raise FileNotFoundError(f"no such file or folder: {source}")
        result.roots.append(root)
        if root.is_file():
            take(root, root.parent)
            continue
        # only the rules at and below a named folder: naming it is asking for it,
        # even where an enclosing work tree ignores it
        base_rules = _Ignore()
        rules_at = {root: base_rules.extended(root, [".gitignore"]) if gitignore else base_rules}
        real_root = root.resolve()
        entered = {real_root}
        for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
            folder = Path(dirpath)
            rules = rules_at.pop(folder, base_rules)
            keep = []
            for d in sorted(dirnames):
                sub = folder / d
                linked = sub.is_symlink()
                if linked and not follow_symlinks:
                    result.skipped["symbolic link (--follow-symlinks to take it)"] += 1
                elif d.startswith(".") or d in SKIP_DIRS or _is_venv(sub):
                    result.skipped["hidden, tool or environment folder"] += 1
                elif linked and sub.resolve() in entered:
                    result.skipped["symbolic link to a folder already scanned"] += 1
                elif gitignore and rules.ignored(sub, True):
                    result.skipped["ignored by .gitignore"] += 1
                else:
                    keep.append(d)
                    entered.add(sub.resolve())
                    rules_at[sub] = rules.extended(sub, [".gitignore"]) if gitignore else rules
            dirnames[:] = keep
            before = len(result.files)
            for name in sorted(filenames):
                path = folder / name
                kind = SUFFIXES.get(path.suffix.lower())
                if name.startswith(".") or kind is None:
                    continue
                if gitignore and rules.ignored(path, False):
                    result.skipped["ignored by .gitignore"] += 1
                elif not follow_symlinks and path.is_symlink() and not path.resolve().is_relative_to(real_root):
                    result.skipped["symbolic link out of the folder (--follow-symlinks to take it)"] += 1
                elif kind == "pdf" and not pdf_ok:
                    result.skipped["PDF (pip install 'leann-store[pdf]')"] += 1
                elif not path.is_file():
                    continue
                elif path.stat().st_size > max_bytes:
                    result.skipped[f"larger than {max_bytes >> 20} MiB"] += 1
                else:
                    take(path, root)
            if progress is not None:
                progress(len(result.files) - before)
    return result


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class Document:
    """One file's text: ``kind`` says how headings are found in it."""
    path: Path
    kind: str
    text: str
    title: str
    digest: str


def file_digest(data: bytes) -> str:
    """Content digest kept per file to tell changed files from unchanged ones."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class _HTMLText(HTMLParser):
    """HTML to plain text: block elements become paragraph breaks, headings
    Markdown headings (so passages know their section), scripts and styles dropped."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    _BLOCK = frozenset({"p", "div", "section", "article", "header", "footer", "main", "nav",
                        "aside", "ul", "ol", "table", "blockquote", "pre", "dl", "figure",
                        "form", "hr"})
    _LINE = frozenset({"br", "li", "tr", "dt", "dd", "caption"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False
        self._pre = 0

    def _break(self, text: str) -> None:
        if self.parts and not self._pre:
            self.parts[-1] = self.parts[-1].rstrip(" ")
        self.parts.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._break("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCK:
            self._break("\n\n")
            self._pre += tag == "pre"
        elif tag in self._LINE:
            self._break("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self._BLOCK:
            if tag == "pre" and self._pre:
                self._pre -= 1
            self._break("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skip:
            return
        elif self._pre:
            self.parts.append(data)
        else:
            data = re.sub(r"\s+", " ", data)
            if not self.parts or self.parts[-1].endswith("\n") or self.parts[-1].endswith("# "):
                data = data.lstrip(" ")
            self.parts.append(data)

    def text(self) -> str:
        return re.sub(r"\n{3,}", "\n\n", "".join(self.parts)).strip()


def html_to_text(html: str) -> tuple[str, str]:
    """(text, title) of an HTML page."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text(), re.sub(r"\s+", " ", parser.title).strip()


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _pdf_text(path: Path) -> tuple[str, str]:
    import pypdf  # type: ignore[import-not-found,unused-ignore]
    reader = pypdf.PdfReader(str(path))
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    meta_title = (reader.metadata.title if reader.metadata else None) or ""
    return "\n\n".join(p for p in pages if p), str(meta_title).strip()


def module_name(path: Path) -> str:
    """Dotted module name of a Python file: its enclosing packages (folders
    with an ``__init__.py``) and its stem, so ``json/decoder.py`` is
    ``json.decoder`` wherever the scan started."""
    parts = [] if path.stem == "__init__" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder != folder.parent:
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) or path.parent.name or path.stem


def read_document(path: str | os.PathLike[str], *, data: bytes | None = None) -> Document | None:
    """The text of ``path`` (None for a binary file)."""
    path = Path(path)
    if data is None:
        data = path.read_bytes()
    kind = SUFFIXES.get(path.suffix.lower(), "text")
    digest = file_digest(data)
    if kind == "pdf":
        text, title = _pdf_text(path)
        # NUL, which metadata cannot hold (check_metadata), carries no text
        return Document(path, "text", text.replace("\0", ""), title.replace("\0", "") or path.stem, digest)
    if b"\0" in data[:_SNIFF]:
        return None
    text = _decode(data).replace("\r\n", "\n").replace("\r", "\n").replace("\0", "")
    title = ""
    if kind == "html":
        text, title = html_to_text(text)
        kind = "markdown"
    elif kind == "python":
        title = module_name(path)
    elif kind in ("markdown", "rst"):
        heads = [h for _, h, boundary in _headings(text.splitlines(), kind, "") if boundary]
        title = heads[0] if heads else ""
    return Document(path, kind, text, title or path.name, digest)


# ---------------------------------------------------------------- headings

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_RST_ADORN = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}[ \t]*$")
_PY_DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?(def|class)[ \t]+(\w+)")


def _headings(lines: Sequence[str], kind: str, title: str) -> list[tuple[int, str, bool]]:
    """(line index, heading in force from there, whether it starts a section)."""
    if kind == "markdown":
        return _markdown_headings(lines)
    if kind == "rst":
        return _rst_headings(lines)
    if kind == "python":
        return _python_headings(lines, title)
    return []


def _markdown_headings(lines: Sequence[str]) -> list[tuple[int, str, bool]]:
    out = []
    fence = None
    for i, line in enumerate(lines):
        m = _FENCE.match(line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            continue
        if fence:
            continue
        m = _ATX.match(line)
        if m and m.group(2):
            out.append((i, m.group(2), True))
        elif (i + 1 < len(lines) and line.strip() and not line.startswith("    ")
              and _SETEXT.match(lines[i + 1]) and (i == 0 or not lines[i - 1].strip()
                                                   or _ATX.match(lines[i - 1]))):
            out.append((i, line.strip(), True))
    return out


def _rst_headings(lines: Sequence[str]) -> list[tuple[int, str, bool]]:
    out = []
    for i, line in enumerate(lines[:-1]):
        under = lines[i + 1]
        text = line.strip()
        if (text and not line[:1].isspace() and not _RST_ADORN.match(line)
                and _RST_ADORN.match(under) and len(under.rstrip()) >= len(text)):
            out.append((i, text, True))
    return out


def _python_headings(lines: Sequence[str], module: str) -> list[tuple[int, str, bool]]:
    """The qualified name in force at each line: a ``def``/``class`` opens a
    scope, a line indented no deeper than it closes it.  Top-level
    definitions start sections."""
    out: list[tuple[int, str, bool]] = []
    stack: list[tuple[int, str]] = []
    quote: str | None = None
    current = module
    for i, line in enumerate(lines):
        stripped = line.strip()
        if quote is not None:  # inside a triple-quoted string
            if line.count(quote) % 2 == 1:
                quote = None
            continue
        if not stripped or stripped.startswith(("#", ")", "]", "}")):
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        m = _PY_DEF.match(line)
        if m:
            stack.append((indent, m.group(3)))
        name = ".".join([module] * bool(module) + [n for _, n in stack])
        if name != current:
            out.append((i, name, bool(m) and indent == 0))
            current = name
        for q in ('"""', "'''"):
            if line.count(q) % 2 == 1:
                quote = q
                break
    return out


# ---------------------------------------------------------------- chunking

@dataclass(frozen=True)
class Chunk:
    """One passage: its text, the heading it falls under, its position."""
    text: str
    heading: str
    index: int
    start_line: int  #: 1-based line of the file where the passage starts


_BLANK = re.compile(r"\n[ \t]*\n")


def _blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the paragraphs (blank-line separated) of ``text``."""
    out = []
    pos = 0
    for m in [*_BLANK.finditer(text), None]:
        end = m.start() if m else len(text)
        seg = text[pos:end]
        lead = len(seg) - len(seg.lstrip("\n"))
        body = seg.rstrip()
        if body.strip():
            out.append((pos + lead, pos + len(body)))
        if m:
            pos = m.end()
    return out


def _tail_start(text: str, start: int, end: int, overlap: int) -> int:
    """Offset where the last ``overlap`` tokens of ``text[start:end]`` begin,
    moved forward to a word start."""
    if overlap <= 0:
        return end
    enc = _tokens.encoding()
    if enc is None:
        width = overlap * _tokens.CHARS_PER_TOKEN
    else:
        width = len(enc.decode(enc.encode_ordinary(text[start:end])[-overlap:]))
    pos = max(start, end - width)
    if pos > start and not text[pos - 1].isspace():
        m = re.compile(r"\s").search(text, pos, end)
        pos = m.end() if m else end
    return pos


def chunk_text(text: str, kind: str = "text", *, title: str = "",
               size: int = DEFAULT_CHUNK_SIZE, overlap: int | None = None) -> list[Chunk]:
    """Passages of at most ``size`` tokens (tiktoken cl100k_base, offline).

    Paragraphs are packed whole; a section heading starts a new passage once
    the current one holds a quarter of ``size``; a paragraph longer than
    ``size`` is cut into token windows.  Consecutive passages of one section
    share about ``overlap`` tokens (None: ``DEFAULT_OVERLAP``, at most a
    quarter of ``size``)."""
    overlap = default_overlap(size) if overlap is None else overlap
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"need size > 0 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    lines = text.split("\n")
    line_starts = [0]
    for line in lines[:-1]:
        line_starts.append(line_starts[-1] + len(line) + 1)

    def line_of(offset: int) -> int:
        return bisect.bisect_right(line_starts, offset) - 1

    events = _headings(lines, kind, title)
    event_lines = [e[0] for e in events]

    def heading_at(offset: int) -> tuple[str, bool]:
        i = line_of(offset)
        if kind == "python":  # a decorator or comment leads into the definition it precedes
            while i + 1 < len(lines) and lines[i].lstrip().startswith(("@", "#")):
                i += 1
        elif kind == "rst" and _RST_ADORN.match(lines[i]):  # an overline
            i += 1
        j = bisect.bisect_right(event_lines, i) - 1
        if j < 0:
            return title, False
        return events[j][1], events[j][0] == i and events[j][2]

    blocks = _blocks(text)
    counts = _tokens.count_tokens([text[s:e] for s, e in blocks])
    pieces: list[tuple[str, str, int]] = []  # (text, heading, start offset)
    cur: list[Any] = []  # [start, end, tokens, heading]

    def flush() -> None:
        if cur:
            pieces.append((text[cur[0]:cur[1]], cur[3], cur[0]))
            cur.clear()

    for (s, e), n in zip(blocks, counts):
        heading, boundary = heading_at(s)
        if n > size:
            if cur and heading_only(text[cur[0]:cur[1]], cur[3], kind):
                s = cur[0]  # a heading leads the windows of its long paragraph
                cur.clear()
            flush()
            cursor = s
            for window in _tokens.token_windows(text[s:e], size, overlap):
                probe = window.strip()[:64]
                at = text.find(probe, cursor, e) if probe else -1
                start = at if at >= 0 else cursor
                pieces.append((window, heading, start))
                cursor = start + 1
            continue
        if cur and boundary and cur[2] >= size // 4:
            flush()
        elif cur and cur[2] + 2 + n > size:
            carry = _tail_start(text, cur[0], cur[1], overlap)
            carried = _tokens.count_tokens([text[carry:cur[1]]])[0] if carry < cur[1] else 0
            flush()
            if carried and carried + 2 + n <= size and not boundary:
                cur.extend([carry, carry, carried, heading])
        if cur:
            cur[1], cur[2] = e, cur[2] + 2 + n
        else:
            cur.extend([s, e, n, heading])
    flush()
    # packing estimated the gaps' tokens: hold every passage to ``size`` exactly
    # (stripping a window can split its first word into one more token: the
    # second cut leaves room for that)
    pieces = [(p.strip(), h, st) for p, h, st in pieces if p.strip()]
    pieces = _merge_small(pieces, kind, size, min_passage_tokens(size))
    exact = _tokens.count_tokens([p[0] for p in pieces])
    inner = max(1, size - 2)
    out: list[Chunk] = []
    for (piece, heading, start), n in zip(pieces, exact):
        parts = [piece] if n <= size else [
            w.strip() for w in _tokens.token_windows(piece, inner, min(overlap, inner - 1))]
        for part in parts:
            if part:
                out.append(Chunk(part, heading, len(out), line_of(start) + 1))
    return out


def min_passage_tokens(size: int) -> int:
    """Passages smaller than this join a neighbour: ``MIN_PASSAGE_TOKENS``, at most size / 4."""
    return min(MIN_PASSAGE_TOKENS, max(1, size // 4))


def chunking_tag(size: int, overlap: int) -> str:
    """What a passage records of how it was cut: a file cut another way (other
    sizes, another chunker version) is re-chunked and re-embedded."""
    return f"{size}/{overlap}/{CHUNKER_VERSION}"


def heading_only(text: str, heading: str | None = None, kind: str | None = None) -> bool:
    """Whether ``text`` is nothing but a heading (its markup, or the ``heading``
    it falls under): a passage no question is answered by.

    >>> heading_only("## See also"), heading_only("Usage\\n=====", kind="rst")
    (True, True)
    >>> heading_only("# Install\\n\\npip install it")
    False
    """
    def adorns(line: str) -> bool:
        return bool(kind in (None, "markdown") and _SETEXT.match(line)
                    or kind in (None, "rst") and _RST_ADORN.match(line))

    lines = [line.strip() for line in text.splitlines() if line.strip()]
    rest = []
    for i, line in enumerate(lines):
        if adorns(line) or (i + 1 < len(lines) and adorns(lines[i + 1]))\
                or kind in (None, "markdown") and _ATX.match(line):
            continue  # an underline or overline, the title it adorns, or a # heading
        rest.append(line)
    return not rest or (bool(heading) and " ".join(rest) == str(heading).strip())


def _merge_small(pieces: list[tuple[str, str, int]], kind: str, size: int,
                 least: int) -> list[tuple[str, str, int]]:
    """A heading alone joins the passage after it (or before it, where only
    that fits); a passage under
    ``least`` tokens joins its neighbour when the two fit in ``size``."""
    counts = _tokens.count_tokens([p[0] for p in pieces])
    items: list[list[Any]] = [[t, h, st, n] for (t, h, st), n in zip(pieces, counts)]
    merged: list[list[Any]] = []
    carry: list[Any] | None = None
    for it in items:
        if carry is not None:
            if carry[3] + 2 + it[3] <= size:
                it = [carry[0] + "\n\n" + it[0], it[1], carry[2], carry[3] + 2 + it[3]]
            elif merged and merged[-1][3] + 2 + carry[3] <= size:
                merged[-1] = [merged[-1][0] + "\n\n" + carry[0], merged[-1][1], merged[-1][2],
                              merged[-1][3] + 2 + carry[3]]
            else:  # fits nowhere (rare): kept, and searches never show it
                merged.append(carry)
            carry = None
        if heading_only(it[0], it[1], kind):
            carry = it
        else:
            merged.append(it)
    if carry is not None and merged and merged[-1][3] + 2 + carry[3] <= size:
        merged[-1] = [merged[-1][0] + "\n\n" + carry[0], merged[-1][1], merged[-1][2],
                      merged[-1][3] + 2 + carry[3]]
    elif carry is not None:
        merged.append(carry)
    out: list[list[Any]] = []
    for it in merged:
        if out and (it[3] < least or out[-1][3] < least) and out[-1][3] + 2 + it[3] <= size:
            prev = out[-1]
            out[-1] = [prev[0] + "\n\n" + it[0], prev[1], prev[2], prev[3] + 2 + it[3]]
        else:
            out.append(it)
    return [(t, h, st) for t, h, st, _ in out]


def default_overlap(size: int) -> int:
    """The overlap used when none is given: ``DEFAULT_OVERLAP``, at most size / 4."""
    return min(DEFAULT_OVERLAP, max(0, size // 4))


def chunk_document(doc: Document, *, size: int = DEFAULT_CHUNK_SIZE,
                   overlap: int | None = None) -> list[Chunk]:
    """Passages of one document (see ``chunk_text``)."""
    return chunk_text(doc.text, doc.kind, title=doc.title, size=size, overlap=overlap)


# ---------------------------------------------------------------- the demo corpus

#: standard-library modules left out of the demo: side effects on import or
#: in tests, or tooling rather than library
_DEMO_SKIP = frozenset({"antigravity", "this", "idlelib", "turtledemo", "lib2to3", "test",
                        "ensurepip", "pydoc_data", "venv", "tkinter", "turtle"})


@dataclass(frozen=True)
class Passage:
    """A docstring passage: ``rank`` 0 module, 1 top-level name, 2 method."""
    text: str
    qualname: str
    module: str
    rank: int
    order: int
    path: str

    @property
    def summary(self) -> str:
        """What the demo embeds: the name with its signature and the docstring's
        first paragraph (the rest, parameter lists and tables, blurs what the
        name does: all-MiniLM-L6-v2 ranked an expected answer first for 3 of the
        demo's 6 questions on whole docstrings, for all 6 on these).

        >>> Passage("json.loads(s)\\nDeserialize s.\\n\\nMore detail.", "json.loads", "json", 1, 0, "").summary
        'json.loads(s)\\nDeserialize s.'
        """
        head, _, doc = self.text.partition("\n")
        first = re.split(r"\n[ \t]*\n", doc.strip(), maxsplit=1)[0]
        return f"{head}\n{first}" if first else head


def _signature(node: ast.AST) -> str:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        try:
            return f"({ast.unparse(node.args)})"
        except Exception:  # malformed defaults: the name alone does
            return "()"
    return ""


def _source_docstrings(module: str, path: Path) -> Iterator[tuple[str, str, int]]:
    """(qualname, text, rank) of a Python source file's public docstrings."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield module, f"{module}\n{doc}", 0
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if node.name.startswith("_"):
            continue
        name = f"{module}.{node.name}"
        doc = ast.get_docstring(node)
        if doc:
            yield name, f"{name}{_signature(node)}\n{doc}", 1
        if isinstance(node, ast.ClassDef):
            for sub in node.body:
                if (isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and not sub.name.startswith("_")):
                    doc = ast.get_docstring(sub)
                    if doc:
                        qual = f"{name}.{sub.name}"
                        yield qual, f"{qual}{_signature(sub)}\n{doc}", 2


def _compiled_docstrings(module: str) -> Iterator[tuple[str, str, int]]:
    """(qualname, text, rank) of a built-in or extension module's docstrings."""
    try:
        with warnings.catch_warnings():  # deprecated modules say so on import
            warnings.simplefilter("ignore")
            mod = importlib.import_module(module)
    except Exception:  # not buildable here, or refuses to import: skip it
        return
    doc = inspect.getdoc(mod)
    if doc:
        yield module, f"{module}\n{doc}", 0
    for name, obj in sorted(vars(mod).items()):
        if name.startswith("_") or getattr(obj, "__module__", module) != module:
            continue
        doc = inspect.getdoc(obj) if callable(obj) else None
        if doc:
            yield f"{module}.{name}", f"{module}.{name}\n{doc}", 1


def stdlib_modules() -> list[tuple[str, Path | None]]:
    """(name, source file or None for compiled modules) of the public
    standard-library modules of this interpreter (packages: every module in them)."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    names = sorted(getattr(sys, "stdlib_module_names", ()))
    out: list[tuple[str, Path | None]] = []
    for name in names:
        if name.startswith("_") or name in _DEMO_SKIP:
            continue
        if (lib / f"{name}.py").is_file():
            out.append((name, lib / f"{name}.py"))
        elif (lib / name / "__init__.py").is_file():
            for f in sorted((lib / name).rglob("*.py")):
                rel = f.relative_to(lib)
                if any(p.startswith("_") and p != "__init__.py" or p in ("test", "tests", "idle_test")
                       for p in rel.parts):
                    continue
                out.append((module_name(f), f))
        else:
            out.append((name, None))
    return out


def stdlib_docstrings(limit: int | None = None, *, size: int = DEFAULT_CHUNK_SIZE) -> list[Passage]:
    """Docstring passages of the standard library, at most ``limit``.

    A prefix of any length covers the library evenly: module docstrings
    first, then each module's first public name, then its second, ..., then
    methods.  Docstrings longer than ``size`` tokens keep their first window."""
    found: list[Passage] = []
    for module, path in stdlib_modules():
        docs = _compiled_docstrings(module) if path is None else _source_docstrings(module, path)
        per_rank: Counter[int] = Counter()
        for qualname, text, rank in docs:
            found.append(Passage(text, qualname, module, rank, per_rank[rank],
                                 str(path) if path else f"<built-in module {module}>"))
            per_rank[rank] += 1
    found.sort(key=lambda p: (p.rank, p.order, p.module))
    chosen = found[:limit] if limit is not None else found
    counts = _tokens.count_tokens([p.text for p in chosen])
    return [p if n <= size else Passage(next(_tokens.token_windows(p.text, size)), p.qualname,
                                        p.module, p.rank, p.order, p.path)
            for p, n in zip(chosen, counts)]
