"""Finding, reading and chunking documents for the command line (no model needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from leann_store.command import sources
from leann_store.command.sources import chunk_text, read_document, scan
from leann_store.tokens import count_tokens


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    write(root / "a.md", "# A\n\ntext\n")
    write(root / "b.txt", "plain\n")
    write(root / "c.py", "def f():\n    pass\n")
    write(root / "d.html", "<html><title>D</title><p>x</p></html>")
    write(root / "e.json", '{"k": 1}')
    write(root / "f.rst", "Title\n=====\n\nbody\n")
    write(root / "skip.bin", b"\0\1")                     # unknown suffix
    write(root / "build.log", "log\n")                     # unknown suffix
    write(root / ".hidden.md", "# hidden\n")
    write(root / ".git" / "config.txt", "x")
    write(root / ".cache" / "x.md", "x")
    write(root / "node_modules" / "m.md", "x")
    write(root / "env" / "pyvenv.cfg", "home = /usr\n")
    write(root / "env" / "lib.py", "x = 1\n")
    write(root / ".gitignore", "*.tmp.md\nout/\n!keep.tmp.md\n")
    write(root / "x.tmp.md", "ignored\n")
    write(root / "keep.tmp.md", "kept by negation\n")
    write(root / "out" / "o.md", "ignored folder\n")
    write(root / "sub" / ".gitignore", "secret.txt\n/only-here.md\n")
    write(root / "sub" / "secret.txt", "ignored by the nested file\n")
    write(root / "sub" / "only-here.md", "anchored: ignored\n")
    write(root / "sub" / "deeper" / "only-here.md", "anchored pattern does not reach here\n")
    write(root / "sub" / "deeper" / "secret.txt", "unanchored pattern reaches here\n")
    return root


def rel(result: sources.ScanResult, root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in result.files}


def test_scan_is_gitignore_aware_and_skips_hidden_tool_and_venv_folders(tree: Path) -> None:
    got = rel(scan([tree]), tree)
    assert got == {"a.md", "b.txt", "c.py", "d.html", "e.json", "f.rst", "keep.tmp.md",
                   "sub/deeper/only-here.md"}


def test_scan_without_gitignore_takes_ignored_files(tree: Path) -> None:
    got = rel(scan([tree], gitignore=False), tree)
    assert {"x.tmp.md", "out/o.md", "sub/secret.txt"} <= got
    assert not any(p.startswith((".git/", "node_modules/", "env/", ".cache/")) for p in got)


def test_scan_named_files_missing_paths_duplicates_and_size_cap(tree: Path, tmp_path: Path) -> None:
    res = scan([tree / "build.log", tree / "a.md", tree])
    assert res.files[0] == tree / "build.log"      # named directly: taken whatever its suffix
    assert res.files.count(tree / "a.md") == 1     # seen twice, kept once
    assert res.root_of[tree / "c.py"] == tree
    with pytest.raises(FileNotFoundError, match="nope"):
        scan([tmp_path / "nope"])
    write(tree / "big.txt", "x" * 2000)
    assert tree / "big.txt" not in scan([tree], max_bytes=1000).files
    os.symlink(tree / "a.md", tree / "alias.md")
    assert sum(p.resolve() == (tree / "a.md") for p in scan([tree]).files) == 1


def test_read_document_kinds_titles_and_binary(tree: Path, tmp_path: Path) -> None:
    html = write(tmp_path / "p.html", "<html><head><title> Page  One </title><style>p{}</style></head>"
                 "<body><h1>Intro</h1><p>Hello &amp; <b>welcome</b>.</p><script>var x;</script>"
                 "<ul><li>one</li><li>two</li></ul><h2>Usage</h2><pre>a  b\n  c</pre></body></html>")
    doc = read_document(html)
    assert doc is not None and doc.title == "Page One" and doc.kind == "markdown"
    assert "# Intro" in doc.text and "Hello & welcome." in doc.text and "## Usage" in doc.text
    assert "var x" not in doc.text and "p{}" not in doc.text and "one\ntwo" in doc.text
    assert "a  b\n  c" in doc.text
    assert read_document(tree / "a.md").title == "A"
    assert read_document(tree / "f.rst").title == "Title"
    assert read_document(tree / "e.json").text == '{"k": 1}'
    assert read_document(tree / "b.txt").title == "b.txt"
    pkg = write(tmp_path / "lib" / "pkg" / "mod.py", "x = 1\n")
    init = write(tmp_path / "lib" / "pkg" / "__init__.py", "")
    write(tmp_path / "lib" / "pkg" / "sub" / "__init__.py", "")
    deep = write(tmp_path / "lib" / "pkg" / "sub" / "leaf.py", "x = 1\n")
    assert read_document(pkg).title == "pkg.mod"
    assert read_document(init).title == "pkg"
    assert read_document(deep).title == "pkg.sub.leaf"
    assert read_document(write(tmp_path / "lib" / "script.py", "")).title == "script"
    assert read_document(write(tmp_path / "bin.txt", b"abc\0def")) is None
    latin = read_document(write(tmp_path / "l.txt", "caf\xe9\r\nline".encode("cp1252")))
    assert latin is not None and latin.text == "café\nline"
    bom = read_document(write(tmp_path / "bom.md", b"\xef\xbb\xbf# T\n"))
    assert bom is not None and bom.title == "T"
    assert read_document(tree / "a.md").digest != read_document(tree / "b.txt").digest
    assert read_document(tree / "a.md").digest == sources.file_digest((tree / "a.md").read_bytes())


def test_markdown_chunks_start_at_headings_and_skip_fenced_hashes() -> None:
    text = ("# Guide\n\nIntro paragraph about the guide.\n\n## Install\n\nRun pip install.\n\n"
            "```sh\n# not a heading\npip install x\n```\n\n## Use\n\nCall it.\n")
    chunks = chunk_text(text, "markdown", title="Guide", size=16, overlap=0)
    assert [c.heading for c in chunks] == ["Guide", "Install", "Install", "Use"]
    assert chunks[2].text.startswith("```sh") and chunks[3].text.startswith("## Use")
    lines = text.split("\n")
    for c in chunks:
        assert lines[c.start_line - 1].strip() == c.text.split("\n")[0].strip()
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_rst_and_python_headings() -> None:
    rst = "Top\n===\n\nIntro.\n\n=====\nOver\n=====\n\nSub\n---\n\nBody text.\n"
    got = chunk_text(rst, "rst", size=12, overlap=0)
    # a heading with nothing under it joins what follows: no passage is a heading alone
    assert [(c.heading, c.start_line) for c in got] == [("Top", 1), ("Sub", 6)]
    assert got[1].text.endswith("Body text.") and "Over" in got[1].text
    py = ('"""Module doc."""\n\nimport os\n\n\nclass Box:\n    """A box."""\n\n    def open(self):\n'
          '        return 1\n\n    @property\n    def size(self):\n        """Its size.\n\nno dedent here\n'
          '        """\n        return 2\n\n\n@decorator\ndef helper(\n    a,\n):\n    return a\n')
    chunks = chunk_text(py, "python", title="pkg.mod", size=8, overlap=0)
    heads = [c.heading for c in chunks]
    assert heads[0] == "pkg.mod"
    assert "pkg.mod.Box" in heads and "pkg.mod.Box.open" in heads
    assert "pkg.mod.Box.size" in heads and heads[-1] == "pkg.mod.helper"
    assert next(c for c in chunks if c.heading == "pkg.mod.helper").text.startswith("@decorator")


def test_headings_and_tiny_sections_join_a_neighbour() -> None:
    """What the CMake documentation showed: a heading alone, and a one-line
    "See Also" section, each took a top-5 slot as its own passage."""
    body = " ".join(f"The frobnicate command rotates log number {i} of the server." for i in range(12))
    text = (f"# frobnicate\n\n## Synopsis\n\n{body}\n\n## Options\n\n{body}\n\n"
            "## See Also\n\n* rotate(1)\n")
    chunks = chunk_text(text, "markdown", size=200, overlap=0)
    assert not any(sources.heading_only(c.text, c.heading, "markdown") for c in chunks)
    assert min(count_tokens([c.text for c in chunks])) >= sources.min_passage_tokens(200)
    assert chunks[0].text.startswith("# frobnicate\n\n## Synopsis")      # headings lead their text
    assert chunks[-1].text.endswith("* rotate(1)") and chunks[-1].heading == "Options"
    assert "".join("".join(c.text.split()) for c in chunks) == "".join(text.split())
    # a heading before a paragraph longer than a passage leads its first window
    long = "# Big\n\n" + " ".join(f"word{i}" for i in range(400))
    first = chunk_text(long, "markdown", size=100, overlap=0)[0]
    assert first.text.startswith("# Big\n\nword0") and first.heading == "Big"
    assert sources.heading_only("See Also\n--------", "See Also", "rst")
    assert not sources.heading_only("* rotate(1)", "See Also", "markdown")
    assert sources.chunking_tag(200, 20) != "200/20"      # indexes cut by the old chunker re-chunk


def test_chunks_fit_the_size_and_cover_the_text_in_order() -> None:
    para = " ".join(f"word{i}" for i in range(300))
    text = "# Big\n\n" + para + "\n\nshort one\n\n" + "\n\n".join(f"p{i} " * 15 for i in range(20))
    for size in (16, 50, 200):
        chunks = chunk_text(text, "markdown", size=size, overlap=0)
        assert max(count_tokens([c.text for c in chunks])) <= size
        assert "".join("".join(c.text.split()) for c in chunks) == "".join(text.split())


def test_overlap_repeats_the_tail_of_the_previous_passage() -> None:
    text = "\n\n".join(f"Paragraph {i} says something about topic {i}." for i in range(30))
    chunks = chunk_text(text, "text", size=40, overlap=10)
    assert len(chunks) > 3
    for a, b in zip(chunks, chunks[1:]):
        assert b.text.split()[0] in a.text   # b starts inside a's tail
    assert max(count_tokens([c.text for c in chunks])) <= 40
    assert chunk_text("", "text") == [] and chunk_text(" \n\n ", "text") == []
    with pytest.raises(ValueError):
        chunk_text("x", size=10, overlap=10)
    assert sources.default_overlap(8) == 2 and chunk_text("a b", size=8)[0].text == "a b"


def test_real_files_chunk_within_size() -> None:
    import json as json_mod
    folder = Path(json_mod.__file__).parent
    for path in sorted(folder.glob("*.py")):
        doc = read_document(path)
        chunks = sources.chunk_document(doc, size=120)
        assert chunks and max(count_tokens([c.text for c in chunks])) <= 120
        assert all(c.heading.startswith("json") for c in chunks)


def test_stdlib_docstrings_cover_modules_evenly() -> None:
    got = sources.stdlib_docstrings(60)
    assert len(got) == 60
    assert [p.rank for p in got] == sorted(p.rank for p in got)
    assert len({p.module for p in got}) == 60          # module docstrings first, one per module
    assert all(p.text.startswith(p.qualname) for p in got)
    assert max(count_tokens([p.text for p in got])) <= sources.DEFAULT_CHUNK_SIZE


def minimal_pdf(pages: list[str], title: str) -> bytes:
    """A valid PDF with one line of Helvetica text per page (no PDF library needed)."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for text in pages:
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objs) + 2} 0 R "
                    f"/Resources << /Font << /F1 {{font}} 0 R >> >> >>".encode())
        kids.append(len(objs))
        objs.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    font = len(objs)
    objs.append(f"<< /Title ({title}) >>".encode())
    info = len(objs)
    objs = [o.replace(b"{font}", str(font).encode()) for o in objs]
    objs[1] = (f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>").encode()
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, o)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1, info, xref)
    return bytes(out)


def test_pdf_files_need_the_pdf_extra(tmp_path: Path) -> None:
    pdf = write(tmp_path / "docs" / "report.pdf", minimal_pdf(["First page text.", "Second page."], "Report"))
    if not sources.pdf_supported():
        res = scan([tmp_path / "docs"])
        assert res.files == [] and any("leann-store[pdf]" in k for k in res.skipped)
        return
    assert scan([tmp_path / "docs"]).files == [pdf]
    doc = read_document(pdf)
    assert doc is not None and doc.title == "Report"
    assert "First page text." in doc.text and "Second page." in doc.text
