"""The graph's lifecycle (leann_store/generations.py) and the docstore's space:
one commit per write, nothing left behind by a failed one, pages given back."""

from __future__ import annotations

import os
import sqlite3
import warnings

import numpy as np
import pytest

from leann_store import LeannIndex, LeannStore, StoreConfig, errors
from leann_store.generations import KEEP, Generations

from store_util import HashEmbed, random_text

DIM = 64
CFG = StoreConfig.from_options(graph_rows=400, merge_rows=200, compact_fraction=0.2)


def _long_texts(n: int, start: int = 0) -> list[str]:
    """Passages of ~600 characters, distinct by ``start + i``."""
    rng = np.random.default_rng(start)
    return [f"passage {start + i}: {random_text(rng, 6)} " + " ".join(f"word{(i * 7 + j) % 997}" for j in range(80))
            for i in range(n)]


def _vacuumed_bytes(path: str, tmp_path) -> int:
    """The same live content, as SQLite stores it compactly."""
    dest = str(tmp_path / f"vacuumed-{os.urandom(4).hex()}.sqlite")
    conn = sqlite3.connect(os.path.join(path, "docstore.sqlite"))
    conn.execute("VACUUM INTO ?", (dest,))
    conn.close()
    return os.path.getsize(dest)


def test_docstore_gives_pages_back_after_adds_merges_deletes_and_compactions(tmp_path):
    """The review's case in small: batches through merges (each drops the
    delta's vectors), deletes and compactions; the file stays near what its
    live rows need, and stats() splits it."""
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(DIM), config=CFG)
    for a in range(0, 2400, 300):
        s.add(_long_texts(300, a), metadatas=[{"source": f"doc{i % 40}.md", "i": i} for i in range(a, a + 300)],
              ids=[f"p{i}" for i in range(a, a + 300)])
    s.delete([f"p{i}" for i in range(0, 2400, 3)])
    s.delete_where({"source": "doc7.md"})
    s.add(_long_texts(150, 5000), ids=[f"q{i}" for i in range(150)])
    s.flush()
    with sqlite3.connect(os.path.join(s.path, "docstore.sqlite")) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    space = s.stats()["docstore_space"]
    assert space["free"] <= 0.05 * space["file"], space
    assert space["vectors"] == 0 and space["text"] > 0 and space["metadata"] > 0
    assert sum(v for key, v in space.items() if key != "file") == space["file"]
    s.close()
    file_bytes = os.path.getsize(tmp_path / "s" / "docstore.sqlite")
    assert file_bytes <= 1.2 * _vacuumed_bytes(str(tmp_path / "s"), tmp_path)


def test_a_store_written_without_auto_vacuum_is_fixed_on_open(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(DIM), config=CFG)
    s.add(_long_texts(500))
    s.close()
    db = tmp_path / "s" / "docstore.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA auto_vacuum=NONE")
    conn.execute("VACUUM")  # as the previous version wrote it
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(DIM))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert len(s) == 500
    s.check()
    s.close()


def test_a_failed_commit_leaves_no_file_and_no_change(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(DIM), config=CFG)
    s.add(_long_texts(450))
    gen: Generations = s._gen
    before = gen.state
    files = sorted(os.listdir(s.path))
    index = before.index.with_added(np.random.default_rng(0).normal(size=(3, DIM)).astype(np.float32))

    def edit(cur):
        cur.execute("DELETE FROM docs WHERE rowid = 1")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        gen.commit(edit, lambda *_: before, graph=index, kind="insert")
    assert gen.state is before and sorted(os.listdir(s.path)) == files
    assert len(s) == 450
    s.check()
    # a write that keeps the graph makes no file and keeps the generation
    st = gen.commit(lambda cur: None, lambda _, g, v: before.with_delta(before.delta_rows, before.delta_vecs,
                                                                         generation=g, version=v), graph=KEEP)
    assert st.generation == before.generation and st.version == before.version + 1
    s.close()


def test_work_after_a_committed_write_is_deferred_not_failed(tmp_path, monkeypatch):
    """A merge that fails after an add committed: the add returns (its rows
    are there), a MaintenanceWarning says why the merge waits, and the next
    write merges."""
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(DIM), config=CFG)
    s.add(_long_texts(450))
    real = LeannIndex.with_added

    def broken(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LeannIndex, "with_added", broken)
    with pytest.warns(errors.MaintenanceWarning, match="No space left"):
        ids = s.add(_long_texts(250, 1000))
    assert len(s) == 700 and len(s.get(ids)) == 250
    assert "No space left" in s.stats()["maintenance_deferred"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.MaintenanceWarning)  # told once, not per write
        s.add(_long_texts(1, 3000))
    monkeypatch.setattr(LeannIndex, "with_added", real)
    s.add(_long_texts(1, 4000))
    st = s.stats()
    assert st["maintenance_deferred"] is None and st["delta_rows"] == 0 and st["documents"] == 702
    s.check()
    s.close()


def test_snapshot_replaces_a_store_whole_and_refuses_other_folders(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(DIM), config=CFG)
    s.add(_long_texts(450))
    s.snapshot(tmp_path / "copy")
    assert LeannStore.is_store(tmp_path / "copy") and not LeannStore.is_store(tmp_path)
    with pytest.raises(errors.StoreExistsError, match="replace=True"):
        s.snapshot(tmp_path / "copy")
    s.add(["one more"], ids=["extra"])
    s.snapshot(tmp_path / "copy", replace=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        s.snapshot(tmp_path / "other", replace=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    s.snapshot(s.path)  # its own directory: a flush, nothing copied
    s.close()
    c = LeannStore.open(tmp_path / "copy", embed=HashEmbed(DIM))
    assert len(c) == 451 and c.get(["extra"])[0].text == "one more"
    c.check()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".copy")]
    c.close()


def test_clean_close_leaves_no_stale_pid(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(DIM))
    assert (tmp_path / "s" / "LOCK").read_text() == str(os.getpid())
    s.close()
    assert (tmp_path / "s" / "LOCK").read_text() == ""


def test_given_embeddings_from_another_model_are_refused(tmp_path):
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(DIM))
    texts = _long_texts(5)
    foreign = HashEmbed(DIM, salt="other")(texts)
    with pytest.raises(errors.ModelMismatchError, match="cosine"):
        s.add(texts, embeddings=foreign)
    assert len(s) == 0
    s.add(texts, embeddings=foreign, check_model=False)  # the caller says so
    assert len(s) == 5
    s.close()
