"""Span trees as flat arrays: depth levels (top-down order) and CSR child lists.

Every tree operation in the analysis iterates over *depth levels* or walk steps
with numpy over all traces at once, never over traces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def gather_segments(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ranges lo[i]:hi[i]; returns (indices, owner i of each index)."""
    lengths = np.maximum(hi - lo, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(lo)), lengths)
    starts = np.cumsum(lengths) - lengths
    idx = np.arange(total) - np.repeat(starts, lengths) + np.repeat(lo, lengths)
    return idx.astype(np.int64), owner


@dataclass
class Children:
    """CSR: children of span i are order[lo[i]:hi[i]]."""

    order: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def children_csr(parent: np.ndarray, member: np.ndarray, *sort_keys: np.ndarray) -> Children:
    """Child lists of the spans with `member` true, grouped by parent and ordered by sort_keys.

    sort_keys are given most-significant first (unlike np.lexsort).
    """
    n = len(parent)
    idx = np.flatnonzero(member & (parent >= 0))
    keys = [k[idx] for k in reversed(sort_keys)] + [parent[idx]]
    order = idx[np.lexsort(keys)] if len(idx) else idx
    counts = np.bincount(parent[order], minlength=n) if len(order) else np.zeros(n, np.int64)
    hi = np.cumsum(counts)
    return Children(order=order.astype(np.int64), lo=hi - counts, hi=hi)


def levels(parent: np.ndarray, member: np.ndarray) -> list[np.ndarray]:
    """Spans by depth from the roots (member spans whose parent is -1); cycles are never reached."""
    kids = children_csr(parent, member)
    level = np.flatnonzero(member & (parent < 0))
    out: list[np.ndarray] = []
    while len(level):
        out.append(level)
        idx, _ = gather_segments(kids.lo[level], kids.hi[level])
        level = kids.order[idx]
    return out


def top_of(parent: np.ndarray, lv: list[np.ndarray]) -> np.ndarray:
    """The root above each span (itself for roots); -1 for spans no level reached (cycles)."""
    top = np.full(len(parent), -1, np.int64)
    for d, level in enumerate(lv):
        top[level] = level if d == 0 else top[parent[level]]
    return top
