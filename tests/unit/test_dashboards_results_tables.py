"""The results tables' row building (no database): e2e summaries against known numbers, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hopscope.dashboards import results_tables as rt


def test_e2e_summary_matches_hand_computed_statistics() -> None:
    # 1..1000 ms for kafka, 2..2000 ms step 2 for harper: numpy-linear quantiles are known in closed form.
    kafka = np.arange(1, 1001, dtype=float)
    harper = kafka * 2
    df = pd.DataFrame(
        {
            "stack": ["kafka"] * 1000 + ["harper"] * 1000,
            "workload": ["write_notify"] * 2000,
            "e2e_ns": np.concatenate([kafka, harper]) * 1e6,
        }
    )
    rows = {r[1]: r for r in rt.e2e_summary(df, "run-1")}
    run_id, stack, workload, count, mean, p50, p90, p99, p999, mx = rows["kafka"]
    assert (run_id, stack, workload, count) == ("run-1", "kafka", "write_notify", 1000)
    assert mean == pytest.approx(500.5)
    assert p50 == pytest.approx(500.5)  # between the 500th and 501st value
    assert p90 == pytest.approx(900.1)
    assert p99 == pytest.approx(990.01)
    assert p999 == pytest.approx(999.001)
    assert mx == 1000.0
    assert rows["harper"][5] == pytest.approx(1001.0) and rows["harper"][9] == 2000.0


def test_e2e_summary_accepts_milliseconds_and_names_a_missing_value() -> None:
    df = pd.DataFrame({"stack": ["s", "s"], "workload": ["w", "w"], "e2e_ms": [1.0, 3.0]})
    assert rt.e2e_summary(df, "r")[0][4] == 2.0
    df.loc[1, "e2e_ms"] = np.nan
    with pytest.raises(rt.ResultsError, match=r"row 1: e2e latency is missing"):
        rt.e2e_summary(df, "r")
    with pytest.raises(rt.ResultsError, match="no e2e_ms or e2e_ns"):
        rt.e2e_summary(df.rename(columns={"e2e_ms": "latency"}), "r")


def test_hop_rows_map_order_and_keep_undefined_shares_as_null() -> None:
    df = pd.DataFrame(
        [
            {
                "stack": "kafka", "workload": "w", "hop": "a", "order": np.int64(0), "count": np.int64(3),
                "mean_ms": 1.0, "std_ms": 0.0, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "p999_ms": 1.0,
                "max_ms": 1.0, "var_share": np.nan, "tail_share_p99": np.nan, "tail_share_p999": np.nan,
                "crit_share": 1.0, "mean_offset_ms": 0.0,
            }
        ]
    )  # fmt: skip
    (row,) = rt._rows(rt.HOP_STATS, df, "r", "hop_stats()")
    named = dict(zip(rt.HOP_STATS.column_names, row, strict=True))
    assert named["run_id"] == "r" and named["hop_order"] == 0 and type(named["hop_order"]) is int
    assert named["var_share"] is None and named["crit_share"] == 1.0


def test_missing_columns_and_fields_are_named() -> None:
    df = pd.DataFrame({"stack": ["k"], "workload": ["w"], "hop": ["a"], "order": [0]})
    with pytest.raises(
        rt.ResultsError, match=r"hopscope_tail_growth: run.tail_growth\(\) lacks column\(s\) \['p50_ms'"
    ):
        rt._rows(rt.TAIL_GROWTH, df, "r", "tail_growth()")
    df = pd.DataFrame({"stack": ["k"], "workload": [None], "hop": ["a"], "order": [0], "p50_ms": [1.0],
                       "p99_ms": [1.0], "p999_ms": [1.0]})  # fmt: skip
    with pytest.raises(rt.ResultsError, match=r"row 0: field 'workload' is missing"):
        rt._rows(rt.TAIL_GROWTH, df, "r", "tail_growth()")


def test_ddl_keys_every_table_by_run_id() -> None:
    for table in rt.TABLES:
        assert table.key[0] == "run_id"
        assert table.ddl().startswith(f"CREATE TABLE IF NOT EXISTS {table.name} (")
