"""Dashboard 4, attribution: the analysis results of a run from the Postgres results tables.

Each SQL panel declares the columns it shows in an `organize` transformation
(order and headers); the integration test runs the SQL against the real tables
and checks the result has exactly those columns.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, dashboard, nodegraph, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .dataqueries import SQL
from .datasources import POSTGRES
from .panels import board, legend, sql_variable, tooltip

UID = "hopscope-attribution"
RUN_FILTER = "run_id = '$run_id' AND stack IN ($stack) AND workload IN ($workload)"

SQL_RUNS = (
    "SELECT run_id, written_at, array_to_string(stacks, ', ') AS stacks, "
    "array_to_string(workloads, ', ') AS workloads, run_dir\n"
    "FROM hopscope_runs ORDER BY written_at DESC LIMIT 50"
)
SQL_E2E = (
    "SELECT stack, workload, count, mean_ms, p50_ms, p90_ms, p99_ms, p999_ms, max_ms\n"
    f"FROM hopscope_e2e_summary WHERE {RUN_FILTER}\nORDER BY workload, stack"
)
SQL_HOPS = (
    "SELECT stack, workload, hop_order, hop, count, mean_ms, std_ms, p50_ms, p90_ms, p99_ms, p999_ms, max_ms,\n"
    "       var_share, tail_share_p99, tail_share_p999, crit_share\n"
    f"FROM hopscope_hop_stats WHERE {RUN_FILTER}\nORDER BY workload, stack, hop_order"
)
SQL_SHARES = (
    "SELECT stack || ' · ' || workload || ' · ' || lpad(hop_order::text, 2, '0') || ' ' || hop AS hop,\n"
    "       var_share, tail_share_p99, tail_share_p999\n"
    f"FROM hopscope_hop_stats WHERE {RUN_FILTER}\nORDER BY workload, stack, hop_order"
)
SQL_GROWTH = (
    "SELECT stack || ' · ' || workload || ' · after ' || lpad(hop_order::text, 2, '0') || ' ' || hop AS after_hop,\n"
    "       p50_ms, p99_ms, p999_ms\n"
    f"FROM hopscope_tail_growth WHERE {RUN_FILTER}\nORDER BY workload, stack, hop_order"
)
SQL_E2E_HISTORY = (
    "SELECT r.written_at AS time, e.stack || ' / ' || e.workload || ' p99' AS metric, e.p99_ms AS value\n"
    "FROM hopscope_e2e_summary e JOIN hopscope_runs r USING (run_id)\n"
    "WHERE $__timeFilter(r.written_at) AND e.stack IN ($stack) AND e.workload IN ($workload)\nORDER BY 1"
)

# The node graph takes nodes (id, title, subtitle) and edges (id, source, target, mainstat,
# secondarystat) as two frames; ids carry stack and workload so several pairs can be shown.
_PAIR = "stack || ' · ' || workload"
SQL_GRAPH_NODES = (
    f"SELECT DISTINCT {_PAIR} || ' · ' || v.node AS id, v.node AS title, {_PAIR} AS subtitle\n"
    "FROM hopscope_hop_graph, LATERAL (VALUES (source), (target)) AS v(node)\n"
    f"WHERE {RUN_FILTER}\nORDER BY id"
)
SQL_GRAPH_EDGES = (
    f"SELECT {_PAIR} || ' · ' || hop AS id, {_PAIR} || ' · ' || source AS source,\n"
    f"       {_PAIR} || ' · ' || target AS target, hop AS detail__hop, p50_ms AS mainstat,\n"
    "       p99_ms AS secondarystat, crit_share AS detail__crit_share\n"
    f"FROM hopscope_hop_graph WHERE {RUN_FILTER}\nORDER BY id"
)

HEADERS = {
    "hop_order": "#",
    "mean_ms": "mean",
    "std_ms": "std",
    "p50_ms": "p50",
    "p90_ms": "p90",
    "p99_ms": "p99",
    "p999_ms": "p99.9",
    "max_ms": "max",
    "var_share": "share of variance",
    "tail_share_p99": "share of p99 tail",
    "tail_share_p999": "share of p99.9 tail",
    "crit_share": "share of critical path",
    "written_at": "written",
}


def organize(columns: list[str]) -> dm.DataTransformerConfig:
    """The panel's column contract: order and human headers for exactly these columns."""
    return dm.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": {},
            "indexByName": {c: i for i, c in enumerate(columns)},
            "renameByName": {c: HEADERS[c] for c in columns if c in HEADERS},
        },
    )


def _unit(unit: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="unit", value=unit)


def _sql_table(title: str, description: str, sql: str, columns: list[str], unit: str) -> table.Panel:
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(POSTGRES.ref())
        .unit(unit)
        .show_header(True)
        .with_target(SQL(sql))
        .with_transformation(organize(columns))
    )
    shares = [c for c in columns if c.endswith("_share") or "_share_" in c]
    for col in shares:
        panel = panel.override_by_name(HEADERS.get(col, col), [_unit("percentunit")])
    for col in ("count", "hop_order"):
        if col in columns:
            panel = panel.override_by_name(HEADERS.get(col, col), [_unit("none")])
    return panel


def _bars(title: str, description: str, sql: str, x: str, columns: list[str], unit: str) -> barchart.Panel:
    return (
        barchart.Panel()
        .title(title)
        .description(description)
        .datasource(POSTGRES.ref())
        .unit(unit)
        .with_target(SQL(sql))
        .with_transformation(organize(columns))
        .x_field(x)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .legend(legend())
        .tooltip(tooltip())
        .show_value(cm.VisibilityMode.NEVER)
        .x_tick_label_max_length(60)
    )


def _variables() -> list[dashboard.QueryVariable]:
    return [
        sql_variable(
            "run_id", "Run", "SELECT run_id FROM hopscope_runs ORDER BY written_at DESC", multi=False
        ),
        sql_variable(
            "stack",
            "Stack",
            "SELECT DISTINCT unnest(stacks) FROM hopscope_runs WHERE run_id = '$run_id'",
            multi=True,
        ),
        sql_variable(
            "workload",
            "Workload",
            "SELECT DISTINCT unnest(workloads) FROM hopscope_runs WHERE run_id = '$run_id'",
            multi=True,
        ),
    ]


def build() -> dashboard.Dashboard:
    e2e_cols = ["stack", "workload", "count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]
    hop_cols = [
        "stack", "workload", "hop_order", "hop", "count", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p99_ms",
        "p999_ms", "max_ms", "var_share", "tail_share_p99", "tail_share_p999", "crit_share",
    ]  # fmt: skip
    history = (
        timeseries.Panel()
        .title("End-to-end p99 across runs")
        .description("One point per analysed run (time = when its results were written).")
        .datasource(POSTGRES.ref())
        .unit("ms")
        .with_target(SQL(SQL_E2E_HISTORY, fmt="time_series"))
        .legend(legend())
        .tooltip(tooltip())
        .show_points(cm.VisibilityMode.ALWAYS)
        .span(24)
        .height(8)
    )
    out = board(
        "hopscope: attribution",
        UID,
        "Per-hop statistics, variance and tail shares, tail growth: `hopscope analyze --to-postgres`.",
        _variables(),
        time_from="now-30d",
        refresh=None,
    )
    out = out.with_row(dashboard.Row("Run $run_id"))
    out = out.with_panel(
        _sql_table(
            "End-to-end latency",
            "Per stack × workload: client intent to subscriber receipt, from the analysis (exact, not bucketed).",
            SQL_E2E,
            e2e_cols,
            "ms",
        )
        .span(24)
        .height(7)
    )
    out = out.with_panel(
        _sql_table(
            "Per-hop statistics and attribution",
            "Each hop's latency distribution and its share of e2e variance, of the p99 / p99.9 tail excess "
            "and of the critical path (each share column adds up to 1 per stack × workload).",
            SQL_HOPS,
            hop_cols,
            "ms",
        )
        .span(24)
        .height(12)
    )
    out = out.with_panel(
        _bars(
            "Where variance and tail come from",
            "Share of Var(e2e) and of the p99 / p99.9 tail excess per hop.",
            SQL_SHARES,
            "hop",
            ["hop", "var_share", "tail_share_p99", "tail_share_p999"],
            "percentunit",
        )
        .span(12)
        .height(14)
    )
    out = out.with_panel(
        _bars(
            "Tail growth along the path",
            "p50 / p99 / p99.9 of the partial sum of hops: where the tail opens up.",
            SQL_GROWTH,
            "after_hop",
            ["after_hop", "p50_ms", "p99_ms", "p999_ms"],
            "ms",
        )
        .span(12)
        .height(14)
    )
    graph = (
        nodegraph.Panel()
        .title("Hop graph (from the analysis)")
        .description(
            "The analysis' hop graph of each stack × workload: checkpoints as nodes, hops as edges "
            "(main stat p50, secondary p99, ms). Built per run by `hopscope analyze`, not a live "
            "service map (that one is on the Hops dashboard)."
        )
        .datasource(POSTGRES.ref())
        .unit("ms")
        .edges(nodegraph.EdgeOptions().main_stat_unit("ms").secondary_stat_unit("ms"))
        # refIds name the frames: Grafana reads the one with a `source` field as the edges
        .with_target(SQL(SQL_GRAPH_NODES, ref_id="nodes"))
        .with_target(SQL(SQL_GRAPH_EDGES, ref_id="edges"))
        .span(24)
        .height(12)
    )
    out = out.with_panel(graph)
    out = out.with_row(dashboard.Row("Across runs")).with_panel(history)
    out = out.with_row(dashboard.Row("Runs")).with_panel(
        _sql_table(
            "Analysed runs",
            "Runs written to the results tables, newest first.",
            SQL_RUNS,
            ["run_id", "written_at", "stacks", "workloads", "run_dir"],
            "none",
        )
        .span(24)
        .height(8)
    )
    return out
