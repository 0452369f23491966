"""Which reader a file (or HTTP body) needs: decompression, sniffing, dispatch.

Detection order: `fmt` if given; else `.pb/.binpb/.proto` → OTLP proto framing;
else sniff the (decompressed) bytes: binary → proto framing; JSON whose first
line is a whole object → JSON lines keyed by its top-level key; otherwise the
whole document by its top-level key (`resourceSpans` OTLP, `result` Jaeger
api_v3, `data` Jaeger legacy, `trace`/`batches` Tempo, a list → Zipkin v2).

zstd: a file may be one zstd stream (`zstd spans.jsonl`) or the collector file
exporter's `compression: zstd` output, where every record is its own zstd frame
behind a 4-byte big-endian length. Both are recognised by the zstd magic number.
"""

from __future__ import annotations

import gc
import struct
from contextlib import contextmanager
from pathlib import Path

import orjson
import pyarrow as pa
import zstandard

from hopscope.collector.errors import Problems, UnknownFormat
from hopscope.core.schema import SPAN_SCHEMA

from . import jaeger, otlp_arrow, otlp_dict, otlp_native, otlp_proto, zipkin
from .otlp_arrow import NeedsSlowPath
from .rows import SpanRows


def _fast(read, reader: str, data: bytes | pa.Buffer, source: str, problems: Problems) -> pa.Table | None:
    """A fast reader's table, counted in `problems`; None (and why) when it declined the buffer."""
    try:
        table = read(data, source)
    except NeedsSlowPath as e:
        problems.decline(source, reader, str(e))
        return None
    problems.read_by(reader)
    return table


def _fast_json_lines(data: bytes | pa.Buffer, source: str, problems: Problems) -> pa.Table | None:
    """The collector's JSON lines: the native reader where it is built, else pyarrow.json. Both take
    only the canonical spelling."""
    if otlp_native.AVAILABLE:
        return _fast(otlp_native.read_json_lines, "native", data, source, problems)
    return _fast(otlp_arrow.read_json_lines, "pyarrow.json", data, source, problems)


def _python(rows: SpanRows, problems: Problems) -> pa.Table:
    problems.read_by("python")
    return rows.table()


OTLP_JSONL = "otlp-jsonl"
OTLP_JSON = "otlp-json"
OTLP_PROTO = "otlp-proto"
JAEGER_V3 = "jaeger-v3"
JAEGER = "jaeger"
TEMPO = "tempo"
ZIPKIN = "zipkin"
FORMATS = (OTLP_JSONL, OTLP_JSON, OTLP_PROTO, JAEGER_V3, JAEGER, TEMPO, ZIPKIN)

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_PROTO_SUFFIXES = {".pb", ".binpb", ".proto"}
_KEY_FORMAT = {
    "resourceSpans": OTLP_JSON,
    "resource_spans": OTLP_JSON,
    "result": JAEGER_V3,
    "error": JAEGER_V3,
    "data": JAEGER,
    "trace": TEMPO,
    "batches": TEMPO,
}


@contextmanager
def gc_paused():
    """Bulk parsing builds millions of small objects; the cyclic GC only slows it down (2x measured)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def decompress(raw: bytes, source: str) -> tuple[bytes, bool]:
    """Return (content, framed_records_were_joined). Framed zstd records come back as JSON lines or proto framing."""
    if raw.startswith(_ZSTD_MAGIC):
        with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as r:
            return r.read(), False
    if len(raw) >= 8 and raw[4:8] == _ZSTD_MAGIC:
        out: list[bytes] = []
        pos = 0
        dctx = zstandard.ZstdDecompressor()
        while pos + 4 <= len(raw):
            (length,) = struct.unpack_from(">I", raw, pos)
            frame = raw[pos + 4 : pos + 4 + length]
            if len(frame) < length:
                raise UnknownFormat(f"zstd record at byte {pos} is truncated")
            with dctx.stream_reader(frame, read_across_frames=True) as r:
                out.append(r.read())
            pos += 4 + length
        if out and out[0].lstrip()[:1] in (b"{", b"["):
            return b"\n".join(o.strip() for o in out), True
        return b"".join(struct.pack(">I", len(o)) + o for o in out), True
    return raw, False


def _looks_framed(data: bytes) -> bool:
    if len(data) < 5:
        return False
    (length,) = struct.unpack_from(">I", data, 0)
    # ExportTraceServiceRequest starts with field 1 (resource_spans), wire type 2 → byte 0x0a.
    return 4 + length <= len(data) and (length == 0 or data[4] == 0x0A)


_COLLECTOR_LINE_START = b'{"resourceSpans":'


def _likely_collector_jsonl(data: bytes, path_hint: str) -> bool:
    """The collector file exporter's spelling: no proto suffix, the first byte starts `{"resourceSpans":`."""
    if {s.lower() for s in Path(path_hint).suffixes} & _PROTO_SUFFIXES:
        return False
    return data.startswith(_COLLECTOR_LINE_START)


def detect(data: bytes, path_hint: str = "") -> str:
    suffixes = {s.lower() for s in Path(path_hint).suffixes}
    if suffixes & _PROTO_SUFFIXES:
        return OTLP_PROTO
    head = data[:64].lstrip()
    if not head:
        raise UnknownFormat("empty input")
    if head[:1] == b"[":
        return ZIPKIN
    if head[:1] != b"{":
        if _looks_framed(data):
            return OTLP_PROTO
        raise UnknownFormat("neither JSON nor OTLP protobuf framing")
    first_line = data.lstrip().split(b"\n", 1)[0]
    try:
        first = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        first = None
    if isinstance(first, dict) and first:
        fmt = _KEY_FORMAT.get(next(iter(first)))
        if fmt == OTLP_JSON:
            return OTLP_JSONL
        if fmt is not None:
            return fmt
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        # Not one document: JSON lines whose first line is broken; let the OTLP line reader name the line.
        return OTLP_JSONL
    if isinstance(doc, dict):
        for key in doc:
            if key in _KEY_FORMAT:
                return _KEY_FORMAT[key]
    raise UnknownFormat(
        f"JSON with no known top-level key ({list(doc)[:5] if isinstance(doc, dict) else type(doc).__name__})"
    )


def _json_lines_slow(data: bytes, source: str, problems: Problems, key: str = "resourceSpans") -> SpanRows:
    rows = SpanRows(source)
    for n, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            problems.skip(source, f"line {n}", None, f"not valid JSON: {e}", "bad_json")
            continue
        _decode_envelope(doc, rows, problems, f"line {n}")
    return rows


def _decode_envelope(doc: object, rows: SpanRows, problems: Problems, where: str) -> None:
    """OTLP TracesData, or one of the API envelopes around it."""
    if isinstance(doc, dict):
        if "result" in doc:
            otlp_dict.decode_traces_data(doc["result"], rows, problems, where)
            return
        if "error" in doc and "resourceSpans" not in doc:
            err = doc["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            problems.skip(rows.source, where, "error", f"the API returned an error: {msg}", "api_error")
            return
        if "trace" in doc:
            otlp_dict.decode_traces_data(doc["trace"] or {}, rows, problems, where)
            return
        if "batches" in doc:
            otlp_dict.decode_traces_data(doc, rows, problems, where, key="batches")
            return
    otlp_dict.decode_traces_data(doc, rows, problems, where)


def read_bytes(
    raw: bytes, source: str, problems: Problems, fmt: str | None = None, *, fast_tried: bool = False
) -> pa.Table:
    """Every span of one file or HTTP body as a SPAN_SCHEMA table; bad parts counted in `problems`.

    `fast_tried`: the caller already ran the fast path on these bytes and it declined.
    """
    if fmt is not None and fmt not in FORMATS:
        raise UnknownFormat(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    try:
        data, _ = decompress(raw, source)
    except zstandard.ZstdError as e:
        problems.skip(source, None, None, f"corrupt zstd data: {e}", "bad_compression")
        return SPAN_SCHEMA.empty_table()
    if not data or data.isspace():
        # The file exporter opens a new file before it has anything to write: nothing to read, nothing lost.
        # (isspace stops at the first other byte; strip() would copy the whole buffer.)
        return SPAN_SCHEMA.empty_table()
    with gc_paused():
        tried_fast = fast_tried or (fmt is None and _likely_collector_jsonl(data, source))
        if tried_fast and not fast_tried:
            # detect() would orjson-parse the whole first line (a ~2 MB request) only to read its first
            # key. When the fast reader takes every line and the first starts with resourceSpans,
            # detect() would have answered OTLP_JSONL anyway; anything else falls back to detect().
            table = _fast_json_lines(data, source, problems)
            if table is not None:
                return table
        fmt = fmt or detect(data, source)
        if fmt == OTLP_JSONL:
            table = None if tried_fast else _fast_json_lines(data, source, problems)
            if table is not None:
                return table
            return _python(_json_lines_slow(data, source, problems), problems)
        if fmt == OTLP_PROTO:
            if otlp_native.AVAILABLE:
                table = _fast(otlp_native.read_proto_framed, "native", data, source, problems)
                if table is not None:
                    return table
            # the Python reader names and counts what the native one declined
            return _python(otlp_proto.read_framed(data, source, problems), problems)
        if fmt in (OTLP_JSON, JAEGER_V3, TEMPO):
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                # api_v3 streams FindTraces results as one {"result": ...} object per line.
                return _python(_json_lines_slow(data, source, problems), problems)
            rows = SpanRows(source)
            _decode_envelope(doc, rows, problems, "document")
            return _python(rows, problems)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            problems.skip(source, None, None, f"not valid JSON: {e}", "bad_json")
            return SPAN_SCHEMA.empty_table()
        if fmt == JAEGER:
            return _python(jaeger.read_document(doc, source, problems), problems)
        return _python(zipkin.read_spans(doc, source, problems), problems)


def read_file(path: Path, problems: Problems, fmt: str | None = None) -> pa.Table:
    path = Path(path)
    if fmt is None and not ({s.lower() for s in path.suffixes} & _PROTO_SUFFIXES):
        with path.open("rb") as fh:
            head = fh.read(len(_COLLECTOR_LINE_START))
        if head == _COLLECTOR_LINE_START:
            # The collector's own files (the bulk of any run): parsed straight from a memory map,
            # no copy into a bytes object. Anything else takes read_bytes below.
            with pa.memory_map(str(path)) as mm, gc_paused():
                table = _fast_json_lines(mm.read_buffer(), str(path), problems)
            if table is not None:
                return table
            return read_bytes(path.read_bytes(), str(path), problems, fmt, fast_tried=True)
    return read_bytes(path.read_bytes(), str(path), problems, fmt)
