"""Which reader a file (or HTTP body) needs: decompression, sniffing, dispatch.

Detection order: `fmt` if given; else `.pb/.binpb/.proto` → OTLP proto framing;
else sniff the (decompressed) bytes, a UTF-8 BOM dropped: binary → proto framing; JSON whose
first line is a whole object → JSON lines keyed by its top-level key; otherwise the
whole document by its top-level key (`resourceSpans` OTLP, `result` Jaeger
api_v3, `data` Jaeger legacy, `trace`/`batches` Tempo, a list → Zipkin v2). When neither the
first line nor the whole document decides (a corrupt first line, a first line that is a
list), the first of the next lines that does decides: JSON lines. Only bytes that are
neither JSON nor protobuf framing fail the file (`unknown_format`, one line).

In a JSON-lines file each line is read by its own shape (an OTLP request, an api_v3
`result`, a Tempo `trace`/`batches`, a Jaeger `data` document, a Zipkin span list), so
one odd line decides nothing about the others.

zstd: a file may be one zstd stream (`zstd spans.jsonl`) or the collector file
exporter's `compression: zstd` output, where every record is its own zstd frame
behind a 4-byte big-endian length. Both are recognised by the zstd magic number.
Decompression is bounded (`Limits.max_decompressed_bytes`) and keeps what it got: a
truncated or corrupt stream keeps the bytes before the damage (counted), a torn or
corrupt record of the framed form loses only that record.
"""

from __future__ import annotations

import gc
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import orjson
import pyarrow as pa
import zstandard

from hopscope.collector.errors import IngestError, Problems, UnknownFormat, short
from hopscope.core.schema import SPAN_SCHEMA

from . import jaeger, otlp_arrow, otlp_dict, otlp_native, otlp_proto, zipkin
from .otlp_arrow import NeedsSlowPath
from .rows import SpanRows

#: the fast readers (native, pyarrow.json) may take a buffer; off, the tolerant Python readers read
#: everything (the fuzz tests compare the two: same table, same problem counts)
FAST_READERS: ContextVar[bool] = ContextVar("hopscope_fast_readers", default=True)


def _fast(read, reader: str, data: bytes | pa.Buffer, source: str, problems: Problems) -> pa.Table | None:
    """A fast reader's table, counted in `problems`; None (and why) when it declined the buffer."""
    if not FAST_READERS.get():
        return None
    try:
        table = read(data, source, problems.limits)
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
    otlp_native.fallback()
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


#: compressed bytes fed to zstd at a time: zstd expands at most ~32768:1, so one step makes at most
#: ~128 MiB, and the bound on the whole output is checked after every step
_ZSTD_STEP = 1 << 12
_BOM = b"\xef\xbb\xbf"


class _Inflated:
    """What decompressing some zstd frames gave: the output, and what went wrong (kind, message) if anything."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.error: tuple[str, str] | None = None


def _inflate(raw: bytes, start: int, stop: int, budget: int, out: _Inflated) -> None:
    """Decompress every zstd frame of raw[start:stop] into `out`, stopping at `budget` output bytes.

    Stops at the first damage, keeping everything before it in `out` and naming it in `out.error`:
    truncated_compression (the input ends inside a frame), bad_compression (corrupt data),
    too_large (the output would pass `budget`).
    """
    dctx = zstandard.ZstdDecompressor()
    view = memoryview(raw)
    pos = start
    while pos < stop:
        obj = dctx.decompressobj()
        frame_at = pos
        while not obj.eof:
            if pos >= stop:
                out.error = (
                    "truncated_compression",
                    f"the zstd frame at byte {frame_at} is cut off at byte {stop}",
                )
                return
            step = view[pos : min(pos + _ZSTD_STEP, stop)]
            try:
                got = obj.decompress(step)
            except zstandard.ZstdError as e:
                out.error = ("bad_compression", f"corrupt zstd data near byte {pos}: {e}")
                return
            pos += len(step)
            if got:
                if out.size + len(got) > budget:
                    keep = budget - out.size
                    if keep > 0:
                        out.chunks.append(got[:keep])
                        out.size += keep
                    out.error = ("too_large", f"decompresses to over max_decompressed_bytes={budget}")
                    return
                out.chunks.append(got)
                out.size += len(got)
        pos -= len(obj.unused_data)  # the rest of the last step belongs to the next frame


def decompress(raw: bytes, source: str, problems: Problems) -> tuple[bytes, bool]:
    """(content, torn): zstd streams and the collector's zstd-framed records decompressed, else `raw`.

    Framed zstd records come back as JSON lines or proto framing. Damage is counted in
    `problems`; what decompressed before it is kept. `torn` says the content may end inside a
    record (a truncated, corrupt or over-long stream): the reader does not count that last
    partial record again.
    """
    limit = problems.limits.max_decompressed_bytes
    if raw.startswith(_ZSTD_MAGIC):
        out = _Inflated()
        _inflate(raw, 0, len(raw), limit, out)
        if out.error is not None:
            kind, message = out.error
            problems.skip(source, None, None, f"{message}; kept the {out.size} bytes before it", kind)
        return b"".join(out.chunks), out.error is not None
    if len(raw) >= 8 and raw[4:8] == _ZSTD_MAGIC:
        return _framed_records(raw, source, problems, limit), False
    return raw, False


def _next_record(raw: bytes, after: int) -> int | None:
    """The next position past `after` that starts a plausible framed zstd record (a length that fits)."""
    at = after + 4
    while True:
        at = raw.find(_ZSTD_MAGIC, at + 1)
        if at < 0:
            return None
        pos = at - 4
        (length,) = struct.unpack_from(">I", raw, pos)
        if pos + 4 + length <= len(raw):
            return pos


def _framed_records(raw: bytes, source: str, problems: Problems, limit: int) -> bytes:
    """The collector's `compression: zstd` framing: [4-byte length][zstd frame] per record.

    A torn record (its length runs past the end) or a corrupt one is counted and loses only
    itself; after a length that does not fit, reading resyncs at the next record's zstd magic.
    """
    records: list[bytes] = []
    total = 0
    pos, n = 0, 0
    while pos < len(raw):
        n += 1
        where = f"zstd record {n} at byte {pos}"
        if pos + 4 > len(raw):
            problems.skip(source, where, "length", "truncated length prefix", "truncated_compression")
            break
        (length,) = struct.unpack_from(">I", raw, pos)
        end = pos + 4 + length
        if end > len(raw) or raw[pos + 4 : pos + 8] != _ZSTD_MAGIC:
            nxt = _next_record(raw, pos)
            what = (
                "is torn (runs past the end of the file)" if end > len(raw) else "does not start a zstd frame"
            )
            tail = "" if nxt is None else f"; resynced at byte {nxt}"
            kind = "truncated_compression" if nxt is None and end > len(raw) else "bad_frame"
            problems.skip(source, where, "length", f"record of {length} bytes {what}{tail}", kind)
            if nxt is None:
                break
            pos = nxt
            continue
        out = _Inflated()
        _inflate(raw, pos + 4, end, limit - total, out)
        if out.error is not None:
            kind, message = out.error
            problems.skip(source, where, None, message, kind)
            if kind == "too_large":
                break
        else:
            records.append(b"".join(out.chunks))
            total += out.size
        pos = end
    # JSON records as JSON lines (a record starting with { or [ is JSON: a request starts with 0x0a)
    if any(r.lstrip()[:1] in (b"{", b"[") for r in records):
        return b"\n".join(r.strip() for r in records)
    return b"".join(struct.pack(">I", len(r)) + r for r in records)


def _strip_bom(data: bytes) -> bytes:
    return data[len(_BOM) :] if data[:3] == _BOM else data


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


#: how far detection looks for a line that decides the format when the first one does not
_SNIFF_LINES = 1000
_SNIFF_BYTES = 64 << 20
_NOT_JSON = object()


def _loads(line: bytes | memoryview) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _shape_format(doc: object) -> str | None:
    """The format one parsed JSON value (a line, or a whole document) is in; None if none fits."""
    if isinstance(doc, dict):
        for key in doc:
            if key in _KEY_FORMAT:
                return _KEY_FORMAT[key]
        return None
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        return ZIPKIN
    return None


_CONTENT = re.compile(rb"\S")


def _iter_lines(data: bytes, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """(1-based line number, start, end) of every line that is not blank, without splitting the
    buffer; a run of blank lines (however long: a decompression bomb may be one) is skipped at C
    speed. `start` skips leading whitespace of the line."""
    pos, before, size = start, 0, len(data)  # `before`: lines that end before `pos`
    while pos < size:
        m = _CONTENT.search(data, pos)
        if m is None:
            return
        at = m.start()
        before += data.count(b"\n", pos, at)
        nl = data.find(b"\n", at)
        if nl < 0:
            nl = size
        yield before + 1, at, nl
        before += 1
        pos = nl + 1


def detect(data: bytes, path_hint: str = "") -> str:
    suffixes = {s.lower() for s in Path(path_hint).suffixes}
    if suffixes & _PROTO_SUFFIXES:
        return OTLP_PROTO
    data = _strip_bom(data)
    head = data[:64].lstrip()
    if not head:
        raise UnknownFormat("empty input")
    if head[:1] not in (b"{", b"[") and _looks_framed(data):
        return OTLP_PROTO
    begin = len(data) - len(data.lstrip()) if data[:1].isspace() else 0
    nl = data.find(b"\n", begin)
    first_end = len(data) if nl < 0 else nl
    first = _loads(memoryview(data)[begin:first_end]) if first_end - begin <= _SNIFF_BYTES else _NOT_JSON
    if isinstance(first, dict):
        fmt = _shape_format(first)
        if fmt is not None:
            return OTLP_JSONL if fmt == OTLP_JSON else fmt
    doc = _loads(data)
    if doc is not _NOT_JSON:
        if isinstance(doc, list):
            return ZIPKIN
        fmt = _shape_format(doc) if isinstance(doc, dict) else None
        if fmt is not None:
            return fmt
        raise UnknownFormat(
            f"JSON with no known top-level key ({list(doc)[:5] if isinstance(doc, dict) else type(doc).__name__})"
        )
    # Not one document: JSON lines whose first line is broken (or a list, or not JSON at all).
    # The first line that is a known record decides; the line reader then names every bad line.
    looked = 0
    for n, a, b in _iter_lines(data, begin):
        if n > _SNIFF_LINES or looked > _SNIFF_BYTES:
            break
        looked += b - a
        line = memoryview(data)[a:b]
        if b - a > 1 and _shape_format(_loads(line[3:] if line[:3] == _BOM else line)) is not None:
            return OTLP_JSONL
    if head[:1] in (b"{", b"["):
        return OTLP_JSONL  # JSON-looking lines, none readable: the line reader counts them
    raise UnknownFormat("neither JSON nor OTLP protobuf framing")


def _json_lines_slow(
    data: bytes, source: str, problems: Problems, key: str = "resourceSpans", *, torn: bool = False
) -> SpanRows:
    """Every line on its own (see the module doc); bad lines counted, the others kept.

    A line over `max_record_bytes` is not parsed (too_large). When no line at all is JSON the
    file is not JSON lines: one file-level `bad_json` instead of one per line. `torn`: the buffer
    may end inside a line whose loss was counted already (a truncated stream).
    """
    rows = SpanRows(source, problems)
    local = problems.child()
    limit = problems.limits.max_record_bytes
    parsed = failed = 0
    first_error = ""
    view = memoryview(data)
    for n, a, b in _iter_lines(data):
        where = f"line {n}"
        if b - a > limit:
            local.skip(
                source, where, None, f"line of {b - a} bytes is over max_record_bytes={limit}", "too_large"
            )
            continue
        line = view[a:b]
        if line[:3] == _BOM:
            line = line[3:]
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            if torn and b == len(data):
                continue  # the cut-off end of a truncated stream, counted as such
            failed += 1
            first_error = first_error or str(e)
            too_deep = "depth limit" in str(e)
            local.skip(
                source,
                where,
                None,
                "nested deeper than 1024 levels" if too_deep else f"not valid JSON: {e}",
                "too_deep" if too_deep else "bad_json",
            )
            continue
        parsed += 1
        try:
            _decode_line(doc, rows, local, where)
        except IngestError:
            raise
        except Exception as e:  # a reader bug: counted, never fatal
            local.unexpected(source, where, None, e)
    if parsed == 0 and failed and set(local.skipped) <= {"bad_json"}:
        problems.fail_file(
            source, f"not JSON (neither one document nor JSON lines): {first_error}", "bad_json"
        )
    else:
        problems.merge(local)
    return rows


def _decode_line(doc: object, rows: SpanRows, problems: Problems, where: str) -> None:
    """One line of a JSON-lines file, read by its own shape."""
    if isinstance(doc, list):
        if doc and isinstance(doc[0], dict):
            zipkin.read_spans(doc, rows, problems, where)
        elif doc:
            problems.skip(
                rows.source,
                where,
                None,
                f"line is a list of {short(doc[0])}…, not a record",
                "malformed_record",
            )
        return
    if isinstance(doc, dict) and not any(k in doc for k in _KEY_FORMAT):
        problems.skip(
            rows.source, where, None, f"no known top-level key ({short(list(doc)[:5])})", "malformed_record"
        )
        return
    if isinstance(doc, dict) and "data" in doc and not any(k in doc for k in _OTLP_ENVELOPE_KEYS):
        jaeger.read_document(doc, rows, problems, where)
        return
    _decode_envelope(doc, rows, problems, where)


_OTLP_ENVELOPE_KEYS = ("resourceSpans", "resource_spans", "result", "error", "trace", "batches")


def _decode_envelope(doc: object, rows: SpanRows, problems: Problems, where: str) -> None:
    """OTLP TracesData, or one of the API envelopes around it."""
    if isinstance(doc, dict):
        if "result" in doc:
            otlp_dict.decode_traces_data(doc["result"], rows, problems, where)
            return
        if "error" in doc and "resourceSpans" not in doc:
            err = doc["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            problems.skip(
                rows.source, where, "error", f"the API returned an error: {short(msg, 200)}", "api_error"
            )
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

    Raises UnknownFormat for bytes that are neither JSON nor protobuf framing (the caller counts
    the file), MalformedInput in strict mode; anything else a reader might raise is caught here
    and fails only this file, counted (`unexpected_error`), never the run.
    `fast_tried`: the caller already ran the fast path on these bytes and it declined.
    """
    if fmt is not None and fmt not in FORMATS:
        raise UnknownFormat(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    try:
        return _read_bytes(raw, source, problems, fmt, fast_tried)
    except IngestError:
        raise
    except MemoryError:
        problems.fail_file(source, "out of memory while reading it (see Limits)", "too_large")
    except Exception as e:  # a reader bug: this file is counted as failed, the run goes on
        problems.fail_file(source, f"reader error {type(e).__name__}: {e}", "unexpected_error")
    return SPAN_SCHEMA.empty_table()


def _read_bytes(raw: bytes, source: str, problems: Problems, fmt: str | None, fast_tried: bool) -> pa.Table:
    data, torn = decompress(raw, source, problems)
    data = _strip_bom(data)
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
            return _python(_json_lines_slow(data, source, problems, torn=torn), problems)
        if fmt == OTLP_PROTO:
            if otlp_native.AVAILABLE:
                table = _fast(otlp_native.read_proto_framed, "native", data, source, problems)
                if table is not None:
                    return table
            else:
                otlp_native.fallback()
            # the Python reader names and counts what the native one declined
            return _python(otlp_proto.read_framed(data, source, problems), problems)
        doc = _loads(data)
        if doc is _NOT_JSON:
            # Not one document: JSON lines (api_v3 streams FindTraces results one per line), or a
            # broken document, which the line reader counts as one file-level bad_json.
            return _python(_json_lines_slow(data, source, problems, torn=torn), problems)
        rows = SpanRows(source, problems)
        if fmt == JAEGER:
            jaeger.read_document(doc, rows, problems)
        elif fmt == ZIPKIN:
            zipkin.read_spans(doc, rows, problems)
        else:
            _decode_envelope(doc, rows, problems, "document")
        return _python(rows, problems)


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
