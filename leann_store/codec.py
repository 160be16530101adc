"""Flash codec training in numpy: PCA, variance-balanced subspaces, k-means.

The trained :class:`Codec` projects vectors with PCA (numpy/BLAS does the
matrix product) and hands the projections to the C codec, which encodes them
into 4-bit codes and builds the 8-bit distance tables.

Choices, all deterministic for a seed:

* PCA by ``numpy.linalg.eigh`` of the covariance of a sample (float64).
* The projected dimension is the smallest that explains ``pca_variance`` of
  the variance, rounded up to a multiple of the number of subspaces and kept
  within ``[num_subspaces, 4 * num_subspaces]`` (2-4 dims per subspace at the
  16-centroid resolution), unless ``pca_dim`` says otherwise.
* Components are dealt to subspaces greedily, largest first, each to the
  subspace with the least variance so far, so that subspaces carry similar
  variance instead of the first ones carrying most of it.
* k-means with 16 centroids per subspace (4-bit codes, two a byte: what
  the build and the lookup kernels take) or 256 (8-bit codes, a byte a
  subspace: search codes only, scored through float tables): seeds drawn
  from a seeded generator, Lloyd iterations, empty clusters re-seeded at the
  worst-served point.
* One global quantisation scale for every table, so code distances of
  different vectors stay comparable during construction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol, Sequence

import numpy as np
from numpy.random import Generator, default_rng

from . import errors, native
from ._checks import check_finite

_VALID_SUBSPACES = native.VALID_SUBSPACES
_BLOCK = 4096  # rows per block in the covariance and projection products
_SCALE_SAMPLE = 1024  # rows x msub x 16 table entries: plenty for a percentile
_ERROR_SAMPLE = 8192  # rows that estimate a codec's mean squared coding error


def _project(x: np.ndarray, mean32: np.ndarray, comp_t: np.ndarray, chunk: int = _BLOCK) -> np.ndarray:
    """``(x - mean) @ components.T`` as float32, ``chunk`` rows at a time
    (the centred block is the only temporary); ``mean32`` and ``comp_t``
    (the transposed components) are float32 already."""
    out = np.empty((x.shape[0], comp_t.shape[1]), dtype=np.float32)
    for s in range(0, x.shape[0], chunk):
        np.matmul(x[s:s + chunk] - mean32, comp_t, out=out[s:s + chunk])
    return out


@dataclass(frozen=True, eq=False)
class Codec:
    """A trained Flash codec.

    Attributes:
        mean: sample mean, shape ``(D,)``.
        components: PCA rows ordered subspace by subspace, shape ``(dp, D)``.
        centroids: shape ``(num_subspaces, 16, dp // num_subspaces)`` (4-bit
            codes) or ``(num_subspaces, 256, dp // num_subspaces)`` (8-bit).
        scale: table quantisation step (squared distance per table unit).
        accumulate: 16 (exact integer totals) or 8 (saturating 8-bit totals).
        explained_variance: share of the sample variance the projection keeps.
        quant_error: mean squared distance from a projected training vector
            to its code's centroids (NaN when unknown, e.g. after loading).
    """

    mean: np.ndarray
    components: np.ndarray
    centroids: np.ndarray
    scale: float
    accumulate: int = 16
    explained_variance: float = float("nan")
    quant_error: float = float("nan")

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def num_subspaces(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def pca_dim(self) -> int:
        return int(self.components.shape[0])

    @property
    def bits(self) -> int:
        """Bits a subspace's code takes: 4 (16 centroids) or 8 (256)."""
        return 8 if self.centroids.shape[1] == 256 else 4

    @property
    def code_bytes(self) -> int:
        return self.num_subspaces * self.bits // 8

    @cached_property
    def native(self) -> native.NativeCodec:
        return native.NativeCodec(self.centroids, self.scale, self.accumulate)

    def project(self, vectors: np.ndarray, chunk: int = _BLOCK) -> np.ndarray:
        """PCA projection ``(x - mean) @ components.T`` as float32, in chunks."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.shape[1] != self.dim:
            raise errors.DimensionMismatchError(f"codec expects dimension {self.dim}, got {x.shape[1]}")
        check_finite(x, "vectors")  # before the matmul, which would only warn
        return _project(x, self._mean32, self._components_t, chunk)

    def project_into(self, block: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``project(block)`` written into ``out`` (float32, (rows, pca_dim)),
        centring ``block`` (float32, (rows, dim)) in place: no temporaries,
        for callers that reuse their buffers from chunk to chunk."""
        if block.dtype != np.float32 or block.ndim != 2 or block.shape[1] != self.dim:
            raise errors.DimensionMismatchError(
                f"codec expects a float32 block of dimension {self.dim}, got {block.dtype} {block.shape}")
        np.subtract(block, self._mean32, out=block)
        return np.matmul(block, self._components_t, out=out)

    def projection_columns(self, other: "Codec") -> np.ndarray | None:
        """Columns of this codec's projection that make up ``other``'s, or
        None when there are none: the same mean, and each of ``other``'s
        components among this codec's (two codecs trained on one PCA fit,
        ``other`` keeping no more dimensions).  ``other.project(x)`` then
        equals ``self.project(x)[:, cols]`` up to float rounding (BLAS may
        sum products of different widths in different orders), so one
        projection serves both; nothing relies on the two being bitwise
        equal."""
        if other is self:
            return np.arange(self.pca_dim)
        if other.dim != self.dim or not np.array_equal(other._mean32, self._mean32):
            return None
        mine = {row.tobytes(): i for i, row in enumerate(np.asarray(self.components, dtype=np.float32))}
        cols = [mine.get(row.tobytes()) for row in np.asarray(other.components, dtype=np.float32)]
        if any(c is None for c in cols) or len(set(cols)) != len(cols):
            return None
        return np.asarray(cols, dtype=np.intp)

    @cached_property
    def _mean32(self) -> np.ndarray:
        return np.asarray(self.mean, dtype=np.float32)

    @cached_property
    def _components_t(self) -> np.ndarray:
        return np.ascontiguousarray(self.components.T, dtype=np.float32)

    def encode(self, vectors: np.ndarray, threads: int = 0) -> np.ndarray:
        """Codes, ``(n, code_bytes)`` uint8: 4-bit codes in canonical nibble
        order, or a byte a subspace."""
        return self.native.encode(self.project(vectors), threads)

    def as_stored(self) -> "Codec":
        """This codec with its components at the precision an index file
        keeps them (float16): what a loaded index projects with."""
        return dataclasses.replace(self, components=self.components.astype(np.float16).astype(np.float32))

    def coding_error(self, vectors: np.ndarray) -> float:
        """Mean squared distance from rows to what their codes keep of them:
        the energy outside the PCA plus the PQ error inside it.  Rows unlike
        the training sample code worse, so the ratio of new rows' error to
        the error at training tells when the codec no longer fits."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise errors.InvalidInputError("coding_error needs a non-empty (n, dim) block of rows")
        proj = self.project(x)
        msub, dsub = self.num_subspaces, self.pca_dim // self.num_subspaces
        recon = self.centroids[np.arange(msub)[None, :], _unpack(self.native.encode(proj), self.bits)]
        inside = ((proj.reshape(len(x), msub, dsub) - recon) ** 2).sum(axis=(1, 2), dtype=np.float64)
        outside = np.clip(((x - self._mean32) ** 2).sum(1, dtype=np.float64) - (proj ** 2).sum(1, dtype=np.float64),
                          0.0, None)
        return float((inside + outside).mean())

    def adt(self, vector: np.ndarray) -> np.ndarray:
        """Quantised asymmetric table of one vector, ``(num_subspaces, 16)``
        (4-bit codecs: the build's tables)."""
        return self.native.adt(self.project(vector)[0])

    def sdt(self) -> np.ndarray:
        """Quantised symmetric centroid table, ``(num_subspaces, 16, 16)``
        (4-bit codecs)."""
        return self.native.sdt()


def _unpack(codes: np.ndarray, bits: int = 4) -> np.ndarray:
    """(n, code_bytes) codes -> (n, msub) centroid ids (4-bit: two a byte,
    low nibble first; 8-bit: a byte each)."""
    if bits == 8:
        return codes.astype(np.int64)
    out = np.empty((codes.shape[0], codes.shape[1] * 2), dtype=np.int64)
    out[:, 0::2] = codes & 15
    out[:, 1::2] = codes >> 4
    return out


def _kmeans(proj: np.ndarray, msub: int, rng: Generator, iterations: int, k: int = 16) -> np.ndarray:
    """k-means with k = 16 or 256 centroids in every subspace at once.

    proj: (n, dp) float32, subspace i owning dims [i*dsub, (i+1)*dsub).
    Returns (msub, k, dsub) float32.  The assignment step is the C encoder
    (nearest centroid = encoding), so training and encoding agree exactly;
    the update step's sums come from C too (``centroid_sums``).
    Deterministic for the rng: distinct random points as seeds, Lloyd
    iterations until assignments stop changing, empty clusters re-seeded at
    the worst-served point.
    """
    n, dp = proj.shape
    dsub, bits = dp // msub, 4 if k == 16 else 8
    data = proj.reshape(n, msub, dsub)
    seeds = np.stack([rng.choice(n, size=k, replace=n < k) for _ in range(msub)])  # (msub, k)
    cent = np.ascontiguousarray(data[seeds, np.arange(msub)[:, None], :])  # (msub, k, dsub)
    prev = None
    for _ in range(iterations):
        nc = native.NativeCodec(cent, 1.0, 16)
        codes = nc.encode(proj)
        if prev is not None and np.array_equal(codes, prev):
            break
        prev = codes
        sums, counts = nc.centroid_sums(proj, codes)  # float64 sums, as bincount adds them
        new = cent.copy()
        np.divide(sums, counts[:, :, None], out=new, where=counts[:, :, None] > 0)
        empty = np.nonzero(counts == 0)
        if len(empty[0]):
            assign = _unpack(codes, bits)  # (n, msub)
            for m, j in zip(*empty):
                own = ((data[:, m, :] - cent[m][assign[:, m]]) ** 2).sum(1)
                new[m, j] = data[int(own.argmax()), m, :]
        cent = new
    return cent


def _opq_rotation(x: np.ndarray, msub: int, rng: Generator, iterations: int) -> np.ndarray:
    """Non-parametric OPQ (Ge et al.): the orthogonal R that lowers the PQ
    error of ``x @ R``, alternating k-means and the Procrustes solution."""
    dp = x.shape[1]
    x64 = x.astype(np.float64)
    rot = np.eye(dp)
    for _ in range(iterations):
        xr = np.ascontiguousarray((x64 @ rot).astype(np.float32))
        cent = _kmeans(xr, msub, rng, 6)
        codes = _unpack(native.NativeCodec(cent, 1.0, 16).encode(xr))
        y = cent[np.arange(msub)[None, :], codes].reshape(len(x), dp).astype(np.float64)
        u, _, vt = np.linalg.svd(x64.T @ y)
        rot = u @ vt
    return rot


def _balanced_order(eigvals: np.ndarray, msub: int) -> np.ndarray:
    """Order of the dp components so that consecutive groups of dp/msub carry
    similar variance (greedy: largest component to the lightest subspace)."""
    dp = eigvals.shape[0]
    dsub = dp // msub
    load = np.zeros(msub)
    slots: list[list[int]] = [[] for _ in range(msub)]
    for c in np.argsort(-eigvals, kind="stable"):
        open_ = [s for s in range(msub) if len(slots[s]) < dsub]
        s = min(open_, key=lambda s: (load[s], s))
        slots[s].append(int(c))
        load[s] += eigvals[c]
    return np.array([c for s in slots for c in s], dtype=np.int64)


def choose_pca_dim(eigvals: np.ndarray, msub: int, variance: float) -> int:
    """Smallest dimension explaining ``variance``, rounded up to a multiple of
    msub and clipped to [msub, 4 * msub]."""
    total = float(eigvals.sum())
    ratio = np.cumsum(np.sort(eigvals)[::-1]) / total if total > 0 else np.ones(len(eigvals))
    d = int(np.searchsorted(ratio, variance) + 1)
    d = -(-d // msub) * msub
    return int(min(max(d, msub), 4 * msub))


@dataclass(frozen=True, eq=False)
class PcaFit:
    """Eigendecomposition of a sample's covariance, components by
    decreasing variance with a deterministic sign."""

    mean: np.ndarray     # (D,) float64
    eigvals: np.ndarray  # (D,), descending, clipped at 0
    eigvecs: np.ndarray  # (D, D), column i = component i
    rows: int            # rows it was fit on


class Rows(Protocol):
    """Rows that the codec functions read a block or a subset at a time:
    a float32 array, or a source that produces the rows it is asked for
    (``index`` hands training a view of the input that normalises rows
    on demand, so the sample is never copied whole)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray: ...


def _rows(vectors: Rows | np.ndarray) -> Rows:
    """Row sources as they are; arrays (and sequences) as float32 arrays."""
    if hasattr(vectors, "shape") and not isinstance(vectors, np.ndarray):
        return vectors
    return np.asarray(vectors, dtype=np.float32)


def fit_pca(vectors: Rows | np.ndarray) -> PcaFit:
    """PCA of all rows of ``vectors`` (float32, (n, D)), in one pass over
    blocks of ``_BLOCK`` rows (so a row source produces each row once)."""
    s = _rows(vectors)
    if len(s.shape) != 2 or s.shape[0] == 0:
        raise errors.InvalidInputError("PCA needs a non-empty 2-D array")
    n, dim = s.shape[0], s.shape[1]
    # Blocks are centred on the first block's mean (a provisional centre,
    # close to the true mean, so the correction below loses no precision);
    # float32 products (BLAS sgemm) summed and eigh'd in float64; only a
    # block exists at a time, not a second copy of the sample
    centre = None
    total = np.zeros(dim)
    cov = np.zeros((dim, dim))
    for b in range(0, n, _BLOCK):
        blk = np.asarray(s[b:b + _BLOCK], dtype=np.float32)
        if centre is None:
            centre = blk.mean(0, dtype=np.float64).astype(np.float32)
        blk = blk - centre
        total += blk.sum(0, dtype=np.float64)
        cov += blk.T @ blk
    assert centre is not None  # n >= 1, checked above
    shift = total / n  # mean - centre
    mean = centre + shift
    cov -= n * np.outer(shift, shift)
    cov /= max(n - 1, 1)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(-eigvals, kind="stable")
    eigvals = np.clip(eigvals[order], 0.0, None)
    eigvecs = eigvecs[:, order]
    # deterministic sign: the largest-magnitude coordinate of each component is positive
    signs = np.sign(eigvecs[np.abs(eigvecs).argmax(0), np.arange(dim)])
    eigvecs = eigvecs * np.where(signs == 0, 1.0, signs)
    return PcaFit(mean=mean, eigvals=eigvals, eigvecs=eigvecs, rows=n)


def train_codec(
    vectors: Rows | np.ndarray,
    num_subspaces: int = 16,
    pca_dim: int | None = None,
    pca_variance: float = 0.8,
    sample: int = 32768,
    seed: int = 0,
    iterations: int = 25,
    kmeans_sample: int = 8192,
    accumulate: int = 16,
    *,
    pca: PcaFit | None = None,
    rotation_iterations: int = 0,
    bits: int = 4,
) -> Codec:
    """Train a Flash codec on (a sample of) ``vectors`` (float32, (n, D)).

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(500, 24)).astype(np.float32)
    >>> codec = train_codec(x, num_subspaces=8, seed=0)
    >>> codec.encode(x[:2]).shape, codec.code_bytes
    ((2, 4), 4)

    PCA uses up to ``sample`` rows; k-means up to ``kmeans_sample`` of them.
    ``pca``: the decomposition of those same rows, when several codecs are
    trained on one sample (``fit_pca(vectors)`` with ``len(vectors) <=
    sample``), so that it is computed once.  ``rotation_iterations``: learn
    an OPQ rotation inside the PCA space first (that many alternations of
    k-means and the Procrustes solution); it is folded into the components,
    so search and the index file are unchanged.  On the devcorpus it gains
    little over the variance-balanced PCA (``benchmarks/quantiser_map.py``),
    so the index does not use it.

    ``bits=8``: 256 centroids a subspace, a byte each (search codes only:
    the build takes 4-bit codes).  The projection keeps the dimensions a
    4-bit codec of the same bytes would (``choose_pca_dim`` with twice the
    subspaces), k-means runs on at least 64 rows a centroid and at most 12
    iterations (16k rows x 16 subspaces: ~2 s on 2 cores), and the quantised
    tables' scale is unused (1.0).

    >>> codec8 = train_codec(x, num_subspaces=8, bits=8, seed=0)
    >>> codec8.encode(x[:2]).shape, codec8.code_bytes, codec8.bits
    ((2, 8), 8, 8)
    """
    if num_subspaces not in _VALID_SUBSPACES:
        raise errors.InvalidInputError(f"num_subspaces must be one of {_VALID_SUBSPACES}, got {num_subspaces}")
    if accumulate not in (8, 16):
        raise errors.InvalidInputError(f"accumulate must be 8 or 16, got {accumulate}")
    if bits not in (4, 8):
        raise errors.InvalidInputError(f"bits must be 4 or 8, got {bits!r}")
    if bits == 8 and rotation_iterations:
        raise errors.InvalidInputError("rotation_iterations is for 4-bit codecs")
    if not 0.0 < pca_variance <= 1.0:
        raise errors.InvalidInputError(f"pca_variance must be in (0, 1], got {pca_variance}")
    x = _rows(vectors)
    if len(x.shape) != 2 or x.shape[0] == 0:
        raise errors.InvalidInputError("codec training needs a non-empty 2-D array")
    n, dim = x.shape
    msub = num_subspaces
    if pca_dim is not None and (pca_dim <= 0 or pca_dim % msub or pca_dim > native.MAX_PCA_DIM):
        raise errors.InvalidInputError(
            f"pca_dim must be a positive multiple of num_subspaces ({msub}) up to {native.MAX_PCA_DIM}, got {pca_dim}")
    rng = default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(n, sample), replace=False))
    s = x if len(idx) == n else np.asarray(x[idx], dtype=np.float32)
    if pca is None:
        pca = fit_pca(s)
    elif pca.mean.shape != (dim,) or pca.rows != len(s):
        raise errors.InvalidInputError("pca was fit on other rows than this codec's training sample")
    mean, eigvals, eigvecs = pca.mean, pca.eigvals, pca.eigvecs
    mean32 = mean.astype(np.float32)

    dp = pca_dim if pca_dim is not None else choose_pca_dim(eigvals, msub * bits // 4, pca_variance)
    comps = np.zeros((dp, dim))
    vals = np.zeros(dp)
    keep = min(dp, dim)  # dp > D pads with zero components
    comps[:keep] = eigvecs[:, :keep].T
    vals[:keep] = eigvals[:keep]
    perm = _balanced_order(vals, msub)
    comps, vals = comps[perm], vals[perm]
    explained = float(vals.sum() / eigvals.sum()) if eigvals.sum() > 0 else 1.0

    comps32 = comps.astype(np.float32)
    comps32_t = np.ascontiguousarray(comps32.T)  # once: project() below runs per block

    def project(rows: np.ndarray | slice) -> np.ndarray:
        # rows of the sample, projected when needed: the whole projected
        # sample never exists at once (peak memory)
        return _project(s[rows], mean32, comps32_t)

    dsub = dp // msub
    ns = len(s)
    # 16 centroids need few points: k-means runs on a sub-sample (512 per centroid)
    ksub = 1 << bits
    if bits == 8:
        kmeans_sample, iterations = max(kmeans_sample, 64 * ksub), min(iterations, 12)
    km = project(np.sort(rng.choice(ns, size=min(ns, kmeans_sample), replace=False)))
    if rotation_iterations:
        rot = _opq_rotation(km, msub, rng, rotation_iterations)
        comps32 = np.ascontiguousarray((rot.T @ comps32.astype(np.float64)).astype(np.float32))
        comps32_t = np.ascontiguousarray(comps32.T)
        km = np.ascontiguousarray((km.astype(np.float64) @ rot).astype(np.float32))
    centroids = _kmeans(km, msub, rng, iterations, ksub)
    del km

    scale = 1.0 if bits == 8 else _table_scale(
        project(rng.choice(ns, size=min(ns, _SCALE_SAMPLE), replace=False)), centroids, accumulate, rng)
    # mean squared error of coding the sample, estimated on _ERROR_SAMPLE of
    # its rows (the whole 32k sample at 768-d: 0.1 s more per codec for an
    # estimate that moved by under 1%), a block at a time
    nc, sq = native.NativeCodec(centroids, 1.0, 16), 0.0
    err_rows = np.sort(rng.choice(ns, size=min(ns, _ERROR_SAMPLE), replace=False))
    for a in range(0, len(err_rows), _BLOCK):
        block = project(err_rows[a:a + _BLOCK])
        recon = centroids[np.arange(msub)[None, :], _unpack(nc.encode(block), bits)]  # (b, msub, dsub)
        sq += float(((block.reshape(len(block), msub, dsub) - recon) ** 2).sum(dtype=np.float64))
    quant_error = sq / len(err_rows)
    return Codec(
        mean=mean.astype(np.float32),
        components=comps32,
        centroids=centroids.astype(np.float32),
        scale=scale,
        accumulate=accumulate,
        explained_variance=explained,
        quant_error=quant_error,
    )


def _table_scale(p: np.ndarray, centroids: np.ndarray, accumulate: int,
                 rng: Generator) -> float:
    """One global scale for every table, from ``p``: up to ``_SCALE_SAMPLE``
    projected sample rows.

    16-bit totals: each table entry spans [0, 255] up to the 99th percentile
    of sub-vector-to-centroid distances (farther centroids clip at 255).
    8-bit totals: the whole distance must fit 255, so the scale makes the
    5th percentile of code distances between random pairs reach 255; nearer
    pairs (the ones graph construction compares) keep full resolution.
    """
    msub, _, dsub = centroids.shape
    m = len(p)
    p = p.reshape(m, msub, 1, dsub)
    entries = ((p - centroids[None]) ** 2).sum(-1)  # (m, msub, 16)
    if accumulate == 16:
        s = float(np.quantile(entries, 0.99)) / 255.0
    else:
        assign = entries.argmin(-1)  # codes of the sample
        other = rng.permutation(m)
        tot = entries[np.arange(m)[:, None], np.arange(msub)[None, :], assign[other]].sum(1)
        s = float(np.quantile(tot, 0.05)) / 255.0
    return s if s > 0 and np.isfinite(s) else 1.0


def code_distance_bias(codec: Codec, vectors: Rows | np.ndarray, seed: int = 0, queries: int = 128,
                       points: int = 1024) -> float:
    """Calibrates code distances against exact ones.

    The search estimates a squared distance as the float table distance over
    the code plus the query's PCA residual (the energy outside the kept
    components); this returns the mean remaining gap ``exact - estimate`` over
    sample pairs, which the search adds so that estimates and exact distances
    share one scale (they are compared when filters send the walk through
    nodes that are never scored exactly).
    """
    x = _rows(vectors)
    rng = default_rng(seed)
    q = x[rng.choice(len(x), size=min(queries, len(x)), replace=False)]
    p = x[rng.choice(len(x), size=min(points, len(x)), replace=False)]
    pq = codec.project(q)
    codes = _unpack(codec.encode(p), codec.bits)  # (P, msub)
    msub = codec.num_subspaces
    dsub = codec.pca_dim // msub
    tables = ((pq.reshape(len(q), msub, 1, dsub) - codec.centroids[None]) ** 2).sum(-1)  # (Q, msub, ksub)
    est = np.zeros((len(q), len(p)), dtype=tables.dtype)  # (Q, P), a subspace at a time:
    for m in range(msub):  # gathering all at once would take (Q, P, msub)
        est += tables[:, m, codes[:, m]]
    resid = np.clip(((q - codec.mean) ** 2).sum(1) - (pq ** 2).sum(1), 0.0, None)
    exact = (q ** 2).sum(1)[:, None] + (p ** 2).sum(1)[None, :] - 2.0 * (q @ p.T)
    gap = exact - est - resid[:, None]
    value = float(gap.mean())
    return value if np.isfinite(value) else 0.0


def code_error_quantiles(codec: Codec, bias: float, vectors: Rows | np.ndarray, levels: Sequence[float],
                         n_index: int, seed: int = 0, queries: int = 128, points: int = 4096,
                         near: int = 64) -> np.ndarray:
    """Quantiles of ``exact - estimate`` (squared L2) at ``levels``, over
    the pairs a search scores exactly: for sample rows as queries, the
    sample points that rank among a query's ``near`` best by code distance
    in an index of ``n_index`` rows (so the error is measured where the
    adaptive stop meets it: close candidates, whose code distances are
    biased low by their selection).  Non-decreasing, as C requires."""
    q, p = _queries_and_points(vectors, queries, points, seed)
    pq = codec.project(q)
    codes = _unpack(codec.encode(p), codec.bits)  # (P, msub)
    msub = codec.num_subspaces
    dsub = codec.pca_dim // msub
    tables = ((pq.reshape(len(q), msub, 1, dsub) - codec.centroids[None]) ** 2).sum(-1)  # (Q, msub, ksub)
    # table lookups as one product with the codes' one-hot rows, a block of
    # points at a time (a gather per subspace took 10x longer)
    ksub = tables.shape[2]
    flat = tables.reshape(len(q), msub * ksub).astype(np.float32)
    est = np.empty((len(q), len(p)), dtype=np.float32)
    onehot = np.zeros((min(len(p), 1024), msub * ksub), dtype=np.float32)
    for a in range(0, len(p), 1024):
        blk = codes[a:a + 1024]
        onehot[:] = 0.0
        onehot[np.arange(len(blk))[:, None], np.arange(msub)[None, :] * ksub + blk] = 1.0
        np.matmul(flat, onehot[:len(blk)].T, out=est[:, a:a + len(blk)])
    resid = np.clip(((q - codec.mean) ** 2).sum(1) - (pq ** 2).sum(1), 0.0, None)
    est += (resid + bias)[:, None].astype(np.float32)
    exact = ((q ** 2).sum(1)[:, None] + (p ** 2).sum(1)[None, :] - 2.0 * (q @ p.T)).astype(np.float32)
    est[exact <= 1e-6 * max(float(exact.max()), 1e-30)] = np.inf  # a query is not its own neighbour
    t = int(min(len(p) - 1, max(4, round(len(p) * near / max(n_index, 1)))))
    if t < 1:
        return np.zeros(len(levels), dtype=np.float32)
    top = np.argpartition(est, t - 1, axis=1)[:, :t]
    err = np.take_along_axis(exact, top, 1) - np.take_along_axis(est, top, 1)
    err = err[np.isfinite(err)]
    if err.size == 0:
        return np.zeros(len(levels), dtype=np.float32)
    out = np.quantile(err.astype(np.float64), np.asarray(levels, dtype=np.float64)).astype(np.float32)
    return np.maximum.accumulate(out)


def reconstruct(codec: Codec, codes: np.ndarray) -> np.ndarray:
    """What codes keep of their rows, in the input space: ``mean +
    centroids @ components`` (float32, (n, dim))."""
    msub = codec.num_subspaces
    recon = codec.centroids[np.arange(msub)[None, :], _unpack(codes, codec.bits)].reshape(len(codes), -1)
    return (codec.mean[None, :] + recon @ codec.components).astype(np.float32)


def normalised_error_quantiles(codec: Codec, norm: float, vectors: Rows | np.ndarray, levels: Sequence[float],
                               n_index: int, seed: int = 0, queries: int = 128, points: int = 4096,
                               near: int = 64) -> np.ndarray:
    """Quantiles of ``exact - estimate`` at ``levels`` for the normalised
    estimator (``native.EST_NORMALISED``: ``-norm * <q, r> / |r|``, r a
    code's reconstruction; exact: ``-<q, x>``), over the pairs a search
    scores, chosen as :func:`code_error_quantiles` chooses them (sample rows
    as queries, their ``near`` best by estimate in an index of ``n_index``
    rows).  ``codec`` as the index keeps it (``as_stored``).  Non-decreasing.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(800, 32)).astype(np.float32)
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> c = train_codec(x, num_subspaces=8, seed=0).as_stored()
    >>> q = normalised_error_quantiles(c, 1.0, x, [0.1, 0.5], 800)
    >>> q.shape, bool(q[0] <= q[1])
    ((2,), True)
    """
    q, p = _queries_and_points(vectors, queries, points, seed)
    r = reconstruct(codec, codec.encode(p))
    rn = np.sqrt(np.maximum((r.astype(np.float64) ** 2).sum(1), 1e-12)).astype(np.float32)
    est = -norm * (q @ r.T) / rn[None, :]
    exact = -(q @ p.T)
    same = ((q ** 2).sum(1)[:, None] + (p ** 2).sum(1)[None, :] + 2.0 * exact) <= 1e-6 * max(norm * norm, 1e-30)
    est[same] = np.inf  # a query is not its own neighbour
    t = int(min(len(p) - 1, max(4, round(len(p) * near / max(n_index, 1)))))
    if t < 1:
        return np.zeros(len(levels), dtype=np.float32)
    top = np.argpartition(est, t - 1, axis=1)[:, :t]
    err = np.take_along_axis(exact, top, 1) - np.take_along_axis(est, top, 1)
    err = err[np.isfinite(err)]
    if err.size == 0:
        return np.zeros(len(levels), dtype=np.float32)
    out = np.quantile(err.astype(np.float64), np.asarray(levels, dtype=np.float64)).astype(np.float32)
    return np.maximum.accumulate(out)


def search_codec(codec: Codec, bias: float) -> native.NativeCodec:
    """A native codec that also codes queries (PCA + bias), for an index's search.

    The components are rounded to float16, the precision the index file keeps
    them at, so a saved and loaded index searches exactly like the original.
    """
    nc = native.NativeCodec(codec.centroids, codec.scale, codec.accumulate)
    nc.set_pca(codec.mean, codec.as_stored().components, bias)
    return nc


def codec_from_native(nc: native.NativeCodec) -> Codec:
    """The Python view of a codec read back from an index."""
    d = nc.export()
    return Codec(mean=d["mean"], components=d["components"], centroids=d["centroids"], scale=d["scale"],
                 accumulate=d["accumulate"])


def _queries_and_points(vectors: "Rows | np.ndarray", queries: int, points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample rows as queries and as points (float32, in row order): the
    pairs the calibrations of the adaptive stop measure errors on."""
    x = _rows(vectors)
    rng = default_rng(seed)
    n = len(x)
    qi = rng.choice(n, size=min(queries, n), replace=False)
    pi = rng.choice(n, size=min(points, n), replace=False)
    return np.asarray(x[np.sort(qi)], dtype=np.float32), np.asarray(x[np.sort(pi)], dtype=np.float32)
