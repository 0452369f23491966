"""Format detection, the --format override, id spellings, Jaeger references, the ingest CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hopscope.collector.errors import Problems, UnknownFormat
from hopscope.collector.readers import formats, read_bytes
from hopscope.core import ids


@pytest.mark.parametrize(
    ("doc", "fmt"),
    [
        (b'{"resourceSpans":[]}\n{"resourceSpans":[]}\n', formats.OTLP_JSONL),
        (b'{\n  "resourceSpans": []\n}\n', formats.OTLP_JSON),
        (b'{"result": {"resourceSpans": []}}', formats.JAEGER_V3),
        (b'{\n "data": [], "total": 0}', formats.JAEGER),
        (b'{"trace": {"resourceSpans": []}}', formats.TEMPO),
        (b'{\n"batches": []}', formats.TEMPO),
        (b'[{"traceId": "a", "id": "b"}]', formats.ZIPKIN),
        (b"\x00\x00\x00\x02\x0a\x00", formats.OTLP_PROTO),
    ],
)
def test_detect(doc: bytes, fmt: str) -> None:
    assert formats.detect(doc, "x") == fmt


def test_detect_refuses_unknown() -> None:
    with pytest.raises(UnknownFormat):
        formats.detect(b"hello world", "x.txt")
    with pytest.raises(UnknownFormat):
        formats.detect(b'{"hello": 1}', "x.json")
    with pytest.raises(UnknownFormat, match="unknown format"):
        read_bytes(b"{}", "x", Problems(), fmt="csv")


def test_format_override_wins(tmp_path: Path) -> None:
    doc = json.dumps([{"traceId": "1", "id": "2", "name": "z", "timestamp": 5, "duration": 1}]).encode()
    assert read_bytes(doc, "x", Problems(), fmt="zipkin").num_rows == 1
    # Forcing the wrong reader does not invent spans: the record is reported instead.
    problems = Problems()
    assert read_bytes(doc, "x", problems, fmt="jaeger").num_rows == 0
    assert problems.skipped == {"malformed_record": 1}


@pytest.mark.parametrize(
    ("text", "hex_len", "want"),
    [
        ("5B8EFFF798038103D269B633813FC60C", 32, "5b8efff798038103d269b633813fc60c"),
        ("W47/95gDgQPSabYzgT/GDA==", 32, "5b8efff798038103d269b633813fc60c"),
        ("W47_95gDgQPSabYzgT_GDA==", 32, "5b8efff798038103d269b633813fc60c"),
        ("7uGbfsPBsXQ=", 16, "eee19b7ec3c1b174"),
    ],
)
def test_id_spellings(text: str, hex_len: int, want: str) -> None:
    assert ids.normalise(text, hex_len) == want


@pytest.mark.parametrize("text", ["", "abc", "0" * 32, "AAAAAAAAAAAAAAAAAAAAAA==", "zz" * 16, "7uGbfsPBsXQ"])
def test_bad_ids(text: str) -> None:
    with pytest.raises(ids.BadId):
        ids.normalise(text, 32 if len(text) != 11 else 16)


def test_jaeger_references_follows_from_is_a_link() -> None:
    doc = {
        "data": {
            "traceID": "1",
            "processes": {
                "p": {
                    "serviceName": "svc",
                    "tags": [{"key": "hopscope.stack", "type": "string", "value": "kafka"}],
                }
            },
            "spans": [
                {
                    "traceID": "1",
                    "spanID": "a",
                    "operationName": "root",
                    "startTime": 1,
                    "duration": 10,
                    "processID": "p",
                    "references": [],
                },
                {
                    "traceID": "1",
                    "spanID": "b",
                    "operationName": "produce",
                    "startTime": 2,
                    "duration": 1,
                    "processID": "p",
                    "references": [{"refType": "CHILD_OF", "traceID": "1", "spanID": "a"}],
                    "tags": [
                        {"key": "span.kind", "type": "string", "value": "producer"},
                        {"key": "hopscope.hop", "type": "string", "value": "kafka.produce"},
                        {"key": "hopscope.derived", "type": "bool", "value": True},
                    ],
                },
                {
                    "traceID": "1",
                    "spanID": "c",
                    "operationName": "consume",
                    "startTime": 5,
                    "duration": 2,
                    "processID": "p",
                    "references": [{"refType": "FOLLOWS_FROM", "traceID": "1", "spanID": "b"}],
                    "tags": [{"key": "otel.status_code", "type": "string", "value": "ERROR"}],
                },
            ],
        }
    }
    rows = {
        r["name"]: r for r in read_bytes(json.dumps(doc).encode(), "j", Problems(strict=True)).to_pylist()
    }
    assert rows["produce"]["parent_span_id"] == "000000000000000a"
    assert rows["produce"]["kind"] == "PRODUCER" and rows["produce"]["hop"] == "kafka.produce"
    assert rows["produce"]["derived"] is True and rows["produce"]["stack"] == "kafka"
    assert "span.kind" not in dict(rows["produce"]["attributes"])
    assert rows["consume"]["parent_span_id"] is None
    assert rows["consume"]["links"] == [{"trace_id": "0" * 31 + "1", "span_id": "000000000000000b"}]
    assert rows["consume"]["status"] == "ERROR" and rows["root"]["status"] == "UNSET"


def test_ingest_cli(shared_dir: Path, tmp_path: Path) -> None:
    from hopscope.cli import app

    src = shared_dir / "conformance" / "traces" / "zipkin-v2"
    res = CliRunner().invoke(app, ["ingest", str(src), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "223" in res.output and "missing_duration" in res.output
    assert json.loads((tmp_path / "run" / "ingest_report.json").read_text())["spans"] == 223
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(app, ["ingest", str(empty), "--out", str(tmp_path / "run2")])
    assert res.exit_code == 1 and "no span files" in res.output and "Traceback" not in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "x"}]}]}]}\n')
    res = CliRunner().invoke(app, ["ingest", str(bad), "--out", str(tmp_path / "run3"), "--strict"])
    # the console wraps at 80 columns, wherever the (tmp) path length puts the break
    flat = " ".join(res.output.split())
    assert res.exit_code == 1 and "line 1" in flat and "traceId" in flat
    res = CliRunner().invoke(app, ["ingest", str(bad), "--out", str(tmp_path / "run3"), "--format", "csv"])
    assert res.exit_code != 0 and "csv" in res.output
