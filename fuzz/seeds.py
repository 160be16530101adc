"""Seed inputs for the fuzzers, made from real saves: small indexes of every
kind the writer produces (each metric, 4- and 8-bit search codes, stored
vectors, deletions, a hub cache, several levels, a file rewritten as format
version 2) and docstores written by LeannStore."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np




def _data(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, dim))
    return (centers[rng.integers(0, 4, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


def index_files(out: Path) -> list[Path]:
    """Writes the seed index files into ``out``; returns their paths."""
    from leann_store import IndexConfig, LeannIndex

    out.mkdir(parents=True, exist_ok=True)
    kinds = [
        ("tiny-l2", 1, 4, dict(metric="l2", M=4)),
        ("two-ip", 2, 4, dict(metric="ip", M=4)),
        ("cos-4bit", 60, 8, dict(metric="cosine", M=4, hub_cache_bytes=256)),
        ("cos-8bit", 60, 8, dict(metric="cosine", M=4, search_bits=8)),
        ("l2-vectors", 40, 6, dict(metric="l2", M=4, store_vectors=True)),
        ("levels", 300, 4, dict(metric="l2", M=2, store_vectors=True, hub_cache_bytes=128)),
    ]
    paths = []
    for name, n, dim, cfg in kinds:
        x = _data(n, dim, seed=n)
        index = LeannIndex.build(x, IndexConfig(seed=0, **cfg))
        if n > 10:
            index.delete([1, 3])
        p = out / f"{name}.leann"
        index.save(p)
        paths.append(p)
    v2 = out / "cos-4bit-v2.leann"
    v2.write_bytes(as_version_2((out / "cos-4bit.leann").read_bytes()))
    paths.append(v2)
    return paths


def sections(blob: bytes) -> list[tuple[str, int, int]]:
    (count,) = struct.unpack_from("<I", blob, 16)
    (table,) = struct.unpack_from("<Q", blob, 24)
    out = []
    for i in range(count):
        tag, off, length = struct.unpack_from("<8sQQ", blob, table + 32 * i)
        out.append((tag.rstrip(b"\0").decode(), off, length))
    return out


def as_version_2(blob: bytes) -> bytes:
    """The same index as format version 2 wrote it (META layout 2, no
    code-bits word; 4-bit codes only), checksums fixed by fix_checksums."""
    from crc import fix_checksums

    b = bytearray(blob)
    for tag, off, _ in sections(blob):
        if tag == "META":
            words = list(struct.unpack_from("<16Q", b, off))
            words[0], words[14] = 2, 0
            struct.pack_into("<16Q", b, off, *words)
    struct.pack_into("<I", b, 8, 2)
    return fix_checksums(bytes(b))
