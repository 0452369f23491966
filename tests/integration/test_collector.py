"""otelcol-hopscope as `up` leaves it: one span in over OTLP shows up in the run dir's
span file, in Jaeger, and as span metrics with the hopscope labels in Prometheus."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil
import pytest
import yaml

from hopscope.deploy.base import Context, read_pid
from hopscope.deploy.registry import service_class
from hopscope.deploy.services.collector import Collector
from hopscope.deploy.services.jaeger import jaeger_trace_span_count
from hopscope.deploy.services.prometheus import Prometheus

pytestmark = pytest.mark.integration
T = TypeVar("T")


def _eventually(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def _spans_in(path: Path, trace_id: str) -> list[tuple[dict, dict]]:
    """(resource attributes, span) for each span of the trace in an OTLP-JSON-lines file."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        for rs in json.loads(line)["resourceSpans"]:
            resource = {a["key"]: a["value"].get("stringValue") for a in rs["resource"].get("attributes", [])}
            for ss in rs["scopeSpans"]:
                found.extend((resource, s) for s in ss["spans"] if s["traceId"].lower() == trace_id)
    return found


@pytest.fixture(scope="module")
def collector(deployed: Context) -> Collector:
    svc = service_class("collector")(deployed)
    assert isinstance(svc, Collector)
    if svc.is_external():
        pytest.skip("collector is configured external")
    return svc


def test_span_reaches_run_dir_jaeger_and_prometheus(collector: Collector) -> None:
    token = secrets.token_hex(4)
    run_id = f"it-collector-{token}"
    hop = f"it.hop.{token}"
    trace_id = collector.send_span(
        resource={"hopscope.run_id": run_id, "hopscope.stack": "kafka"},
        attributes={"hopscope.hop": hop, "hopscope.workload": "write_notify", "messaging.system": "kafka"},
        service_name="it-collector",
    )

    # 1. the file exporter grouped it into the run's own folder
    span_file = collector.runs_root() / run_id / "spans" / "spans.jsonl"
    spans = _eventually(lambda: _spans_in(span_file, trace_id), 15, f"trace {trace_id} in {span_file}")
    assert len(spans) == 1
    resource, span = spans[0]
    assert resource["hopscope.run_id"] == run_id
    assert resource["hopscope.stack"] == "kafka"
    attrs = {a["key"]: a["value"].get("stringValue") for a in span["attributes"]}
    assert attrs["hopscope.hop"] == hop

    # 2. forwarded to Jaeger
    query_url = collector.ctx.config.jaeger.query_url
    count = _eventually(
        lambda: jaeger_trace_span_count(query_url, trace_id), 15, f"trace {trace_id} in Jaeger"
    )
    assert count == 1

    # 3. span metrics scraped by Prometheus, labelled by hop, workload and stack
    prometheus = service_class("prometheus")(collector.ctx)
    assert isinstance(prometheus, Prometheus)
    promql = f'traces_span_metrics_calls_total{{hopscope_hop="{hop}"}}'
    # The first scrape may see the series at 0 before the connector's first flush.
    promql = f"{promql} > 0"
    series = _eventually(lambda: prometheus.query(promql), 60, f"{promql} in Prometheus")
    assert len(series) == 1
    labels = series[0]["metric"]
    assert labels["hopscope_workload"] == "write_notify"
    assert labels["hopscope_stack"] == "kafka"
    assert labels["messaging_system"] == "kafka"
    assert labels["service_name"] == "it-collector"
    assert float(series[0]["value"][1]) == 1.0


def test_span_without_run_id_lands_in_the_unassigned_file(collector: Collector) -> None:
    trace_id = collector.send_span(attributes={"hopscope.hop": "it.unassigned"})
    path = collector.runs_root() / collector.cfg.unassigned_run_id / "spans" / "spans.jsonl"
    spans = _eventually(lambda: _spans_in(path, trace_id), 15, f"trace {trace_id} in {path}")
    assert len(spans) == 1
    assert spans[0][0]["hopscope.run_id"] == collector.cfg.unassigned_run_id


def test_rendered_config_binds_loopback_only(collector: Collector) -> None:
    conf = yaml.safe_load(collector.render_config())
    endpoints = [
        conf["extensions"]["health_check"]["endpoint"],
        conf["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        conf["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        conf["exporters"]["prometheus"]["endpoint"],
    ]
    assert all(e.startswith("127.0.0.1:") for e in endpoints), endpoints
    assert conf["service"]["telemetry"]["metrics"]["level"] == "none"


def test_listens_on_loopback_and_configured_ports_only(collector: Collector) -> None:
    pid = read_pid(collector.pidfiles()[0])
    assert pid is not None
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    assert {port for _, port in listening} == set(collector.ports()), listening
