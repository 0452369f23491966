"""Every external trace file in shared/conformance/traces ingests, with the facts its source states.

Span counts come from shared/conformance/traces/PROVENANCE.md; the per-file counts
of the CRISP cases are recounted from the raw JSON (PROVENANCE gives their total).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hopscope.collector.errors import Problems
from hopscope.collector.ingest import ingest
from hopscope.collector.readers import read_file

# (file, spans) as PROVENANCE.md lists them.
PROVENANCE_COUNTS = {
    "otlp-json/otel-proto-example-trace.json": 1,
    "otlp-json/jaeger-telemetrygen-otlp2jaeger-in.json": 2,
    "jaeger-api-v3/GetTrace.json": 1,
    "jaeger-api-v3/FindTraces.json": 1,
    "jaeger-json/jaeger-ui-flamegraph-ride-sharing-trace.json": 4,
    "zipkin-v2/messaging-kafka.json": 28,
    "zipkin-v2/skew.json": 4,
    "zipkin-v2/yelp.json": 16,
    "zipkin-v2/smartthings-oauth-authorization.json": 175,
}
CRISP_FILES, CRISP_SPANS = 33, 134


def traces_dir(shared_dir: Path) -> Path:
    return shared_dir / "conformance" / "traces"


def read(shared_dir: Path, rel: str, problems: Problems | None = None) -> list[dict]:
    return read_file(traces_dir(shared_dir) / rel, problems or Problems(strict=True)).to_pylist()


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in rows}


@pytest.mark.parametrize(("rel", "count"), sorted(PROVENANCE_COUNTS.items()))
def test_span_counts(shared_dir: Path, rel: str, count: int) -> None:
    problems = Problems()
    rows = read(shared_dir, rel, problems)
    assert len(rows) == count
    assert not problems.skipped, problems.messages
    assert all(r["source"] == str(traces_dir(shared_dir) / rel) for r in rows)
    assert all(len(r["trace_id"]) == 32 and len(r["span_id"]) == 16 for r in rows)


def test_crisp_cases(shared_dir: Path) -> None:
    files = sorted((traces_dir(shared_dir) / "crisp-test-cases").rglob("*.json"))
    assert len(files) == CRISP_FILES
    total = 0
    for f in files:
        raw = json.loads(f.read_text())
        rows = read_file(f, Problems(strict=True)).to_pylist()
        assert len(rows) == sum(len(t["spans"]) for t in raw["data"]), f
        total += len(rows)
        # Labels such as "G" or "B1" are mapped consistently: every parent is a span of the trace.
        span_ids = {r["span_id"] for r in rows}
        assert all(r["parent_span_id"] in span_ids for r in rows if r["parent_span_id"]), f
        roots = [r for r in rows if r["parent_span_id"] is None]
        assert len(roots) == 1, f
        assert roots[0]["span_id"] == "000000000000000a"  # CRISP's root is span "A"
        assert roots[0]["trace_id"] == "0000000000000000000000000000000a"
    assert total == CRISP_SPANS


def test_crisp_case_11_values(shared_dir: Path) -> None:
    rows = by_name(read(shared_dir, "crisp-test-cases/11.json"))
    assert rows["O1"]["service"] == "S1" and rows["O2"]["service"] == "S2"
    assert rows["O2"]["parent_span_id"] == rows["O1"]["span_id"]
    assert (rows["O2"]["start_ns"], rows["O2"]["end_ns"]) == (30_000, 60_000)  # µs → ns
    assert rows["O2"]["status"] == "ERROR"  # tag error=true


def test_otel_proto_example_orphan(shared_dir: Path) -> None:
    (row,) = read(shared_dir, "otlp-json/otel-proto-example-trace.json")
    assert row["trace_id"] == "5b8efff798038103d269b633813fc60c"  # upper-case hex lowered
    assert row["span_id"] == "eee19b7ec3c1b174"
    assert row["parent_span_id"] == "eee19b7ec3c1b173"  # not in the file: an orphan
    assert row["kind"] == "SERVER" and row["service"] == "my.service"
    assert row["end_ns"] - row["start_ns"] == 1_000_000_000
    assert dict(row["attributes"]) == {"my.span.attr": "some value"}


def test_telemetrygen(shared_dir: Path) -> None:
    rows = read(shared_dir, "otlp-json/jaeger-telemetrygen-otlp2jaeger-in.json")
    assert {r["service"] for r in rows} == {"telemetrygen"}
    assert all(r["end_ns"] - r["start_ns"] == 123_000 for r in rows)
    assert all(dict(r["attributes"])["peer.service"] == "telemetrygen-client" for r in rows)


@pytest.mark.parametrize("name", ["GetTrace.json", "FindTraces.json"])
def test_jaeger_api_v3(shared_dir: Path, name: str) -> None:
    (row,) = read(shared_dir, f"jaeger-api-v3/{name}")
    assert row["trace_id"] == "00000000000000000000000000000001"
    assert row["span_id"] == "0000000000000002"
    assert (row["name"], row["kind"], row["status"]) == ("foobar", "SERVER", "ERROR")
    assert row["start_ns"] == row["end_ns"] == 0  # protojson omits zero timestamps
    assert row["service"] is None


def test_jaeger_ui_trace(shared_dir: Path) -> None:
    rows = by_name(read(shared_dir, "jaeger-json/jaeger-ui-flamegraph-ride-sharing-trace.json"))
    root = rows["OrderVehicle"]
    assert root["parent_span_id"] is None and root["service"] == "load-generator"
    assert root["end_ns"] - root["start_ns"] == 1_181_596_000
    assert rows["HTTP GET"]["parent_span_id"] == root["span_id"]
    assert rows["BikeHandler"]["parent_span_id"] == rows["HTTP GET"]["span_id"]
    assert rows["FindNearestVehicle"]["parent_span_id"] == rows["BikeHandler"]["span_id"]
    assert rows["BikeHandler"]["service"] == "ride-sharing-app"
    assert rows["HTTP GET"]["kind"] == "CLIENT" and rows["BikeHandler"]["kind"] == "SERVER"
    assert dict(root["attributes"])["vehicle"] == "bike"


def test_zipkin_skew_shared_id(shared_dir: Path) -> None:
    problems = Problems()
    rows = read(shared_dir, "zipkin-v2/skew.json", problems)
    assert {r["trace_id"] for r in rows} == {"00000000000000001e223ff1f80f1c69"}  # 16 hex left-padded
    client = next(r for r in rows if r["name"] == "post" and r["kind"] == "CLIENT")
    server = next(r for r in rows if r["name"] == "post" and r["kind"] == "SERVER")
    assert client["span_id"] == "74280ae0c10d8062" and client["service"] == "servicea"
    assert server["span_id"] != client["span_id"] and server["parent_span_id"] == client["span_id"]
    assert dict(server["attributes"])["zipkin.shared_span_id"] == "74280ae0c10d8062"
    # "async" ran on serviceb under the shared id: it belongs to the server half.
    assert by_name(rows)["async"]["parent_span_id"] == server["span_id"]
    # The skew itself is kept as recorded (65.4 ms before its client): correcting it is the analysis' job.
    assert client["start_ns"] - server["start_ns"] == 65_441_000
    assert problems.adjusted == {"zipkin_shared_id": 1}
    assert len({r["span_id"] for r in rows}) == 4


def test_zipkin_smartthings_messy(shared_dir: Path) -> None:
    problems = Problems()
    rows = read(shared_dir, "zipkin-v2/smartthings-oauth-authorization.json", problems)
    assert len({r["span_id"] for r in rows}) == 175  # every shared id split
    flagged = [r for r in rows if "missing_duration" in dict(r["attributes"]).get("hopscope.ingest.flag", "")]
    assert len(flagged) == 19 and all(r["start_ns"] == r["end_ns"] for r in flagged)
    assert problems.adjusted["missing_duration"] == 19
    assert problems.adjusted["zipkin_shared_id"] == 45
    assert len({r["service"] for r in rows}) == 8


def test_zipkin_kafka_kinds(shared_dir: Path) -> None:
    rows = read(shared_dir, "zipkin-v2/messaging-kafka.json")
    kinds = [r["kind"] for r in rows]
    assert kinds.count("PRODUCER") == 9 and kinds.count("CONSUMER") == 7
    assert sum(1 for r in rows if r["name"] == "send" and r["kind"] == "PRODUCER") == 9


def test_yelp_services(shared_dir: Path) -> None:
    rows = read(shared_dir, "zipkin-v2/yelp.json")
    assert len({r["service"] for r in rows}) == 6
    assert len({r["span_id"] for r in rows}) == 16


def test_whole_folder_through_ingest(shared_dir: Path, tmp_path: Path) -> None:
    result = ingest([traces_dir(shared_dir)], tmp_path)
    assert result.files == len(PROVENANCE_COUNTS) + CRISP_FILES
    assert result.spans == sum(PROVENANCE_COUNTS.values()) + CRISP_SPANS
    report = json.loads((tmp_path / "ingest_report.json").read_text())
    assert report["skipped"] == {} and report["errors"] == []
    assert report["ignored_files"] == [str(traces_dir(shared_dir) / "PROVENANCE.md")]
