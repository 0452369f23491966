"""Round trips: OTLP built with the real opentelemetry-proto classes / SDK → every file spelling → readers.

Expected values come from the messages themselves, never from a reader, so a reader
that drops, mangles or mis-lifts any column fails here.
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
import zstandard
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from hopscope.collector.errors import Problems
from hopscope.collector.ingest import ingest
from hopscope.collector.readers import formats, otlp_arrow, otlp_native, otlp_proto, read_bytes, read_file
from hopscope.core.schema import KINDS, SPAN_SCHEMA, STATUSES

T0 = 1_764_300_000_123_456_789


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _s(v: str) -> AnyValue:
    return AnyValue(string_value=v)


def make_requests(n_requests: int = 3, spans_per_scope: int = 4) -> list[ExportTraceServiceRequest]:
    """Requests with two resources (two stacks), two scopes each, hopscope attributes, links and every AnyValue type."""
    reqs = []
    counter = 0
    for r in range(n_requests):
        req = ExportTraceServiceRequest()
        for stack in ("kafka", "harper"):
            res = Resource(
                attributes=[
                    _kv("service.name", _s(f"{stack}.svc{r}")),
                    _kv("hopscope.stack", _s(stack)),
                    _kv("hopscope.run_id", _s("run-7")),
                    _kv("hopscope.workload", _s("fanout")),  # fallback only
                    _kv("host.name", _s(f"host-{stack}")),
                ]
            )
            rs = ResourceSpans(resource=res)
            for scope in range(2):
                ss = ScopeSpans()
                ss.scope.name = f"scope{scope}"
                for _ in range(spans_per_scope):
                    counter += 1
                    trace = counter // 3 + 1
                    sp = Span(
                        trace_id=trace.to_bytes(16, "big"),
                        span_id=(counter * 7919).to_bytes(8, "big"),
                        name=f"op-{counter}",
                        kind=counter % 6,
                        start_time_unix_nano=T0 + counter * 1000,
                        end_time_unix_nano=T0 + counter * 1000 + counter * 37,
                        status=Status(code=counter % 3),
                    )
                    if counter % 3 and counter > 1:
                        sp.parent_span_id = ((counter - 1) * 7919).to_bytes(8, "big")
                    if counter % 4 == 0:
                        link = sp.links.add()
                        link.trace_id = (trace + 1000).to_bytes(16, "big")
                        link.span_id = (counter * 31).to_bytes(8, "big")
                    attrs = [
                        _kv("hopscope.event_id", _s(f"ev-{trace}")),
                        _kv("hopscope.hop", _s(f"hop{counter % 5}")),
                        _kv("messaging.system", _s("kafka")),
                        _kv("retries", AnyValue(int_value=counter)),
                        _kv("ratio", AnyValue(double_value=counter / 8)),
                        _kv("cached", AnyValue(bool_value=counter % 2 == 0)),
                    ]
                    if counter % 2:
                        attrs.append(_kv("hopscope.workload", _s("write_notify")))
                    if counter % 5 == 0:
                        attrs.append(_kv("hopscope.derived", AnyValue(bool_value=True)))
                    sp.attributes.extend(attrs)
                    ss.spans.append(sp)
                rs.scope_spans.append(ss)
            req.resource_spans.append(rs)
        reqs.append(req)
    return reqs


def exotic_request() -> ExportTraceServiceRequest:
    """One span with array / kvlist / bytes attribute values (the fast path defers these)."""
    req = make_requests(1, 1)[0]
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    sp.attributes.extend(
        [
            _kv("tags", AnyValue(array_value=ArrayValue(values=[_s("a"), AnyValue(int_value=2)]))),
            _kv("kv", AnyValue(kvlist_value=KeyValueList(values=[_kv("x", AnyValue(bool_value=False))]))),
            _kv("raw", AnyValue(bytes_value=b"\x00\x01hi")),
        ]
    )
    return req


def _anyvalue_text(v: AnyValue) -> str:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return str(v.int_value)
    if which == "double_value":
        return str(pa.array([v.double_value]).cast(pa.string())[0])
    if which == "bool_value":
        return "true" if v.bool_value else "false"
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()

    def py(x: AnyValue):
        w = x.WhichOneof("value")
        if w == "array_value":
            return [py(y) for y in x.array_value.values]
        if w == "kvlist_value":
            return {kv.key: py(kv.value) for kv in x.kvlist_value.values}
        return getattr(x, w)

    return json.dumps(py(v), separators=(",", ":"))


def expected_rows(reqs: list[ExportTraceServiceRequest], source: str) -> list[dict]:
    rows = []
    for req in reqs:
        for rs in req.resource_spans:
            res = {kv.key: _anyvalue_text(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    attrs = {kv.key: _anyvalue_text(kv.value) for kv in sp.attributes}
                    rows.append(
                        {
                            "trace_id": sp.trace_id.hex(),
                            "span_id": sp.span_id.hex(),
                            "parent_span_id": sp.parent_span_id.hex() or None,
                            "links": [
                                {"trace_id": lk.trace_id.hex(), "span_id": lk.span_id.hex()}
                                for lk in sp.links
                            ],
                            "name": sp.name,
                            "kind": KINDS[sp.kind],
                            "start_ns": sp.start_time_unix_nano,
                            "end_ns": sp.end_time_unix_nano,
                            "status": STATUSES[sp.status.code],
                            "service": res["service.name"],
                            "stack": res["hopscope.stack"],
                            "workload": attrs.get("hopscope.workload", res.get("hopscope.workload")),
                            "event_id": attrs.get("hopscope.event_id"),
                            "hop": attrs.get("hopscope.hop"),
                            "derived": attrs.get("hopscope.derived") == "true",
                            "attributes": sorted(
                                (k, v) for k, v in attrs.items() if not k.startswith("hopscope.")
                            ),
                            "resource": sorted(
                                (k, v)
                                for k, v in res.items()
                                if k not in ("service.name", "hopscope.stack", "hopscope.workload")
                            ),
                            "source": source,
                        }
                    )
    return rows


def table_rows(t: pa.Table) -> list[dict]:
    assert t.schema.equals(SPAN_SCHEMA), t.schema
    rows = t.to_pylist()
    for r in rows:
        r["attributes"] = sorted(r["attributes"])
        r["resource"] = sorted(r["resource"])
    return rows


def collector_json_line(req: ExportTraceServiceRequest) -> bytes:
    """The collector file exporter's spelling: hex ids, int enums, 64-bit ints as strings."""
    d = MessageToDict(req, use_integers_for_enums=True)

    def fix(obj):
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                    obj[k] = base64.b64decode(v).hex()
                else:
                    fix(v)
        elif isinstance(obj, list):
            for x in obj:
                fix(x)

    fix(d)
    return orjson.dumps(d)


def protojson_line(req: ExportTraceServiceRequest) -> bytes:
    """Plain protojson (what other producers write): base64 ids, enum names, snake-free camelCase."""
    return orjson.dumps(MessageToDict(req))


def proto_framed(reqs: list[ExportTraceServiceRequest]) -> bytes:
    out = b""
    for r in reqs:
        msg = r.SerializeToString()
        out += struct.pack(">I", len(msg)) + msg
    return out


@pytest.fixture
def reqs() -> list[ExportTraceServiceRequest]:
    return make_requests()


# Both fast readers of the collector's JSON lines: each must equal the tolerant reader, or decline.
# The native one is built by bin/bootstrap; it is only skipped on a machine without cargo.
_NATIVE_MISSING = otlp_native._parse is None and shutil.which("cargo") is None
FAST_READERS = [
    pytest.param(otlp_arrow.read_json_lines, id="pyarrow"),
    pytest.param(
        otlp_native.read_json_lines,
        id="native",
        marks=pytest.mark.skipif(_NATIVE_MISSING, reason="native reader not built (no cargo)"),
    ),
]


def test_native_reader_is_built_where_cargo_is() -> None:
    assert otlp_native._parse is not None or shutil.which("cargo") is None, (
        "cargo is here but hopscope_otlp_native is not installed: run bin/bootstrap"
    )


@pytest.mark.parametrize("fast_read", FAST_READERS)
def test_collector_json_lines_take_the_fast_path_and_match(tmp_path: Path, reqs, fast_read) -> None:
    data = b"\n".join(collector_json_line(r) for r in reqs) + b"\n"
    f = tmp_path / "spans.jsonl"
    f.write_bytes(data)
    fast = fast_read(data, str(f))  # raises NeedsSlowPath if it declined
    assert table_rows(fast) == expected_rows(reqs, str(f))
    assert table_rows(read_file(f, Problems())) == expected_rows(reqs, str(f))


def test_fast_path_grows_its_block_for_long_lines(reqs, monkeypatch) -> None:
    data = b"\n".join(collector_json_line(r) for r in reqs)
    want = table_rows(otlp_arrow.read_json_lines(data, "x"))
    monkeypatch.setattr(otlp_arrow, "_MIN_BLOCK", 256)  # far below one line
    assert table_rows(otlp_arrow.read_json_lines(data, "x")) == want


@pytest.mark.parametrize("fast_read", FAST_READERS)
def test_fast_and_slow_paths_agree_on_every_column(reqs, fast_read) -> None:
    data = b"\n".join(collector_json_line(r) for r in reqs)
    fast = fast_read(data, "x")
    slow = formats._json_lines_slow(data, "x", Problems()).table()
    assert table_rows(fast) == table_rows(slow)


@pytest.mark.parametrize("fast_read", FAST_READERS)
def test_protojson_variants_base64_ids_and_enum_names(tmp_path: Path, reqs, fast_read) -> None:
    lines = [protojson_line(r) for r in reqs]
    assert b'"SPAN_KIND_' in lines[0] and b'"STATUS_CODE_' in lines[0]
    f = tmp_path / "protojson.jsonl"
    f.write_bytes(b"\n".join(lines))
    with pytest.raises(otlp_arrow.NeedsSlowPath):
        fast_read(f.read_bytes(), str(f))
    problems = Problems()
    assert table_rows(read_file(f, problems)) == expected_rows(reqs, str(f))
    assert not problems.skipped
    # nothing lost, but the user is told why this file took the slower reader
    assert problems.readers == {"python": 1}
    assert len(problems.declined) == 1 and problems.declined[0].startswith(f"{f}: ")
    # where it broke: the native reader names the line, pyarrow.json (HOPSCOPE_NATIVE=0) the row
    assert "line 1" in problems.declined[0] or "in row 0" in problems.declined[0]


def test_upper_case_hex_and_numeric_int64s(tmp_path: Path, reqs) -> None:
    d = orjson.loads(collector_json_line(reqs[0]))
    for rs in d["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                sp["traceId"] = sp["traceId"].upper()
                sp["startTimeUnixNano"] = int(sp["startTimeUnixNano"])
                for kv in sp["attributes"]:
                    if "intValue" in kv["value"]:
                        kv["value"]["intValue"] = int(kv["value"]["intValue"])
    f = tmp_path / "variants.jsonl"
    f.write_bytes(orjson.dumps(d))
    assert table_rows(read_file(f, Problems())) == expected_rows(reqs[:1], str(f))


def test_array_kvlist_bytes_attributes(tmp_path: Path) -> None:
    req = exotic_request()
    f = tmp_path / "exotic.jsonl"
    f.write_bytes(collector_json_line(req))
    got = table_rows(read_file(f, Problems()))
    assert got == expected_rows([req], str(f))
    attrs = dict(got[0]["attributes"])
    assert json.loads(attrs["tags"]) == ["a", 2]
    assert json.loads(attrs["kv"]) == {"x": False}
    assert base64.b64decode(attrs["raw"]) == b"\x00\x01hi"
    pb = tmp_path / "exotic.pb"
    pb.write_bytes(proto_framed([req]))
    assert table_rows(read_file(pb, Problems())) == expected_rows([req], str(pb))


@pytest.mark.skipif(otlp_native._parse_proto is None, reason="native reader not built")
def test_native_proto_equals_the_python_reader_or_declines(reqs) -> None:
    data = proto_framed(reqs)
    python = otlp_proto.read_framed(data, "x", Problems()).table()
    assert table_rows(otlp_native.read_proto_framed(data, "x")) == table_rows(python)
    # what it does not read: an array value (JSON text in the Python reader), a truncated frame
    for bad in (proto_framed([reqs[0], exotic_request()]), data[:-3]):
        with pytest.raises(otlp_arrow.NeedsSlowPath, match=r"record 2|runs past the end"):
            otlp_native.read_proto_framed(bad, "x")


def test_proto_framing(tmp_path: Path, reqs) -> None:
    f = tmp_path / "spans.pb"
    f.write_bytes(proto_framed(reqs))
    assert table_rows(read_file(f, Problems())) == expected_rows(reqs, str(f))
    # Detection by content too (no telling suffix).
    g = tmp_path / "spans.bin"
    g.write_bytes(f.read_bytes())
    assert formats.detect(g.read_bytes(), str(g)) == formats.OTLP_PROTO
    assert table_rows(read_file(g, Problems())) == expected_rows(reqs, str(g))


def test_zstd_whole_stream_and_collector_framed_records(tmp_path: Path, reqs) -> None:
    data = b"\n".join(collector_json_line(r) for r in reqs) + b"\n"
    cctx = zstandard.ZstdCompressor()
    whole = tmp_path / "spans.jsonl.zst"
    whole.write_bytes(cctx.compress(data))
    assert table_rows(read_file(whole, Problems())) == expected_rows(reqs, str(whole))
    framed = tmp_path / "framed.json.zst"
    framed.write_bytes(
        b"".join(struct.pack(">I", len(c)) + c for c in (cctx.compress(collector_json_line(r)) for r in reqs))
    )
    assert table_rows(read_file(framed, Problems())) == expected_rows(reqs, str(framed))
    framed_pb = tmp_path / "framed.pb.zst"
    framed_pb.write_bytes(
        b"".join(struct.pack(">I", len(c)) + c for c in (cctx.compress(r.SerializeToString()) for r in reqs))
    )
    assert table_rows(read_file(framed_pb, Problems())) == expected_rows(reqs, str(framed_pb))


def test_rotated_folder_through_ingest(tmp_path: Path) -> None:
    reqs = make_requests(6, 2)
    spans_dir = tmp_path / "run" / "spans"
    spans_dir.mkdir(parents=True)
    # The file exporter's rotation renames old files `name-<timestamp>.json` and reopens `name.json`.
    names = ["spans-2026-11-28T03-00-00.000.jsonl", "spans-2026-11-28T03-10-00.000.jsonl.zst", "spans.jsonl"]
    cctx = zstandard.ZstdCompressor()
    expected = []
    for i, name in enumerate(names):
        part = reqs[2 * i : 2 * i + 2]
        data = b"\n".join(collector_json_line(r) for r in part) + b"\n"
        (spans_dir / name).write_bytes(cctx.compress(data) if name.endswith(".zst") else data)
        expected.append((name, part))
    result = ingest([spans_dir], tmp_path / "run", console=None)
    got = table_rows(pa.parquet.read_table(tmp_path / "run" / "spans.parquet"))
    want = []
    for name, part in sorted(expected):
        want.extend(expected_rows(part, str(spans_dir / name)))
    assert got == want
    report = json.loads((tmp_path / "run" / "ingest_report.json").read_text())
    assert report["files"] == 3 and report["spans"] == len(want) == result.spans
    assert report["skipped"] == {} and report["errors"] == []
    fast = "native" if otlp_native.AVAILABLE else "pyarrow.json"
    assert report["readers"] == {fast: 3} and report["fast_path_declined"] == []


def test_sdk_exporter_serialisation(tmp_path: Path) -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=SdkResource.create({"service.name": "kafka.notifier", "hopscope.stack": "kafka"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("hopscope.test")
    with tracer.start_as_current_span("send", kind=trace.SpanKind.PRODUCER) as producer:
        producer.set_attribute("hopscope.event_id", "e-1")
        producer.set_attribute("hopscope.hop", "produce")
        producer_ctx = producer.get_span_context()
    with tracer.start_as_current_span(
        "process",
        context=trace.set_span_in_context(trace.NonRecordingSpan(producer_ctx)),
        kind=trace.SpanKind.CONSUMER,
        links=[trace.Link(producer_ctx)],
        attributes={"hopscope.event_id": "e-1", "hopscope.derived": True, "messaging.batch.message_count": 3},
    ) as consumer:
        consumer.set_status(trace.Status(trace.StatusCode.ERROR))
    spans = exporter.get_finished_spans()
    req = encode_spans(spans)
    f = tmp_path / "sdk.jsonl"
    f.write_bytes(collector_json_line(req))
    got = {r["name"]: r for r in read_file(f, Problems()).to_pylist()}
    for sp in spans:
        row = got[sp.name]
        assert row["trace_id"] == format(sp.context.trace_id, "032x")
        assert row["span_id"] == format(sp.context.span_id, "016x")
        assert row["start_ns"] == sp.start_time and row["end_ns"] == sp.end_time
        assert row["service"] == "kafka.notifier" and row["stack"] == "kafka"
        assert row["event_id"] == "e-1"
    assert (
        got["send"]["kind"] == "PRODUCER" and got["send"]["hop"] == "produce" and not got["send"]["derived"]
    )
    assert (
        got["process"]["kind"] == "CONSUMER"
        and got["process"]["derived"]
        and got["process"]["status"] == "ERROR"
    )
    assert got["process"]["parent_span_id"] == got["send"]["span_id"]
    assert got["process"]["links"] == [
        {"trace_id": got["send"]["trace_id"], "span_id": got["send"]["span_id"]}
    ]
    assert dict(got["process"]["attributes"])["messaging.batch.message_count"] == "3"
    pb = tmp_path / "sdk.pb"
    pb.write_bytes(proto_framed([req]))
    assert table_rows(read_file(pb, Problems())) == table_rows(
        read_file(f, Problems()).set_column(
            SPAN_SCHEMA.get_field_index("source"), "source", pa.array([str(pb)] * len(spans))
        )
    )


@pytest.mark.parametrize("fast_read", FAST_READERS)
def test_doubles_are_spelled_alike_on_every_path(tmp_path: Path, fast_read) -> None:
    # Python's repr and Arrow's cast disagree on these (1e-05 vs 0.00001, 1000000000000000.0 vs 1e+15).
    req = make_requests(1, 1)[0]
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    values = [1e-5, 1e15, 1e16, -0.0, 0.0, 0.1 + 0.2, 3.0]
    del sp.attributes[:]
    sp.attributes.extend(_kv(f"d{i}", AnyValue(double_value=v)) for i, v in enumerate(values))
    data = collector_json_line(req)
    fast = table_rows(fast_read(data, "x"))
    slow = table_rows(formats._json_lines_slow(data, "x", Problems()).table())
    proto = table_rows(read_bytes(proto_framed([req]), "x", Problems(), fmt="otlp-proto"))
    assert fast == slow == proto
    assert [float(v) for _, v in sorted(fast[0]["attributes"])] == values
    # protojson spells infinities "Infinity": the fast path declines, the reader still agrees with proto.
    sp.attributes.extend([_kv("inf", AnyValue(double_value=float("inf")))])
    data = collector_json_line(req)
    with pytest.raises(otlp_arrow.NeedsSlowPath):
        fast_read(data, "x")
    via_json = table_rows(read_bytes(data, "x", Problems()))
    assert via_json == table_rows(read_bytes(proto_framed([req]), "x", Problems(), fmt="otlp-proto"))
    assert dict(via_json[0]["attributes"])["inf"] == "inf"


_scalar = st.one_of(
    st.text(max_size=12).map(lambda s: AnyValue(string_value=s)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: AnyValue(double_value=x)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.tuples(st.text(min_size=1, max_size=8), _scalar), max_size=6),
    start=st.integers(min_value=0, max_value=2**62),
    length=st.integers(min_value=0, max_value=2**40),
    kind=st.integers(min_value=0, max_value=5),
)
@pytest.mark.parametrize("fast_read", FAST_READERS)
def test_fast_and_slow_paths_agree_on_random_spans(fast_read, values, start, length, kind) -> None:
    req = make_requests(1, 1)[0]
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    sp.start_time_unix_nano, sp.end_time_unix_nano, sp.kind = start, start + length, kind
    del sp.attributes[:]
    sp.attributes.extend(_kv(k, v) for k, v in values)
    data = collector_json_line(req)
    fast = table_rows(fast_read(data, "x"))
    slow = table_rows(formats._json_lines_slow(data, "x", Problems()).table())
    proto = table_rows(read_bytes(proto_framed([req]), "x", Problems(), fmt="otlp-proto"))
    py_proto = table_rows(otlp_proto.read_framed(proto_framed([req]), "x", Problems()).table())
    assert fast == slow == proto == py_proto
    if len({k for k, _ in values}) == len(values):  # expected_rows builds dicts
        assert fast == expected_rows([req], "x")
    else:  # a repeated key is kept as often as it was written
        assert len(fast[0]["attributes"]) == len(values)  # keys of <= 8 chars are never lifted
