"""Verdicts a reader can sign: each quantile with its 95 % interval, and "lower" only where the
interval of the two stacks' ratio excludes 1.

The interval is a two-level (hierarchical) bootstrap: each draw picks the repeats with
replacement, then the deliveries within each picked repeat with replacement, and takes the
quantile of the pooled draw. So the interval holds both the sampling noise inside a phase
and the spread between repeats (machine drift, a GC that hit one phase): a single repeat's
interval is only the first. With one repeat it is the ordinary bootstrap over deliveries.
A stack's draws are independent of the other stack's, so the ratio's interval is the
percentile interval of the ratio of the draws.

A quantile is *shown* only when at least `MIN_TAIL` samples lie beyond it (a p99.9 from
2,000 samples rests on two values: no figure, rather than a figure nobody should sign).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

#: the verdict quantiles, as the report names them
QUANTILES: dict[str, float] = {"p50": 0.5, "p99": 0.99, "p999": 0.999}
#: samples that must lie beyond a quantile for it to be shown
MIN_TAIL = 10
CONFIDENCE = 0.95
N_BOOT = 1000
VERDICT_COLUMNS = [
    "workload", "quantile", "lower", "ratio", "ratio_ci_low", "ratio_ci_high", "n_a", "n_b",
    "stack_a", "stack_b", "a", "a_ci_low", "a_ci_high", "b", "b_ci_low", "b_ci_high", "note",
]  # fmt: skip


def enough_tail(n: int, q: float, min_tail: int = MIN_TAIL) -> bool:
    """True when at least `min_tail` of `n` samples lie beyond the q-quantile."""
    return n * (1.0 - q) >= min_tail


def bootstrap_quantile(
    repeats: Sequence[np.ndarray], q: float, n_boot: int = N_BOOT, seed: int = 0
) -> np.ndarray:
    """`n_boot` bootstrap draws of the q-quantile of the pooled repeats (two-level resampling)."""
    samples = [np.asarray(r, dtype=np.float64) for r in repeats if len(r)]
    if not samples:
        return np.full(n_boot, np.nan)
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    k = len(samples)
    for b in range(n_boot):
        picked = rng.integers(0, k, size=k) if k > 1 else (0,)
        pooled = np.concatenate(
            [samples[i][rng.integers(0, len(samples[i]), size=len(samples[i]))] for i in picked]
        )
        draws[b] = np.quantile(pooled, q)
    return draws


@dataclass(frozen=True)
class QuantileEstimate:
    value: float
    ci_low: float
    ci_high: float
    n: int
    shown: bool  # enough samples beyond it

    #: the bootstrap draws behind the interval (a ratio's interval is taken from them)
    draws: np.ndarray

    @classmethod
    def of(
        cls, repeats: Sequence[np.ndarray], q: float, n_boot: int = N_BOOT, seed: int = 0
    ) -> QuantileEstimate:
        pooled = np.concatenate([np.asarray(r, np.float64) for r in repeats]) if repeats else np.empty(0)
        if pooled.size == 0:
            return cls(np.nan, np.nan, np.nan, 0, False, np.full(n_boot, np.nan))
        shown = enough_tail(pooled.size, q)
        # a hidden quantile needs no interval: its draws are not computed
        draws = bootstrap_quantile(repeats, q, n_boot, seed) if shown else np.full(n_boot, np.nan)
        lo, hi = (
            np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2]) if shown else (np.nan, np.nan)
        )
        return cls(float(np.quantile(pooled, q)), float(lo), float(hi), int(pooled.size), shown, draws)


def compare(
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    q: float,
    names: tuple[str, str] = ("a", "b"),
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, object]:
    """One verdict row: which of two stacks is lower at quantile q, by how much, how sure.

    `ratio` is runner-up ÷ lower when the 95 % interval of that ratio excludes 1 (then `lower`
    names the lower stack); otherwise `lower` is empty and `ratio` is larger ÷ smaller.
    """
    ea = QuantileEstimate.of(a, q, n_boot, seed)
    eb = QuantileEstimate.of(b, q, n_boot, seed + 1)
    row: dict[str, object] = {
        "stack_a": names[0], "stack_b": names[1], "n_a": ea.n, "n_b": eb.n,
        "a": ea.value, "a_ci_low": ea.ci_low, "a_ci_high": ea.ci_high,
        "b": eb.value, "b_ci_low": eb.ci_low, "b_ci_high": eb.ci_high,
        "lower": "", "ratio": np.nan, "ratio_ci_low": np.nan, "ratio_ci_high": np.nan, "note": "",
    }  # fmt: skip
    if not (ea.shown and eb.shown):
        row["note"] = f"fewer than {MIN_TAIL} samples beyond this quantile: not shown"
        return row
    if min(ea.value, eb.value) <= 0:
        row["note"] = "a quantile of 0: no ratio"
        return row
    da, db = ea.draws, eb.draws
    lo_q, hi_q = (1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2
    b_over_a = db / da
    lo, hi = np.quantile(b_over_a, [lo_q, hi_q])
    if lo > 1:  # b is higher: a is lower, ratio b/a
        row.update(lower=names[0], ratio=eb.value / ea.value, ratio_ci_low=lo, ratio_ci_high=hi)
    elif hi < 1:  # a is higher: ratio a/b
        inv_lo, inv_hi = np.quantile(da / db, [lo_q, hi_q])
        row.update(lower=names[1], ratio=ea.value / eb.value, ratio_ci_low=inv_lo, ratio_ci_high=inv_hi)
    elif eb.value >= ea.value:
        row.update(ratio=eb.value / ea.value, ratio_ci_low=lo, ratio_ci_high=hi)
    else:
        inv_lo, inv_hi = np.quantile(da / db, [lo_q, hi_q])
        row.update(ratio=ea.value / eb.value, ratio_ci_low=inv_lo, ratio_ci_high=inv_hi)
    for k in ("ratio", "ratio_ci_low", "ratio_ci_high"):
        row[k] = float(row[k])  # type: ignore[arg-type]
    return row


def verdicts(
    latencies: pd.DataFrame,
    quantiles: Mapping[str, float] = QUANTILES,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Verdict rows for every workload and every pair of stacks in it.

    `latencies`: one row per delivery with columns `workload`, `stack`, `repeat` and
    `latency_ms` (warm-up already left out).
    """
    rows = []
    for workload, wdf in latencies.groupby("workload", sort=False):
        by_stack = {
            s: [g["latency_ms"].to_numpy(np.float64) for _, g in sdf.groupby("repeat", sort=True)]
            for s, sdf in wdf.groupby("stack", sort=True)
        }
        for sa, sb in combinations(sorted(by_stack), 2):
            for qname, q in quantiles.items():
                row = compare(by_stack[sa], by_stack[sb], q, (sa, sb), n_boot, seed)
                rows.append({"workload": workload, "quantile": q, "quantile_name": qname, **row})
    out = pd.DataFrame(rows, columns=[*VERDICT_COLUMNS, "quantile_name"])
    return out


def repeat_disagreements(
    latencies: pd.DataFrame, quantiles: Mapping[str, float] = QUANTILES, n_boot: int = 400, seed: int = 0
) -> pd.DataFrame:
    """Pairs of repeats of one workload × stack whose quantile intervals do not overlap."""
    rows = []
    for (workload, stack), df in latencies.groupby(["workload", "stack"], sort=False):
        per = {r: g["latency_ms"].to_numpy(np.float64) for r, g in df.groupby("repeat", sort=True)}
        for qname, q in quantiles.items():
            est = {r: QuantileEstimate.of([v], q, n_boot, seed) for r, v in per.items()}
            for r1, r2 in combinations(sorted(est), 2):
                e1, e2 = est[r1], est[r2]
                if e1.shown and e2.shown and (e1.ci_high < e2.ci_low or e2.ci_high < e1.ci_low):
                    rows.append({
                        "workload": workload, "stack": stack, "quantile_name": qname,
                        "repeat_a": r1, "value_a": e1.value, "ci_a": (e1.ci_low, e1.ci_high),
                        "repeat_b": r2, "value_b": e2.value, "ci_b": (e2.ci_low, e2.ci_high),
                    })  # fmt: skip
    return pd.DataFrame(
        rows,
        columns=[
            "workload",
            "stack",
            "quantile_name",
            "repeat_a",
            "value_a",
            "ci_a",
            "repeat_b",
            "value_b",
            "ci_b",
        ],
    )
