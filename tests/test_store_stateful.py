"""Random interleavings of add / upsert / delete / delete_where / search /
keyword and hybrid search / close-reopen / flush against a brute-force
reference (the keyword index is checked against it after every step).

The stores stay small (tens of documents), so even once rows are in the graph
the two-level search scores every reachable passage exactly: answers must
equal the reference's while the store is exact, and the graph must find at
least 90% of them."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from leann_store import LeannStore, StoreConfig
from store_util import WORDS, HashEmbed, Reference, text_vector

ID_POOL = [f"id{i}" for i in range(40)]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
metas = st.fixed_dictionaries({"g": st.integers(0, 3)}, optional={"tag": st.sampled_from(["a", "b", "c"]),
                                                                  "n": st.floats(-5, 5, allow_nan=False)})
filters = st.one_of(
    st.none(),
    st.integers(0, 3).map(lambda g: {"g": g}),
    st.integers(0, 3).map(lambda g: {"g": {"$ne": g}}),
    st.sampled_from(["a", "b"]).map(lambda t: {"tag": t}),
    st.sampled_from(["a", "b"]).map(lambda t: {"$or": [{"tag": t}, {"g": {"$gte": 2}}]}),
    st.floats(-5, 5, allow_nan=False).map(lambda x: {"n": {"$lt": x}}),
    st.just({"tag": {"$exists": False}}),
)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="leann-stateful-")
        self.embed = HashEmbed()
        # exact up to 48 rows, then merges that insert 16 rows at a time,
        # and compactions past 25% deleted
        self.cfg = StoreConfig.from_options(graph_rows=48, merge_rows=16)
        self.store = LeannStore.open(self.dir, embed=self.embed, config=self.cfg)
        self.ref = Reference()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(batch=st.lists(st.tuples(st.sampled_from(ID_POOL), texts, metas), min_size=1, max_size=12),
          give_vectors=st.booleans())
    def add(self, batch, give_vectors):
        ids = [b[0] for b in batch]
        tx = [b[1] for b in batch]
        ms = [b[2] for b in batch]
        emb = np.stack([text_vector(t) for t in tx]) if give_vectors else None
        assert self.store.add(tx, metadatas=ms, ids=ids, embeddings=emb) == ids
        self.ref.add(tx, ms, ids)

    @rule(ids=st.lists(st.sampled_from(ID_POOL + ["never"]), max_size=5))
    def delete(self, ids):
        want = len(set(ids) & set(self.ref.docs))
        assert self.store.delete(ids) == want
        self.ref.delete(ids)

    @rule(flt=filters.filter(lambda f: f is not None))
    def delete_where(self, flt):
        before = len(self.ref.docs)
        self.ref.delete_where(flt)
        assert self.store.delete_where(flt) == before - len(self.ref.docs)

    @rule(query=texts, k=st.integers(1, 12), flt=filters)
    def search(self, query, k, flt):
        q = text_vector(query)
        got = self.store.search(q, k=k, filter=flt)
        want = self.ref.search(q, k, flt)
        assert len(got) == len(want)
        if self.store.stats()["graph_rows"] == 0:  # exact
            assert np.allclose([h.distance for h in got], [d for d, _ in want], atol=1e-4)
        else:
            found = len({h.id for h in got} & {i for _, i in want})
            assert found >= 0.9 * len(want) - 1e-9 or np.allclose(
                [h.distance for h in got], [d for d, _ in want], atol=1e-4)
        for h in got:
            text, meta = self.ref.docs[h.id]
            assert h.text == text and h.metadata == meta

    @rule(query=texts, k=st.integers(1, 12), flt=filters, hybrid=st.booleans())
    def keyword_search(self, query, k, flt, hybrid):
        """Keyword hits are the documents holding a query word (the filter's
        among them), k of them whenever that many exist; hybrid adds the
        dense side, and k hits whenever k documents match."""
        words = set(query.split())
        allowed = {i for _, i in self.ref.search(text_vector(query), len(self.ref.docs) + 1, flt)}
        holding = {i for i in allowed if words & set(self.ref.docs[i][0].split())}
        if hybrid:
            got = self.store.search(text_vector(query), k=k, filter=flt, text=query, mode="hybrid")
            assert len(got) == min(k, len(allowed)) and {h.id for h in got} <= allowed
            assert all(h.id in holding for h in got if "keyword" in h.found_by)
        else:
            got = self.store.search(None, k=k, filter=flt, text=query, mode="keyword")
            assert len(got) == min(k, len(holding)) and {h.id for h in got} <= holding
        for h in got:
            text, meta = self.ref.docs[h.id]
            assert h.text == text and h.metadata == meta

    @rule()
    def reopen(self):
        self.store.close()
        self.store = LeannStore.open(self.dir, embed=self.embed)

    @precondition(lambda self: len(self.ref.docs) > 0)
    @rule()
    def flush(self):
        self.store.flush()

    @rule()
    def compact(self):
        calls = self.embed.calls
        self.store.compact()
        assert self.embed.calls == calls  # codes only
        assert self.store.stats()["deleted"] == 0
        self.store.check()

    @invariant()
    def same_documents(self):
        assert len(self.store) == len(self.ref.docs)
        got = {r.id: (r.text, r.metadata) for r in self.store.find()}
        assert got == self.ref.docs
        every = self.store.search(None, k=len(self.ref.docs) + 1, text=" ".join(WORDS), mode="keyword")
        assert sorted(h.id for h in every) == sorted(self.ref.docs)
        assert every.stats["keyword"] == len(self.ref.docs)  # no row of a deleted document left


StoreMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestStore = StoreMachine.TestCase


def test_check_after_random_work(tmp_path):
    """The consistency check passes after a long mixed run."""
    rng = np.random.default_rng(0)
    s = LeannStore.open(tmp_path / "s", embed=HashEmbed(), config=StoreConfig.from_options(graph_rows=16, merge_rows=16))
    for step in range(60):
        ids = [f"id{i}" for i in rng.integers(0, 80, size=5)]
        s.add([" ".join(rng.choice(WORDS, 3)) for _ in ids], ids=ids, metadatas=[{"s": step}] * 5)
        s.delete([f"id{i}" for i in rng.integers(0, 80, size=2)])
        if step % 20 == 19:
            s.flush()
    s.check()
    s.close()
