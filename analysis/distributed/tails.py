"""Pass 2 of a partition, once the merged pass 1 fixed each pair's hop order and where its
e2e tails start: tail growth (DDSketches of the partial path sums in the merged order) and
the conditional sums behind the tail shares.

Tail shares need E[H | E ≥ e_q] with e_q the exact (linearly interpolated) q-quantile of the
e2e over all partitions. The merged sketch places e_q within its relative accuracy, so each
partition sends the sums over its deliveries above a band [lo, hi) around that estimate, the
count below it, and the few rows inside it whole. The client then finds the exact order
statistics inside the band and sums the band rows at or above the exact e_q: the shares come
out as the single-process path computes them, not approximated. When the band misses the
order statistics (a sparse tail), pass 2 runs again with a wider band; only after that the
sketch's estimate is the threshold, and the result says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from ddsketch import DDSketch

from ..stats import NS_PER_MS
from . import sketch

#: the tail shares the single-process path reports: column → quantile of the e2e
TAILS = {"tail_share_p99": 0.99, "tail_share_p999": 0.999}
#: the growth quantiles (tail_growth's columns)
GROWTH = {"p50_ms": 0.5, "p99_ms": 0.99, "p999_ms": 0.999}
#: band half-widths tried, in units of the sketch's relative accuracy
BAND_MARGINS = (4.0, 40.0)


@dataclass
class PairPlan:
    labels: list[str]  # the merged hop order
    bands: dict[str, tuple[float, float]]  # tail column → [lo, hi) in ns


@dataclass
class TailPart:
    """One tail of one pair: deliveries below / inside / above the band."""

    below: int = 0
    band_e: np.ndarray = field(default_factory=lambda: np.zeros(0))
    band_h: np.ndarray | None = None  # rows × hops
    above_n: int = 0
    above_e: float = 0.0
    above_h: np.ndarray | None = None  # hops

    def merge(self, other: TailPart) -> TailPart:
        def add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return b if a is None else a if b is None else a + b

        def stack(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return b if a is None else a if b is None else np.vstack([a, b])

        return TailPart(
            self.below + other.below,
            np.concatenate([self.band_e, other.band_e]),
            stack(self.band_h, other.band_h),
            self.above_n + other.above_n,
            self.above_e + other.above_e,
            add(self.above_h, other.above_h),
        )


@dataclass
class PairTail:
    growth: list[DDSketch]  # per hop in the plan's order: the partial sum after it (ms)
    tails: dict[str, TailPart]

    def merge(self, other: PairTail) -> PairTail:
        return PairTail(
            [sketch.merged([a, b]) for a, b in zip(self.growth, other.growth, strict=True)],
            {k: self.tails[k].merge(other.tails[k]) for k in self.tails},
        )


def aligned(labels: list[str], values: np.ndarray, order: list[str]) -> np.ndarray:
    """The partition's matrix with its columns in the merged order (a hop it lacks: zeros)."""
    full = np.zeros((values.shape[0], len(order)))
    at = {h: i for i, h in enumerate(order)}
    full[:, [at[h] for h in labels]] = values
    return full


def pair_tail(labels: list[str], values: np.ndarray, plan: PairPlan) -> PairTail:
    full = aligned(labels, values, plan.labels)
    partial = np.cumsum(full, axis=1)
    growth = [sketch.of_values(partial[:, j] / NS_PER_MS) for j in range(full.shape[1])]
    e = partial[:, -1] if full.shape[1] else np.zeros(full.shape[0])
    tails = {}
    for key, (lo, hi) in plan.bands.items():
        above = e >= hi
        band = (e >= lo) & ~above
        tails[key] = TailPart(
            int(np.count_nonzero(e < lo)),
            e[band],
            full[band],
            int(above.sum()),
            float(e[above].sum()),
            full[above].sum(0),
        )
    return PairTail(growth, tails)


def _rank_positions(n: int, q: float) -> tuple[int, int, float]:
    """numpy's linear method: the order statistics below and above q·(n − 1) and the fraction."""
    virtual = q * (n - 1)
    below = math.floor(virtual)
    return below, min(below + 1, n - 1), virtual - below


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's own interpolation formula, so the threshold is the same float it computes."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def band_for(e2e_sketch: DDSketch, n: int, q: float, margin: float) -> tuple[float, float]:
    """[lo, hi) in ns that holds the order statistics around the e2e's q-quantile, from the sketch."""
    r0, r1, _ = _rank_positions(n, q)
    at = [
        sketch.quantile(e2e_sketch, r / (n - 1)) if n > 1 else sketch.quantile(e2e_sketch, 0.0)
        for r in (r0, r1)
    ]
    width = margin * sketch.RELATIVE_ACCURACY
    return max(at[0] * NS_PER_MS * (1 - width), 0.0), at[1] * NS_PER_MS * (1 + width) + 1.0


def tail_shares(
    part: TailPart, n: int, q: float, mean_e: float, mean_h: np.ndarray, estimate_ns: float | None = None
) -> tuple[np.ndarray, bool]:
    """(share per hop, exact) — (E[H | E ≥ e_q] − E[H]) / (E[E | E ≥ e_q] − E[E]). Exact when the
    band holds the order statistics e_q lies between; else (with `estimate_ns`) the sketch's
    estimate is the threshold, or (without) None is returned for a retry."""
    k = len(mean_h)
    if n == 0:
        return np.full(k, np.nan), True
    r0, r1, frac = _rank_positions(n, q)
    band_h = part.band_h if part.band_h is not None else np.zeros((0, k))
    order = np.argsort(part.band_e, kind="stable")
    band_e = part.band_e[order]
    exact = part.below <= r0 and r1 - part.below < len(band_e)
    if exact:
        threshold = _lerp(float(band_e[r0 - part.below]), float(band_e[r1 - part.below]), frac)
    elif estimate_ns is not None:
        threshold = estimate_ns
    else:
        return np.full(k, np.nan), False
    hit = part.band_e >= threshold
    count = part.above_n + int(hit.sum())
    above_h = part.above_h if part.above_h is not None else np.zeros(k)
    sum_e = part.above_e + float(part.band_e[hit].sum())
    sum_h = above_h + band_h[hit].sum(0)
    if count == 0:
        return np.full(k, np.nan), exact
    excess = sum_e / count - mean_e
    if excess <= 0:
        return np.full(k, np.nan), exact
    return (sum_h / count - mean_h) / excess, exact
