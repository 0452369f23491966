"""Dashboard 1, pipelines overview: latency, throughput and errors per stack × workload (Prometheus).

The collector's span metrics are per span, not per event, so the latency rows
show span-duration quantiles of the selected hops (all hops by default) per
stack × workload, and the sum of the span means as a lower bound of the
end-to-end mean (waits between spans are not spans). Exact end-to-end
quantiles per run are on the Attribution dashboard.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat
from grafana_foundation_sdk.models import common as cm

from . import metrics as m
from .datasources import PROMETHEUS
from .panels import QUANTILES, SPAN_FILTER, board, prom, quantile_expr, span_variables, timeseries_panel

UID = "hopscope-overview"
BY = f"{m.STACK}, {m.WORKLOAD}"
LEGEND = "{{hopscope_stack}} / {{hopscope_workload}}"


def _calls(extra: str = "") -> str:
    return f"sum by ({BY}) (rate({m.SPAN_CALLS}{{{SPAN_FILTER}{extra}}}[$__rate_interval]))"


def build() -> dashboard.Dashboard:
    errors = f', {m.STATUS}="{m.STATUS_ERROR}"'
    latency = [
        timeseries_panel(
            f"Span latency {name} per stack × workload",
            "ms",
            f"{name} of span durations of the selected hops, from the collector's spanmetrics histogram "
            "(bucket estimate).",
        )
        .with_target(prom(quantile_expr(q, m.SPAN_DURATION_BUCKET, BY, SPAN_FILTER), f"{LEGEND} {name}"))
        .span(8)
        .height(8)
        for name, q in QUANTILES
    ]
    mean_sum = (
        timeseries_panel(
            "Sum of span means per stack × workload",
            "ms",
            "Σ over the selected hops of mean span duration: a lower bound of the mean end-to-end latency "
            "(gaps between spans are not in span metrics).",
        )
        .with_target(
            prom(
                f"sum by ({BY}) ("
                f"sum by ({BY}, {m.HOP}) (rate({m.SPAN_DURATION_SUM}{{{SPAN_FILTER}}}[$__rate_interval]))"
                f" / sum by ({BY}, {m.HOP}) (rate({m.SPAN_DURATION_COUNT}{{{SPAN_FILTER}}}[$__rate_interval])))",
                LEGEND,
            )
        )
        .span(12)
        .height(8)
    )
    throughput = (
        timeseries_panel(
            "Span throughput per stack × workload",
            "reqps",
            "Spans per second of the selected hops (one hop = one span per event, so per-hop rate = event rate).",
        )
        .with_target(prom(_calls(), LEGEND))
        .span(12)
        .height(8)
    )
    error_ratio = (
        timeseries_panel(
            "Error ratio per stack × workload",
            "percentunit",
            "Share of spans with status ERROR; zero when there are none.",
        )
        .with_target(prom(f"({_calls(errors)} or {_calls()} * 0) / {_calls()}", LEGEND))
        .span(12)
        .height(8)
    )
    total = (
        stat.Panel()
        .title("Spans per second (selection)")
        .description("All span-metric calls matching the variables.")
        .unit("reqps")
        .datasource(PROMETHEUS.ref())
        .graph_mode(cm.BigValueGraphMode.AREA)
        .with_target(prom(f"sum(rate({m.SPAN_CALLS}{{{SPAN_FILTER}}}[$__rate_interval]))", "spans/s"))
        .span(6)
        .height(8)
    )
    errors_total = (
        stat.Panel()
        .title("Error spans per second (selection)")
        .description("Spans with status ERROR; zero when there are none.")
        .unit("reqps")
        .datasource(PROMETHEUS.ref())
        .graph_mode(cm.BigValueGraphMode.AREA)
        .with_target(
            prom(
                f'sum(rate({m.SPAN_CALLS}{{{SPAN_FILTER}, {m.STATUS}="{m.STATUS_ERROR}"}}[$__rate_interval]))'
                f" or vector(0)",
                "errors/s",
            )
        )
        .span(6)
        .height(8)
    )
    out = board(
        "hopscope: pipelines overview",
        UID,
        "Latency, throughput and errors per stack × workload from the collector's span metrics.",
        span_variables(),
    )
    out = out.with_row(dashboard.Row("Latency"))
    for panel in latency:
        out = out.with_panel(panel)
    out = out.with_panel(mean_sum).with_panel(throughput)
    out = (
        out.with_row(dashboard.Row("Errors"))
        .with_panel(total)
        .with_panel(errors_total)
        .with_panel(error_ratio)
    )
    return out
