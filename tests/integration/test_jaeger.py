"""Jaeger v2 as `up` leaves it: spans in over OTLP, back out over api_v3, bound to 127.0.0.1 only."""

from __future__ import annotations

import json
import secrets
import time

import httpx
import psutil
import pytest

from hopscope.deploy.base import Context, read_pid
from hopscope.deploy.registry import service_class
from hopscope.deploy.services.jaeger import Jaeger, otlp_json_span

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def jaeger(deployed: Context) -> Jaeger:
    svc = service_class("jaeger")(deployed)
    assert isinstance(svc, Jaeger)
    if svc.is_external():
        pytest.skip("jaeger is configured external")
    return svc


def _fetch_trace(query_url: str, trace_id: str, timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(f"{query_url}/api/v3/traces/{trace_id}", timeout=5)
        if resp.status_code == 200:
            spans = []
            for line in filter(None, (x.strip() for x in resp.text.splitlines())):
                for rs in json.loads(line)["result"]["resourceSpans"]:
                    service = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}["service.name"]
                    for ss in rs["scopeSpans"]:
                        spans.extend({**s, "_service": service["stringValue"]} for s in ss["spans"])
            if spans:
                return spans
        if time.monotonic() > deadline:
            raise AssertionError(
                f"trace {trace_id} not returned by api_v3: {resp.status_code} {resp.text[:300]}"
            )
        time.sleep(0.3)


def test_otlp_span_read_back_via_api_v3(jaeger: Jaeger) -> None:
    service = f"it-jaeger-{secrets.token_hex(3)}"
    trace_id, body = otlp_json_span(service, attributes={"hopscope.hop": "it.hop"}, name="it-span")
    span_id = body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"]
    resp = httpx.post(f"{jaeger.cfg.otlp_http_url}/v1/traces", json=body, timeout=5)
    assert resp.status_code == 200, resp.text

    spans = _fetch_trace(jaeger.cfg.query_url, trace_id)
    assert len(spans) == 1
    span = spans[0]
    assert span["traceId"].lower() == trace_id
    assert span["spanId"].lower() == span_id
    assert span["name"] == "it-span"
    assert span["_service"] == service
    attrs = {a["key"]: a["value"].get("stringValue") for a in span.get("attributes", [])}
    assert attrs.get("hopscope.hop") == "it.hop"


def test_unknown_trace_is_not_found(jaeger: Jaeger) -> None:
    resp = httpx.get(f"{jaeger.cfg.query_url}/api/v3/traces/{secrets.token_hex(16)}", timeout=5)
    assert resp.status_code == 404


def test_listens_on_loopback_and_configured_ports_only(jaeger: Jaeger) -> None:
    pid = read_pid(jaeger.pidfiles()[0])
    assert pid is not None
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening, "jaeger listens on nothing"
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    assert {port for _, port in listening} <= set(jaeger.ports()), listening


def test_second_up_reinstalls_and_restarts_nothing(jaeger: Jaeger) -> None:
    from rich.console import Console

    from hopscope.deploy.lifecycle import up

    pid_before = read_pid(jaeger.pidfiles()[0])
    (timing,) = up(jaeger.ctx, "jaeger", Console(quiet=True))
    assert timing.state == "already-running"
    assert timing.install_s < 1.0
    assert read_pid(jaeger.pidfiles()[0]) == pid_before
