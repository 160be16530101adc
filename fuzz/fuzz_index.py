"""Fuzzes the index file loader (``LeannIndex.load``: csrc/format.c's
container, csrc/index_io.c's sections, index.py's UMETA) and a search on
whatever loads.

Guidance: atheris's libFuzzer, fed by the C library's basic blocks and
comparisons (GCC trace-pc + trace-cmp, fuzz/sancov.c) and by the Python
bytecode of leann_store.index.  Every input has its checksums recomputed
(fuzz/crc.py) before it is loaded, so mutations reach the section decoders;
the first byte of the input chooses to skip that (1 in 16) so that the
checksum paths stay exercised.

A load must either succeed or raise a leann_store error; the library's
largest single allocation during a load must stay within 4 x the file's size
plus 1 MiB; a loaded index must answer a search.

    python fuzz/fuzz_index.py CORPUS_DIR [libFuzzer flags]

(an empty CORPUS_DIR is seeded with real saved files, fuzz/seeds.py).
"""

from __future__ import annotations

import ctypes
import os
import sys

import common

common.setup()

import atheris  # noqa: E402

with atheris.instrument_imports(include=["leann_store"]):
    import numpy as np  # noqa: E402
    from leann_store import LeannIndex  # noqa: E402
    from leann_store.errors import LeannError  # noqa: E402

from crc import fix_checksums  # noqa: E402

SCRATCH = common.scratch()
PATH = str(SCRATCH / "input.leann")
_largest = None
if common._SO is not None:
    from leann_store import _native

    _largest = ctypes.CDLL(_native.__file__).leann_fuzz_largest_allocation
    _largest.restype = ctypes.c_size_t
SLACK = 1 << 20


def one_input(data: bytes) -> None:
    blob = data if data[:1] and data[0] & 0x0F == 0x0F else fix_checksums(data)
    with open(PATH, "wb") as f:
        f.write(blob)
    if _largest is not None:
        _largest()
    try:
        index = LeannIndex.load(PATH)
    except LeannError:
        return
    finally:
        if _largest is not None:
            big = _largest()
            if big > 4 * len(blob) + SLACK:
                raise AssertionError(f"a load of {len(blob)} bytes allocated {big} bytes at once")
    rng = np.random.default_rng(len(blob))
    vecs = rng.normal(size=(len(index), index.dim)).astype(np.float32)
    k = min(3, len(index))
    res = index.search(vecs[[0, -1]] + 0.01, k=k, embed=lambda ids: vecs[ids])
    assert res.ids.shape[0] == 2 and res.ids.shape[1] <= k
    assert ((res.ids >= -1) & (res.ids < len(index))).all()


def seed(corpus: str) -> None:
    from pathlib import Path

    from seeds import index_files

    d = Path(corpus)
    if d.is_dir() and not any(d.iterdir()):
        index_files(d)


if __name__ == "__main__":
    dirs = [a for a in sys.argv[1:] if not a.startswith("-")]
    if dirs:
        seed(dirs[0])
    common.run(one_input)
