"""Dashboard 3, traces: the slow events of a workload and the events whose hop exceeded a bound.

The same searches twice: in TraceQL for Tempo (production) and as Jaeger
searches (the local trace store). Jaeger search cannot bound a whole trace's
duration, so its "slow events" panel bounds the load generator's root span's
service instead and says so.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, table, tempo
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.tempo import MetricsQueryType, TempoQueryType

from . import metrics as m
from .dataqueries import JaegerSearch
from .datasources import JAEGER, TEMPO
from .panels import board, prom_variable

UID = "hopscope-traces"

# TraceQL, with the dashboard variables (single values) interpolated by Grafana.
SCOPE = 'resource.hopscope.stack = "$stack" && span.hopscope.workload = "$workload"'
TRACEQL_SLOW_EVENTS = f"{{ {SCOPE} && trace:duration > $e2e_bound }} | select(span.hopscope.event_id)"
TRACEQL_SLOW_HOP = (
    f'{{ {SCOPE} && span.hopscope.hop = "$hop" && duration > $hop_bound }} '
    "| select(span.hopscope.event_id, duration)"
)
TRACEQL_HOP_P99 = f"{{ {SCOPE} }} | quantile_over_time(duration, 0.99) by (span.hopscope.hop)"

JAEGER_WORKLOAD_TAGS = 'hopscope.workload="$workload"'
JAEGER_HOP_TAGS = 'hopscope.workload="$workload" hopscope.hop="$hop"'


def _variables() -> list[dashboard.QueryVariable | dashboard.CustomVariable]:
    # Single-valued: a TraceQL equality and a Jaeger tag take exactly one value.
    bounds = "10ms,50ms,100ms,250ms,500ms,1s,2s,5s"
    return [
        prom_variable("stack", "Stack", f"label_values({m.SPAN_CALLS}, {m.STACK})", multi=False),
        prom_variable(
            "workload",
            "Workload",
            f'label_values({m.SPAN_CALLS}{{{m.STACK}="$stack"}}, {m.WORKLOAD})',
            multi=False,
        ),
        prom_variable(
            "hop",
            "Hop",
            f'label_values({m.SPAN_CALLS}{{{m.STACK}="$stack", {m.WORKLOAD}="$workload"}}, {m.HOP})',
            multi=False,
        ),
        prom_variable(
            "service",
            "Service (Jaeger)",
            f'label_values({m.SPAN_CALLS}{{{m.STACK}="$stack", {m.WORKLOAD}="$workload", {m.HOP}="$hop"}}, '
            f"{m.SERVICE})",
            multi=False,
        ),
        prom_variable(
            "root_service",
            "Root service (Jaeger)",
            f'label_values({m.SPAN_CALLS}{{{m.STACK}="$stack", {m.WORKLOAD}="$workload"}}, {m.SERVICE})',
            multi=False,
        ),
        dashboard.CustomVariable("e2e_bound")
        .label("Event slower than")
        .values(bounds)
        .current(_current("250ms")),
        dashboard.CustomVariable("hop_bound")
        .label("Hop slower than")
        .values(bounds)
        .current(_current("50ms")),
    ]


def _current(value: str) -> dm.VariableOption:
    return dm.VariableOption(selected=True, text=value, value=value)


def _trace_table(title: str, description: str, ds: dm.DataSourceRef) -> table.Panel:
    return table.Panel().title(title).description(description).datasource(ds).unit("ms").show_header(True)


def build() -> dashboard.Dashboard:
    tempo_slow = _trace_table(
        "Tempo: slow events of $workload",
        "Traces of the workload whose whole duration exceeds the bound (TraceQL `trace:duration`).",
        TEMPO.ref(),
    ).with_target(
        tempo.TempoQuery()
        .query_type(TempoQueryType.TRACEQL)
        .query(TRACEQL_SLOW_EVENTS)
        .limit(50)
        .spss(5)
        .ref_id("A")
        .datasource(TEMPO.ref())
    )
    tempo_hop = _trace_table(
        "Tempo: events whose $hop took longer than $hop_bound",
        "Spans of the chosen hop above the bound; each row opens its trace.",
        TEMPO.ref(),
    ).with_target(
        tempo.TempoQuery()
        .query_type(TempoQueryType.TRACEQL)
        .query(TRACEQL_SLOW_HOP)
        .limit(50)
        .spss(5)
        .ref_id("A")
        .datasource(TEMPO.ref())
    )
    tempo_p99 = (
        dashboard.Panel()
        .type("timeseries")
        .title("Tempo: hop p99 from traces (TraceQL metrics)")
        .description("quantile_over_time over the raw spans, a cross-check of the spanmetrics histograms.")
        .datasource(TEMPO.ref())
        .unit("s")
        # A bare Panel would serialise `"options": null`, which Grafana's model rejects.
        .options(
            {
                "legend": {
                    "showLegend": True,
                    "displayMode": "table",
                    "placement": "bottom",
                    "calcs": ["max"],
                },
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        )
        .with_target(
            tempo.TempoQuery()
            .query_type(TempoQueryType.TRACEQL)
            .query(TRACEQL_HOP_P99)
            .metrics_query_type(MetricsQueryType.RANGE)
            .ref_id("A")
            .datasource(TEMPO.ref())
        )
        .span(24)
        .height(8)
    )
    jaeger_slow = _trace_table(
        "Jaeger: slow events of $workload",
        "Jaeger search on the root service with the workload tag and a minimum span duration "
        "(Jaeger cannot bound a whole trace's duration).",
        JAEGER.ref(),
    ).with_target(JaegerSearch("$root_service", JAEGER_WORKLOAD_TAGS, "$e2e_bound", limit=50))
    jaeger_hop = _trace_table(
        "Jaeger: events whose $hop took longer than $hop_bound",
        "Jaeger search on the hop's service with the hop tag and the bound as minimum duration.",
        JAEGER.ref(),
    ).with_target(JaegerSearch("$service", JAEGER_HOP_TAGS, "$hop_bound", limit=50))
    out = board(
        "hopscope: traces",
        UID,
        "Slow events and slow hops as trace searches, for Tempo (TraceQL) and Jaeger.",
        _variables(),
        refresh="1m",
    )
    out = out.with_row(dashboard.Row("Tempo (TraceQL)"))
    out = out.with_panel(tempo_slow.span(12).height(10)).with_panel(tempo_hop.span(12).height(10))
    out = out.with_panel(tempo_p99)
    out = out.with_row(dashboard.Row("Jaeger"))
    return out.with_panel(jaeger_slow.span(12).height(10)).with_panel(jaeger_hop.span(12).height(10))
