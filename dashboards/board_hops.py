"""Dashboard 2, per-hop breakdown: hop quantiles, heatmaps, the service graph, links to slow traces."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, heatmap, nodegraph, prometheus, tempo
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

from . import metrics as m
from .board_traces import UID as TRACES_UID
from .datasources import PROMETHEUS, TEMPO
from .panels import (
    QUANTILES,
    SPAN_FILTER,
    board,
    link,
    prom,
    quantile_expr,
    span_variables,
    table_panel,
    timeseries_panel,
)

UID = "hopscope-hops"
BY = f"{m.STACK}, {m.WORKLOAD}, {m.HOP}"
LEGEND = "{{hopscope_stack}} / {{hopscope_workload}} / {{hopscope_hop}}"
# Clicking a hop's line opens the Traces dashboard filtered to that hop, with the
# clicked value as the bound: the traces where this hop was at least this slow.
SLOW_TRACES_URL = (
    f"/d/{TRACES_UID}?${{__url_time_range}}&var-stack=${{__field.labels.hopscope_stack}}"
    "&var-workload=${__field.labels.hopscope_workload}&var-hop=${__field.labels.hopscope_hop}"
    "&var-hop_bound=${__value.raw}ms"
)
GRAPH_FILTER = 'client=~".+", server=~".+"'


def _heatmap() -> heatmap.Panel:
    return (
        heatmap.Panel()
        .title("Hop latency distribution ($hop)")
        .description(
            "Span-duration histogram per time bucket, summed over the selection (bucket bounds in ms)."
        )
        .datasource(PROMETHEUS.ref())
        .unit("ms")
        .with_target(
            prometheus.Dataquery()
            .expr(f"sum by (le) (increase({m.SPAN_DURATION_BUCKET}{{{SPAN_FILTER}}}[$__rate_interval]))")
            .legend_format("{{le}}")
            .format(pm.PromQueryFormat.HEATMAP)
            .ref_id("A")
            .range()
        )
        .calculate(False)
        .color(heatmap.HeatmapColorOptions().mode(hm.HeatmapColorMode.SCHEME).scheme("Oranges").steps(64))
        .y_axis(heatmap.YAxisConfig().unit("ms"))
        .cell_values(heatmap.CellValues().unit("short"))
        .show_legend()
        .span(24)
        .height(9)
    )


def build() -> dashboard.Dashboard:
    quantiles = [
        timeseries_panel(
            f"Hop latency {name}",
            "ms",
            f"{name} of each hop's span duration (spanmetrics histogram). Click a line for that hop's slow traces.",
        )
        .with_target(prom(quantile_expr(q, m.SPAN_DURATION_BUCKET, BY, SPAN_FILTER), f"{LEGEND} {name}"))
        .data_links([link("Traces where this hop took at least this long", SLOW_TRACES_URL)])
        .span(8)
        .height(9)
        for name, q in QUANTILES
    ]
    hop_table = (
        table_panel(
            "Hop p99 now",
            "ms",
            "Current p99 per hop over the dashboard's rate window; click a row for the hop's slow traces.",
            PROMETHEUS.ref(),
        )
        .with_target(
            prom(quantile_expr("0.99", m.SPAN_DURATION_BUCKET, BY, SPAN_FILTER), LEGEND)
            .instant()
            .format(pm.PromQueryFormat.TABLE)
        )
        .data_links(
            [link("Slow traces of this hop", SLOW_TRACES_URL.replace("__field.labels.", "__data.fields."))]
        )
        .span(12)
        .height(9)
    )
    calls = (
        timeseries_panel("Hop throughput", "reqps", "Spans per second per hop.")
        .with_target(prom(f"sum by ({BY}) (rate({m.SPAN_CALLS}{{{SPAN_FILTER}}}[$__rate_interval]))", LEGEND))
        .span(12)
        .height(9)
    )
    service_graph = (
        nodegraph.Panel()
        .title("Service graph")
        .description(
            "Services as nodes, calls as edges: the edges the spans name (hopscope.edge.client/server), "
            "counted by the collector and filed by Prometheus under the servicegraph connector's names, "
            "read through Tempo's service map (the Tempo datasource points its serviceMap at this Prometheus)."
        )
        .datasource(TEMPO.ref())
        .unit("ms")  # the service map's main node stat is the average response time
        .nodes(nodegraph.NodeOptions().main_stat_unit("ms").secondary_stat_unit("reqps"))
        .edges(nodegraph.EdgeOptions().main_stat_unit("ms").secondary_stat_unit("reqps"))
        .with_target(tempo.TempoQuery().query_type("serviceMap").ref_id("A").datasource(TEMPO.ref()))
        .span(12)
        .height(12)
    )
    edges = (
        table_panel(
            "Service graph edges",
            "reqps",
            "Request rate and server-side p99 per client → server edge (the edges the spans name).",
            PROMETHEUS.ref(),
        )
        .with_target(
            prom(
                f"sum by (client, server, connection_type) (rate({m.GRAPH_REQUESTS}{{{GRAPH_FILTER}}}[$__rate_interval]))",
                "{{client}} → {{server}}",
            )
            .instant()
            .format(pm.PromQueryFormat.TABLE)
        )
        .with_target(
            prom(
                "histogram_quantile(0.99, sum by (le, client, server, connection_type) "
                f"(rate({m.GRAPH_SERVER_BUCKET}{{{GRAPH_FILTER}}}[$__rate_interval])))",
                "{{client}} → {{server}} p99",
                ref_id="B",
            )
            .instant()
            .format(pm.PromQueryFormat.TABLE)
        )
        .override_by_name("Value #B", [_unit("s")])
        .span(12)
        .height(12)
    )
    out = board(
        "hopscope: per-hop breakdown",
        UID,
        "Per-hop latency quantiles and distributions, the service graph, links to slow traces.",
        span_variables(),
    )
    out = out.with_row(dashboard.Row("Hop latency"))
    for panel in quantiles:
        out = out.with_panel(panel)
    out = out.with_panel(hop_table).with_panel(calls).with_panel(_heatmap())
    return out.with_row(dashboard.Row("Service graph")).with_panel(service_graph).with_panel(edges)


def _unit(unit: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="unit", value=unit)
