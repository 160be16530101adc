"""Fuzzes the command's document readers (leann_store/command/sources.py):
``read_document`` on the bytes of a file of each kind it knows (text,
Markdown, reStructuredText, Python, HTML, JSON; PDF is left out, pypdf is
not a dependency of the tests) and ``chunk_document`` on what it reads.

Guidance: atheris's Python bytecode coverage of leann_store.command.sources
(the HTML parser and the heading regexes are the standard library's and are
not instrumented).  The first byte of the input picks the file's suffix.
Any bytes must give a Document or None (binary), never an exception; the
passages must be non-empty, lie inside the text in order, and stay within a
bounded multiple of the text's size.

    python fuzz/fuzz_sources.py CORPUS_DIR [libFuzzer flags]
"""

from __future__ import annotations

import sys
from pathlib import Path

import common

common.setup()

import atheris  # noqa: E402

with atheris.instrument_imports(include=["leann_store.command.sources"]):
    from leann_store.command.sources import chunk_document, read_document  # noqa: E402

SUFFIXES = [".txt", ".md", ".rst", ".py", ".html", ".json", ".htm", ".markdown"]


def one_input(data: bytes) -> None:
    if not data:
        return
    path = Path("/nonexistent") / f"doc{SUFFIXES[data[0] % len(SUFFIXES)]}"
    doc = read_document(path, data=data[1:])
    if doc is None:
        assert b"\0" in data[1:]
        return
    assert isinstance(doc.text, str) and "\0" not in doc.text and "\0" not in doc.title
    chunks = chunk_document(doc, size=24, overlap=4)
    total = 0
    for c in chunks:
        assert c.text.strip(), "an empty passage"
        total += len(c.text)
    assert total <= 4 * len(doc.text) + 64, "passages much larger than the text"


def seed(corpus: str) -> None:
    d = Path(corpus)
    if d.is_dir() and not any(d.iterdir()):
        seeds = {
            ".md": b"# Title\n\nSome text.\n\n## Part\n\n```\ncode\n```\n\nSetext\n======\n\nmore",
            ".rst": b"Title\n=====\n\nText here.\n\nSub\n---\n\n.. note:: x\n",
            ".py": b'"""Doc."""\n\nclass A:\n    """A doc."""\n    def f(self):\n        return 1\n',
            ".html": b"<html><head><title>T</title><script>x</script></head><body><h1>H</h1><p>a&amp;b"
                     b"<br>c</p><pre>x  y</pre></body></html>",
            ".json": b'{"a": [1, 2, {"b": "text"}], "c": "\\u00e9"}',
            ".txt": b"plain text\r\nwith lines\rand more\xef\xbb\xbf \x93cp1252\x94",
        }
        for i, (suffix, body) in enumerate(seeds.items()):
            (d / f"seed{i}").write_bytes(bytes([SUFFIXES.index(suffix)]) + body)


if __name__ == "__main__":
    dirs = [a for a in sys.argv[1:] if not a.startswith("-")]
    if dirs:
        seed(dirs[0])
    common.run(one_input)
