"""Intended send times: constant or Poisson, vectorised, in ns relative to the run start.

The load generator sends each event at its intended time whatever the system
does, and measures latency from it (no coordinated omission), so the schedule
is computed up front and never adjusted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

NS_PER_S = 1_000_000_000
ScheduleKind = Literal["constant", "poisson"]


def _check(rate: float, duration_s: float) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of events/s, got {rate!r}")
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration must be a positive number of seconds, got {duration_s!r}")


def constant_schedule(rate: float, duration_s: float) -> np.ndarray:
    """floor(rate × duration) events, exactly 1/rate apart, the first at 0."""
    _check(rate, duration_s)
    count = math.floor(rate * duration_s + 1e-9)
    # Multiply then divide in float64: exact to the ns for the event counts we use.
    return np.floor(np.arange(count, dtype=np.float64) * (NS_PER_S / rate)).astype(np.int64)


def poisson_schedule(rate: float, duration_s: float, seed: int) -> np.ndarray:
    """A Poisson process of `rate`: exponential gaps, every arrival before `duration_s`."""
    _check(rate, duration_s)
    rng = np.random.default_rng(seed)
    horizon_ns = duration_s * NS_PER_S
    mean_gap_ns = NS_PER_S / rate
    expected = rate * duration_s
    chunks: list[np.ndarray] = []
    last = 0.0
    while True:
        # Over-draw by ~6 sigma so one draw almost always suffices.
        size = max(16, int(expected + 6 * math.sqrt(expected) + 16))
        times = last + np.cumsum(rng.exponential(mean_gap_ns, size))
        chunks.append(times)
        if times[-1] >= horizon_ns:
            break
        last = float(times[-1])
    all_times = np.concatenate(chunks)
    return np.floor(all_times[all_times < horizon_ns]).astype(np.int64)


def schedule(kind: ScheduleKind, rate: float, duration_s: float, seed: int = 1) -> np.ndarray:
    if kind == "constant":
        return constant_schedule(rate, duration_s)
    if kind == "poisson":
        return poisson_schedule(rate, duration_s, seed)
    raise ValueError(f"unknown schedule {kind!r}; use 'constant' or 'poisson'")


@dataclass(frozen=True)
class Plan:
    """All intended times of a run, sorted, with where each came from."""

    intended_ns: np.ndarray  # int64, ns from run start, non-decreasing
    phase: np.ndarray  # int16 index into the phases (sweep step)
    stream: np.ndarray  # int8: 0 = events, 1 = point reads
    phase_start_ns: np.ndarray  # int64 per phase

    def __len__(self) -> int:
        return int(self.intended_ns.size)


def phased_plan(
    kind: ScheduleKind,
    phases: Sequence[tuple[float, float]],
    seed: int = 1,
    point_read_rate: float | None = None,
) -> Plan:
    """Back-to-back phases (rate, seconds); optional point-read stream merged in.

    Point reads get their own seeded schedule over the whole run so adding them
    does not shift the event schedule.
    """
    if not phases:
        raise ValueError("at least one phase is needed")
    times: list[np.ndarray] = []
    phase_ids: list[np.ndarray] = []
    starts: list[int] = []
    offset = 0
    for i, (rate, seconds) in enumerate(phases):
        t = schedule(kind, rate, seconds, seed + i) + offset
        starts.append(offset)
        times.append(t)
        phase_ids.append(np.full(t.size, i, dtype=np.int16))
        offset += round(seconds * NS_PER_S)
    intended = np.concatenate(times)
    phase = np.concatenate(phase_ids)
    stream = np.zeros(intended.size, dtype=np.int8)
    if point_read_rate is not None:
        reads = schedule(kind, point_read_rate, offset / NS_PER_S, seed + 10_007)
        read_phase = (np.searchsorted(np.asarray(starts), reads, side="right") - 1).astype(np.int16)
        intended = np.concatenate([intended, reads])
        phase = np.concatenate([phase, read_phase])
        stream = np.concatenate([stream, np.ones(reads.size, dtype=np.int8)])
        order = np.argsort(intended, kind="stable")
        intended, phase, stream = intended[order], phase[order], stream[order]
    return Plan(intended, phase, stream, np.asarray(starts, dtype=np.int64))
