"""What tracing costs the latency: traced vs untraced arms of the same workload, paired.

An *arm* is one phase (or one `hopscope bench` run) of a workload on a stack, traced or not; a
*pair* is a traced arm and an untraced arm run back to back with the same workload, rate and
schedule (the experiment's tracing-off twin of a repeat, or a pair of
`benchmarks/overhead_bench.py`). The measure is the ledger e2e of every measured (non-warm-up)
delivery — intended send → each expected subscriber's first receipt, on the load generator's
clock — which is measured the same way with tracing off.

**Overhead** at quantile q = q(traced) ÷ q(untraced) − 1 over the pooled deliveries of all
pairs. Its 95 % interval is a paired two-level bootstrap (`paired_bootstrap`): each draw picks
pairs with replacement — the same picks for both arms — then resamples the deliveries within
each arm of each picked pair, pools them per arm and takes the ratio of the pooled quantiles;
the interval is the 2.5th–97.5th percentile of those ratios. Picking whole pairs carries the
between-pair drift into the interval once, as a pair effect common to both arms (what running
the arms back to back buys), while resampling deliveries keeps each arm's own sampling noise.
With one pair there is nothing to pick: the interval holds only the noise inside the two phases,
not the drift from one run to the next. A median of per-pair ratios would ignore the noise
and, with a handful of pairs, give an interval with only a handful of distinct values.

**Verdict** against the project's targets (`TARGETS`: at most 3 % at p50, 5 % at p99): "under
target" when the interval's top is at or under the target, "over target" when its bottom is
above it, else "inconclusive". A quantile with fewer than `verdicts.MIN_TAIL` (10) deliveries beyond it in
either arm is not *supported* (the verdicts' rule: no interval is shown for it).

**Which segment grew** (`grown_segment`): each delivery's ledger e2e splits into consecutive
segments on the generator's clock (`SEGMENTS`): send lag (intended → sent), the write's round
trip (sent → ack) and after the ack (ack → receipt). The segment whose median grew most
(traced − untraced, ms, with the same paired bootstrap's interval) is where tracing's cost
lands: in the client's write path or downstream of the acknowledged write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from .ledger import NS_PER_MS, deliveries
from .verdicts import CONFIDENCE, N_BOOT, enough_tail, fast_quantiles

#: the project's targets: tracing may add at most this much latency at each quantile
#: (name → (quantile, largest acceptable overhead as a share))
TARGETS: dict[str, tuple[float, float]] = {"p50": (0.50, 0.03), "p99": (0.99, 0.05)}

#: the segments of a delivery's ledger e2e, in time order: column → (name, what it spans)
SEGMENTS: dict[str, tuple[str, str]] = {
    "send_lag_ms": ("send-lag", "intended → sent"),
    "write_round_trip_ms": ("write round-trip", "sent → ack"),
    "after_ack_ms": ("after-ack", "ack → receipt"),
}

#: bootstrap draws of a segment's growth: a secondary figure, three medians per draw
SEGMENT_BOOT = 400


@dataclass(frozen=True)
class Overhead:
    quantile: str
    q: float
    traced_ms: float
    untraced_ms: float
    #: traced ÷ untraced − 1 of the pooled quantiles, and its 95 % interval
    overhead: float
    ci_low: float
    ci_high: float
    target: float
    n_traced: int
    n_untraced: int
    #: at least MIN_TAIL deliveries beyond the quantile in each arm
    supported: bool

    @property
    def verdict(self) -> str:
        if self.ci_high <= self.target:
            return "under target"
        if self.ci_low > self.target:
            return "over target"
        return "inconclusive"

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "interval_reaches_target": bool(self.ci_low <= self.target),
            "verdict": self.verdict,
        }


def _paired_resamples(
    traced: Sequence[np.ndarray], untraced: Sequence[np.ndarray], n_boot: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`n_boot` times (pooled traced resample, pooled untraced resample): the pairs picked with
    replacement alike for both arms, then each picked arm's deliveries with replacement. The
    deliveries are the last axis: a 2-D arm (one row per measure) is resampled a whole column
    (delivery) at a time."""
    rng = np.random.default_rng(seed)
    k = len(traced)

    def pooled(arms: Sequence[np.ndarray], picked: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                np.take(arms[i], rng.integers(0, arms[i].shape[-1], size=arms[i].shape[-1]), axis=-1)
                for i in picked
            ],
            axis=-1,
        )

    for _ in range(n_boot):
        picked = rng.integers(0, k, size=k) if k > 1 else np.zeros(1, np.int64)
        t = pooled(traced, picked)  # traced first: the draws' order is part of the seed's result
        yield t, pooled(untraced, picked)


def paired_bootstrap(
    traced: Sequence[np.ndarray], untraced: Sequence[np.ndarray], qs: np.ndarray, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(traced draws, untraced draws), each n_boot × len(qs): quantiles of the pooled resamples,
    the pairs picked alike for both arms (module docstring). traced[i] and untraced[i] are the
    per-delivery latencies of pair i."""
    out_t, out_u = np.empty((n_boot, len(qs))), np.empty((n_boot, len(qs)))
    for b, (t, u) in enumerate(_paired_resamples(traced, untraced, n_boot, seed)):
        out_t[b] = fast_quantiles(t, qs)
        out_u[b] = fast_quantiles(u, qs)
    return out_t, out_u


def overheads(
    traced: Sequence[np.ndarray], untraced: Sequence[np.ndarray], n_boot: int = N_BOOT, seed: int = 0
) -> list[Overhead]:
    """One `Overhead` per target quantile (`TARGETS`), from the pairs' per-delivery latencies:
    traced[i], untraced[i] = the measured (non-warm-up) ledger e2e (ms) of pair i's two arms.
    Empty when there is no pair or an arm has no delivery."""
    traced = [np.asarray(a, dtype=np.float64) for a in traced]
    untraced = [np.asarray(a, dtype=np.float64) for a in untraced]
    if not traced or len(traced) != len(untraced) or any(a.size == 0 for a in (*traced, *untraced)):
        return []
    qs = np.array([q for q, _ in TARGETS.values()])
    draws_t, draws_u = paired_bootstrap(traced, untraced, qs, n_boot, seed)
    pooled_t, pooled_u = np.concatenate(traced), np.concatenate(untraced)
    point_t, point_u = np.quantile(pooled_t, qs), np.quantile(pooled_u, qs)
    ratios = draws_t / draws_u - 1.0
    lo, hi = np.quantile(ratios, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2], axis=0)
    return [
        Overhead(
            quantile=name,
            q=q,
            traced_ms=float(point_t[j]),
            untraced_ms=float(point_u[j]),
            overhead=float(point_t[j] / point_u[j] - 1.0),
            ci_low=float(lo[j]),
            ci_high=float(hi[j]),
            target=target,
            n_traced=int(pooled_t.size),
            n_untraced=int(pooled_u.size),
            supported=enough_tail(min(pooled_t.size, pooled_u.size), q),
        )
        for j, (name, (q, target)) in enumerate(TARGETS.items())
    ]


# -- segments --------------------------------------------------------------------------------


def delivery_segments(ledger: pd.DataFrame | None) -> pd.DataFrame:
    """The ledger's deliveries (`ledger.deliveries`: measured events only, each expected
    subscriber's first receipt, `latency_ms` = the ledger e2e) with their segments in ms
    (`SEGMENTS`; NaN where the event has no send time or no successful ack). Per delivery the
    segments add up to `latency_ms`."""
    d = deliveries(ledger)
    out = d.reset_index(drop=True)
    for col in SEGMENTS:
        out[col] = np.nan
    if not len(out) or ledger is None or not {"sent_ns", "acked_ns"} <= set(ledger.columns):
        return out
    keys = ["stack", "workload", "event_id"]
    led = ledger  # the deliveries' events are measured ones already
    ok = (
        led["ack_status"].astype("string").fillna("").eq("ok").to_numpy(bool)
        if "ack_status" in led
        else np.ones(len(led), bool)
    )
    times = pd.DataFrame(
        {
            **{k: led[k].to_numpy() for k in keys},
            "intended_ns": pd.to_numeric(led["intended_ns"]).to_numpy(np.float64),
            "sent_ns": pd.to_numeric(led["sent_ns"]).to_numpy(np.float64),
            "acked_ns": np.where(ok, pd.to_numeric(led["acked_ns"]).to_numpy(np.float64), np.nan),
        }
    ).drop_duplicates(keys)
    t = out[keys].merge(times, on=keys, how="left")  # a left merge keeps the deliveries' order
    intended, sent, acked = (t[c].to_numpy(np.float64) for c in ("intended_ns", "sent_ns", "acked_ns"))
    lag = (sent - intended) / NS_PER_MS
    round_trip = (acked - sent) / NS_PER_MS
    have = np.isfinite(lag) & np.isfinite(round_trip)
    out["send_lag_ms"] = np.where(have, lag, np.nan)
    out["write_round_trip_ms"] = np.where(have, round_trip, np.nan)
    out["after_ack_ms"] = np.where(have, out["latency_ms"].to_numpy(np.float64) - lag - round_trip, np.nan)
    return out


@dataclass(frozen=True)
class SegmentGrowth:
    """How much one segment's median grew with tracing (traced − untraced, ms)."""

    #: the segment's column (`SEGMENTS`), its name and what it spans
    segment: str
    name: str
    span: str
    growth_ms: float
    ci_low: float
    ci_high: float
    #: deliveries with every segment known, per arm
    n_traced: int
    n_untraced: int


def grown_segment(
    traced: Sequence[pd.DataFrame | Mapping[str, np.ndarray]],
    untraced: Sequence[pd.DataFrame | Mapping[str, np.ndarray]],
    segments: Mapping[str, tuple[str, str]] = SEGMENTS,
    n_boot: int = SEGMENT_BOOT,
    seed: int = 0,
) -> tuple[SegmentGrowth | None, list[SegmentGrowth]]:
    """(the segment whose median grew most, every segment's growth in `segments`' order).

    traced[i], untraced[i]: pair i's deliveries with one column per segment (ms), as
    `delivery_segments` gives them; deliveries missing a segment are left out. Growth = median of
    the pooled traced deliveries − that of the untraced; its 95 % interval from the paired
    two-level bootstrap (`paired_bootstrap`'s resampling, one set of `n_boot` resamples for all
    segments). (None, []) when an arm of some pair has no delivery with every segment."""
    names = list(segments)

    def matrix(arm: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
        """One row per segment, one column per delivery with every segment known."""
        m = np.vstack([np.asarray(arm[c], dtype=np.float64) for c in names])
        return np.ascontiguousarray(m[:, np.isfinite(m).all(axis=0)])

    t_arms, u_arms = [matrix(a) for a in traced], [matrix(a) for a in untraced]
    if not t_arms or len(t_arms) != len(u_arms) or any(a.shape[1] == 0 for a in (*t_arms, *u_arms)):
        return None, []
    pooled_t, pooled_u = np.concatenate(t_arms, axis=1), np.concatenate(u_arms, axis=1)
    point = np.median(pooled_t, axis=1) - np.median(pooled_u, axis=1)
    half = np.array([0.5])

    def medians(m: np.ndarray) -> np.ndarray:  # per segment, by partition (a sort is slower)
        return np.array([fast_quantiles(row, half)[0] for row in m])

    draws = np.empty((n_boot, len(names)))
    for b, (t, u) in enumerate(_paired_resamples(t_arms, u_arms, n_boot, seed)):
        draws[b] = medians(t) - medians(u)
    lo, hi = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2], axis=0)
    rows = [
        SegmentGrowth(
            col,
            *segments[col],
            float(point[j]),
            float(lo[j]),
            float(hi[j]),
            pooled_t.shape[1],
            pooled_u.shape[1],
        )
        for j, col in enumerate(names)
    ]
    return max(rows, key=lambda r: r.growth_ms), rows
