"""Bad input: every problem names file, line/record and field; default skips and counts, strict raises."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import orjson
import pytest

from hopscope.collector.errors import MalformedInput, NoUsableSpans, Problems
from hopscope.collector.ingest import ingest
from hopscope.collector.readers import read_file


def span(i: int, **over) -> dict:
    s = {
        "traceId": f"{i:032x}",
        "spanId": f"{i + 1000:016x}",
        "name": f"s{i}",
        "kind": 2,
        "startTimeUnixNano": str(1_000_000 + i),
        "endTimeUnixNano": str(2_000_000 + i),
    }
    s.update(over)
    return {k: v for k, v in s.items() if v is not None}


def line(*spans: dict) -> bytes:
    return orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                    "scopeSpans": [{"spans": list(spans)}],
                }
            ]
        }
    )


def write(tmp_path: Path, *lines: bytes, name: str = "spans.jsonl") -> Path:
    f = tmp_path / name
    f.write_bytes(b"\n".join(lines) + b"\n")
    return f


def test_bad_json_line_in_the_middle_keeps_the_other_lines(tmp_path: Path) -> None:
    f = write(tmp_path, line(span(1), span(2)), b'{"resourceSpans": [ {"resource": ', line(span(3)))
    problems = Problems()
    t = read_file(f, problems)
    assert sorted(t["name"].to_pylist()) == ["s1", "s2", "s3"]
    assert problems.skipped == {"bad_json": 1}
    assert str(f) in problems.messages[0] and "line 2" in problems.messages[0]


@pytest.mark.parametrize(
    ("bad", "kind", "field"),
    [
        (span(5, spanId=None), "missing_id", "spanId"),
        (span(5, traceId=""), "missing_id", "traceId"),
        (span(5, traceId="xyz-not-an-id"), "bad_id", "traceId"),
        (span(5, parentSpanId="12345"), "bad_id", "parentSpanId"),
        (span(5, endTimeUnixNano="999"), "end_before_start", "endTimeUnixNano"),
        (span(5, startTimeUnixNano="yesterday"), "bad_timestamp", "startTimeUnixNano"),
        (span(5, kind="SPAN_KIND_SIDEWAYS"), "bad_field", "kind"),
        (span(5, links=[{"traceId": f"{7:032x}", "spanId": "nothex!!"}]), "bad_id", "links[0].spanId"),
    ],
)
def test_bad_span_is_skipped_and_named(tmp_path: Path, bad: dict, kind: str, field: str) -> None:
    f = write(tmp_path, line(span(1)), line(span(2), bad, span(3)))
    problems = Problems()
    t = read_file(f, problems)
    assert sorted(t["name"].to_pylist()) == ["s1", "s2", "s3"]
    assert problems.skipped == {kind: 1}
    msg = problems.messages[0]
    assert str(f) in msg and "line 2" in msg and f"spans[1].{field}" in msg and kind in msg
    with pytest.raises(MalformedInput) as exc:
        read_file(f, Problems(strict=True))
    assert exc.value.source == str(f) and exc.value.record == "line 2" and exc.value.kind == kind
    assert exc.value.field.endswith(field)


def test_ingest_report_counts_by_kind_and_strict_raises(tmp_path: Path) -> None:
    src = tmp_path / "spans"
    src.mkdir()
    write(
        src,
        line(span(1), span(2, endTimeUnixNano="1")),
        b"not json",
        line(span(3, spanId="zz")),
        name="a.jsonl",
    )
    write(src, line(span(4)), name="b.jsonl")
    result = ingest([src], tmp_path / "run")
    report = json.loads((tmp_path / "run" / "ingest_report.json").read_text())
    assert report["spans"] == result.spans == 2
    assert report["files"] == 2
    assert report["skipped"] == {"bad_id": 1, "bad_json": 1, "end_before_start": 1}
    assert len(report["errors"]) == 3 and all(str(src / "a.jsonl") in m for m in report["errors"])
    with pytest.raises(MalformedInput) as exc:
        ingest([src], tmp_path / "run2", strict=True)
    assert exc.value.kind == "end_before_start" and exc.value.record == "line 1"


def test_empty_folder_and_no_usable_span(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoUsableSpans, match="no span files"):
        ingest([empty], tmp_path / "run")
    write(empty, line(span(1, spanId=None)))
    with pytest.raises(NoUsableSpans, match="missing_id"):
        ingest([empty], tmp_path / "run")
    assert json.loads((tmp_path / "run" / "ingest_report.json").read_text())["skipped"] == {"missing_id": 1}
    (empty / "fresh.jsonl").write_bytes(b"")  # a just-rotated, still empty file is not a problem
    with pytest.raises(NoUsableSpans, match="missing_id"):
        ingest([empty], tmp_path / "run")
    report = json.loads((tmp_path / "run" / "ingest_report.json").read_text())
    assert report["files"] == 2 and report["skipped"] == {"missing_id": 1}
    with pytest.raises(NoUsableSpans, match="no such file"):
        ingest([tmp_path / "nope"], tmp_path / "run")


def test_truncated_proto_frame_keeps_earlier_records(tmp_path: Path) -> None:
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    msg = ParseDict(
        {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {"traceId": "AAAAAAAAAAAAAAAAAAAAAQ==", "spanId": "AAAAAAAAAAI=", "name": "p"}
                            ]
                        }
                    ]
                }
            ]
        },
        ExportTraceServiceRequest(),
    ).SerializeToString()
    f = tmp_path / "spans.pb"
    f.write_bytes(struct.pack(">I", len(msg)) + msg + struct.pack(">I", 999) + b"\x0a\x01")
    problems = Problems()
    t = read_file(f, problems)
    assert t["name"].to_pylist() == ["p"]
    assert problems.skipped == {"bad_frame": 1}
    assert "record 2" in problems.messages[0] and str(f) in problems.messages[0]


def test_zipkin_and_jaeger_problems_are_named(tmp_path: Path) -> None:
    z = tmp_path / "z.json"
    z.write_text(
        json.dumps(
            [
                {"traceId": "a1", "id": "b1", "name": "ok", "timestamp": 10, "duration": 5},
                {"traceId": "a1", "id": "b2", "name": "no-ts"},
                {"traceId": "a1", "id": "b3", "name": "no-dur", "timestamp": 12},
            ]
        )
    )
    problems = Problems()
    t = read_file(z, problems)
    assert t["name"].to_pylist() == ["ok", "no-dur"]
    assert problems.skipped == {"bad_timestamp": 1} and "span 1" in problems.messages[0]
    assert problems.adjusted == {"missing_duration": 1}
    row = t.to_pylist()[1]
    assert row["start_ns"] == row["end_ns"] == 12_000
    assert dict(row["attributes"])["hopscope.ingest.flag"] == "missing_duration"

    j = tmp_path / "j.json"
    j.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "processes": {"p1": {"serviceName": "svc"}},
                        "spans": [
                            {
                                "traceID": "ab",
                                "spanID": "01",
                                "operationName": "x",
                                "startTime": 1,
                                "duration": 2,
                                "processID": "p1",
                            },
                            {
                                "traceID": "ab",
                                "spanID": "02",
                                "operationName": "y",
                                "startTime": 1,
                                "processID": "p1",
                            },
                            {
                                "traceID": "ab",
                                "spanID": "03",
                                "operationName": "z",
                                "startTime": 1,
                                "duration": 1,
                                "processID": "p9",
                            },
                        ],
                    }
                ]
            }
        )
    )
    problems = Problems()
    t = read_file(j, problems)
    assert t["name"].to_pylist() == ["x"]
    assert problems.skipped == {"bad_timestamp": 1, "bad_field": 1}
    assert any("trace 0 span 1" in m and "'duration'" in m for m in problems.messages)
    assert any("trace 0 span 2" in m and "'processID'" in m for m in problems.messages)


def test_unknown_format_is_counted_or_raised(tmp_path: Path) -> None:
    src = tmp_path / "spans"
    src.mkdir()
    (src / "weird.json").write_text('{"hello": 1}')
    write(src, line(span(1)), name="ok.jsonl")
    result = ingest([src], tmp_path / "run")
    assert result.spans == 1 and result.problems.skipped == {"unknown_format": 1}
    with pytest.raises(MalformedInput, match="no known top-level key"):
        ingest([src], tmp_path / "run", strict=True)


def test_corrupt_zstd_is_counted(tmp_path: Path) -> None:
    import zstandard

    good = zstandard.ZstdCompressor().compress(line(span(1)) + b"\n")
    f = tmp_path / "spans.jsonl.zst"
    f.write_bytes(good[:8] + b"\xff" * 40)
    problems = Problems()
    assert read_file(f, problems).num_rows == 0
    assert problems.skipped == {"bad_compression": 1} and str(f) in problems.messages[0]
