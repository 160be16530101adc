"""A failing world: a full disk, an embedding model that misbehaves, a
second writer.  Each call either happens and returns, or raises a
leann_store error and changes nothing; the store then passes check() at its
last committed state, and the next call works.  Work that follows a commit
(merges, compactions) is retried later, never reported as the failure of the
call that committed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from leann_store import LeannStore, StoreConfig
from leann_store.errors import LeannError, StoreLockedError
from store_util import HashEmbed

ROOT = Path(__file__).resolve().parent.parent
CFG = StoreConfig(graph_rows=16, merge_rows=24)

# The child: a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored, so a write
# past it fails with EFBIG as on a full disk) just above the store's files,
# then adds (with merges), deletes, flushes, compactions and snapshots
# until well past the first failure.  It reports every call's outcome.
CHILD = textwrap.dedent("""
    import json, os, resource, signal, sys, warnings
    sys.path.insert(0, {tests!r})
    import numpy as np
    from leann_store import LeannStore
    from leann_store.errors import LeannError
    from store_util import HashEmbed
    path, limit = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    store = LeannStore.open(path, HashEmbed())
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    log = []
    failures = 0
    for step in range(400):
        kind = ["add", "add", "add", "delete", "flush", "compact", "snapshot"][step % 7]
        ids = [f"s{{step}}-{{i}}" for i in range(int(rng.integers(5, 40)))]
        try:
            if kind == "add":
                store.add([f"alpha {{i}} beta {{step}} " + "x" * int(rng.integers(0, 3000)) for i in range(len(ids))],
                          ids=ids, metadatas=[{{"step": step}}] * len(ids))
                log.append(["add", ids, "ok"])
            elif kind == "delete":
                victims = [f"s{{step - 1 - (step % 3)}}-{{i}}" for i in range(3)]
                store.delete(victims)
                log.append(["delete", victims, "ok"])
            elif kind == "flush":
                store.flush(); log.append(["flush", [], "ok"])
            elif kind == "compact":
                store.compact(); log.append(["compact", [], "ok"])
            else:
                store.snapshot(os.path.join(os.path.dirname(path), f"snap{{step}}")); log.append(["snapshot", [], "ok"])
        except LeannError as exc:
            failures += 1
            log.append([kind, ids, "LeannError " + type(exc).__name__ + ": " + str(exc)[:200]])
        except BaseException as exc:
            failures += 1
            log.append([kind, ids, "OTHER " + type(exc).__name__ + ": " + str(exc)[:200]])
        if failures >= 12:
            break
    store.close()
    print(json.dumps(log))
""")


def _store(path: Path, n: int = 40) -> None:
    s = LeannStore.open(path, HashEmbed(), CFG)
    s.add([f"alpha {i} beta" for i in range(n)], ids=[f"b{i}" for i in range(n)])
    s.close()


def test_a_full_disk_fails_calls_cleanly_and_loses_nothing_acknowledged(tmp_path):
    path = tmp_path / "store"
    _store(path)
    limit = max(os.path.getsize(p) for p in path.iterdir()) + 256 * 1024
    proc = subprocess.run([sys.executable, "-c", CHILD.format(tests=str(ROOT / "tests")), str(path), str(limit)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = json.loads(proc.stdout.strip().splitlines()[-1])
    outcomes = [o for _, _, o in log]
    assert any(o != "ok" for o in outcomes), "the limit was never reached"
    others = [entry for entry in log if entry[2].startswith("OTHER")]
    assert not others, others[:3]
    # what was acknowledged is there, what failed left nothing
    want = {f"b{i}" for i in range(40)}
    for kind, ids, outcome in log:
        if outcome == "ok" and kind == "add":
            want |= set(ids)
        elif outcome == "ok" and kind == "delete":
            want -= set(ids)
    s = LeannStore.open(path, HashEmbed())
    try:
        s.check()
        held = {r.id for r in s.find(None)}
        assert held == want, (sorted(held - want)[:5], sorted(want - held)[:5])
        s.add(["after the disk came back"], ids=["after"])  # the next call works
        s.flush()
        s.check()
        assert s.get(["after"])[0].text == "after the disk came back"
    finally:
        s.close()


class Moody:
    """An embed function that misbehaves on demand."""

    def __init__(self) -> None:
        self.good = HashEmbed()
        self.mode = "ok"

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = self.good(texts)
        if self.mode == "raise":
            raise RuntimeError("model server down")
        if self.mode == "shape":
            return out[:, :, None]
        if self.mode == "count":
            return out[:-1]
        if self.mode == "dim":
            return out[:, :-1]
        if self.mode == "nan":
            out[0, 0] = np.nan
        if self.mode == "inf":
            out[-1, 1] = np.inf
        if self.mode == "strings":
            return np.array([["a"] * out.shape[1]] * len(texts))
        return out


@pytest.mark.parametrize("mode", ["raise", "shape", "count", "dim", "nan", "inf", "strings"])
def test_a_misbehaving_embed_fails_the_call_and_changes_nothing(tmp_path, mode):
    embed = Moody()
    s = LeannStore.open(tmp_path / "s", embed, CFG)
    try:
        s.add([f"alpha {i} beta" for i in range(30)], ids=[f"d{i}" for i in range(30)])
        s.add(["delta one", "delta two"], ids=["x1", "x2"])
        before = sorted((r.id, r.text) for r in s.find(None))
        q = HashEmbed()(["alpha beta"])[0]
        embed.mode = mode
        # the model's own exception comes through unchanged (tests/test_recompute.py),
        # a wrong answer is a CallbackError
        expected = RuntimeError if mode == "raise" else LeannError
        with pytest.raises(expected):
            s.add(["new one", "new two"], ids=["n1", "d3"])
        with pytest.raises(expected):
            s.search(q, k=5)  # recompute search re-embeds passages
        assert sorted((r.id, r.text) for r in s.find(None)) == before
        s.check()
        embed.mode = "ok"
        s.add(["new one", "new two"], ids=["n1", "d3"])
        assert {h.id for h in s.search(q, k=40)} >= {"n1", "d3", "x1"}
        s.check()
    finally:
        s.close()


def test_a_second_writer_is_refused_and_readers_are_not(tmp_path):
    path = tmp_path / "s"
    _store(path, 20)
    s = LeannStore.open(path, HashEmbed())
    try:
        code = textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(ROOT / 'tests')!r})
            from leann_store import LeannStore
            from leann_store.errors import StoreLockedError
            from store_util import HashEmbed
            try:
                LeannStore.open({str(path)!r}, HashEmbed())
                print("OPENED")
            except StoreLockedError as exc:
                print("LOCKED", exc)
            r = LeannStore.open({str(path)!r}, HashEmbed(), read_only=True)
            print("READ", r.count())
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
        assert "LOCKED" in out and "READ 20" in out, out
        with pytest.raises(StoreLockedError):  # the same process, a second handle
            LeannStore.open(path, HashEmbed())
        s.add(["still writable"], ids=["w"])
    finally:
        s.close()


def test_a_read_only_directory(tmp_path):
    path = tmp_path / "s"
    _store(path, 20)
    os.chmod(path, 0o500)
    try:
        if os.access(path, os.W_OK):
            pytest.skip("running as root: cannot make the directory read-only")
        with pytest.raises(LeannError):
            LeannStore.open(path, HashEmbed())
        r = LeannStore.open(path, HashEmbed(), read_only=True)
        assert r.count() == 20
        r.close()
    finally:
        os.chmod(path, 0o700)


def test_an_embed_that_never_answers_times_out_and_changes_nothing(tmp_path):
    """embed_timeout: a hung model fails the call with a CallbackError, the
    store stays as it was, and the next call (the model back) works."""
    import threading
    import time

    from leann_store.errors import CallbackError

    gate = threading.Event()
    inner = HashEmbed()

    def model(texts):
        if texts and texts[0].startswith("hang"):
            gate.wait(30)  # a model that never answers (released at the end of the test)
        return inner(texts)

    cfg = StoreConfig.from_options(graph_rows=64, merge_rows=32)
    store = LeannStore.open(tmp_path / "s", model, config=cfg, embed_timeout=0.5)
    try:
        store.add([f"doc {i} alpha beta" for i in range(100)])
        before = store.stats()["documents"]
        t = time.perf_counter()
        with pytest.raises(CallbackError, match="within 0.5 s"):
            store.add(["hang on this one"])
        assert time.perf_counter() - t < 5
        assert store.stats()["documents"] == before and store.get(["hang on this one"]) == []
        with pytest.raises(CallbackError, match="embed_timeout"):  # a search's recompute, too
            store.search(inner(["doc 3 alpha beta"])[0], k=3, embed=lambda texts: model(["hang"] + texts[1:]))
        store.check()
        assert store.search(inner(["doc 3 alpha beta"])[0], k=3)[0].text == "doc 3 alpha beta"
    finally:
        gate.set()
        store.close()
