"""Intended-time schedules: exact for constant, statistically right and seeded for Poisson."""

from __future__ import annotations

import numpy as np
import pytest

from hopscope.pipelines.schedule import constant_schedule, phased_plan, poisson_schedule, schedule


def test_constant_is_exact() -> None:
    t = constant_schedule(4000, 2.5)
    assert t.size == 10_000 and t[0] == 0
    assert np.all(np.diff(t) == 250_000)
    assert constant_schedule(3, 1).tolist() == [0, 333_333_333, 666_666_666]


def test_poisson_rate_gaps_and_seed() -> None:
    rate, seconds = 5000.0, 20.0
    t = poisson_schedule(rate, seconds, seed=42)
    expected = rate * seconds
    assert abs(t.size - expected) < 5 * np.sqrt(expected)
    assert np.all(np.diff(t) >= 0) and t[-1] < seconds * 1e9 and t[0] >= 0
    gaps = np.diff(t) / 1e9
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)  # exponential: CV = 1
    # Arrivals per 1 s window are Poisson: variance ≈ mean.
    per_window = np.bincount((t // 1_000_000_000).astype(int))
    assert per_window.var() / per_window.mean() == pytest.approx(1.0, abs=0.8)
    assert np.array_equal(t, poisson_schedule(rate, seconds, seed=42))
    assert not np.array_equal(t[:100], poisson_schedule(rate, seconds, seed=43)[:100])


def test_poisson_longer_than_one_draw() -> None:
    t = poisson_schedule(1.0, 3.0, seed=5)  # tiny expectation: the over-draw loop may repeat
    assert np.all(t < 3e9)


@pytest.mark.parametrize(("rate", "seconds"), [(0, 1), (-1, 1), (1, 0), (float("nan"), 1), (1, float("inf"))])
def test_invalid_rates_and_durations(rate: float, seconds: float) -> None:
    with pytest.raises(ValueError, match="must be a positive"):
        schedule("constant", rate, seconds)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'bursty'"):
        schedule("bursty", 1, 1)  # type: ignore[arg-type]


def test_phases_back_to_back_and_point_reads_merged() -> None:
    plan = phased_plan("constant", [(100, 2), (300, 1)], seed=3, point_read_rate=10)
    events = plan.stream == 0
    assert np.bincount(plan.phase[events]).tolist() == [200, 300]
    assert plan.phase_start_ns.tolist() == [0, 2_000_000_000]
    assert np.all(np.diff(plan.intended_ns) >= 0)
    assert int((plan.stream == 1).sum()) == 30
    second = plan.intended_ns[events & (plan.phase == 1)]
    assert second.tolist() == [2_000_000_000 + (k * 10**9) // 300 for k in range(300)]  # no drift
    reads = plan.intended_ns[plan.stream == 1]
    assert np.all(plan.phase[plan.stream == 1] == (reads >= 2_000_000_000))
    # Adding point reads does not move the events.
    no_reads = phased_plan("constant", [(100, 2), (300, 1)], seed=3)
    assert np.array_equal(no_reads.intended_ns, plan.intended_ns[events])
