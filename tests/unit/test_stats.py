"""The share definitions against direct computations on random data (absent hops count 0)."""

from __future__ import annotations

import numpy as np
import pytest

from hopscope.analysis.stats import build_matrix, hop_rows, shares


def test_shares_match_direct_definitions() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    a = rng.lognormal(0, 0.5, n)
    b = 0.5 * a + rng.exponential(1.0, n)  # correlated with a
    c = np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(1, 1, n))  # absent on 30 % of rows
    m = np.column_stack([a, b, c])
    e = m.sum(1)
    sh = shares(m)
    cov = np.cov(np.vstack([m.T, e]), bias=True)
    assert sh["var_share"] == pytest.approx(cov[:3, 3] / cov[3, 3])
    q = np.quantile(e, 0.99)
    tail = e >= q
    direct = (m[tail].mean(0) - m.mean(0)) / (e[tail].mean() - e.mean())
    assert sh["tail_share_p99"] == pytest.approx(direct)
    assert sh["crit_share"] == pytest.approx(m.sum(0) / e.sum())
    for key in ("var_share", "tail_share_p99", "tail_share_p999", "crit_share"):
        assert sh[key].sum() == pytest.approx(1.0)
    assert sh["var_share"][0] > cov[0, 0] / cov[3, 3]  # covariance with b is credited to a


def test_long_table_pivot_counts_absent_hops_as_zero() -> None:
    # deliveries 0..3; hop 7 missing on delivery 2, hop 9 appears twice on delivery 0
    d = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    lab = np.array([7, 9, 9, 7, 9, 9, 7, 9])
    val = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) * 1e6
    off = np.array([0, 5, 9, 0, 5, 5, 0, 5]) * 1.0
    names = np.array([f"h{i}" for i in range(10)], dtype=object)
    m = build_matrix(d, lab, val, off, 4, names)
    assert m.labels == ["h7", "h9"]
    assert m.values.tolist() == [[1e6, 5e6], [4e6, 5e6], [0.0, 6e6], [7e6, 8e6]]
    rows = {r["hop"]: r for r in hop_rows(m)}
    assert rows["h7"]["count"] == 3
    assert rows["h7"]["mean_ms"] == pytest.approx(4.0)  # over the deliveries where it appears
    assert rows["h7"]["crit_share"] == pytest.approx(12 / 36)
