"""Every PromQL query of the dashboards returns data from the real Prometheus after a short real run.

Spans with hopscope attributes go over OTLP through the real collector (its
spanmetrics connectors: per hop, and per service-map edge), Prometheus scrapes the collector,
and each dashboard query, interpolated as Grafana would (variables set to this
run's stack / workload / hop, `$__rate_interval` to a duration), must return
at least one finite sample for this run's series.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from rich.console import Console

from hopscope.collector.errors import Problems
from hopscope.collector.readers.live import FetchError, jaeger_get_trace
from hopscope.dashboards import build
from hopscope.dashboards import metrics as m
from hopscope.dashboards import queries as q
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.lifecycle import up
from hopscope.deploy.registry import UnknownService, service_class
from hopscope.deploy.services.prometheus import Prometheus
from hopscope.instrumentation.edges import Edge, messaging_from

STACK = "kafka"
WORKLOAD = f"dashcheck_{uuid.uuid4().hex[:8]}"
RUN_ID = f"dashcheck-{uuid.uuid4().hex[:8]}"
# (hop, service, kind): client → server inside one call, producer → consumer across a "broker".
HOPS = (
    ("client.write", "dashcheck.client", SpanKind.CLIENT),
    ("store.write", "dashcheck.store", SpanKind.SERVER),
    ("store.publish", "dashcheck.store", SpanKind.PRODUCER),
    ("subscriber.receive", "dashcheck.subscriber", SpanKind.CONSUMER),
)
HOP = "store.write"
# The spans that name a service-map edge (instrumentation/edges.py): the receiving ones.
EDGES = {
    "store.write": Edge(client="dashcheck.client"),
    "subscriber.receive": messaging_from("dashcheck.store"),
}
DEADLINE_S = 300.0


def _provider(service: str, endpoint: str) -> TracerProvider:
    resource = Resource.create({"service.name": service, "hopscope.stack": STACK, "hopscope.run_id": RUN_ID})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    return provider


class Traffic:
    """Sends events (4 spans each, every 10th store.write failing) until stopped."""

    def __init__(self, endpoint: str) -> None:
        self.providers = {svc: _provider(svc, endpoint) for _, svc, _ in HOPS}
        self.stop = threading.Event()
        self.sent = 0
        self.trace_ids: set[str] = set()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _event(self, n: int) -> None:
        now = time.time_ns()
        start = now - 50_000_000
        parent = None
        for hop, svc, kind in HOPS:
            dur = int(random.uniform(1, 30) * 1e6)
            tracer = self.providers[svc].get_tracer("hopscope.tests.dashboards")
            ctx = set_span_in_context(parent) if parent is not None else None
            attrs = {"hopscope.hop": hop, "hopscope.workload": WORKLOAD, "hopscope.event_id": f"e{n}"}
            if hop in EDGES:
                attrs.update(EDGES[hop].attributes(svc))
            if hop == "subscriber.receive":
                attrs["hopscope.subscriber"] = "s1"
            span = tracer.start_span(hop, context=ctx, kind=kind, attributes=attrs, start_time=start)
            if hop == HOP and n % 10 == 0:
                span.set_status(Status(StatusCode.ERROR, "injected failure"))
            span.end(end_time=start + dur)
            self.trace_ids.add(format(span.get_span_context().trace_id, "032x"))
            parent, start = span, start + dur

    def _run(self) -> None:
        while not self.stop.is_set():
            for _ in range(20):
                self._event(self.sent)
                self.sent += 1
            self.stop.wait(1.0)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        for provider in self.providers.values():
            provider.shutdown()


@pytest.fixture(scope="module")
def telemetry() -> Iterator[tuple[Context, Traffic]]:
    try:
        service_class("collector")
    except UnknownService as exc:
        pytest.skip(f"the collector service is not implemented yet: {exc}")
    ctx = Context(load_config())
    up(ctx, "collector,prometheus,jaeger", Console(stderr=True))
    with Traffic(ctx.config.collector.otlp_grpc_endpoint) as traffic:
        yield ctx, traffic


def _finite(result: list[dict]) -> list[dict]:
    return [r for r in result if math.isfinite(float(r["value"][1]))]


def _wait_for(prom: Prometheus, promql: str, deadline: float) -> list[dict]:
    while True:
        found = _finite(prom.query(promql))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(3)


def _is_servicegraph(promql: str) -> bool:
    return "traces_service_graph" in promql


def _dashboard_promql(hop: str) -> list[tuple[str, str]]:
    values = {"stack": STACK, "workload": WORKLOAD, "hop": hop}
    out = []
    for name, doc in build.dashboards().items():
        for query in q.iter_queries(name, doc):
            if query.language == q.PROMQL:
                out.append((query.where, q.interpolate_promql(query.text, values, query.where)))
    return out


def test_collector_exports_the_series_and_labels_the_dashboards_read(
    telemetry: tuple[Context, Traffic],
) -> None:
    ctx, _ = telemetry
    prom = Prometheus(ctx)
    deadline = time.monotonic() + DEADLINE_S
    series = _wait_for(prom, f'{m.SPAN_CALLS}{{{m.WORKLOAD}="{WORKLOAD}"}}', deadline)
    assert series, f"no {m.SPAN_CALLS} for workload {WORKLOAD} in Prometheus after {DEADLINE_S:.0f}s"
    for label in m.SPAN_LABELS:
        assert all(label in s["metric"] for s in series), (
            f"span metrics lack label {label}: {series[0]['metric']}"
        )
    assert {s["metric"][m.HOP] for s in series} == {h for h, _, _ in HOPS}
    assert {s["metric"][m.STACK] for s in series} == {STACK}
    exposed = httpx.get(f"http://127.0.0.1:{ctx.config.collector.prometheus_port}/metrics", timeout=5).text
    names = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", exposed, re.M))
    # the edge series are exported under span-metrics names; Prometheus files them under the
    # servicegraph ones (checked against Prometheus in the service-graph test)
    wanted = [name for name in m.ALL_SERIES if not _is_servicegraph(name)] + list(m.EDGE_SERIES_EXPORTED)
    missing = [name for name in wanted if name not in names]
    assert not missing, f"the collector's /metrics lacks {missing}"


@pytest.mark.parametrize("hop", [".*", HOP], ids=["all-hops", "one-hop"])
def test_every_promql_query_returns_data_for_this_run(telemetry: tuple[Context, Traffic], hop: str) -> None:
    ctx, _ = telemetry
    prom = Prometheus(ctx)
    deadline = time.monotonic() + DEADLINE_S
    empty = []
    for where, promql in _dashboard_promql(hop):
        result = _wait_for(prom, promql, deadline)
        if not result:
            empty.append(f"{where}: {promql}")
            continue
        # Queries that keep the stack/workload labels must show this run's series.
        labelled = [r for r in result if m.WORKLOAD in r["metric"]]
        if labelled:
            assert any(r["metric"][m.WORKLOAD] == WORKLOAD for r in labelled), where
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_the_service_graph_has_the_edges_the_spans_name(telemetry: tuple[Context, Traffic]) -> None:
    ctx, traffic = telemetry
    prom = Prometheus(ctx)
    deadline = time.monotonic() + DEADLINE_S
    where = f'{m.WORKLOAD}="{WORKLOAD}"'
    edges = _wait_for(
        prom, f'{m.GRAPH_REQUESTS}{{client="dashcheck.client", server="dashcheck.store", {where}}}', deadline
    )
    assert edges, "no request series for the client -> store edge the SERVER span names"
    assert "connection_type" not in edges[0]["metric"], edges  # request/response: no type
    messaging = _wait_for(
        prom,
        f'{m.GRAPH_REQUESTS}{{client="dashcheck.store", server="dashcheck.subscriber", {where}}}',
        deadline,
    )
    assert messaging and messaging[0]["metric"].get("connection_type") == "messaging_system"
    # Only spans that name an edge make one: client.write and store.publish name none.
    every = _finite(prom.query(f"sum by (client, server) ({m.GRAPH_REQUESTS}{{{where}}})"))
    pairs = {(r["metric"]["client"], r["metric"]["server"]) for r in every}
    assert pairs == {("dashcheck.client", "dashcheck.store"), ("dashcheck.store", "dashcheck.subscriber")}
    # The edge's latency is the server span's duration, in seconds: each event's store.write
    # and subscriber.receive last 1-30 ms, so the edge's mean lies inside that range.
    mean = _wait_for(
        prom,
        f'sum({m.GRAPH_SERVER_SUM}{{server="dashcheck.store", {where}}}) / sum({m.GRAPH_SERVER_COUNT}{{server="dashcheck.store", {where}}})',
        deadline,
    )
    assert mean and 0.001 <= float(mean[0]["value"][1]) <= 0.030, mean
    # Every tenth store.write fails: the failed-request series counts them (its first sample
    # can be 0, taken before the collector's first flush counted an error).
    failed_q = f'sum({m.GRAPH_FAILED}{{server="dashcheck.store", {where}}})'
    while not ((failed := _finite(prom.query(failed_q))) and float(failed[0]["value"][1]) > 0):
        assert time.monotonic() < deadline, f"no failed requests on the client -> store edge: {failed}"
        time.sleep(3)
    assert traffic.sent > 0


def test_errors_show_up_in_the_error_ratio(telemetry: tuple[Context, Traffic]) -> None:
    ctx, _ = telemetry
    prom = Prometheus(ctx)
    overview = build.dashboards()["overview.json"]
    ratio = next(x for x in q.iter_queries("overview.json", overview) if x.panel.startswith("Error ratio"))
    promql = q.interpolate_promql(ratio.text, {"stack": STACK, "workload": WORKLOAD, "hop": HOP}, ratio.where)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        result = [r for r in _finite(prom.query(promql)) if r["metric"].get(m.WORKLOAD) == WORKLOAD]
        if (result and float(result[0]["value"][1]) > 0) or time.monotonic() > deadline:
            break
        time.sleep(3)
    # One store.write in ten fails: the rate ratio over a 1m window is near 0.1.
    assert result and 0.02 < float(result[0]["value"][1]) < 0.3, result


def test_variable_queries_offer_this_runs_values(telemetry: tuple[Context, Traffic]) -> None:
    ctx, _ = telemetry
    prom = Prometheus(ctx)
    values = {"stack": STACK, "workload": WORKLOAD, "hop": HOP}
    expect = {
        "stack": STACK,
        "workload": WORKLOAD,
        "hop": HOP,
        "service": "dashcheck.store",
        "root_service": "dashcheck.client",
    }
    _wait_for(prom, f'{m.SPAN_CALLS}{{{m.WORKLOAD}="{WORKLOAD}"}}', time.monotonic() + DEADLINE_S)
    for name, doc in build.dashboards().items():
        for var in q.variables(doc).values():
            text = var.get("query", "")
            if not text.startswith("label_values("):
                continue
            selector, label = (s.strip() for s in text[len("label_values(") : -1].rsplit(",", 1))
            selector = q.substitute(selector, values, f"{name} variable {var['name']}")
            resp = httpx.get(
                f"{prom.endpoint()}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=5
            )
            resp.raise_for_status()
            offered = resp.json()["data"]
            assert expect[var["name"]] in offered, f"{name} variable {var['name']}: {offered}"


def test_an_exemplar_opens_its_trace_in_jaeger(telemetry: tuple[Context, Traffic]) -> None:
    """The click-through the dashboards promise: the collector attaches exemplars to the
    duration buckets, Prometheus stores them, and an exemplar's trace id opens a trace of this
    run in Jaeger holding the exemplar's span with the exemplar's duration."""
    ctx, traffic = telemetry
    prom = Prometheus(ctx)
    selector = f'{m.SPAN_DURATION_BUCKET}{{{m.WORKLOAD}="{WORKLOAD}"}}'
    deadline = time.monotonic() + DEADLINE_S
    while True:
        series = prom.exemplars(selector, time.time() - 3600, time.time() + 60)
        found = [(s["seriesLabels"], e) for s in series for e in s["exemplars"]]
        if found or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert found, f"Prometheus stored no exemplars for {selector} after {DEADLINE_S:.0f}s"
    ours = [(labels, e) for labels, e in found if e["labels"].get("trace_id") in traffic.trace_ids]
    assert ours, f"no exemplar carries a trace id this test sent: {found[:3]}"
    labels, exemplar = ours[0]
    problems = Problems()
    query_url = f"http://127.0.0.1:{ctx.config.jaeger.query_port}"
    deadline = time.monotonic() + 30
    table: list[dict] = []
    while True:
        try:  # Jaeger answers 404 until the collector's forwarded batch is in
            table = jaeger_get_trace(query_url, exemplar["labels"]["trace_id"], problems).table.to_pylist()
        except FetchError:
            table = []
        span = next((r for r in table if r["span_id"] == exemplar["labels"].get("span_id")), None)
        if span is not None or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert span is not None, (
        f"exemplar span {exemplar['labels']} not in its Jaeger trace ({len(table)} spans)"
    )
    assert span["hop"] == labels[m.HOP] and span["workload"] == WORKLOAD
    duration_ms = (span["end_ns"] - span["start_ns"]) / 1e6
    assert math.isclose(float(exemplar["value"]), duration_ms, rel_tol=1e-6), (exemplar, duration_ms)
