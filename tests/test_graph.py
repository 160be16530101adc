"""Structural invariants of the HNSW graphs both builders produce."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from leann_store import IndexConfig, LeannIndex
from leann_store.errors import InvalidInputError

from conftest import clustered

BUILDERS = ("flash", "exact")
METRICS = ("l2", "cosine", "ip")

# Regression guard: insert() once iterated over a scratch list that the
# re-pruning of a full neighbour list overwrote, creating self-loops.
SELF_LOOP_BUG = False


def reachable_from_entry(index: LeannIndex) -> np.ndarray:
    """Boolean mask of nodes reached by BFS over level-0 links from the entry point."""
    n = len(index)
    seen = np.zeros(n, dtype=bool)
    seen[index.entry_point] = True
    todo = deque([index.entry_point])
    while todo:
        v = todo.popleft()
        for u in index.neighbors(v, 0):
            if not seen[u]:
                seen[u] = True
                todo.append(u)
    return seen


def self_loops(index: LeannIndex) -> list[tuple[int, int]]:
    return [(v, lvl) for v in range(len(index)) for lvl in range(index.level(v) + 1)
            if v in index.neighbors(v, lvl)]


def check_invariants(index: LeannIndex, M: int, allow_self_loops: bool = SELF_LOOP_BUG) -> None:
    n = len(index)
    assert index.max_degree(0) == 2 * M
    for lvl in range(1, max(index.max_level, 1) + 1):
        assert index.max_degree(lvl) == M
    levels = np.array([index.level(v) for v in range(n)])
    assert (levels >= 0).all()
    assert index.max_level == levels.max()
    ep = index.entry_point
    assert 0 <= ep < n
    assert index.level(ep) == index.max_level
    for v in range(n):
        for lvl in range(levels[v] + 1):
            nb = index.neighbors(v, lvl)
            assert nb.dtype == np.int64
            assert len(nb) <= index.max_degree(lvl), (v, lvl, len(nb))
            if allow_self_loops:
                nb = nb[nb != v]
            assert v not in nb, f"self-loop at node {v} level {lvl}"
            assert len(np.unique(nb)) == len(nb), f"duplicate neighbours at node {v} level {lvl}: {nb}"
            if len(nb):
                assert nb.min() >= 0 and nb.max() < n, (v, lvl, nb)
                assert (levels[nb] >= lvl).all(), f"node {v} links at level {lvl} to a lower node"
    if n > 1:
        # every node has a level-0 link (the first node gets its links from later ones)
        assert all(len(index.neighbors(v, 0)) > 0 for v in range(n))


def graph_signature(index: LeannIndex) -> list:
    return [(index.level(v), [index.neighbors(v, l).tolist() for l in range(index.level(v) + 1)])
            for v in range(len(index))]


def build(x, **kw) -> LeannIndex:
    kw.setdefault("ef_construction", 40)
    kw.setdefault("store_vectors", True)
    return LeannIndex.build(x, IndexConfig(**kw))


@pytest.fixture(scope="module")
def graph_data():
    return clustered(600, 16, seed=4)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("M", [4, 8, 16])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("builder", BUILDERS)
def test_graph_invariants(graph_data, builder, metric, M, threads):
    index = build(graph_data, builder=builder, metric=metric, M=M, threads=threads, seed=1)
    assert len(index) == len(graph_data)
    check_invariants(index, M)
    # upper levels are sparse, as for HNSW with mL = 1/ln(M)
    levels = np.array([index.level(v) for v in range(len(index))])
    assert (levels == 0).mean() > 0.5


@pytest.mark.parametrize("builder", BUILDERS)
def test_no_self_loops(builder):
    rng = np.random.default_rng(0)
    for n, dim, M in ((30, 4, 2), (300, 8, 4), (600, 16, 8)):
        x = rng.normal(size=(n, dim)).astype(np.float32)
        index = build(x, builder=builder, metric="l2", M=M, threads=1, seed=0)
        assert self_loops(index) == [], f"n={n} M={M}: self-loops at (node, level) {self_loops(index)[:5]}"


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("M", [8, 16])
def test_almost_all_reachable_on_clustered_data(builder, metric, M):
    """A loose connectivity guard (the strict property is in test_all_reachable_*):
    on benign clustered data nearly every node is reachable at level 0."""
    x = clustered(1000, 32, seed=5)
    for threads in (1, 2):
        index = build(x, builder=builder, metric=metric, M=M, threads=threads, seed=0,
                      ef_construction=64)
        assert reachable_from_entry(index).mean() >= 0.995


@pytest.mark.parametrize("builder", BUILDERS)
def test_all_reachable_random_small_M(builder):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    index = build(x, builder=builder, metric="l2", M=2, threads=1, seed=0)
    check_invariants(index, 2)  # the structure itself is fine ...
    seen = reachable_from_entry(index)
    assert seen.all(), f"{(~seen).sum()} of {len(x)} nodes unreachable"


@pytest.mark.parametrize("builder", BUILDERS)
def test_all_reachable_duplicated_vectors(builder):
    x = np.tile(np.arange(1, 9, dtype=np.float32), (300, 1))
    index = build(x, builder=builder, metric="l2", M=16, threads=1, seed=0)
    check_invariants(index, 16)
    seen = reachable_from_entry(index)
    assert seen.all(), f"{(~seen).sum()} of {len(x)} nodes unreachable"


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("metric", METRICS)
def test_duplicated_vectors_invariants(builder, metric):
    """Even when connectivity fails, duplicate rows must give a well-formed graph
    and a search that returns valid, distinct ids with distance 0 (l2/cosine)."""
    for n, M in ((2, 2), (3, 2), (50, 4), (200, 16)):
        x = np.tile(np.linspace(0.5, 2.0, 6, dtype=np.float32), (n, 1))
        index = build(x, builder=builder, metric=metric, M=M, threads=1, seed=0)
        check_invariants(index, M)
        res = index.search(x[0], k=min(n, 5))
        ids = res.ids[res.ids >= 0]
        assert len(ids) >= 1 and len(np.unique(ids)) == len(ids)
        assert ((ids >= 0) & (ids < n)).all()
        if metric != "ip":
            np.testing.assert_allclose(res.distances[res.ids >= 0], 0.0, atol=1e-5)


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("metric", METRICS)
def test_single_and_two_nodes(builder, metric):
    x1 = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    index = build(x1, builder=builder, metric=metric, M=4)
    assert len(index) == 1 and index.entry_point == 0
    assert index.neighbors(0, 0).size == 0
    r = index.search(x1[0], k=1)
    assert r.ids.tolist() == [0]
    x2 = np.array([[1.0, 2.0, 3.0], [-3.0, 1.0, 0.5]], dtype=np.float32)
    index = build(x2, builder=builder, metric=metric, M=2)
    check_invariants(index, 2)
    assert index.neighbors(0, 0).tolist() == [1] and index.neighbors(1, 0).tolist() == [0]
    assert sorted(index.search(x2[1], k=2).ids.tolist()) == [0, 1]


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("metric", METRICS)
def test_same_seed_single_thread_identical_graph(graph_data, builder, metric):
    cfg = dict(builder=builder, metric=metric, M=8, threads=1, seed=123)
    a, b = build(graph_data, **cfg), build(graph_data, **cfg)
    assert a.entry_point == b.entry_point and a.max_level == b.max_level
    assert graph_signature(a) == graph_signature(b)
    if builder == "flash":
        np.testing.assert_array_equal(a.codec.centroids, b.codec.centroids)
    q = graph_data[:20]
    np.testing.assert_array_equal(a.search(q, k=5).ids, b.search(q, k=5).ids)


def test_seed_changes_levels(graph_data):
    a = build(graph_data, builder="exact", metric="l2", M=8, threads=1, seed=1)
    b = build(graph_data, builder="exact", metric="l2", M=8, threads=1, seed=2)
    la = [a.level(v) for v in range(len(a))]
    lb = [b.level(v) for v in range(len(b))]
    assert la != lb


@pytest.mark.parametrize("builder", BUILDERS)
def test_neighbors_bad_node_or_level(graph_data, builder):
    import leann_store

    index = build(graph_data[:50], builder=builder, metric="l2", M=4, seed=0)
    with pytest.raises(leann_store.InvalidInputError):
        index.neighbors(50, 0)
    with pytest.raises(leann_store.InvalidInputError):
        index.level(50)
    top = index.level(0)
    with pytest.raises(leann_store.InvalidInputError):
        index.neighbors(0, top + 1)
    with pytest.raises(leann_store.InvalidInputError):
        index.neighbors(0, -1)
    # the index keeps working
    assert len(index.neighbors(0, 0)) > 0


@st.composite
def small_build(draw):
    n = draw(st.integers(1, 300))
    dim = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["gauss", "clustered", "duplicates", "few_distinct"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        x = rng.normal(size=(n, dim))
    elif kind == "clustered":
        x = clustered(n, dim, seed=seed)
    elif kind == "duplicates":
        x = np.tile(rng.normal(size=dim), (n, 1))
    else:
        x = rng.normal(size=(3, dim))[rng.integers(0, 3, size=n)]
    x = x.astype(np.float32)
    x[np.linalg.norm(x, axis=1) == 0] = 1.0  # cosine refuses zero vectors
    cfg = dict(builder=draw(st.sampled_from(BUILDERS)), metric=draw(st.sampled_from(METRICS)),
               M=draw(st.sampled_from([2, 3, 4, 8, 16])), threads=draw(st.sampled_from([1, 2])),
               ef_construction=draw(st.sampled_from([1, 8, 40])), seed=draw(st.integers(0, 1000)))
    return np.ascontiguousarray(x), cfg


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=small_build())
@example(case=(np.float32([[0.5, -1.0, 2.0]]),
               dict(builder="flash", metric="cosine", M=2, threads=2, ef_construction=1, seed=0)))
@example(case=(np.float32([[0.5, -1.0], [3.0, 1.0]]),
               dict(builder="exact", metric="ip", M=2, threads=2, ef_construction=8, seed=3)))
@example(case=(np.tile(np.float32([1.0, -2.0, 0.25, 4.0]), (120, 1)),
               dict(builder="flash", metric="l2", M=2, threads=1, ef_construction=40, seed=0)))
@example(case=(np.tile(np.float32([1.0, -2.0, 0.25, 4.0]), (120, 1)),
               dict(builder="exact", metric="cosine", M=2, threads=2, ef_construction=40, seed=0)))
def test_graph_invariants_property(case):
    x, cfg = case
    index = build(x, **cfg)
    assert len(index) == len(x)
    check_invariants(index, cfg["M"])
    k = min(len(x), 5)
    res = index.search(x[0], k=k)
    found = res.ids[res.ids >= 0]
    assert len(found) >= 1
    assert len(np.unique(found)) == len(found)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=small_build())
@example(case=(np.tile(np.float32([1, 2, 3]), (100, 1)),
               dict(builder="exact", metric="l2", M=4, threads=1, ef_construction=40, seed=0)))
def test_every_node_reachable_property(case):
    x, cfg = case
    index = build(x, **cfg)
    seen = reachable_from_entry(index)
    assert seen.all(), f"{(~seen).sum()} of {len(x)} unreachable with {cfg}"



def _flash_builder(x: np.ndarray, threads: int = 2):
    from leann_store import native, train_codec

    codec = train_codec(x, num_subspaces=16, seed=0)
    params = native.BuildParams(n=len(x), dim=x.shape[1], M=8, ef_construction=32,
                                builder=native.BUILDER_FLASH, search_metric=native.METRIC_L2,
                                store_vectors=False, threads=threads, seed=0)
    return codec, native.NativeBuilder(params, codec.native)


def _complete(b, codec, x: np.ndarray, lo: int):
    """Hand the builder the rows from lo on, run to the end and finish."""
    b.set_projected(codec.project(x[lo:]), lo)
    b.run()
    assert b.progress() == len(x)
    with pytest.raises(InvalidInputError, match="already run"):
        b.run()
    return b.finish()


def test_chunked_flash_build_checks_its_chunks(graph_data):
    """Projections go in chunk by chunk; a chunk must continue where the build
    stands, and a run may only go as far as the rows it was given."""
    x = graph_data
    codec, b = _flash_builder(x)
    try:
        with pytest.raises(InvalidInputError, match="continue where the build stands"):
            b.set_projected(codec.project(x[100:200]), 100)  # nothing inserted yet
        with pytest.raises(InvalidInputError, match="projected rows"):
            b.run(100)  # no rows handed in
        b.set_projected(codec.project(x[:250]), 0)
        with pytest.raises(InvalidInputError, match="projected rows"):
            b.run(300)  # beyond the chunk
        b.run(250)
        with pytest.raises(InvalidInputError, match="continue where the build stands"):
            b.set_projected(codec.project(x[300:]), 300)  # a gap
        index = _complete(b, codec, x, 250)
    finally:
        b.free()
    assert index.size == len(x)


@pytest.mark.parametrize("cuts", [[0, 600], [0, 1, 233, 400, 600]])
def test_chunked_single_thread_flash_build_is_deterministic(graph_data, cuts):
    """Single-threaded, the same chunk cuts give the same graph.  (Different
    cuts may not: a thread interleaves several insertions, and a chunk's end
    drains them; test_many_chunks_two_threads checks that quality holds.)"""
    x = graph_data
    assert len(x) == cuts[-1]
    lists = []
    for _ in range(2):
        codec, b = _flash_builder(x, threads=1)
        try:
            for lo, hi in zip(cuts, cuts[1:]):
                b.set_projected(codec.project(x[lo:hi]), lo)
                b.run(hi)
            index = b.finish()
        finally:
            b.free()
        lists.append([index.neighbors(v, 0).tolist() for v in range(len(x))])
    assert lists[0] == lists[1]


def test_stored_vectors_attach_once(graph_data):
    """Flash + store_vectors: the float storage is attached to the packed index
    after the build, once; a second attach is refused and changes nothing."""
    x = graph_data
    index = LeannIndex.build(x, IndexConfig(metric="l2", M=8, ef_construction=32, store_vectors=True,
                                            seed=0, threads=1))
    before = index.search(x[:5], k=3).ids
    with pytest.raises(InvalidInputError, match="already stores vectors"):
        index._h.alloc_vectors()
    np.testing.assert_array_equal(index._h.vectors_view(), x)
    np.testing.assert_array_equal(index.search(x[:5], k=3).ids, before)
    assert (before[:, 0] == np.arange(5)).all()


def test_refused_chunk_keeps_the_previous_one_alive(graph_data):
    """A chunk C refuses must not free the rows C still borrows (found by
    AddressSanitizer: a use after free in the next run)."""
    import gc

    x = graph_data
    codec, b = _flash_builder(x)
    try:
        b.set_projected(codec.project(x[:300]), 0)
        with pytest.raises(InvalidInputError):
            b.set_projected(codec.project(x[300:]), 250)  # not where the build stands
        with pytest.raises(InvalidInputError):
            b.run(400)  # beyond the rows handed in
        gc.collect()
        b.run(300)
        assert _complete(b, codec, x, 300).size == len(x)
    finally:
        b.free()


def test_cancelled_build_refuses_to_go_on(graph_data):
    """A run stopped part-way leaves an incomplete graph: the builder refuses
    further chunks and runs instead of finishing it silently."""
    from leann_store import native

    x = graph_data
    codec, b = _flash_builder(x)
    try:
        b.set_projected(codec.project(x[:300]), 0)
        b.cancel()
        with pytest.raises(native.BuildCancelled):
            b.run(300)
        with pytest.raises(InvalidInputError, match="earlier run"):
            b.set_projected(codec.project(x[300:]), 300)
        with pytest.raises(InvalidInputError, match="earlier run"):
            b.run()
        with pytest.raises(InvalidInputError, match="not run to completion"):
            b.finish()
    finally:
        b.free()


@pytest.mark.parametrize("chunk", [1, 97, 500])
def test_many_chunks_two_threads(graph_data, monkeypatch, chunk):
    """Real builds go in chunks of _BUILD_CHUNK nodes (8192); small chunks
    exercise the chunk loop with threads: same invariants, full reachability,
    the recall of a one-chunk build."""
    import leann_store.build as build_mod

    from conftest import ground_truth, queries_near, recall_at_k

    x = graph_data
    q = queries_near(x, 50, seed=9)
    one = build(x, builder="flash", metric="l2", M=8, threads=2, seed=1)
    monkeypatch.setattr(build_mod, "_BUILD_CHUNK", chunk)
    many = build(x, builder="flash", metric="l2", M=8, threads=2, seed=1)
    check_invariants(many, 8)
    assert reachable_from_entry(many).all()
    truth = ground_truth(x, q, 10, "l2")
    r_one = recall_at_k(one.search(q, k=10, ef=32).ids, truth)
    r_many = recall_at_k(many.search(q, k=10, ef=32).ids, truth)
    assert r_many >= r_one - 0.03, (r_one, r_many)


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("metric", METRICS)
def test_projector_equals_mapped_projection(metric, workers, monkeypatch):
    """The build feed's projections (reused buffers, centred in place, on one
    or several threads) are the codec projections of the metric-mapped rows,
    for any row range."""
    import leann_store.build as build_mod
    from leann_store import train_codec

    monkeypatch.setattr(build_mod, "_CHUNK", 64)  # several blocks per call
    x = clustered(300, 24, seed=4)
    mmap = build_mod._MetricMap.fit(metric, x)
    codec = train_codec(mmap.vectors(x), num_subspaces=8, seed=0)
    project = build_mod._Projector(codec, x, mmap, 150, workers)
    for lo, hi in ((0, 150), (150, 300), (10, 11), (0, 150), (7, 9)):
        want = codec.project(mmap.vectors(x[lo:hi]))
        np.testing.assert_allclose(project(lo, hi), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x, clustered(300, 24, seed=4))  # the input is untouched


@pytest.mark.parametrize("workers", [1, 2, 5])
@pytest.mark.parametrize("metric", METRICS)
def test_fill_on_several_threads_equals_the_mapped_rows(metric, workers, monkeypatch):
    """_fill writes the metric-mapped rows whatever the number of threads
    sharing it, and a bad row fails the whole fill."""
    import leann_store.build as build_mod

    monkeypatch.setattr(build_mod, "_CHUNK", 32)  # several blocks per thread
    x = clustered(301, 12, seed=5)
    mmap = build_mod._MetricMap.fit(metric, x)
    view = np.full((301, mmap.build_dim), np.nan, dtype=np.float32)
    build_mod._fill(view, x, mmap, workers=workers)
    np.testing.assert_array_equal(view, mmap.vectors(x))
    if metric == "cosine":
        bad = x.copy()
        bad[250] = 0.0
        with pytest.raises(InvalidInputError, match="zero norm"):
            build_mod._fill(view, bad, mmap, workers=workers)


@pytest.mark.parametrize("metric", METRICS)
def test_training_rows_are_the_mapped_sample_rows(metric):
    """The codec's training sample, read through _TrainingRows, is the
    metric-mapped chosen rows, by slice or by index array, and training on
    it gives the codec that the materialised sample gives."""
    import leann_store.build as build_mod
    from leann_store.codec import code_distance_bias, fit_pca, train_codec

    x = clustered(5000, 24, seed=6)
    mmap = build_mod._MetricMap.fit(metric, x)
    rows = np.sort(np.random.default_rng(0).choice(len(x), size=4500, replace=False))
    src = build_mod._TrainingRows(x, mmap, rows)
    full = mmap.vectors(x[rows])
    assert len(src) == 4500 and src.shape == full.shape
    np.testing.assert_array_equal(src[10:4200], full[10:4200])
    pick = np.array([4499, 0, 7, 7, 300])
    np.testing.assert_array_equal(src[pick], full[pick])
    pa, pb = fit_pca(src), fit_pca(full)
    np.testing.assert_array_equal(pa.mean, pb.mean)
    np.testing.assert_array_equal(pa.eigvecs, pb.eigvecs)
    a = train_codec(src, num_subspaces=8, seed=3, pca=pa)
    b = train_codec(full, num_subspaces=8, seed=3, pca=pb)
    for field in ("mean", "components", "centroids"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert (a.scale, a.quant_error) == (b.scale, b.quant_error)
    assert code_distance_bias(a, src, seed=1) == code_distance_bias(b, full, seed=1)


def test_build_runs_blas_on_one_thread_and_restores_it(monkeypatch):
    """numpy's BLAS runs single-threaded during a build (the build's own
    threads do the parallel work) and gets its thread count back after."""
    from threadpoolctl import threadpool_info

    import leann_store.build as build_mod

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("numpy's BLAS is not visible to threadpoolctl")
    seen: list[list[int]] = []
    real = build_mod.fit_pca

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(build_mod, "fit_pca", spy)
    LeannIndex.build(clustered(300, 16, seed=1), IndexConfig(metric="l2", M=8))
    assert seen == [[1] * len(before)]
    assert blas_threads() == before



def test_build_on_a_worker_thread_leaves_blas_alone(monkeypatch):
    """OpenBLAS ignores a thread-count increase made from a thread other than
    the main one, so a build there must not lower it: it could not restore
    it.  The main thread's builds do limit it."""
    import threading

    import leann_store.index as index_mod

    calls: list[str] = []
    real = index_mod.threadpool_limits

    def recording(*args, **kwargs):
        calls.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(index_mod, "threadpool_limits", recording)
    x = clustered(300, 16, seed=1)
    failures: list[BaseException] = []

    def build_in_worker() -> None:
        try:
            LeannIndex.build(x, IndexConfig(metric="l2", M=8))
        except BaseException as exc:
            failures.append(exc)

    t = threading.Thread(target=build_in_worker, name="worker")
    t.start()
    t.join(120)
    assert not failures, failures
    assert calls == []
    LeannIndex.build(x, IndexConfig(metric="l2", M=8))
    assert calls == [threading.main_thread().name]


@pytest.mark.parametrize("search_subspaces", [16, 32])
@pytest.mark.parametrize("metric", METRICS)
def test_search_codes_from_the_feed_equal_a_separate_pass(graph_data, metric, search_subspaces, monkeypatch):
    """The search codes a flash build takes from its feed's projections (the
    build codec's projection holds the search codec's: the same codec, or
    some of its columns) are those a separate projection pass gives."""
    import leann_store.index as index_mod
    from leann_store.codec import Codec

    got, cols = [], []
    finish, columns = index_mod.LeannIndex._finish_build, Codec.projection_columns

    def capture(self, x, scodec, ncodec, codes, *rest):
        got.append((codes.copy(), scodec.project(self._map.vectors(x)), scodec))
        return finish(self, x, scodec, ncodec, codes, *rest)

    def spy(self, other):
        cols.append(columns(self, other))
        return cols[-1]

    monkeypatch.setattr(index_mod.LeannIndex, "_finish_build", capture)
    monkeypatch.setattr(Codec, "projection_columns", spy)
    cfg = dict(builder="flash", metric=metric, M=8, threads=1, seed=0, search_subspaces=search_subspaces)
    build(graph_data, **cfg)
    assert cols[0] is not None
    identity = len(cols[0]) == 32 and (cols[0] == np.arange(32)).all()  # 32 subspaces at 16-d: pca_dim 32
    assert identity == (search_subspaces == 32)
    monkeypatch.setattr(Codec, "projection_columns", lambda self, other: None)
    build(graph_data, **cfg)
    (feed, proj, scodec), (separate, _, _) = got
    assert feed.shape[0] == len(graph_data)
    _assert_same_codes_but_ties(feed, separate, proj, scodec)


def _assert_same_codes_but_ties(a, b, proj, codec):
    """Codes a and b of the rows projected to ``proj`` agree, except where a
    row's sub-vector is (to float rounding) as near to both centroids: two
    BLAS products of different widths may round a projection differently
    (AMD EPYC's OpenBLAS: 2e-6), never by more."""
    from leann_store.codec import _unpack

    ua, ub = _unpack(a), _unpack(b)
    rows, subs = np.nonzero(ua != ub)
    assert len(rows) <= max(2, ua.size // 1000)
    dsub = codec.pca_dim // codec.num_subspaces
    sub = proj.reshape(len(proj), codec.num_subspaces, dsub)[rows, subs]
    da = ((sub - codec.centroids[subs, ua[rows, subs]]) ** 2).sum(-1)
    db = ((sub - codec.centroids[subs, ub[rows, subs]]) ** 2).sum(-1)
    np.testing.assert_allclose(da, db, rtol=1e-4, atol=1e-6)
