"""The headline numbers: per workload, which stack is lower at p50 and p99, by how much,
and where the losing stack's tail opens up."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .context import ReportContext

QUANTILES = {"p50_ms": 0.50, "p99_ms": 0.99, "p999_ms": 0.999}


@dataclass(frozen=True)
class StackLatency:
    stack: str
    deliveries: int
    p50_ms: float
    p99_ms: float
    p999_ms: float


@dataclass(frozen=True)
class Headline:
    workload: str
    stacks: list[StackLatency]  # stacks with deliveries, in report stack order
    missing: list[str]  # stacks expected or seen elsewhere but without deliveries here
    lower_p50: str | None  # None when fewer than two stacks have data
    ratio_p50: float | None  # runner-up / lowest (≥ 1)
    lower_p99: str | None
    ratio_p99: float | None
    losing_stack: str | None  # highest p99
    tail_hop: str | None  # losing stack's hop with the largest tail_share_p99
    tail_hop_share: float | None
    growth_hop: str | None  # losing stack's hop with the largest step in partial-sum p99
    growth_step_ms: float | None


def e2e_quantiles(values: np.ndarray) -> dict[str, float]:
    return {k: float(np.quantile(values, q)) for k, q in QUANTILES.items()}


def _lower(stacks: list[StackLatency], key: str) -> tuple[str | None, float | None]:
    if len(stacks) < 2:
        return None, None
    ranked = sorted(stacks, key=lambda s: getattr(s, key))
    best, runner_up = getattr(ranked[0], key), getattr(ranked[1], key)
    if best <= 0:
        return ranked[0].stack, None
    return ranked[0].stack, runner_up / best


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


def headline(ctx: ReportContext, workload: str) -> Headline:
    stacks: list[StackLatency] = []
    for stack in ctx.stacks_with_data(workload):
        values = ctx.deliveries(stack, workload)["e2e_ms"].dropna().to_numpy(dtype=float)
        if len(values) == 0:
            continue
        stacks.append(StackLatency(stack, len(values), **e2e_quantiles(values)))
    have = {s.stack for s in stacks}
    missing = [s for s in ctx.stacks if s not in have]
    lower_p50, ratio_p50 = _lower(stacks, "p50_ms")
    lower_p99, ratio_p99 = _lower(stacks, "p99_ms")
    losing = max(stacks, key=lambda s: s.p99_ms).stack if len(stacks) >= 2 else None
    # With one stack there is no loser, but where its own tail opens is still the headline.
    focus = losing or (stacks[0].stack if stacks else None)
    tail_hop = tail_share = growth_hop = growth_step = None
    if focus is not None:
        tail_hop, tail_share = tail_open_hop(ctx.hops(focus, workload))
        growth_hop, growth_step = largest_growth_step(ctx.growth(focus, workload))
    return Headline(
        workload=workload,
        stacks=stacks,
        missing=missing,
        lower_p50=lower_p50,
        ratio_p50=ratio_p50,
        lower_p99=lower_p99,
        ratio_p99=ratio_p99,
        losing_stack=losing,
        tail_hop=tail_hop,
        tail_hop_share=tail_share,
        growth_hop=growth_hop,
        growth_step_ms=growth_step,
    )
