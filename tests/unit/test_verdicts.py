"""Verdicts against known truth: identical stacks, a stack twice as slow, thin tails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hopscope.analysis.verdicts import QuantileEstimate, compare, repeat_disagreements, verdicts


def _frame(samples: dict[str, list[np.ndarray]], workload: str = "write_notify") -> pd.DataFrame:
    parts = [
        pd.DataFrame({"workload": workload, "stack": stack, "repeat": r, "latency_ms": values})
        for stack, repeats in samples.items()
        for r, values in enumerate(repeats)
    ]
    return pd.concat(parts, ignore_index=True)


def test_identical_samples_give_no_clear_difference_at_every_quantile() -> None:
    rng = np.random.default_rng(1)
    repeats = [rng.lognormal(3.0, 0.5, 5000) for _ in range(3)]
    out = verdicts(_frame({"harper": repeats, "kafka": [r.copy() for r in repeats]}), n_boot=300)
    assert list(out["quantile"]) == [0.5, 0.99, 0.999]
    assert (out["lower"] == "").all()
    assert np.allclose(out["ratio"], 1.0)
    assert (out["ratio_ci_low"] <= 1.0).all() and (out["ratio_ci_high"] >= 1.0).all()
    assert (out["n_a"] == 15000).all() and (out["n_b"] == 15000).all()


def test_a_stack_twice_as_slow_is_named_with_a_ratio_interval_holding_two() -> None:
    rng = np.random.default_rng(2)
    fast = [rng.exponential(10.0, 4000) for _ in range(3)]
    slow = [2.0 * rng.exponential(10.0, 4000) for _ in range(3)]
    out = verdicts(_frame({"kafka": slow, "harper": fast}), n_boot=400).set_index("quantile_name")
    for q in ("p50", "p99"):
        row = out.loc[q]
        assert row["lower"] == "harper"
        assert row["ratio_ci_low"] > 1.0
        assert row["ratio_ci_low"] <= 2.0 <= row["ratio_ci_high"], row
        assert 1.6 < row["ratio"] < 2.5


def test_a_quantile_with_fewer_than_ten_samples_beyond_it_is_not_shown() -> None:
    rng = np.random.default_rng(3)
    # 9,000 samples: 9 lie beyond the p99.9, so no p99.9; the p99 (90 beyond) is shown
    est = QuantileEstimate.of([rng.exponential(5.0, 9000)], 0.999, n_boot=50)
    assert not est.shown and np.isnan(est.ci_low)
    assert QuantileEstimate.of([rng.exponential(5.0, 9000)], 0.99, n_boot=50).shown
    row = compare([rng.exponential(5.0, 9000)], [rng.exponential(50.0, 9000)], 0.999, ("a", "b"), n_boot=50)
    assert row["lower"] == "" and np.isnan(row["ratio"]) and "not shown" in row["note"]


def test_the_interval_widens_with_disagreeing_repeats() -> None:
    """Spread between repeats is part of the interval: repeats at 10 and 20 ms cannot give the
    narrow interval one pooled phase would."""
    rng = np.random.default_rng(4)
    steady = [rng.normal(15.0, 1.0, 3000) for _ in range(3)]
    drifting = [rng.normal(m, 1.0, 3000) for m in (10.0, 15.0, 20.0)]
    narrow = QuantileEstimate.of(steady, 0.5, n_boot=300)
    wide = QuantileEstimate.of(drifting, 0.5, n_boot=300)
    assert (wide.ci_high - wide.ci_low) > 10 * (narrow.ci_high - narrow.ci_low)
    flagged = repeat_disagreements(_frame({"kafka": drifting}), n_boot=100)
    assert set(zip(flagged["repeat_a"], flagged["repeat_b"], strict=True)) >= {(0, 1), (0, 2), (1, 2)}
    assert repeat_disagreements(_frame({"kafka": steady}), n_boot=100).empty


@pytest.mark.parametrize("n_boot", [200])
def test_verdicts_cover_every_pair_of_three_stacks(n_boot: int) -> None:
    rng = np.random.default_rng(5)
    out = verdicts(
        _frame({s: [rng.exponential(m, 2000)] for s, m in (("a", 5.0), ("b", 10.0), ("c", 20.0))}),
        quantiles={"p50": 0.5},
        n_boot=n_boot,
    )
    assert set(zip(out["stack_a"], out["stack_b"], strict=True)) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert list(out["lower"]) == ["a", "a", "b"]
