"""Ingest speed: N realistic spans as OTLP JSON lines, zstd JSON lines and proto framing → spans.parquet.

    .venv/bin/python benchmarks/ingest_bench.py            # 1,000,000 spans
    .venv/bin/python benchmarks/ingest_bench.py --spans 200000 --keep /tmp/bench

The data looks like a hopscope run: traces of 10 spans over 4 services (loadgen →
kafka producer → consumer → postgres/redis → subscriber), 4-6 attributes per span
(hopscope.* included), one request of 5000 spans per line as the collector's
batch processor would hand the file exporter. Prints a rich table of spans/s.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import struct
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from rich.console import Console
from rich.progress import track
from rich.table import Table

from hopscope.collector.ingest import ingest
from hopscope.collector.readers import otlp_native

SPANS_PER_LINE = 5000
SPANS_PER_TRACE = 10
SERVICES = ("kafka.loadgen", "kafka.notifier", "kafka.router", "kafka.subscriber")
HOPS = (
    "intent",
    "pg.insert",
    "debezium.read",
    "kafka.produce",
    "kafka.consume",
    "notify",
    "redis.publish",
    "redis.deliver",
    "subscriber.receive",
    "ack",
)
KINDS = (2, 3, 4, 5, 1, 1, 3, 5, 5, 1)


def _s(key: str, value: str) -> dict:
    return {"key": key, "value": {"stringValue": value}}


def make_lines(n_spans: int, seed: int = 42) -> list[dict]:
    """Collector-spelled ExportTraceServiceRequest dicts (hex ids, int kinds, string int64s)."""
    rnd = random.Random(seed)
    t0 = 1_764_300_000_000_000_000
    lines = []
    made = 0
    trace_no = 0
    while made < n_spans:
        by_service: dict[str, list[dict]] = {s: [] for s in SERVICES}
        count = min(SPANS_PER_LINE, n_spans - made)
        while count > 0:
            trace_no += 1
            trace_id = f"{rnd.getrandbits(128):032x}"
            start = t0 + trace_no * 1_000_000
            parent = None
            for h in range(min(SPANS_PER_TRACE, count)):
                span_id = f"{rnd.getrandbits(64):016x}"
                dur = int(rnd.lognormvariate(11, 1))
                span = {
                    "traceId": trace_id,
                    "spanId": span_id,
                    "name": HOPS[h],
                    "kind": KINDS[h],
                    "startTimeUnixNano": str(start),
                    "endTimeUnixNano": str(start + dur),
                    "attributes": [
                        _s("hopscope.workload", "write_notify"),
                        _s("hopscope.event_id", f"ev-{trace_no}"),
                        _s("hopscope.hop", HOPS[h]),
                        {"key": "messaging.kafka.partition", "value": {"intValue": str(trace_no % 12)}},
                    ],
                    "status": {},
                }
                if h == 4:
                    span["links"] = [{"traceId": trace_id, "spanId": parent}]
                if h in (2, 7):
                    span["attributes"].append({"key": "hopscope.derived", "value": {"boolValue": True}})
                if parent:
                    span["parentSpanId"] = parent
                by_service[SERVICES[h % len(SERVICES)]].append(span)
                parent = span_id
                start += dur // 2
                count -= 1
                made += 1
        lines.append(
            {
                "resourceSpans": [
                    {
                        "resource": {
                            "attributes": [
                                _s("service.name", svc),
                                _s("hopscope.stack", "kafka"),
                                _s("hopscope.run_id", "bench"),
                            ]
                        },
                        "scopeSpans": [{"scope": {"name": "hopscope"}, "spans": spans}],
                    }
                    for svc, spans in by_service.items()
                    if spans
                ]
            }
        )
    return lines


def _any(v: dict) -> AnyValue:
    if "stringValue" in v:
        return AnyValue(string_value=v["stringValue"])
    if "intValue" in v:
        return AnyValue(int_value=int(v["intValue"]))
    return AnyValue(bool_value=v["boolValue"])


def to_proto(line: dict) -> bytes:
    req = ExportTraceServiceRequest()
    for rs_d in line["resourceSpans"]:
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(
            KeyValue(key=a["key"], value=_any(a["value"])) for a in rs_d["resource"]["attributes"]
        )
        ss = rs.scope_spans.add()
        ss.scope.name = "hopscope"
        for d in rs_d["scopeSpans"][0]["spans"]:
            sp = ss.spans.add()
            sp.trace_id = bytes.fromhex(d["traceId"])
            sp.span_id = bytes.fromhex(d["spanId"])
            if "parentSpanId" in d:
                sp.parent_span_id = bytes.fromhex(d["parentSpanId"])
            sp.name = d["name"]
            sp.kind = d["kind"]
            sp.start_time_unix_nano = int(d["startTimeUnixNano"])
            sp.end_time_unix_nano = int(d["endTimeUnixNano"])
            for lk in d.get("links", ()):
                link = sp.links.add()
                link.trace_id = bytes.fromhex(lk["traceId"])
                link.span_id = bytes.fromhex(lk["spanId"])
            sp.attributes.extend(KeyValue(key=a["key"], value=_any(a["value"])) for a in d["attributes"])
    return req.SerializeToString()


def reference_sketch(path: Path) -> int:
    """The reader of /work/shared/reference/python-deps.md section 6 (core columns + attributes map), no Parquet.

    Timed next to ingest on the same files so the figure says how fast this machine is right now.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    anyv = pa.struct(
        [
            ("stringValue", pa.string()),
            ("intValue", pa.string()),
            ("doubleValue", pa.float64()),
            ("boolValue", pa.bool_()),
        ]
    )
    kv = pa.list_(pa.struct([("key", pa.string()), ("value", anyv)]))
    span = pa.struct(
        [
            ("traceId", pa.string()),
            ("spanId", pa.string()),
            ("parentSpanId", pa.string()),
            ("name", pa.string()),
            ("kind", pa.int32()),
            ("startTimeUnixNano", pa.string()),
            ("endTimeUnixNano", pa.string()),
            ("attributes", kv),
        ]
    )
    rs = pa.struct(
        [
            ("resource", pa.struct([("attributes", kv)])),
            ("scopeSpans", pa.list_(pa.struct([("spans", pa.list_(span))]))),
        ]
    )
    t = pj.read_json(
        path,
        read_options=pj.ReadOptions(block_size=64 << 20),
        parse_options=pj.ParseOptions(
            explicit_schema=pa.schema([("resourceSpans", pa.list_(rs))]), unexpected_field_behavior="ignore"
        ),
    )
    rsarr = pc.list_flatten(t.column("resourceSpans").combine_chunks())
    ss = pc.struct_field(rsarr, "scopeSpans")
    spans_l = pc.struct_field(pc.list_flatten(ss), "spans")
    spans = pc.list_flatten(spans_l)
    rs_index = pc.take(pc.list_parent_indices(ss), pc.list_parent_indices(spans_l))
    a = pc.struct_field(spans, "attributes")
    af = pc.list_flatten(a)
    v = pc.struct_field(af, "value")
    attrs = pa.MapArray.from_arrays(
        a.offsets,
        pc.struct_field(af, "key"),
        pc.coalesce(
            pc.struct_field(v, "stringValue"),
            pc.struct_field(v, "intValue"),
            pc.cast(pc.struct_field(v, "doubleValue"), pa.string()),
            pc.cast(pc.struct_field(v, "boolValue"), pa.string()),
        ),
    )
    cols = [
        pc.struct_field(spans, "traceId"),
        pc.struct_field(spans, "spanId"),
        pc.struct_field(spans, "parentSpanId"),
        pc.struct_field(spans, "name"),
        pc.struct_field(spans, "kind"),
        pc.cast(pc.struct_field(spans, "startTimeUnixNano"), pa.int64()),
        pc.cast(pc.struct_field(spans, "endTimeUnixNano"), pa.int64()),
        rs_index,
        attrs,
    ]
    return len(cols[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=4, help="rotated files per format")
    ap.add_argument(
        "--keep", type=Path, help="write the data here and keep it (default: a temp dir, removed)"
    )
    args = ap.parse_args()
    console = Console()
    root = args.keep or Path(tempfile.mkdtemp(prefix="hopscope-ingest-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        gc.disable()
        t = time.perf_counter()
        lines = make_lines(args.spans)
        encoded = [orjson.dumps(x) for x in lines]
        console.print(
            f"generated {args.spans:,} spans in {len(lines)} requests ({time.perf_counter() - t:.1f} s)"
        )
        per_file = max(1, -(-len(lines) // args.files))
        cctx = zstandard.ZstdCompressor(level=3)
        dirs = {name: root / name for name in ("jsonl", "jsonl.zst", "proto")}
        for d in dirs.values():
            d.mkdir(exist_ok=True)
        sizes = dict.fromkeys(dirs, 0)
        for i in track(range(0, len(lines), per_file), description="writing files", console=console):
            chunk = b"\n".join(encoded[i : i + per_file]) + b"\n"
            part = i // per_file
            (dirs["jsonl"] / f"spans-{part:03d}.jsonl").write_bytes(chunk)
            (dirs["jsonl.zst"] / f"spans-{part:03d}.jsonl.zst").write_bytes(cctx.compress(chunk))
            with (dirs["proto"] / f"spans-{part:03d}.pb").open("wb") as f:
                for line in lines[i : i + per_file]:
                    msg = to_proto(line)
                    f.write(struct.pack(">I", len(msg)) + msg)
        for name, d in dirs.items():
            sizes[name] = sum(p.stat().st_size for p in d.iterdir())
        del lines, encoded
        gc.enable()
        gc.collect()

        table = Table(title=f"hopscope ingest: {args.spans:,} spans, {args.files} files per format")
        for col in ("input", "reader", "MB", "wall s", "spans/s (wall)", "CPU s", "spans/CPU-s", "spans"):
            table.add_column(col, justify="left" if col in ("input", "reader") else "right")
        native = otlp_native.AVAILABLE
        # JSON lines and proto twice: with the native reader (if built) and with the Python one
        runs = [("jsonl", True), ("jsonl", False), ("jsonl.zst", native), ("proto", True), ("proto", False)]
        if not native:
            console.print("[yellow]native reader not built (bin/bootstrap builds it with cargo): Python only")
            runs = [r for r in runs if r[1] is not True]
        python_reader = {"jsonl": "pyarrow.json", "jsonl.zst": "pyarrow.json", "proto": "protobuf (py)"}
        speed: dict[tuple[str, bool], float] = {}
        tables: dict[tuple[str, bool], pa.Table] = {}
        for name, use_native in runs:
            out = root / f"run-{name}-{use_native}"
            otlp_native.AVAILABLE = use_native
            cpu0 = time.process_time()
            result = ingest([dirs[name]], out)
            cpu = time.process_time() - cpu0
            table.add_row(
                name,
                "native" if use_native else python_reader[name],
                f"{sizes[name] / 1e6:,.0f}",
                f"{result.seconds:.2f}",
                f"{result.spans_per_second:,.0f}",
                f"{cpu:.2f}",
                f"{result.spans / cpu:,.0f}",
                f"{result.spans:,}",
            )
            assert result.spans == args.spans and not result.problems.skipped
            if name != "jsonl.zst":
                speed[name, use_native] = result.spans_per_second
                # the source column names the file: compare the spans, not where they came from
                tables[name, use_native] = pq.read_table(out / "spans.parquet").drop_columns(["source"])
        otlp_native.AVAILABLE = native
        cpu0, t0 = time.process_time(), time.perf_counter()
        gc.disable()
        ref_spans = sum(reference_sketch(p) for p in sorted(dirs["jsonl"].iterdir()))
        gc.enable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        table.add_row(
            "jsonl ref §6",
            "pyarrow sketch",
            f"{sizes['jsonl'] / 1e6:,.0f}",
            f"{wall:.2f}",
            f"{ref_spans / wall:,.0f}",
            f"{cpu:.2f}",
            f"{ref_spans / cpu:,.0f}",
            f"{ref_spans:,}",
        )
        console.print(table)
        for name in ("jsonl", "proto"):
            if (name, True) in tables:
                same = tables[name, True].equals(tables[name, False])
                console.print(
                    f"{name}: native / {python_reader[name]} on the same files: "
                    f"{speed[name, True] / speed[name, False]:.2f}x; spans.parquet "
                    f"{'identical' if same else '[red]DIFFERENT[/]'}"
                )
        if native:
            same = tables["jsonl", True].equals(tables["proto", True])
            console.print(
                f"jsonl and proto spans.parquet (native): {'identical' if same else '[red]DIFFERENT[/]'}"
            )
        best = max(v for (name, _), v in speed.items() if name == "jsonl")
        console.print(
            f"goal >= 300,000 spans/s (JSON lines, wall): {best:,.0f} — {'met' if best >= 300_000 else 'not met'}"
        )
        console.print(
            "wall/CPU s = read + convert + write spans.parquet (zstd), one process (CPU s sums all threads); "
            "'jsonl ref §6' = the reference sketch of python-deps.md §6 alone on the same jsonl files "
            "(parse + core columns + attribute map, no checks, no Parquet): this machine's ceiling right now; "
            f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
