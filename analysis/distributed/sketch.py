"""Quantile sketches that merge: DDSketch (`ddsketch` on PyPI), filled a batch at a time.

DDSketch keeps counts in logarithmic buckets, so every quantile it returns is within a relative
error α of the true order statistic, whatever the distribution, and two sketches merge exactly
(their bucket counts add). The sketch is what travels between workers instead of the values.

`ddsketch.DDSketch.add` takes one value at a time in Python (~2 µs): at 10⁸ hop values that
would be most of the analysis. Here the bucket of every value is computed with numpy by the
sketch's own mapping formula and each bucket is added once with its count (a few hundred
`add` calls per sketch); the test checks the keys equal `mapping.key` value by value.
"""

from __future__ import annotations

import numpy as np
from ddsketch import DDSketch

#: the sketch's relative accuracy α: each quantile is within α of an order statistic next to
#: the exact (linearly interpolated) one; half the ≤ 1 % the results promise, so the gap
#: between neighbouring order statistics fits in the other half on any sample of useful size
RELATIVE_ACCURACY = 0.005

#: what the report and the results say about accuracy
ACCURACY_TEXT = f"DDSketch, relative accuracy {RELATIVE_ACCURACY:.1%} (quantiles within 1 % of exact)"


def new_sketch() -> DDSketch:
    return DDSketch(relative_accuracy=RELATIVE_ACCURACY)


def keys(sketch: DDSketch, values: np.ndarray) -> np.ndarray:
    """The bucket key of each positive value, as `sketch._mapping.key` computes it one by one."""
    mapping = sketch._mapping
    return (np.ceil(np.log2(values) * mapping._multiplier) + mapping._offset).astype(np.int64)


def add_values(sketch: DDSketch, values: np.ndarray) -> None:
    """Add every value (float, any sign) to the sketch: one `add` per occupied bucket."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if not len(v):
        return
    mapping = sketch._mapping
    tiny = mapping.min_possible
    for sign, part in ((1.0, v[v > tiny]), (-1.0, -v[v < -tiny])):
        if not len(part):
            continue
        k, n = np.unique(keys(sketch, part), return_counts=True)
        # the extremes first: the dense store then grows its range twice, not once per key
        first = np.r_[len(k) - 1, 0, np.arange(1, max(len(k) - 1, 1))][: len(k)]
        for key, count in zip(k[first].tolist(), n[first].tolist(), strict=True):
            # the bucket's own representative value lands in the same bucket
            sketch.add(sign * mapping.value(key), float(count))
    zeros = int(len(v) - np.count_nonzero(v > tiny) - np.count_nonzero(v < -tiny))
    if zeros:
        sketch.add(0.0, float(zeros))


def of_values(values: np.ndarray) -> DDSketch:
    s = new_sketch()
    add_values(s, values)
    return s


def merged(sketches: list[DDSketch]) -> DDSketch:
    out = new_sketch()
    for s in sketches:
        if s.count:
            out.merge(s)
    return out


def order_statistic(sketch: DDSketch, rank: int) -> float:
    """The sketch's value of the order statistic `rank` (0-based), within α of the true one."""
    n = round(sketch.count)
    if n <= 1:
        return float(sketch.get_quantile_value(0.0))
    # DDSketch looks up the first bucket whose running count exceeds q·(n − 1): aiming at the
    # middle between two ranks keeps the float product from landing on the rank below
    q = min((rank + 0.5) / (n - 1), 1.0)
    return float(sketch.get_quantile_value(q))


def quantile(sketch: DDSketch, q: float, low: float | None = None, high: float | None = None) -> float:
    """The q-quantile as numpy's linear method defines it (interpolated between the order
    statistics around q·(n − 1)), each order statistic from the sketch; `low` / `high` (the
    exact min and max, when known) stand for the first and last. NaN when the sketch is empty.
    Within α of the exact value: both order statistics are, and so is a point between them."""
    n = round(sketch.count)
    if n == 0:
        return float("nan")
    virtual = q * (n - 1)
    r0 = int(np.floor(virtual))
    r1 = min(r0 + 1, n - 1)
    frac = virtual - r0

    def at(rank: int) -> float:
        if rank == 0 and low is not None:
            return low
        if rank == n - 1 and high is not None:
            return high
        value = order_statistic(sketch, rank)
        return float(np.clip(value, low if low is not None else -np.inf, high if high is not None else np.inf))

    a = at(r0)
    if frac == 0 or r1 == r0:
        return a
    b = at(r1)
    diff = b - a
    return b - diff * (1 - frac) if frac >= 0.5 else a + diff * frac
