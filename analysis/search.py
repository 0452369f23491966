"""Binary search in many sorted segments of one array at once (vectorised over the queries)."""

from __future__ import annotations

import numpy as np


def segmented_search(
    keys: np.ndarray, lo: np.ndarray, hi: np.ndarray, query: np.ndarray, side: str = "left"
) -> np.ndarray:
    """Vectorised np.searchsorted of query[i] inside keys[lo[i]:hi[i]] (each segment sorted)."""
    lo = lo.astype(np.int64, copy=True)
    hi = hi.astype(np.int64, copy=True)
    if len(lo) == 0:
        return lo
    while True:
        active = lo < hi
        if not active.any():
            return lo
        idx = np.flatnonzero(active)
        mid = (lo[idx] + hi[idx]) // 2
        k = keys[mid]
        go_right = k < query[idx] if side == "left" else k <= query[idx]
        lo[idx[go_right]] = mid[go_right] + 1
        hi[idx[~go_right]] = mid[~go_right]
