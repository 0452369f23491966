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


def fast_quantiles(values: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """numpy's default (linear) quantiles, by partial partitions from the lowest order statistic
    up (each later partition works on what lies above the previous one); `values` is reordered."""
    n = len(values)
    h = (n - 1) * qs
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    start = 0
    for k in np.unique(np.concatenate([lo, hi])):
        values[start:].partition(int(k) - start)
        start = int(k) + 1
    return values[lo] + (h - lo) * (values[hi] - values[lo])


def bootstrap_quantile(
    repeats: Sequence[np.ndarray], q: float | Sequence[float], n_boot: int = N_BOOT, seed: int = 0
) -> np.ndarray:
    """`n_boot` bootstrap draws of the q-quantile of the pooled repeats (two-level resampling);
    with several quantiles, one row per draw and one column per quantile (the same resamples)."""
    qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
    samples = [np.asarray(r, dtype=np.float64) for r in repeats if len(r)]
    if not samples:
        out = np.full((n_boot, len(qs)), np.nan)
        return out[:, 0] if np.ndim(q) == 0 else out
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, len(qs)))
    k = len(samples)
    for b in range(n_boot):
        picked = rng.integers(0, k, size=k) if k > 1 else (0,)
        pooled = np.concatenate(
            [
                samples[i][rng.integers(0, len(samples[i]), size=len(samples[i]), dtype=np.int64)]
                for i in picked
            ]
        )
        draws[b] = fast_quantiles(pooled, qs)
    return draws[:, 0] if np.ndim(q) == 0 else draws


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
        # a hidden quantile needs no interval: its draws are not computed
        needed = pooled.size > 0 and enough_tail(pooled.size, q)
        draws = bootstrap_quantile(repeats, q, n_boot, seed) if needed else np.full(n_boot, np.nan)
        return cls.from_draws(pooled, q, draws)

    @classmethod
    def from_draws(cls, pooled: np.ndarray, q: float, draws: np.ndarray) -> QuantileEstimate:
        """The estimate when the draws are already made (`bootstrap_quantile` with several q)."""
        if pooled.size == 0:
            return cls(np.nan, np.nan, np.nan, 0, False, np.full(len(draws), np.nan))
        shown = enough_tail(pooled.size, q)
        if not shown:
            return cls(float(np.quantile(pooled, q)), np.nan, np.nan, int(pooled.size), False, draws * np.nan)
        lo, hi = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
        return cls(float(np.quantile(pooled, q)), float(lo), float(hi), int(pooled.size), True, draws)


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
    return compare_estimates(ea, eb, names)


def compare_estimates(
    ea: QuantileEstimate, eb: QuantileEstimate, names: tuple[str, str] = ("a", "b")
) -> dict[str, object]:
    """`compare` on estimates already made (each with its own, independent draws)."""
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


ESTIMATE_COLUMNS = [
    "workload", "stack", "quantile", "quantile_name", "value", "ci_low", "ci_high", "n", "repeats",
    "beyond", "shown",
]  # fmt: skip


def analyse(
    latencies: pd.DataFrame,
    quantiles: Mapping[str, float] = QUANTILES,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(estimates, verdicts): each stack's quantiles with their intervals, and the verdict rows
    of every pair of stacks per workload. One set of bootstrap draws per workload × stack serves
    every quantile and every comparison it is in.

    `latencies`: one row per delivery with columns `workload`, `stack`, `repeat` and
    `latency_ms` (warm-up already left out).
    """
    names, qs = list(quantiles), [quantiles[k] for k in quantiles]
    est_rows, rows = [], []
    for workload, wdf in latencies.groupby("workload", sort=False):
        per: dict[str, dict[str, QuantileEstimate]] = {}
        for i, (stack, sdf) in enumerate(wdf.groupby("stack", sort=True)):
            reps = [g["latency_ms"].to_numpy(np.float64) for _, g in sdf.groupby("repeat", sort=True)]
            pooled = np.concatenate(reps) if reps else np.empty(0)
            # only the quantiles with enough tail need draws
            wanted = [q for q in qs if enough_tail(pooled.size, q)]
            draws = bootstrap_quantile(reps, wanted, n_boot, seed + i) if wanted else np.empty((n_boot, 0))
            per[stack] = {}
            for name, q in zip(names, qs, strict=True):
                d = draws[:, wanted.index(q)] if q in wanted else np.full(n_boot, np.nan)
                e = QuantileEstimate.from_draws(pooled, q, d)
                per[stack][name] = e
                est_rows.append({
                    "workload": workload, "stack": stack, "quantile": q, "quantile_name": name,
                    "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
                    "repeats": len(reps), "beyond": int(pooled.size * (1 - q)), "shown": e.shown,
                })  # fmt: skip
        for sa, sb in combinations(sorted(per), 2):
            for name, q in zip(names, qs, strict=True):
                row = compare_estimates(per[sa][name], per[sb][name], (sa, sb))
                rows.append({"workload": workload, "quantile": q, "quantile_name": name, **row})
    return (
        pd.DataFrame(est_rows, columns=ESTIMATE_COLUMNS),
        pd.DataFrame(rows, columns=[*VERDICT_COLUMNS, "quantile_name"]),
    )


def verdicts(
    latencies: pd.DataFrame,
    quantiles: Mapping[str, float] = QUANTILES,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Verdict rows for every workload and every pair of stacks in it (`analyse`'s second table)."""
    return analyse(latencies, quantiles, n_boot, seed)[1]


def verdict_text(lower: str | None, ratio: float | None, lo: float | None, hi: float | None) -> str:
    """The verdict as the report and the console write it: "<stack> lower, ×ratio [lo–hi]", or
    "no clear difference (×ratio [lo–hi])", or "not shown (< 10 samples beyond)" without a ratio."""
    if ratio is None or ratio != ratio:
        return f"not shown (< {MIN_TAIL} samples beyond)"
    r = f"×{ratio:.2f} [{lo:.2f}–{hi:.2f}]"
    return f"{lower} lower, {r}" if lower else f"no clear difference ({r})"


def with_text(verdict_rows: pd.DataFrame) -> pd.DataFrame:
    """The verdict rows with their `verdict` text (what `hopscope run` prints)."""
    out = verdict_rows.copy()
    out["verdict"] = [
        verdict_text(r["lower"] or None, r["ratio"], r["ratio_ci_low"], r["ratio_ci_high"])
        for _, r in verdict_rows.iterrows()
    ]
    return out


def repeat_disagreements(
    latencies: pd.DataFrame, quantiles: Mapping[str, float] = QUANTILES, n_boot: int = 400, seed: int = 0
) -> pd.DataFrame:
    """Pairs of repeats of one workload × stack whose quantile intervals do not overlap."""
    rows = []
    for (workload, stack), df in latencies.groupby(["workload", "stack"], sort=False):
        per = {r: g["latency_ms"].to_numpy(np.float64) for r, g in df.groupby("repeat", sort=True)}
        if len(per) < 2:
            continue
        qs = list(quantiles.values())
        # one set of draws per repeat serves every quantile
        draws = {r: bootstrap_quantile([v], qs, n_boot, seed) for r, v in per.items()}
        for j, (qname, q) in enumerate(quantiles.items()):
            est = {r: QuantileEstimate.from_draws(v, q, draws[r][:, j]) for r, v in per.items()}
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
