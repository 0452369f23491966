"""Every TraceQL and PromQL query parses with Grafana's / Prometheus's own grammar (npm, one node call).

Needs node + npm (the grammar packages are installed into the cache dir on first use).
"""

from __future__ import annotations

import pytest

from hopscope.dashboards import build
from hopscope.dashboards import queries as q
from hopscope.dashboards.grammar_check import parse_all

# Values of the kind Grafana would interpolate (the traces dashboard's variables are single-valued).
VALUES = {
    "stack": "kafka",
    "workload": "write_notify",
    "hop": "notifier.consume",
    "service": "kafka.notifier",
    "root_service": "loadgen",
    "e2e_bound": "250ms",
    "hop_bound": "50ms",
}


def _items() -> list[tuple[str, str, str]]:
    out = []
    for name, doc in build.dashboards().items():
        for query in q.iter_queries(name, doc):
            if query.language == q.TRACEQL:
                out.append((query.where, "traceql", q.substitute(query.text, VALUES, query.where)))
            elif query.language == q.PROMQL:
                out.append((query.where, "promql", q.interpolate_promql(query.text, VALUES, query.where)))
        for var in q.variables(doc).values():
            # label_values(...) is Grafana's variable syntax, not PromQL; its selector argument is.
            text = var.get("query", "")
            if var.get("datasource", {}).get("type") == "prometheus" and text.startswith("label_values("):
                selector = text[len("label_values(") : text.rindex(",")]
                out.append((f"{name} variable {var['name']}", "promql", q.substitute(selector, VALUES, name)))
    return out


def test_every_traceql_and_promql_query_parses_without_error_nodes() -> None:
    items = _items()
    kinds = {lang for _, lang, _ in items}
    assert kinds == {"traceql", "promql"}
    assert sum(lang == "traceql" for _, lang, _ in items) >= 3
    results = parse_all([(lang, text) for _, lang, text in items])
    bad = [f"{where}: {r.describe()}" for (where, _, _), r in zip(items, results, strict=True) if not r.ok]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("language", "query"),
    [
        ("traceql", '{ span.hopscope.hop = "x" && duration > 50ms '),  # unclosed
        ("traceql", '{ span.hopscope.hop == "x" }'),  # == is not TraceQL
        ("promql", "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))"),
        ("promql", 'rate(x{a=~"b"}[$__rate_interval])'),  # an uninterpolated Grafana macro
    ],
)
def test_the_checker_rejects_broken_queries(language: str, query: str) -> None:
    (result,) = parse_all([(language, query)])
    assert not result.ok
    assert result.error_offsets or result.strict_error
