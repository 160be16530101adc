"""Input checks shared by the index and the codec."""

from __future__ import annotations

import numpy as np

from . import errors

_BLOCK = 4096  # rows looked at a time

# Squared distances are float32: components beyond this overflow them.
_MAX_ABS = 1e15


def check_finite(x: np.ndarray, name: str) -> None:
    """NaN, infinities and overflowing components are errors.  The common
    case reads each block twice (min, max) and allocates nothing; only a
    failing block is looked at row by row."""
    for s in range(0, x.shape[0], _BLOCK):
        block = x[s:s + _BLOCK]
        lo, hi = float(block.min()), float(block.max())  # NaN propagates
        if np.isfinite(lo) and np.isfinite(hi) and max(-lo, hi) <= _MAX_ABS:
            continue
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = s + int(np.flatnonzero(~finite)[0])
            raise errors.InvalidInputError(f"{name} row {row} contains NaN or infinity")
        row = s + int(np.flatnonzero((np.abs(block) > _MAX_ABS).any(axis=1))[0])
        raise errors.InvalidInputError(
            f"{name} row {row} has a component beyond +-{_MAX_ABS:g}, which overflows "
            "float32 distances; rescale the vectors")
