"""The knee of a rate sweep, defined once: the report's sweep section marks it, and the headline
states the highest offered rate a stack sustains below it (and its latency there).

A step is past the knee when its p50 exceeds `KNEE_P50_FACTOR` × the lowest rate's p50 (a queue
that every event waits in), when its p99 exceeds `KNEE_P99_FACTOR` × the lowest rate's p99 (a
tail that grows with the load), or when it delivers (or sends) less than `KNEE_RATE_SHORTFALL` of
what was offered. The knee is the first such step; every step before it is *sustained*.

Why 4× at p99 and 2× at p50: a low step's p99 rests on a few samples (8 s at 25 ev/s is 200
events: the p99 is the second largest), and in the capacity profile's steps it moved by up to 2×
between neighbouring steps with the p50 flat; a p50 is stable to ~20 % there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

KNEE_P50_FACTOR = 2.0
KNEE_P99_FACTOR = 4.0
KNEE_RATE_SHORTFALL = 0.95


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


def past_knee(step: Mapping[str, Any], base_p99: float | None, base_p50: float | None = None) -> bool:
    """True when one step (keys target_rate, events, delivered, achieved_rate, p50_ms, p99_ms) is
    past the knee, given the lowest rate's p99 and p50."""
    events, delivered = _num(step.get("events")), _num(step.get("delivered"))
    short = bool(events) and delivered is not None and delivered / events < KNEE_RATE_SHORTFALL  # type: ignore[operator]
    achieved, target = _num(step.get("achieved_rate")), _num(step.get("target_rate"))
    slow = achieved is not None and target is not None and achieved < KNEE_RATE_SHORTFALL * target
    p99, p50 = _num(step.get("p99_ms")), _num(step.get("p50_ms"))
    tail = bool(base_p99) and p99 is not None and p99 > KNEE_P99_FACTOR * base_p99  # type: ignore[operator]
    queue = bool(base_p50) and p50 is not None and p50 > KNEE_P50_FACTOR * base_p50  # type: ignore[operator]
    return short or slow or tail or queue


def knee_index(steps: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the first step past the knee (steps in rising rate order), None if none is."""
    if not steps:
        return None
    base_p99, base_p50 = _num(steps[0].get("p99_ms")), _num(steps[0].get("p50_ms"))
    for i, step in enumerate(steps):
        if past_knee(step, base_p99, base_p50):
            return i
    return None


def sustained_rate(steps: Sequence[Mapping[str, Any]]) -> float | None:
    """The highest offered rate below the knee (None when the first step is already past it)."""
    k = knee_index(steps)
    below = steps if k is None else steps[:k]
    return _num(below[-1].get("target_rate")) if below else None


def knee_rule() -> str:
    """The knee's definition in words, for tables and captions."""
    return (
        f"p50 > {KNEE_P50_FACTOR:g}× or p99 > {KNEE_P99_FACTOR:g}× the lowest rate's, or under "
        f"{KNEE_RATE_SHORTFALL:.0%} of the offered events sent or delivered"
    )
