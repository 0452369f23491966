"""The OTLP receivers' bearer-token option (#22, deploy/otlp_auth.py), against a second real
collector built from our distribution: with `otlp_auth = "bearer"` a request without the token
is refused; the Python SDK, the Node glue's tracer and our health check, given the token the
`hopscope` command hands down, get their spans through to the files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from hopscope.deploy import otlp_auth
from hopscope.deploy.base import Context, wait_until
from hopscope.deploy.config import load_config
from hopscope.deploy.services.collector import Collector
from hopscope.deploy.services.jaeger import otlp_json_span
from hopscope.instrumentation.tracing import make_otlp_exporter
from hopscope.pipelines.kafka_node import node_glue


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def guarded(deployed: Context, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """A second collector (own ports, state and runs dirs, no Jaeger) with otlp_auth = bearer."""
    tmp = tmp_path_factory.mktemp("otlp-auth")
    env = {
        "HOPSCOPE_STATE_DIR": str(tmp / "state"),
        "HOPSCOPE_CACHE_DIR": str(deployed.cache_dir),  # the collector binary `up` built
        "HOPSCOPE_COLLECTOR__OTLP_AUTH": "bearer",
        "HOPSCOPE_COLLECTOR__RUNS_ROOT": str(tmp / "runs"),
        "HOPSCOPE_COLLECTOR__JAEGER_OTLP_ENDPOINT": "",
        **{f"HOPSCOPE_COLLECTOR__{p}": str(_free_port()) for p in ("OTLP_GRPC_PORT", "OTLP_HTTP_PORT", "PROMETHEUS_PORT", "HEALTH_PORT")},
    }  # fmt: skip
    ctx = Context(load_config(environ=env))
    collector = Collector(ctx)
    assert collector.is_installed(), "the session's `up` builds the collector"
    collector.start()
    try:
        wait_until(collector.health, timeout=60, interval=0.5, alive=collector.running)
        yield collector
    finally:
        collector.stop()


def _spans_on_disk(collector: Collector, trace_id: str, timeout: float = 15.0) -> bool:
    """True once the file exporter has written a span of `trace_id` (hex) under the runs root."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in collector.runs_root().rglob("*.jsonl*"):
            if trace_id in path.read_bytes().decode("utf-8", "replace"):
                return True
        time.sleep(0.5)
    return False


def test_the_token_file_is_private_and_the_receivers_refuse_requests_without_it(guarded: Collector) -> None:
    token_file = guarded.ctx.service_dir("collector") / otlp_auth.TOKEN_FILE
    assert token_file.stat().st_mode & 0o777 == 0o600
    url = f"http://127.0.0.1:{guarded.cfg.otlp_http_port}/v1/traces"
    _, body = otlp_json_span("auth-test", {"hopscope.run_id": "auth-none"})
    assert httpx.post(url, json=body, timeout=5).status_code == 401
    wrong = {"authorization": "Bearer not-the-token"}
    assert httpx.post(url, json=body, headers=wrong, timeout=5).status_code == 401
    trace_id, body = otlp_json_span("auth-test", {"hopscope.run_id": "auth-raw"})
    right = otlp_auth.headers(guarded.ctx)
    assert httpx.post(url, json=body, headers=right, timeout=5).status_code == 200
    assert _spans_on_disk(guarded, trace_id)


def test_the_python_sdk_sends_the_token_it_is_handed(
    guarded: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ: dict[str, str] = {}
    assert otlp_auth.export_to_environment(guarded.ctx, environ)
    url = f"http://127.0.0.1:{guarded.cfg.otlp_http_port}"
    for headers in ({}, environ):  # without, then with what `hopscope` hands its children
        monkeypatch.delenv(otlp_auth.HEADERS_ENV, raising=False)
        for k, v in headers.items():
            monkeypatch.setenv(k, v)
        provider = TracerProvider(
            resource=Resource.create({"service.name": "auth-py", "hopscope.run_id": "auth-py"})
        )
        provider.add_span_processor(SimpleSpanProcessor(make_otlp_exporter(url, "http/protobuf")))
        with provider.get_tracer("t").start_as_current_span("hop") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
        provider.shutdown()
        assert _spans_on_disk(guarded, trace_id, timeout=8.0 if headers else 3.0) is bool(headers)


def test_the_node_glue_tracer_sends_the_token_it_is_handed(guarded: Collector, deployed: Context) -> None:
    installed = node_glue.ensure_installed(deployed.cache_dir)
    script = """
import { HopTracer } from './src/tracer.js';
const t = new HopTracer({ serviceName: 'auth-node', stack: 'kafka-node', runId: 'auth-node', endpoint: process.argv[1] });
import { randomBytes } from 'node:crypto';
const parent = { traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), traceFlags: 1 };
const span = t.startHop('notifier.consume', { eventId: 'e1', workload: 'write_notify', parent });
span.end();
await t.shutdown();
console.log(JSON.stringify({ trace: span.spanContext().traceId, stats: t.stats }));
"""
    url = f"http://127.0.0.1:{guarded.cfg.otlp_http_port}/v1/traces"
    results = {}
    for auth in (False, True):
        env = {k: v for k, v in os.environ.items() if k != otlp_auth.HEADERS_ENV}
        if auth:
            otlp_auth.export_to_environment(guarded.ctx, env)
        out = subprocess.run(
            ["node", "--input-type=module", "-e", script, url],
            cwd=installed, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        results[auth] = json.loads(out.stdout.strip().splitlines()[-1])
    assert results[False]["stats"]["failed"] > 0 and results[False]["stats"]["exported"] == 0
    assert results[True]["stats"]["exported"] == 1 and results[True]["stats"]["failed"] == 0
    assert _spans_on_disk(guarded, results[True]["trace"])


def test_exposing_the_receivers_without_auth_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        Exception, match=r'exposes the OTLP receivers beyond this host: set otlp_auth = "bearer"'
    ):
        load_config(
            environ={"HOPSCOPE_STATE_DIR": str(tmp_path), "HOPSCOPE_COLLECTOR__OTLP_LISTEN": "0.0.0.0"}
        )
