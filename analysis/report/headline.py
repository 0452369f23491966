"""The headline: per workload and quantile (p50, p99, p99.9) each stack's figure with its 95 %
interval and sample count, the verdict — "<stack> lower, ×ratio [interval]" only where the
ratio's interval excludes 1, else "no clear difference" — and where the losing stack's tail
opens. The figures and verdicts are the run's (`ReportContext.estimates` / `.verdicts`,
`hopscope.analysis.verdicts`); a quantile with fewer than 10 samples beyond it is not shown.
A rate sweep is compared at the highest offered rate every stack sustains below its knee."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from ..verdicts import QUANTILES, verdict_text
from .context import ReportContext

#: quantile name → how the report writes it
QUANTILE_LABELS = {"p50": "p50", "p99": "p99", "p999": "p99.9"}


@dataclass(frozen=True)
class Figure:
    """One stack's quantile: value, 95 % interval, sample count; `shown` = ≥ 10 beyond it."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    shown: bool


@dataclass(frozen=True)
class StackLatency:
    stack: str
    deliveries: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    figures: dict[str, Figure] = field(default_factory=dict)  # quantile name → Figure


@dataclass(frozen=True)
class Verdict:
    quantile: str  # p50 | p99 | p999
    lower: str | None  # None: no clear difference, or not shown
    ratio: float | None  # runner-up ÷ lower, or larger ÷ smaller
    ci_low: float | None
    ci_high: float | None
    shown: bool  # both stacks have ≥ 10 samples beyond the quantile

    def text(self) -> str:
        if self.shown and self.ratio is None:
            return "–"  # e.g. a quantile of 0
        return verdict_text(self.lower, self.ratio, self.ci_low, self.ci_high)


@dataclass(frozen=True)
class Headline:
    workload: str
    stacks: list[StackLatency]  # stacks with deliveries, in report stack order
    missing: list[str]  # stacks expected or seen elsewhere but without deliveries here
    lower_p50: str | None  # None when fewer than two stacks, or no clear difference
    ratio_p50: float | None  # runner-up / lowest (≥ 1) when lower_p50 is named
    lower_p99: str | None
    ratio_p99: float | None
    losing_stack: str | None  # higher p99
    tail_hop: str | None  # losing stack's hop with the largest tail_share_p99
    tail_hop_share: float | None
    growth_hop: str | None  # losing stack's hop with the largest step in partial-sum p99
    growth_step_ms: float | None
    #: a rate sweep: the rate the figures are at, and each stack's highest rate sustained below
    #: its knee with its figures there
    compared_at: float | None = None
    sustained: dict[str, tuple[float | None, StackLatency | None]] = field(default_factory=dict)
    #: every pair of stacks with data, in report stack order → quantile name → verdict
    pairs: dict[tuple[str, str], dict[str, Verdict]] = field(default_factory=dict)

    @property
    def verdicts(self) -> dict[str, Verdict]:
        """Quantile name → verdict of the first two stacks with data (the report's first pair)."""
        return next(iter(self.pairs.values()), {})

    def lowest(self, quantile: str) -> str | None:
        """The stack lower than every other stack at `quantile` (each of its pairs' intervals
        excludes 1), or None: with three or more stacks, "lower" is a claim about every pair."""
        for cand in (s.stack for s in self.stacks):
            theirs = [by_q.get(quantile) for pair, by_q in self.pairs.items() if cand in pair]
            if theirs and all(v is not None and v.lower == cand for v in theirs):
                return cand
        return None

    def verdict_text(self, quantile: str) -> str:
        """The verdict at `quantile` as the headline writes it: the pair's, or with three or more
        stacks each pair's, led by the stack lower than all others when there is one."""
        if len(self.pairs) <= 1:
            v = self.verdicts.get(quantile)
            return v.text() if v else "–"
        parts = [
            f"{a} vs {b}: {v.text()}" for (a, b), by_q in self.pairs.items() if (v := by_q.get(quantile))
        ]
        if not parts:
            return "–"
        low = self.lowest(quantile)
        return (f"{low} lowest — " if low else "") + "; ".join(parts)


def tail_open_hop(hops: pd.DataFrame) -> tuple[str | None, float | None]:
    """The hop with the largest share of the p99 tail's excess over the mean."""
    shares = hops.dropna(subset=["tail_share_p99"]) if "tail_share_p99" in hops else hops.iloc[0:0]
    if shares.empty:
        return None, None
    row = shares.loc[shares["tail_share_p99"].idxmax()]
    return str(row["hop"]), float(row["tail_share_p99"])


def largest_growth_step(growth: pd.DataFrame) -> tuple[str | None, float | None]:
    """The hop after which the partial-sum p99 rises most (growth must be in path order)."""
    if growth.empty or "p99_ms" not in growth:
        return None, None
    p99 = growth["p99_ms"].to_numpy(dtype=float)
    steps = np.diff(p99, prepend=0.0)
    if np.all(np.isnan(steps)):
        return None, None
    i = int(np.nanargmax(steps))
    return str(growth["hop"].iloc[i]), float(steps[i])


def _stack_latency(stack: str, rows: pd.DataFrame) -> StackLatency | None:
    if rows.empty or int(rows["n"].max()) == 0:
        return None
    figs = {
        str(r["quantile_name"]): Figure(
            float(r["value"]), float(r["ci_low"]), float(r["ci_high"]), int(r["n"]), bool(r["shown"])
        )
        for _, r in rows.iterrows()
    }
    nan = float("nan")
    return StackLatency(
        stack,
        int(rows["n"].max()),
        figs["p50"].value if "p50" in figs else nan,
        figs["p99"].value if "p99" in figs else nan,
        figs["p999"].value if "p999" in figs else nan,
        figs,
    )


def _estimates(ctx: ReportContext, workload: str, basis: str | None = None) -> pd.DataFrame:
    e = ctx.estimates
    if e is None or e.empty:
        return pd.DataFrame(columns=["workload", "stack", "quantile_name", "basis"])
    sel = e[e["workload"] == workload]
    if "basis" in sel:
        sel = sel[sel["basis"] == basis] if basis else sel[sel["basis"] != "sustained rate"]
    return sel


def _verdicts(ctx: ReportContext, workload: str, pair: tuple[str, str]) -> dict[str, Verdict]:
    """The verdicts of `pair` (either order) per quantile name."""
    v = ctx.verdicts
    if v is None or v.empty:
        return {}
    out: dict[str, Verdict] = {}
    a, b = sorted(pair)  # verdicts.parquet holds each pair once, its names sorted
    sel = v[(v["workload"] == workload) & (v["stack_a"] == a) & (v["stack_b"] == b)]
    for _, r in sel.iterrows():
        ratio = r["ratio"]
        has = ratio == ratio
        out[str(r["quantile_name"])] = Verdict(
            str(r["quantile_name"]),
            (str(r["lower"]) or None) if has else None,
            float(ratio) if has else None,
            float(r["ratio_ci_low"]) if has else None,
            float(r["ratio_ci_high"]) if has else None,
            shown=has or not str(r.get("note", "")).startswith("fewer"),
        )
    return out


def headline(ctx: ReportContext, workload: str) -> Headline:
    est = _estimates(ctx, workload)
    stacks: list[StackLatency] = []
    for stack in ctx.stacks:
        s = _stack_latency(stack, est[est["stack"] == stack]) if not est.empty else None
        if s is not None:
            stacks.append(s)
    have = {s.stack for s in stacks}
    missing = [s for s in ctx.stacks if s not in have]
    names = [s.stack for s in stacks]
    # combinations keep report order: the first pair is the first two stacks with data
    pairs = {pair: _verdicts(ctx, workload, pair) for pair in combinations(names, 2)}
    verdicts = next(iter(pairs.values()), {})
    p50, p99 = verdicts.get("p50"), verdicts.get("p99")
    lower_p50 = p50.lower if p50 else None
    lower_p99 = p99.lower if p99 else None
    shown99 = [s for s in stacks if "p99" in s.figures and s.figures["p99"].shown]
    ranked = shown99 if len(shown99) >= 2 else stacks
    losing = (
        max(ranked, key=lambda s: s.p99_ms if s.p99_ms == s.p99_ms else -1).stack
        if len(stacks) >= 2
        else None
    )
    # With one stack there is no loser, but where its own tail opens is still the headline.
    focus = losing or (stacks[0].stack if stacks else None)
    tail_hop = tail_share = growth_hop = growth_step = None
    if focus is not None:
        tail_hop, tail_share = tail_open_hop(ctx.hops(focus, workload))
        growth_hop, growth_step = largest_growth_step(ctx.growth(focus, workload))
    sweep = (ctx.sweep_rates or {}).get(workload) or {}
    sustained: dict[str, tuple[float | None, StackLatency | None]] = {}
    if sweep:
        own = _estimates(ctx, workload, "sustained rate")
        for stack, rate in (sweep.get("sustained") or {}).items():
            rows = own[own["stack"] == stack] if not own.empty else own
            sustained[stack] = (rate, _stack_latency(stack, rows) if rate is not None else None)
    return Headline(
        workload=workload,
        stacks=stacks,
        missing=missing,
        lower_p50=lower_p50,
        ratio_p50=p50.ratio if p50 and lower_p50 else None,
        lower_p99=lower_p99,
        ratio_p99=p99.ratio if p99 and lower_p99 else None,
        losing_stack=losing,
        tail_hop=tail_hop,
        tail_hop_share=tail_share,
        growth_hop=growth_hop,
        growth_step_ms=growth_step,
        compared_at=sweep.get("compared_at") if sweep else None,
        sustained=sustained,
        pairs=pairs,
    )


__all__ = ["QUANTILES", "QUANTILE_LABELS", "Figure", "Headline", "StackLatency", "Verdict", "headline"]
