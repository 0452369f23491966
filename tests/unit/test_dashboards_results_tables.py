"""The results tables' row building (no database): e2e summaries against known numbers, clear errors."""

from __future__ import annotations

import networkx as nx
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


# -- the hop graph (Attribution dashboard's "Hop graph (from the analysis)" node graph) ----------

GRAPH_HOPS = ("client.write", "broker.append", "subscriber.receive")
#: Hand-made hop latencies (ms) of five events, one column per hop: the truth of the graph's edges.
GRAPH_DURATIONS = np.array(
    [[1.0, 10.0, 0.5], [2.0, 10.0, 0.5], [3.0, 10.0, 0.5], [4.0, 10.0, 0.5], [5.0, 50.0, 0.5]]
)


def _chain_run(durations: np.ndarray) -> object:
    """A real analysis `Run` of one stack × workload: each event a chain of the three hops, back to back."""
    import pyarrow as pa

    from hopscope.analysis import Run
    from hopscope.core.schema import SPAN_SCHEMA

    rows = []
    for e, durs in enumerate(durations):
        trace = f"{e + 1:032x}"
        start, parent = 1_700_000_000_000_000_000 + e * 1_000_000_000, None
        for h, (hop, d) in enumerate(zip(GRAPH_HOPS, durs, strict=True)):
            span = f"{e * 10 + h + 1:016x}"
            end = start + round(d * 1e6)
            rows.append(
                dict(
                    trace_id=trace, span_id=span, parent_span_id=parent, links=[], name=hop,
                    kind=("CLIENT", "PRODUCER", "CONSUMER")[h], start_ns=start, end_ns=end, status="UNSET",
                    service=f"kafka.{hop.split('.')[0]}", stack="kafka", workload="w", event_id=f"e{e}",
                    hop=hop, derived=False,
                    attributes=[("hopscope.subscriber", "s1")] if h == len(GRAPH_HOPS) - 1 else [],
                    resource=[], source="test",
                )
            )  # fmt: skip
            parent, start = span, end
    return Run.from_table(pa.Table.from_pylist(rows, schema=SPAN_SCHEMA), correct_skew=False)


def test_hop_graph_rows_of_a_real_run_are_its_path_with_the_known_hop_latencies() -> None:
    run = _chain_run(GRAPH_DURATIONS)
    assert run.pairs() == [("kafka", "w")]  # the Protocol's pairs()/graph() are the real Run's
    rows = rt._rows(rt.HOP_GRAPH, rt.hop_graph_edges(run), "run-g", "graph()")
    named = [dict(zip(rt.HOP_GRAPH.column_names, r, strict=True)) for r in rows]
    chain = ["event.start", *(f"after:{h}" for h in GRAPH_HOPS)]
    assert [(r["hop"], r["source"], r["target"]) for r in named] == [
        (h, chain[j], chain[j + 1]) for j, h in enumerate(GRAPH_HOPS)
    ]
    # numpy-linear quantiles of the hand-made columns: 1..5 → p50 3, p99 4.96; 10,10,10,10,50 → 10, 48.4
    want = {"client.write": (3.0, 4.96), "broker.append": (10.0, 48.4), "subscriber.receive": (0.5, 0.5)}
    for r in named:
        assert (r["run_id"], r["stack"], r["workload"]) == ("run-g", "kafka", "w")
        assert (r["p50_ms"], r["p99_ms"]) == pytest.approx(want[r["hop"]], abs=1e-6), r["hop"]
        assert type(r["p50_ms"]) is float and type(r["p99_ms"]) is float
    # The path is serial, so every hop is on every critical path: shares are the hops' mean shares.
    means = GRAPH_DURATIONS.mean(axis=0)
    shares = {r["hop"]: r["crit_share"] for r in named}
    assert [shares[h] for h in GRAPH_HOPS] == pytest.approx(list(means / means.sum()), abs=1e-6)


class _GraphRun:
    """A hand-made AnalysisRun for the graph only: a fan-out tree and a pair without deliveries."""

    def pairs(self) -> list[tuple[str, str]]:
        return [("harper", "fanout"), ("harper", "idle")]

    def graph(self, stack: str, workload: str) -> nx.DiGraph:
        if workload == "idle":
            raise KeyError(f"no deliveries for stack={stack!r} workload={workload!r}")
        g = nx.DiGraph(stack=stack, workload=workload)
        g.add_edge("event.start", "after:write", hop="write", order=0, p50_ms=1.5, p99_ms=2.5, crit_share=0.5)
        g.add_edge("after:write", "after:notify.a", hop="notify.a", order=1, p50_ms=0.25, p99_ms=4.0)
        g.add_edge(
            "after:write", "after:notify.b", hop="notify.b", order=2, p50_ms=np.float64(0.75), p99_ms=9.0,
            crit_share=0.5,
        )  # fmt: skip
        return g


def test_hop_graph_rows_keep_fan_out_branches_and_skip_pairs_without_a_graph() -> None:
    df = rt.hop_graph_edges(_GraphRun())
    rows = rt._rows(rt.HOP_GRAPH, df, "r", "graph()")
    assert rows == [
        ("r", "harper", "fanout", "write", "event.start", "after:write", 1.5, 2.5, 0.5),
        ("r", "harper", "fanout", "notify.a", "after:write", "after:notify.a", 0.25, 4.0, None),
        ("r", "harper", "fanout", "notify.b", "after:write", "after:notify.b", 0.75, 9.0, 0.5),
    ]
    assert type(rows[2][6]) is float  # numpy scalars become plain floats for psycopg
    empty = rt.hop_graph_edges(type("NoPairs", (), {"pairs": lambda self: []})())
    assert list(empty.columns) == [c.source for c in rt.HOP_GRAPH.columns if c.source] and empty.empty


def test_results_dsn_takes_the_option_then_the_environment() -> None:
    from hopscope.dashboards.results_target import describe, results_dsn

    env = {"HOPSCOPE_RESULTS_DSN": "host=db port=6543 dbname=r"}
    assert results_dsn("host=a dbname=b", env) == "host=a dbname=b"
    assert results_dsn(None, env) == env["HOPSCOPE_RESULTS_DSN"]
    assert results_dsn(None, {}) is None
    assert describe("postgresql://u:secret@127.0.0.1:1/none") == "127.0.0.1:1/none"
