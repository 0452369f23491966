"""Shared pieces of the four dashboards: variables, PromQL fragments, panel defaults.

Every timeseries gets a legend and tooltip and every table a header, because the
SDK otherwise emits `"options": null`, which Grafana's own model rejects.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard, prometheus, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from . import metrics as m
from .datasources import POSTGRES, PROMETHEUS

QUANTILES = (("p50", "0.5"), ("p99", "0.99"), ("p99.9", "0.999"))

#: The label matchers the stack / workload / hop variables drive.
SPAN_FILTER = f'{m.STACK}=~"$stack", {m.WORKLOAD}=~"$workload", {m.HOP}=~"$hop"'


def prom_variable(name: str, label: str, query: str, multi: bool = True) -> dashboard.QueryVariable:
    """A Prometheus-backed variable; "All" means the regex `.*`."""
    var = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS.ref())
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        var = var.multi(True).include_all(True).all_value(".*")
    return var


def span_variables() -> list[dashboard.QueryVariable]:
    """stack → workload → hop, each narrowed by the ones before it."""
    return [
        prom_variable("stack", "Stack", f"label_values({m.SPAN_CALLS}, {m.STACK})"),
        prom_variable(
            "workload", "Workload", f'label_values({m.SPAN_CALLS}{{{m.STACK}=~"$stack"}}, {m.WORKLOAD})'
        ),
        prom_variable(
            "hop",
            "Hop",
            f'label_values({m.SPAN_CALLS}{{{m.STACK}=~"$stack", {m.WORKLOAD}=~"$workload"}}, {m.HOP})',
        ),
    ]


def sql_variable(name: str, label: str, query: str, multi: bool) -> dashboard.QueryVariable:
    var = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(POSTGRES.ref())
        .query(query)
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
    )
    if multi:
        var = var.multi(True).include_all(True)
    return var


def prom(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).range()
    # The collector attaches exemplars (trace id, span id) to the duration histogram's buckets:
    # a query over those buckets draws them, and a click opens that span's trace.
    if "_bucket" in expr:
        query = query.exemplar(True)
    return query


def quantile_expr(q: str, bucket: str, by: str, matchers: str) -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({bucket}{{{matchers}}}[$__rate_interval])))"


def legend() -> common_b.VizLegendOptions:
    return (
        common_b.VizLegendOptions()
        .show_legend(True)
        .display_mode(cm.LegendDisplayMode.TABLE)
        .placement(cm.LegendPlacement.BOTTOM)
        .calcs(["mean", "max"])
    )


def tooltip() -> common_b.VizTooltipOptions:
    return common_b.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)


def timeseries_panel(title: str, unit: str, description: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(PROMETHEUS.ref())
        .legend(legend())
        .tooltip(tooltip())
        .line_width(1)
        .fill_opacity(0)
    )


def table_panel(title: str, unit: str, description: str, datasource: dm.DataSourceRef) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(datasource)
        .show_header(True)
    )


def link(title: str, url: str) -> dashboard.DashboardLink:
    """A data link; Grafana fills `${__field.labels.x}` / `${__value.raw}` from the clicked point."""
    return dashboard.DashboardLink(title).url(url).type(dm.DashboardLinkType.LINK).target_blank(False)


def nav_links() -> list[dashboard.DashboardLink]:
    """Dashboard-level links between the hopscope dashboards, keeping variables and time."""
    return [
        dashboard.DashboardLink("hopscope")
        .type(dm.DashboardLinkType.DASHBOARDS)
        .tags(["hopscope"])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    ]


def board(
    title: str,
    uid: str,
    description: str,
    variables: Sequence[dashboard.QueryVariable | dashboard.CustomVariable],
    *,
    time_from: str = "now-30m",
    refresh: str | None = "30s",
) -> dashboard.Dashboard:
    """A hopscope board: its tags, time zone, the links to the other boards and its variables."""
    out = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["hopscope", "generated"])
        .time(time_from, "now")
        .timezone("browser")
        .links(nav_links())
    )
    if refresh is not None:
        out = out.refresh(refresh)
    for var in variables:
        out = out.with_variable(var)
    return out
