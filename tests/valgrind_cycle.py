"""One build / add / search / delete / compact / save / load cycle of the C
library, small enough to run under valgrind (tests/test_valgrind.py)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from leann_store import IndexConfig, LeannIndex


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    more = rng.normal(size=(60, 16)).astype(np.float32)
    allx = np.concatenate([x, more])
    embed = lambda ids: allx[ids]  # noqa: E731
    for cfg in (IndexConfig(metric="cosine", M=8, seed=0, hub_cache_bytes=4096),
                IndexConfig(metric="l2", M=8, seed=0, store_vectors=True, search_bits=8)):
        index = LeannIndex.build(x, cfg)
        index.add(more)
        q = allx[:5] + 0.01
        index.search(q, k=5, embed=embed)
        index.delete(list(range(0, 360, 7)))
        index.search(q, k=5, embed=embed, allowed=np.arange(100))
        index.compact()
        index.search(q[:2], k=5, embed=embed)
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "a.leann"
            index.save(p)
            back = LeannIndex.load(p)
            back.search(q, k=5, embed=embed)
            bad = bytearray(p.read_bytes())
            bad[len(bad) // 2] ^= 0xFF
            (Path(d) / "b.leann").write_bytes(bytes(bad))
            try:
                LeannIndex.load(Path(d) / "b.leann")
            except Exception:  # noqa: BLE001 - the error path is what runs here
                pass
    print("cycle done", file=sys.stderr)


if __name__ == "__main__":
    main()
