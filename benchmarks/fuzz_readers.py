"""Fuzzes every span reader in-process: seeded generated files (valid spans mixed with type
confusion in every field, garbage lines, truncations, byte flips, deep nesting, huge values,
BOMs, torn compression), each read as `hopscope ingest` reads a file, and checks the reader
contract on each: no exception escapes, every valid span of an intact record is kept, and
where the case knows how many bad records it holds, exactly that many problems are counted.

    .venv/bin/python benchmarks/fuzz_readers.py                 # 100,000 cases, seed 1, both cores
    .venv/bin/python benchmarks/fuzz_readers.py --cases 20000 --seed 7 --workers 1

Prints: cases, clean errors (files failed with a one-line error), problems counted, spans
kept, and the failures, which must all be 0: crashes (an exception out of the reader, or a
worker killed), valid spans lost, problem counts off, reader errors caught only by the
catch-all (`unexpected_error`). The first failing cases are written to --out for replay.

tests/unit/test_fuzz_readers.py drives the same generators with hypothesis.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import zstandard

from hopscope.collector.errors import Limits
from hopscope.collector.ingest import _read_one
from hopscope.collector.readers import formats, otlp_native

#: Smaller than the defaults, so that "over the limit" cases stay small and fast.
LIMITS = Limits(
    max_depth=64,
    max_record_bytes=256 << 10,
    max_attribute_bytes=4 << 10,
    max_name_bytes=1 << 10,
    max_decompressed_bytes=8 << 20,
)

Key = tuple[str, str]  # (trace_id, span_id) as the table spells them


@dataclass
class Case:
    """One generated file and what reading it must give."""

    kind: str
    suffix: str
    data: bytes
    #: spans that must be in the table (trace_id, span_id)
    must_keep: set[Key] = field(default_factory=set)
    #: problems that must be counted exactly (None: unknown, e.g. random byte flips)
    problems: int | None = None
    #: whether the table may hold spans beyond must_keep (mutations can make new valid ids)
    extra_ok: bool = False
    fmt: str | None = None
    #: problem kinds that must be among those counted
    kinds: set[str] = field(default_factory=set)
    #: the generator that made it
    maker: str = ""


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits) | 1:0{bits // 4}x}"


# ---------------------------------------------------------------- OTLP JSON (protojson)


def otlp_span(rng: random.Random, i: int) -> tuple[dict, Key]:
    trace, span = _hex(rng, 128), _hex(rng, 64)
    start = rng.randrange(1, 1 << 62)
    s = {
        "traceId": trace.upper() if rng.random() < 0.1 else trace,
        "spanId": span,
        "name": f"ok-{i}",
        "kind": rng.randrange(6),
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + rng.randrange(10**9)),
        "attributes": [
            {"key": "hopscope.event_id", "value": {"stringValue": f"ev-{i}"}},
            {"key": "hopscope.hop", "value": {"stringValue": rng.choice(["a", "b", "c"])}},
            {"key": "n", "value": {"intValue": str(rng.randrange(-(10**9), 10**9))}},
        ],
        "status": {"code": rng.randrange(3)} if rng.random() < 0.5 else {},
    }
    if rng.random() < 0.3:
        s["parentSpanId"] = _hex(rng, 64)
    if rng.random() < 0.2:
        s["links"] = [{"traceId": _hex(rng, 128), "spanId": _hex(rng, 64)}]
    if rng.random() < 0.2:
        s["attributes"].append({"key": "d", "value": {"doubleValue": rng.random()}})
    if rng.random() < 0.05:  # valid, but not as the Python reader writes it back: the fast paths decline
        s["attributes"].append({"key": "z", "value": {"intValue": rng.choice(["007", "-0", "-00", 7, "0"])}})
    if rng.random() < 0.1:
        s["attributes"].append(
            {"key": "arr", "value": {"arrayValue": {"values": [{"stringValue": "x"}, {"intValue": "3"}]}}}
        )
    return s, (trace, span)


def _nested_any(levels: int) -> dict:
    v: dict = {"stringValue": "leaf"}
    for _ in range(levels):
        v = {"arrayValue": {"values": [v]}}
    return v


#: (field, bad values): each value in place of the field makes the span one counted problem.
OTLP_BAD: list[tuple[str, list]] = [
    ("traceId", [5, 1.5, True, [], {}, ["a"], "", "xyz", "0" * 32, "abc" * 11, "g" * 32, "²" * 32]),
    ("spanId", [7, False, [], {"a": 1}, "", "12345", "0" * 16, "zz" * 8]),
    ("parentSpanId", [5, True, [1], {"x": 1}, "12345", "nothex!!nothex!!"]),
    (
        "startTimeUnixNano",
        [[], {}, True, "yesterday", "-5", "1e9", "1.5", 1.5, "²", "١٢", "9" * 30, str(1 << 63), -1],
    ),
    ("endTimeUnixNano", [[], {}, False, "x", "1_000", "٣", str(1 << 64), "0"]),
    ("kind", ["²", "٣", "SPAN_KIND_SIDEWAYS", 99, -1, True, [1], {}, 2.5, "6", ""]),
    ("status", [5, "ok", [], {"code": "²"}, {"code": 7}, {"code": []}, {"code": True}]),
    (
        "attributes",
        [
            5,
            "x",
            {},
            {"key": "a"},
            [5],
            [{"key": 5, "value": {"stringValue": "x"}}],
            [{"value": {"stringValue": "x"}}],
            [{"key": "a", "value": 5}],
            [{"key": "a", "value": "x"}],
            [{"key": "a", "value": {"stringValue": 5}}],
            [{"key": "a", "value": {"intValue": "x"}}],
            [{"key": "a", "value": {"intValue": "²"}}],
            [{"key": "a", "value": {"intValue": str(1 << 63)}}],
            [{"key": "a", "value": {"intValue": 1.5}}],
            [{"key": "a", "value": {"boolValue": "true"}}],
            [{"key": "a", "value": {"doubleValue": "abc"}}],
            [{"key": "a", "value": {"doubleValue": [1]}}],
            [{"key": "a", "value": {"bytesValue": 5}}],
            [{"key": "a", "value": {"arrayValue": [1]}}],
            [{"key": "a", "value": {"arrayValue": {"values": 5}}}],
            [{"key": "a", "value": {"arrayValue": {"values": [5]}}}],
            [{"key": "a", "value": {"kvlistValue": {"values": [{"key": 1}]}}}],
            [{"key": "a", "value": {"kvlistValue": 5}}],
            [{"key": "a", "value": _nested_any(70)}],
        ],
    ),
    (
        "links",
        [5, "x", {}, [5], ["x"], [{"traceId": 5, "spanId": "a" * 16}], [{"traceId": "a" * 32, "spanId": []}]],
    ),
    ("name", [5, 1.5, True, [], {}, ["a"]]),
]
#: a whole span that is not one (one problem each)
OTLP_NOT_SPAN = [5, "span", [], ["a"], True, None]


def bad_otlp_span(rng: random.Random, i: int) -> dict | object:
    if rng.random() < 0.08:
        return rng.choice(OTLP_NOT_SPAN)
    span, _ = otlp_span(rng, i)
    f, values = rng.choice(OTLP_BAD)
    span[f] = rng.choice(values)
    if f == "endTimeUnixNano" and span[f] == "0":
        span["startTimeUnixNano"] = "5"  # ends before it starts
    return span


def _resource_spans(spans: list, service: object = "svc") -> dict:
    return {
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "fuzz"}, "spans": spans}],
    }


def otlp_mixed(rng: random.Random, n: int) -> tuple[list[dict], set[Key], int]:
    """ResourceSpans holding n slots, each a valid or a bad span; (resourceSpans, kept, problems)."""
    keep: set[Key] = set()
    bad = 0
    groups: list[dict] = []
    spans: list = []
    for i in range(n):
        if rng.random() < 0.35:
            spans.append(bad_otlp_span(rng, i))
            bad += 1
        else:
            s, key = otlp_span(rng, i)
            spans.append(s)
            keep.add(key)
        if rng.random() < 0.3:
            groups.append(_resource_spans(spans))
            spans = []
    groups.append(_resource_spans(spans))
    # containers of the wrong type: one problem each, holding no valid span
    for _ in range(rng.choice([0, 0, 0, 1])):
        groups.insert(
            rng.randrange(len(groups) + 1),
            rng.choice(
                [
                    5,
                    "rs",
                    {"resource": 5, "scopeSpans": []},
                    {"resource": {"attributes": 5}, "scopeSpans": []},
                    {"scopeSpans": 5},
                    {"scopeSpans": [5]},
                    {"scopeSpans": [{"spans": 5}]},
                    {"scopeSpans": [{"spans": {"a": 1}}]},
                    _resource_spans([], service=5),
                ]
            ),
        )
        bad += 1
    return groups, keep, bad


#: whole lines of a JSON-lines file that are not records: one problem each (is it JSON?)
GARBAGE_LINES: list[tuple[bytes, bool]] = [
    (b"not json", False),
    (b"{", False),
    (b'{"resourceSpans": [', False),
    (b"\xff\xfe\x00garbage", False),
    (b"[1, 2]", True),
    (b"[]" + b" ", True),  # an empty list holds nothing: no problem (see garbage_line)
    (b"{}", True),
    (b'{"hello": 1}', True),
    (b'{"resourceSpans": 5}', True),
    (b'{"resourceSpans": {"a": 1}}', True),
    (b'{"result": 5}', True),
    (b'{"trace": "x"}', True),
    (b'{"data": 5}', True),
    (b"5", True),
    (b'"resourceSpans"', True),
    (b"null", True),
    (b'{"error": {"message": "boom"}}', True),
]


def garbage_line(rng: random.Random) -> tuple[bytes, int, bool]:
    """(line, problems it counts, whether it is JSON)."""
    line, is_json = rng.choice(GARBAGE_LINES)
    return line, (0 if line.strip() == b"[]" else 1), is_json


def otlp_jsonl_case(rng: random.Random) -> Case:
    lines: list[bytes] = []
    keep: set[Key] = set()
    bad = 0
    n_lines = rng.randrange(1, 6)
    for _ in range(n_lines):
        if rng.random() < 0.25:
            line, n, _ = garbage_line(rng)
            lines.append(line)
            bad += n
            continue
        groups, k, b = otlp_mixed(rng, rng.randrange(1, 5))
        lines.append(orjson.dumps({"resourceSpans": groups}))
        keep |= k
        bad += b
    # at least one real record, so that the file is JSON lines whatever the garbage is
    groups, k, b = otlp_mixed(rng, rng.randrange(1, 4))
    lines.insert(rng.randrange(len(lines) + 1), orjson.dumps({"resourceSpans": groups}))
    keep |= k
    bad += b
    if rng.random() < 0.15:
        lines.insert(rng.randrange(len(lines) + 1), b"")  # blank lines are nothing
    sep = b"\r\n" if rng.random() < 0.1 else b"\n"
    data = sep.join(lines) + (sep if rng.random() < 0.7 else b"")
    if rng.random() < 0.1:
        data = b"\xef\xbb\xbf" + data  # a BOM decides nothing
    return Case("otlp-jsonl mixed", ".jsonl", data, keep, bad)


def otlp_document_case(rng: random.Random) -> Case:
    """One OTLP TracesData, pretty-printed, or inside the api_v3 / Tempo envelopes."""
    groups, keep, bad = otlp_mixed(rng, rng.randrange(1, 8))
    wrap = rng.choice(["otlp", "v3", "tempo2", "tempo1"])
    if wrap == "otlp":
        doc: object = {"resourceSpans": groups}
    elif wrap == "v3":
        doc = {"result": {"resourceSpans": groups}}
    elif wrap == "tempo2":
        doc = {"trace": {"resourceSpans": groups}}
    else:
        doc = {"batches": groups}
    data = json.dumps(doc, indent=rng.choice([None, 1, 2])).encode()
    return Case(f"otlp document ({wrap})", ".json", data, keep, bad)


# ---------------------------------------------------------------- Jaeger legacy JSON


def jaeger_span(rng: random.Random, i: int, trace: str) -> tuple[dict, Key]:
    span = _hex(rng, 64).lstrip("0") or "1"
    s = {
        "traceID": trace.lstrip("0") or "1",
        "spanID": span,
        "operationName": f"ok-{i}",
        "startTime": rng.randrange(1, 1 << 50),
        "duration": rng.randrange(10**6),
        "processID": "p1",
        "tags": [
            {"key": "span.kind", "type": "string", "value": rng.choice(["client", "server", "internal"])},
            {"key": "n", "type": "int64", "value": rng.randrange(10**6)},
            {"key": "ok", "type": "bool", "value": rng.random() < 0.5},
        ],
        "references": [],
    }
    return s, (trace, span.rjust(16, "0"))


JAEGER_BAD: list[tuple[str, list]] = [
    ("traceID", [5, True, [], {}, 1.5, None, ""]),
    ("spanID", [5, False, [1], {"a": 1}, None, ""]),
    ("startTime", ["5", -1, 1.5, True, [], {}, None, 1 << 62]),
    ("duration", ["5", -3, 2.5, False, [], None, 1 << 62]),
    ("references", [5, "x", {"a": 1}, [5], [{"refType": "SIDEWAYS", "traceID": "1", "spanID": "2"}]]),
    (
        "tags",
        [
            5,
            "x",
            {},
            [5],
            [{"key": 5}],
            [{"value": 1}],
            [{"key": "a", "value": [1]}],
            [{"key": "a", "value": {}}],
        ],
    ),
    ("processID", [[1], 5, {"p": 1}, "nope", None]),
    ("process", [5, "p1", [1]]),
    ("operationName", [5, [], {}, True]),
]


def jaeger_case(rng: random.Random) -> Case:
    keep: set[Key] = set()
    bad = 0
    traces: list = []
    for _ in range(rng.randrange(1, 4)):
        trace = _hex(rng, 128)
        spans: list = []
        for i in range(rng.randrange(1, 6)):
            s, key = jaeger_span(rng, i, trace)
            if rng.random() < 0.35:
                if rng.random() < 0.1:
                    spans.append(rng.choice([5, "s", [], None]))
                elif rng.random() < 0.1:
                    s["processID"] = "p2"  # a process whose serviceName is not text
                    spans.append(s)
                else:
                    f, values = rng.choice(JAEGER_BAD)
                    s[f] = rng.choice(values)
                    if f == "process" or (f == "processID" and s[f] is None):
                        s.pop("processID", None)
                    spans.append(s)
                bad += 1
            else:
                spans.append(s)
                keep.add(key)
        processes = {"p1": {"serviceName": "svc", "tags": []}, "p2": {"serviceName": rng.choice([5, [], {}])}}
        traces.append({"traceID": trace, "spans": spans, "processes": processes})
    if rng.random() < 0.2:
        traces.insert(rng.randrange(len(traces) + 1), rng.choice([5, {"spans": 5}, {"traceID": "1"}]))
        bad += 1
    data = json.dumps({"data": traces}, indent=rng.choice([None, 2])).encode()
    return Case("jaeger", ".json", data, keep, bad)


# ---------------------------------------------------------------- Zipkin v2


def zipkin_span(rng: random.Random, i: int) -> tuple[dict, Key]:
    trace = _hex(rng, 128 if rng.random() < 0.7 else 64)
    span = _hex(rng, 64)
    s = {
        "traceId": trace,
        "id": span,
        "name": f"ok-{i}",
        "timestamp": rng.randrange(1, 1 << 50),
        "duration": rng.randrange(1, 10**6),
        "localEndpoint": {"serviceName": "svc", "ipv4": "10.0.0.1"},
        "tags": {"http.method": "GET", "n": "5"},
    }
    if rng.random() < 0.3:
        s["kind"] = rng.choice(["CLIENT", "SERVER", "PRODUCER", "CONSUMER"])
    if rng.random() < 0.2:
        s["remoteEndpoint"] = {"serviceName": "peer"}
    return s, (trace.rjust(32, "0"), span)


ZIPKIN_BAD: list[tuple[str, list]] = [
    ("traceId", [5, [], {}, True, "xyz", "", None, "0", "a" * 33]),
    ("id", [5, [], "zz", "", None, "a" * 17]),
    ("parentId", [5, "xyz", [1], {"a": 1}, "g1"]),
    ("timestamp", [None, "5", -1, True, 1.5, [], 1 << 62]),
    ("duration", ["5", -1, True, 1.5, [], 1 << 62]),
    ("kind", ["SIDEWAYS", [1], 5, {}, "client"]),
    ("tags", [[1], 5, "x", {"a": [1]}, {"a": {"b": 1}}]),
    ("localEndpoint", [5, [], "svc", {"serviceName": 5}, {"serviceName": []}, {"ipv4": 5}]),
    ("remoteEndpoint", [5, [1], {"serviceName": {}}]),
    ("name", [5, [], {}, 1.5]),
    ("shared", ["yes", 1, []]),
]


def zipkin_case(rng: random.Random) -> Case:
    keep: set[Key] = set()
    bad = 0
    spans: list = []
    seen: set[str] = set()
    for i in range(rng.randrange(1, 10)):
        s, key = zipkin_span(rng, i)
        while key[1] in seen:  # one id twice is Zipkin's shared span (split on purpose): not here
            key = (key[0], f"{(int(key[1], 16) + 2) % (1 << 64) | 1:016x}")
            s["id"] = key[1]
        seen.add(key[1])
        if rng.random() < 0.35:
            if rng.random() < 0.1:
                spans.append(rng.choice([5, "s", [], None, True]))
            else:
                f, values = rng.choice(ZIPKIN_BAD)
                v = rng.choice(values)
                if v is None:
                    s.pop(f, None)
                else:
                    s[f] = v
                spans.append(s)
            bad += 1
        else:
            spans.append(s)
            keep.add(key)
    data = json.dumps(spans, indent=rng.choice([None, 2])).encode()
    return Case("zipkin", ".json", data, keep, bad)


# ---------------------------------------------------------------- OTLP protobuf framing


def _proto_request(spans: list, service: str = "svc") -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    ss.spans.extend(spans)
    return req.SerializeToString()


def proto_span(rng: random.Random, i: int, bad: bool = False):
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    trace, span = _hex(rng, 128), _hex(rng, 64)
    start = rng.randrange(1, 1 << 62)
    s = Span(
        trace_id=bytes.fromhex(trace),
        span_id=bytes.fromhex(span),
        name=f"ok-{i}",
        kind=rng.randrange(6),
        start_time_unix_nano=start,
        end_time_unix_nano=start + rng.randrange(10**9),
    )
    a = s.attributes.add()
    a.key, a.value.string_value = "hopscope.hop", "h"
    if bad:
        what = rng.randrange(8)
        if what == 0:
            s.trace_id = bytes(16)
        elif what == 1:
            s.span_id = b"\x01\x02"
        elif what == 2:
            s.trace_id = b""
        elif what == 3:
            s.end_time_unix_nano = s.start_time_unix_nano - 1
        elif what == 4:
            s.kind = 99
        elif what == 5:
            s.start_time_unix_nano = 1 << 63  # uint64 past int64
            s.end_time_unix_nano = (1 << 64) - 1
        elif what == 6:
            s.parent_span_id = b"\x01"
        else:
            s.status.code = 9
    return s, (trace, span)


def proto_frames(rng: random.Random) -> tuple[list[bytes], list[set[Key]], int]:
    frames, keeps, bad = [], [], 0
    for _ in range(rng.randrange(1, 5)):
        spans, keep = [], set()
        for i in range(rng.randrange(1, 4)):
            is_bad = rng.random() < 0.3
            s, key = proto_span(rng, i, is_bad)
            spans.append(s)
            if is_bad:
                bad += 1
            else:
                keep.add(key)
        frames.append(_proto_request(spans))
        keeps.append(keep)
    return frames, keeps, bad


def _framed(frames: list[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(f)) + f for f in frames)


def proto_case(rng: random.Random) -> Case:
    frames, keeps, bad = proto_frames(rng)
    keep = set().union(*keeps)
    return Case("otlp-proto", ".pb", _framed(frames), keep, bad)


def proto_corrupt_frame_case(rng: random.Random) -> Case:
    """One frame's length prefix made to run past the end: the reader resyncs at the next frame."""
    frames, keeps, _ = proto_frames(rng)
    last, last_key = proto_span(rng, 9)
    frames += [_proto_request([last])]
    keeps += [{last_key}]
    k = rng.randrange(len(frames) - 1)
    out = bytearray()
    for j, f in enumerate(frames):
        head = struct.pack(">I", len(f))
        if j == k:
            head = struct.pack(">I", rng.choice([1 << 31, 0xFFFFFFFF, len(out) + 10**7]))
        out += head + f
    keep = set().union(*(kk for j, kk in enumerate(keeps) if j != k))
    return Case(
        "otlp-proto bad length prefix", ".pb", bytes(out), keep, None, extra_ok=True, kinds={"bad_frame"}
    )


# ---------------------------------------------------------------- shapes: compression, limits, damage


def zstd_stream(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=1).compress(data)


def zstd_framed(records: list[bytes]) -> bytes:
    cctx = zstandard.ZstdCompressor(level=1)
    return b"".join(struct.pack(">I", len(c)) + c for c in (cctx.compress(r) for r in records))


def compressed_case(rng: random.Random) -> Case:
    """A mixed JSON-lines file or proto framing, as one zstd stream or as the collector's zstd records."""
    if rng.random() < 0.5:
        base = otlp_jsonl_case(rng)
        records = [line for line in base.data.lstrip(b"\xef\xbb\xbf").split(b"\n") if line.strip()]
    else:
        frames, keeps, bad = proto_frames(rng)
        base = Case("otlp-proto", ".pb", _framed(frames), set().union(*keeps), bad)
        records = frames
    if rng.random() < 0.5:
        return Case(
            f"{base.kind} zstd", base.suffix + ".zst", zstd_stream(base.data), base.must_keep, base.problems
        )
    return Case(
        f"{base.kind} zstd records", base.suffix + ".zst", zstd_framed(records), base.must_keep, base.problems
    )


def torn_case(rng: random.Random) -> Case:
    """Damage the format allows recovery from: a JSON-lines file cut off, a zstd stream cut off, the
    collector's zstd records with the last torn, proto framing cut off."""
    what = rng.randrange(4)
    lines, keeps = [], []
    for _ in range(rng.randrange(2, 6)):
        spans = [otlp_span(rng, i) for i in range(rng.randrange(1, 4))]  # a line of valid spans only
        groups = [_resource_spans([s for s, _ in spans])]
        lines.append(orjson.dumps({"resourceSpans": groups}))
        keeps.append({k for _, k in spans})
    if what == 0:  # JSON lines cut inside the last line
        data = b"\n".join(lines)
        cut = len(data) - rng.randrange(1, len(lines[-1]))
        return Case("jsonl cut off", ".jsonl", data[:cut], set().union(*keeps[:-1]), 1, kinds={"bad_json"})
    if what == 1:  # one zstd stream cut off: what decompressed is kept, the truncation counted
        z = zstd_stream(b"\n".join(lines) + b"\n")
        cut = rng.randrange(8, len(z) - 1)
        return Case(
            "zstd stream cut off",
            ".jsonl.zst",
            z[:cut],
            set(),
            1,
            extra_ok=True,
            kinds={"truncated_compression"},
        )
    if what == 2:  # the collector's zstd records, the last one torn
        z = zstd_framed(lines)
        last = len(zstd_framed(lines[-1:]))
        cut = len(z) - rng.randrange(1, last - 4)
        return Case(
            "zstd records, last torn", ".jsonl.zst", z[:cut], set().union(*keeps[:-1]), 1,
            kinds={"truncated_compression"},
        )  # fmt: skip
    frames, fkeeps, _ = proto_frames(rng)
    data = _framed(frames)
    cut = len(data) - rng.randrange(1, len(frames[-1]) + 4)
    return Case(
        "proto cut off",
        ".pb",
        data[:cut],
        set().union(*fkeeps[:-1]),
        None,
        extra_ok=True,
        kinds={"bad_frame"},
    )


def limits_case(rng: random.Random) -> Case:
    """Deep nesting, huge values and lines over LIMITS, among valid lines."""
    lines, keep, bad = [], set(), 0
    for _ in range(rng.randrange(1, 4)):
        s, key = otlp_span(rng, 0)
        lines.append(orjson.dumps({"resourceSpans": [_resource_spans([s])]}))
        keep.add(key)
    s, key = otlp_span(rng, 1)
    what = rng.randrange(6)
    kinds: set[str] = set()
    if what == 0:  # an unknown field nested deeper than orjson parses: the line is counted
        line = orjson.dumps({"resourceSpans": [_resource_spans([s | {"x": None}])]})
        line = line.replace(b'"x":null', b'"x":' + b"[" * 2000 + b"]" * 2000)
        bad, kinds = 1, {"too_deep"}
    elif what == 1:  # an unknown field nested 200 deep: the native reader declines, Python keeps the span
        line = orjson.dumps({"resourceSpans": [_resource_spans([s | {"x": None}])]})
        line = line.replace(b'"x":null', b'"x":' + b'{"a":' * 200 + b"1" + b"}" * 200)
        keep.add(key)
    elif what == 2:  # an attribute value nested past max_depth: the span is counted
        s["attributes"].append({"key": "deep", "value": _nested_any(LIMITS.max_depth + 5)})
        line = orjson.dumps({"resourceSpans": [_resource_spans([s])]})
        bad, kinds = 1, {"too_deep"}
    elif what == 3:  # a huge attribute value and name: kept, cut to the limits
        s["attributes"].append({"key": "big", "value": {"stringValue": "é" * LIMITS.max_attribute_bytes}})
        s["name"] = "n" * (LIMITS.max_name_bytes + 10)
        line = orjson.dumps({"resourceSpans": [_resource_spans([s])]})
        keep.add(key)
    elif what == 4:  # a line over max_record_bytes: counted, not parsed
        s["attributes"].append({"key": "big", "value": {"stringValue": "x" * LIMITS.max_record_bytes}})
        line = orjson.dumps({"resourceSpans": [_resource_spans([s])]})
        bad, kinds = 1, {"too_large"}
    else:  # a line of 5,000 levels of a list, the first line (detection must not decide on it)
        line = b"[" * 5000 + b"]" * 5000
        bad, kinds = 1, {"too_deep"}
    lines.insert(rng.randrange(len(lines) + 1), line)
    return Case("limits", ".jsonl", b"\n".join(lines), keep, bad, kinds=kinds)


def bomb_case(rng: random.Random) -> Case:
    """A zstd stream that expands past max_decompressed_bytes: the bound holds, the excess is counted."""
    valid = otlp_jsonl_case(rng)
    pad = b"\n" * (LIMITS.max_decompressed_bytes + rng.randrange(1, 1 << 20))  # blank lines
    data = zstd_stream(valid.data.lstrip(b"\xef\xbb\xbf") + b"\n" + pad)
    return Case(
        "zstd past the bound", ".jsonl.zst", data, valid.must_keep, valid.problems + 1, kinds={"too_large"}
    )


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Random byte damage: flips, overwrites, deletions, insertions, truncation."""
    b = bytearray(data)
    noise = b'{}[]",:\\0123456789abcdefxyz \n\t\x00\xff\xc3\xef\xbb\xbf'
    for _ in range(rng.randrange(1, 5)):
        if not b:
            break
        at = rng.randrange(len(b))
        what = rng.randrange(6)
        if what == 0:
            b[at] ^= 1 << rng.randrange(8)
        elif what == 1:
            b[at] = rng.choice(noise)
        elif what == 2:
            del b[at : at + rng.randrange(1, 20)]
        elif what == 3:
            b[at:at] = bytes(rng.choice(noise) for _ in range(rng.randrange(1, 10)))
        elif what == 4:
            b[at:at] = rng.choice([b"[", b"{"]) * rng.randrange(1, 3000)
        else:
            del b[at:]
    return bytes(b)


def mutated_case(rng: random.Random) -> Case:
    """Any generated file with random byte damage: no crash; nothing known about what is kept."""
    base = rng.choice(VALIDISH)(rng)
    return Case(f"{base.kind} mutated", base.suffix, mutate(rng, base.data), set(), None, extra_ok=True)


def forced_format_case(rng: random.Random) -> Case:
    """A file read with --format of another format: nothing crashes, nothing invented is required."""
    base = rng.choice(VALIDISH)(rng)
    fmt = rng.choice(["otlp-jsonl", "otlp-json", "otlp-proto", "jaeger-v3", "jaeger", "tempo", "zipkin"])
    return Case(f"{base.kind} as {fmt}", base.suffix, base.data, set(), None, extra_ok=True, fmt=fmt)


VALIDISH: list[Callable[[random.Random], Case]] = [
    otlp_jsonl_case,
    otlp_document_case,
    jaeger_case,
    zipkin_case,
    proto_case,
]

#: case makers and their weights
MAKERS: list[tuple[Callable[[random.Random], Case], int]] = [
    (otlp_jsonl_case, 20),
    (otlp_document_case, 10),
    (jaeger_case, 10),
    (zipkin_case, 10),
    (proto_case, 8),
    (proto_corrupt_frame_case, 4),
    (compressed_case, 6),
    (torn_case, 6),
    (limits_case, 4),
    (bomb_case, 1),
    (mutated_case, 18),
    (forced_format_case, 3),
]


def make_case(rng: random.Random) -> Case:
    makers, weights = zip(*MAKERS, strict=True)
    maker = rng.choices(makers, weights)[0]
    case = maker(rng)
    case.maker = maker.__name__.removesuffix("_case")
    return case


# ---------------------------------------------------------------- running and checking


@dataclass
class Outcome:
    spans: int = 0
    problems: int = 0
    failed_file: bool = False
    #: what broke the contract (empty when the case passed)
    violations: list[str] = field(default_factory=list)


def _read(path: Path, case: Case, limits: Limits, fast: bool = True, native: bool = True):
    token = formats.FAST_READERS.set(fast)
    was = otlp_native.AVAILABLE
    otlp_native.AVAILABLE = was and native
    try:
        return _read_one(path, False, case.fmt, False, limits)
    finally:
        otlp_native.AVAILABLE = was
        formats.FAST_READERS.reset(token)


def _same(a, b) -> str | None:
    """Why two reads of one file differ (table or problem counts), or None."""
    (ta, pa_), (tb, pb) = a, b
    rows_a = [] if ta is None else ta.to_pylist()
    rows_b = [] if tb is None else tb.to_pylist()
    if rows_a != rows_b:
        diff = next((i for i, (x, y) in enumerate(zip(rows_a, rows_b, strict=False)) if x != y), None)
        return f"{len(rows_a)} vs {len(rows_b)} rows, first difference at row {diff}"
    if pa_.skipped != pb.skipped or pa_.adjusted != pb.adjusted:
        return f"problems {dict(pa_.skipped)} {dict(pa_.adjusted)} vs {dict(pb.skipped)} {dict(pb.adjusted)}"
    return None


def check(case: Case, path: Path, limits: Limits = LIMITS, differential: int = 1) -> Outcome:
    """Read `case` as ingest reads one file and check the contract; never raises.

    `differential`: 1 also reads the file with the Python readers alone (the fast paths must give
    the same table and counts or decline), 2 also with pyarrow.json instead of the native reader.
    """
    path.write_bytes(case.data)
    out = Outcome()
    try:
        table, problems = first = _read(path, case, limits)
        others = []
        if differential >= 1:
            others.append(("the Python readers alone", _read(path, case, limits, fast=False)))
        if differential >= 2 and otlp_native.AVAILABLE:
            others.append(("pyarrow.json", _read(path, case, limits, native=False)))
    except Exception:
        out.violations.append("crash: " + traceback.format_exc(limit=-3).strip().replace("\n", " | "))
        return out
    for name, other in others:
        why = _same(first, other)
        if why:
            out.violations.append(f"fast and slow paths differ: {name} gives {why}")
    out.problems = sum(problems.skipped.values())
    out.failed_file = bool(problems.failed)
    got: set[Key] = set()
    if table is not None:
        out.spans = table.num_rows
        got = set(zip(table["trace_id"].to_pylist(), table["span_id"].to_pylist(), strict=True))
    if problems.skipped.get("unexpected_error"):
        out.violations.append(f"reader error caught by the catch-all: {problems.messages[:3]}")
    lost = case.must_keep - got
    if lost:
        out.violations.append(
            f"{len(lost)} valid span(s) lost, e.g. {sorted(lost)[0]}; problems {problems.messages[:3]}"
        )
    if not case.extra_ok and got - case.must_keep:
        out.violations.append(f"{len(got - case.must_keep)} span(s) that were not valid were kept")
    if case.problems is not None and out.problems != case.problems:
        out.violations.append(
            f"{out.problems} problem(s) counted, {case.problems} expected: {dict(problems.skipped)} {problems.messages[:4]}"
        )
    missing_kinds = case.kinds - set(problems.skipped)
    if missing_kinds:
        out.violations.append(f"problem kinds {sorted(missing_kinds)} not counted: {dict(problems.skipped)}")
    if any("\n" in m for m in problems.messages):
        out.violations.append("a problem message spans several lines")
    return out


@dataclass
class Totals:
    cases: int = 0
    clean_errors: int = 0
    problems: int = 0
    spans: int = 0
    crashes: int = 0
    lost: int = 0
    miscounted: int = 0
    reader_errors: int = 0
    diverged: int = 0
    other: int = 0
    by_kind: Counter = field(default_factory=Counter)
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (seed, kind, why)

    def add(self, other: Totals) -> None:
        for name in (
            "cases",
            "clean_errors",
            "problems",
            "spans",
            "crashes",
            "lost",
            "miscounted",
            "reader_errors",
            "diverged",
            "other",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_kind.update(other.by_kind)
        self.failures.extend(other.failures[: 50 - len(self.failures)])


def run_batch(seeds: range) -> Totals:
    """Cases of the given seeds (case i is made by random.Random(i)): a worker's unit of work."""
    totals = Totals()
    with tempfile.TemporaryDirectory(prefix="hopscope-fuzz-") as tmp:
        for seed in seeds:
            case = make_case(random.Random(seed))
            out = check(case, Path(tmp) / f"case{case.suffix}", differential=2 if seed % 4 == 0 else 1)
            totals.cases += 1
            totals.by_kind[case.maker] += 1
            totals.clean_errors += out.failed_file
            totals.problems += out.problems
            totals.spans += out.spans
            for v in out.violations:
                if v.startswith("crash"):
                    totals.crashes += 1
                elif "lost" in v:
                    totals.lost += 1
                elif "counted" in v:
                    totals.miscounted += 1
                elif "catch-all" in v:
                    totals.reader_errors += 1
                elif "differ" in v:
                    totals.diverged += 1
                else:
                    totals.other += 1
                if len(totals.failures) < 50:
                    totals.failures.append((seed, case.kind, v[:500]))
    return totals


def main() -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1, help="first case seed (case i uses seed + i)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--out", type=Path, default=Path("fuzz-failures"), help="where failing cases are written")
    args = ap.parse_args()
    console = Console()
    totals = Totals()
    t0 = time.perf_counter()
    batches = [
        range(s, min(s + args.batch, args.seed + args.cases))
        for s in range(args.seed, args.seed + args.cases, args.batch)
    ]
    with Progress(
        TextColumn("[bold]fuzz[/] readers"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("crashes {task.fields[crashes]}  failures {task.fields[failures]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("fuzz", total=args.cases, crashes=0, failures=0)
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = [(pool.submit(run_batch, b), b) for b in batches]
            for fut, batch in futures:
                try:
                    got = fut.result()
                except BrokenProcessPool:
                    # a worker died (a segfault in native code would do it): this batch again alone
                    got = _retry(batch)
                totals.add(got)
                failures = (
                    totals.lost + totals.miscounted + totals.reader_errors + totals.diverged + totals.other
                )
                progress.update(task, advance=got.cases, crashes=totals.crashes, failures=failures)
    seconds = time.perf_counter() - t0
    t = Table(
        title=f"fuzz: {totals.cases:,} cases, seeds {args.seed}…{args.seed + args.cases - 1}, {seconds:.0f} s"
    )
    t.add_column("what")
    t.add_column("count", justify="right")
    for name, value in [
        ("cases", totals.cases),
        ("clean errors (file failed, one line)", totals.clean_errors),
        ("problems counted (records skipped)", totals.problems),
        ("spans kept", totals.spans),
        ("crashes (must be 0)", totals.crashes),
        ("valid spans lost (must be 0)", totals.lost),
        ("problem counts off (must be 0)", totals.miscounted),
        ("reader errors caught by the catch-all (must be 0)", totals.reader_errors),
        ("fast and slow paths differ (must be 0)", totals.diverged),
        ("other contract breaks (must be 0)", totals.other),
    ]:
        t.add_row(name, f"{value:,}")
    console.print(t)
    console.print("cases by maker: " + ", ".join(f"{k} {v:,}" for k, v in sorted(totals.by_kind.items())))
    bad = (
        totals.crashes
        + totals.lost
        + totals.miscounted
        + totals.reader_errors
        + totals.diverged
        + totals.other
    )
    if totals.failures:
        args.out.mkdir(parents=True, exist_ok=True)
        for seed, kind, why in totals.failures[:20]:
            case = make_case(random.Random(seed))
            (args.out / f"seed{seed}{case.suffix}").write_bytes(case.data)
            console.print(f"[red]seed {seed}[/] ({kind}): {why}", soft_wrap=True)
        console.print(
            f"failing cases written to {args.out}/ (replay: check(make_case(random.Random(SEED)), path))"
        )
    return 1 if bad else 0


def _retry(batch: range) -> Totals:
    """A batch whose pool broke, in a process of its own; if that dies too, case by case."""
    with ProcessPoolExecutor(max_workers=1) as one:
        try:
            return one.submit(run_batch, batch).result()
        except BrokenProcessPool:
            pass
    totals = Totals()
    for seed in batch:
        with ProcessPoolExecutor(max_workers=1) as one:
            try:
                totals.add(one.submit(run_batch, range(seed, seed + 1)).result())
            except BrokenProcessPool:
                totals.add(Totals(cases=1, crashes=1, failures=[(seed, "?", "the worker process died")]))
    return totals


if __name__ == "__main__":
    sys.exit(main())
