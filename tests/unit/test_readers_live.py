"""Live fetchers against recorded responses served by a local HTTP file server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hopscope.collector.errors import Problems
from hopscope.collector.readers import live

TRACE_1 = "00000000000000000000000000000001"
OTLP_EXAMPLE_TRACE = "5b8efff798038103d269b633813fc60c"
V1_TRACE = "0af7651916cd43dd8448eb211c80319c"


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _responses(shared_dir: Path) -> dict[str, tuple[int, bytes]]:
    traces = shared_dir / "conformance" / "traces"
    get_trace = (traces / "jaeger-api-v3" / "GetTrace.json").read_bytes()
    example = json.loads((traces / "otlp-json" / "otel-proto-example-trace.json").read_text())
    # Tempo writes ids as base64 (protobuf JSON of bytes fields).
    for rs in example["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    sp[k] = _b64(sp[k])
    tempo_v2 = json.dumps({"trace": example}).encode()
    v1_span = {
        "traceId": _b64(V1_TRACE),
        "spanId": _b64("b7ad6b7169203331"),
        "name": "old",
        "kind": "SPAN_KIND_CLIENT",
    }
    tempo_v1 = json.dumps(
        {
            "batches": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "legacy"}}]},
                    "instrumentationLibrarySpans": [{"spans": [v1_span]}],
                }
            ]
        }
    ).encode()
    # FindTraces streams one {"result": TracesData} per trace.
    second = json.loads(get_trace)
    second["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "0000000000000003"
    find = get_trace.replace(b"\n", b"") + b"\n" + json.dumps(second).encode() + b"\n"
    return {
        f"/api/v3/traces/{TRACE_1}": (200, get_trace),
        "/api/v3/traces/ffffffffffffffffffffffffffffffff": (
            404,
            b'{"error":{"httpCode":404,"message":"trace not found"}}',
        ),
        "/api/v3/traces": (200, find),
        "/api/v3/services": (200, b'{"services":["kafka.notifier"]}'),
        f"/api/v2/traces/{OTLP_EXAMPLE_TRACE}": (200, tempo_v2),
        f"/api/traces/{V1_TRACE}": (200, tempo_v1),
        "/api/search": (
            200,
            json.dumps({"traces": [{"traceID": OTLP_EXAMPLE_TRACE}, {"traceID": V1_TRACE}]}).encode(),
        ),
    }


@pytest.fixture
def server(shared_dir: Path) -> Iterator[tuple[str, list[tuple[str, dict]]]]:
    routes = _responses(shared_dir)
    seen: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            seen.append((url.path, parse_qs(url.query)))
            status, body = routes.get(url.path, (404, b'{"error":{"message":"no such path"}}'))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_jaeger_get_trace(server) -> None:
    base, _ = server
    got = live.jaeger_get_trace(base, TRACE_1, Problems(strict=True))
    (row,) = got.table.to_pylist()
    assert (row["trace_id"], row["span_id"], row["status"]) == (TRACE_1, "0000000000000002", "ERROR")
    assert row["source"] == f"{base}/api/v3/traces/{TRACE_1}"


def test_jaeger_get_trace_error_names_url(server) -> None:
    base, _ = server
    with pytest.raises(live.FetchError, match=r"HTTP 404.*trace not found"):
        live.jaeger_get_trace(base, "f" * 32, Problems())


def test_jaeger_find_traces_stream_and_params(server) -> None:
    base, seen = server
    end = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
    got = live.jaeger_find_traces(
        base, "kafka.notifier", Problems(strict=True), lookback=timedelta(minutes=30), end=end
    )
    assert sorted(got.table["span_id"].to_pylist()) == ["0000000000000002", "0000000000000003"]
    path, params = seen[-1]
    assert path == "/api/v3/traces"
    assert params["query.service_name"] == ["kafka.notifier"]
    assert params["query.start_time_min"] == ["2026-11-28T03:30:00.000000Z"]
    assert params["query.start_time_max"] == ["2026-11-28T04:00:00.000000Z"]


def test_tempo_v2_and_v1_fallback(server) -> None:
    base, seen = server
    (row,) = live.tempo_get_trace(base, OTLP_EXAMPLE_TRACE, Problems(strict=True)).table.to_pylist()
    assert row["trace_id"] == OTLP_EXAMPLE_TRACE and row["parent_span_id"] == "eee19b7ec3c1b173"
    assert row["service"] == "my.service"
    (old,) = live.tempo_get_trace(base, V1_TRACE, Problems(strict=True)).table.to_pylist()
    assert (old["trace_id"], old["kind"], old["service"]) == (V1_TRACE, "CLIENT", "legacy")
    assert [p for p, _ in seen[-2:]] == [f"/api/v2/traces/{V1_TRACE}", f"/api/traces/{V1_TRACE}"]


def test_tempo_search_fetches_each_hit(server) -> None:
    base, seen = server
    got = live.tempo_search(base, Problems(strict=True), q='{ resource.service.name = "x" }', limit=5)
    assert sorted(got.table["trace_id"].to_pylist()) == sorted([OTLP_EXAMPLE_TRACE, V1_TRACE])
    search = next(params for path, params in seen if path == "/api/search")
    assert search["q"] == ['{ resource.service.name = "x" }'] and search["limit"] == ["5"]


def test_cli_fetch_traces(server, tmp_path: Path) -> None:
    from hopscope.cli import app

    base, _ = server
    out = tmp_path / "run"
    res = CliRunner().invoke(
        app,
        [
            "fetch-traces",
            "--jaeger",
            base,
            "--service",
            "kafka.notifier",
            "--trace-id",
            TRACE_1,
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    t = pq.read_table(out / "spans.parquet")
    # The GetTrace span also comes back from the search: kept once.
    assert sorted(t["span_id"].to_pylist()) == ["0000000000000002", "0000000000000003"]
    res = CliRunner().invoke(
        app, ["fetch-traces", "--jaeger", base, "--trace-id", "f" * 32, "--out", str(out)]
    )
    assert res.exit_code == 1 and "HTTP 404" in res.output and "Traceback" not in res.output


def test_cli_fetch_traces_by_operation(server, tmp_path: Path) -> None:
    from hopscope.cli import app

    base, seen = server
    args = ["fetch-traces", "--jaeger", base, "--service", "kafka.notifier", "--operation", "notify"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    search = [params for path, params in seen if path == "/api/v3/traces"]
    assert search and search[0]["query.operation_name"] == ["notify"]
    assert "page 1" in res.output
    res = CliRunner().invoke(
        app, ["fetch-traces", "--tempo", base, "--operation", "x", "--out", str(tmp_path / "t")]
    )
    assert res.exit_code == 2 and "--operation" in res.output
