"""Every query of every generated dashboard, and Grafana's interpolation of them.

Grafana fills in variables and macros before a query reaches its datasource;
the validation does the same (with values from a real run) so that PromQL runs
on Prometheus, SQL on Postgres and TraceQL through Grafana's grammar exactly
as Grafana would send them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROMQL = "promql"
SQL = "sql"
TRACEQL = "traceql"
JAEGER = "jaeger"
TEMPO_SERVICE_MAP = "tempo-servicemap"
#: Where each language's queries are sent, by datasource type.
LANGUAGE_OF = {"prometheus": PROMQL, "grafana-postgresql-datasource": SQL}

# Grafana's interval macros, as the duration a short test window uses.
PROM_MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
#: Grafana's Node Graph data API: a panel gets a nodes frame and an edges frame (told apart by a
#: `source` field) and reads these fields by name; `detail__*` (context menu) and `arc__*` (node
#: ring) are prefixes. Any other column is silently ignored, so a misnamed one is an error here.
NODE_GRAPH_REQUIRED = {"nodes": ("id",), "edges": ("id", "source", "target")}
NODE_GRAPH_FIELDS = {
    "nodes": ("id", "title", "subtitle", "mainstat", "secondarystat", "color", "icon", "nodeRadius", "highlighted"),
    "edges": ("id", "source", "target", "mainstat", "secondarystat", "thickness", "color", "highlighted",
              "strokeDasharray"),
}  # fmt: skip
NODE_GRAPH_PREFIXES = {"nodes": ("detail__", "arc__"), "edges": ("detail__",)}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]+)\)")


class QueryError(ValueError):
    """A dashboard query that cannot be interpolated: names the dashboard, panel and variable."""


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel_id: int
    panel: str
    language: str
    text: str
    datasource_uid: str
    target: dict[str, Any]
    #: Columns the panel's `organize` transformation names (SQL tables/bars), else None.
    expected_columns: tuple[str, ...] | None
    panel_type: str = ""

    @property
    def where(self) -> str:
        return f"{self.dashboard} panel {self.panel_id} {self.panel!r}"


def _language(target: dict[str, Any], ds_type: str) -> tuple[str, str] | None:
    if ds_type == "prometheus":
        return PROMQL, target["expr"]
    if ds_type == "grafana-postgresql-datasource":
        return SQL, target["rawSql"]
    if ds_type == "tempo":
        if target.get("queryType") == "serviceMap":
            return TEMPO_SERVICE_MAP, ""
        return TRACEQL, target["query"]
    if ds_type == "jaeger":
        return JAEGER, target.get("tags", "")
    return None


def iter_queries(name: str, doc: Mapping[str, Any]) -> Iterator[Query]:
    for panel in doc.get("panels", []):
        if panel.get("type") == "row":
            continue
        panel_ds = panel.get("datasource") or {}
        organize = [t for t in panel.get("transformations") or [] if t.get("id") == "organize"]
        expected = None
        if organize:
            index = organize[0]["options"]["indexByName"]
            expected = tuple(sorted(index, key=index.__getitem__))
        for target in panel.get("targets") or []:
            ds = target.get("datasource") or panel_ds
            found = _language(target, ds.get("type", ""))
            if found is None:
                raise QueryError(
                    f"{name} panel {panel.get('id')} {panel.get('title')!r}: unknown datasource {ds}"
                )
            yield Query(
                name, panel["id"], panel["title"], found[0], found[1], ds["uid"], target, expected,
                panel.get("type", ""),
            )  # fmt: skip


def node_graph_frame_problems(frame: str, columns: Sequence[str]) -> list[str]:
    """What keeps `columns` (a query's result) from being Grafana's node graph `frame` ("nodes"/"edges")."""
    if frame not in NODE_GRAPH_REQUIRED:
        return [f"refId {frame!r} is neither 'nodes' nor 'edges'"]
    problems = [f"{frame} frame lacks {c!r}" for c in NODE_GRAPH_REQUIRED[frame] if c not in columns]
    if frame == "nodes" and "source" in columns:
        problems.append("nodes frame has a 'source' field: Grafana would read it as edges")
    problems += [
        f"{frame} frame column {c!r} is no Node Graph field"
        for c in columns
        if c not in NODE_GRAPH_FIELDS[frame] and not c.startswith(NODE_GRAPH_PREFIXES[frame])
    ]
    if len(set(columns)) != len(columns):
        problems.append(f"{frame} frame repeats a column: {list(columns)}")
    return problems


def variables(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in doc.get("templating", {}).get("list", [])}


def substitute(text: str, values: Mapping[str, str], where: str) -> str:
    """Replace `$var` / `${var}` by `values[var]` (already formatted for the query language)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.startswith("__"):
            return match.group(0)
        if name not in values:
            raise QueryError(f"{where}: variable ${name} has no value (known: {sorted(values)})")
        return values[name]

    return _VAR.sub(one, text)


def interpolate_promql(text: str, values: Mapping[str, str], where: str) -> str:
    for macro, duration in PROM_MACROS.items():
        text = text.replace(macro, duration)
    out = substitute(text, values, where)
    if "$__" in out:
        raise QueryError(f"{where}: unknown Grafana macro left in {out!r}")
    return out


def interpolate_sql(text: str, values: Mapping[str, str], where: str, since: str = "7 days") -> str:
    """Grafana's SQL macros and variables; `$__timeFilter(c)` becomes the last `since`."""
    text = _TIME_FILTER.sub(lambda m: f"{m.group(1)} >= now() - interval '{since}'", text)
    out = substitute(text, values, where)
    if "$__" in out:
        raise QueryError(f"{where}: unknown Grafana macro left in {out!r}")
    return out


def sql_values(doc: Mapping[str, Any], chosen: Mapping[str, str]) -> dict[str, str]:
    """How Grafana's SQL datasources interpolate: multi-value variables quoted and joined, single raw."""
    out: dict[str, str] = {}
    for name, var in variables(doc).items():
        if name not in chosen:
            continue
        value = chosen[name]
        out[name] = (
            "'" + value.replace("'", "''") + "'" if var.get("multi") or var.get("includeAll") else value
        )
    return out
