"""The native fast paths for the collector's files: Rust parsers (collector/native) of OTLP JSON
lines and of the proto framing fill flat buffers, which become Arrow arrays here without
another pass over the data.

Same contract as otlp_arrow.py: only what the collector's file exporter writes, the whole
buffer or nothing; anything else raises `NeedsSlowPath` (with the line or record and the
reason) and the caller reads the file again with the tolerant reader, which names and counts
every bad record. When the extension is not built (`AVAILABLE` is false), formats.py uses the
pyarrow.json path and the Python protobuf reader; `HOPSCOPE_NATIVE=0` does the same for comparisons.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hopscope.collector.errors import DEFAULT_LIMITS, Limits
from hopscope.core.native import note_fallback, turned_off
from hopscope.core.schema import KINDS, SPAN_SCHEMA, STATUSES

from .otlp_arrow import PARSE_THREADS, NeedsSlowPath

try:
    from hopscope_otlp_native import parse_json_lines as _parse
    from hopscope_otlp_native import parse_proto_framed as _parse_proto
except ImportError:  # not built (or an older build): bin/bootstrap builds it where cargo is available
    _parse = _parse_proto = None

AVAILABLE = _parse is not None and not turned_off()


def fallback() -> None:
    """Called where a slower reader runs instead: says so once (core/native.py) when the
    extension is missing, not when HOPSCOPE_NATIVE=0 turned it off."""
    if _parse is None:
        note_fallback()


_KIND_NAMES = pa.array(KINDS)
_STATUS_NAMES = pa.array(STATUSES)
_THREADS = min(2, os.cpu_count() or 1)


def _bitmap(valid: bytes) -> pa.Buffer | None:
    flags = np.frombuffer(valid, dtype=np.uint8)
    if flags.all():
        return None
    return pa.py_buffer(np.packbits(flags, bitorder="little"))


def _text(parts: tuple[bytes, bytes, bytes]) -> pa.Array:
    offsets, data, valid = parts
    n = len(valid)
    mask = _bitmap(valid)
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(data), mask, -1 if mask is not None else 0
    )


def _ids(data: bytes, width: int) -> pa.Array:
    """Fixed-width ids (never null) as a string array: the offsets are a multiple of `width`."""
    n = len(data) // width
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _map(cols: dict, name: str) -> pa.MapArray:
    keys = _text(cols[f"{name}.keys"])
    values = _text(cols[f"{name}.values"])
    pos = np.frombuffer(cols[f"{name}.double_pos"], dtype=np.uint32)
    if len(pos):
        # a double's text is Arrow's own spelling, as in the pyarrow path and rows.format_double
        texts = pa.array(np.frombuffer(cols[f"{name}.double_val"], dtype=np.float64)).cast(pa.string())
        mask = np.zeros(len(values), dtype=bool)
        mask[pos] = True
        values = pc.replace_with_mask(values, pa.array(mask), texts)
    offsets = pa.array(np.frombuffer(cols[f"{name}.row_offsets"], dtype=np.int32))
    return pa.MapArray.from_arrays(offsets, keys, values)


def _run(parse, data: bytes | pa.Buffer | memoryview, limits: Limits) -> dict:
    assert parse is not None, "the native reader is not built"
    if isinstance(data, pa.Buffer):
        data = memoryview(data).cast("B")  # Arrow exports signed chars ("b"); the parser takes bytes
    try:
        return parse(
            data,
            _THREADS if PARSE_THREADS.get() else 1,
            max_depth=limits.max_depth,
            max_record_bytes=limits.max_record_bytes,
            max_attribute_bytes=limits.max_attribute_bytes,
            max_name_bytes=limits.max_name_bytes,
        )
    except ValueError as e:  # a line (record) it does not take, or past a limit
        raise NeedsSlowPath(str(e)) from None
    except BaseException as e:
        # the extension turns its panics into ValueError; should one still escape as PyO3's
        # PanicException (a BaseException), the Python reader takes the buffer all the same
        if type(e).__name__ == "PanicException":
            raise NeedsSlowPath(f"the native reader panicked: {e}") from None
        raise


def read_json_lines(
    data: bytes | pa.Buffer | memoryview, source: str, limits: Limits = DEFAULT_LIMITS
) -> pa.Table:
    """Parse a whole OTLP JSON-lines buffer; raise NeedsSlowPath if any line is not canonical
    or passes one of the limits (a line nested deeper than max_depth, longer than max_record_bytes,
    a name or attribute over its bound)."""
    return _table(_run(_parse, data, limits), source)


def read_proto_framed(
    data: bytes | pa.Buffer | memoryview, source: str, limits: Limits = DEFAULT_LIMITS
) -> pa.Table:
    """Parse a whole buffer of length-framed ExportTraceServiceRequests; NeedsSlowPath if any record
    is truncated, does not decode, passes a limit or holds what the native reader does not read
    (array/kvlist/unset values, bad ids, an end before its start)."""
    return _table(_run(_parse_proto, data, limits), source)


def _table(cols: dict, source: str) -> pa.Table:
    n = cols["n"]
    if n == 0:
        return SPAN_SCHEMA.empty_table()
    res_of = pa.array(np.frombuffer(cols["resource_of"], dtype=np.uint32))
    link_struct = pa.StructArray.from_arrays(
        [_ids(cols["link_trace"], 32), _ids(cols["link_span"], 16)], names=["trace_id", "span_id"]
    )
    res_workload = _text(cols["res_workload"])
    columns = {
        "trace_id": _ids(cols["trace_id"], 32),
        "span_id": _ids(cols["span_id"], 16),
        "parent_span_id": _text(cols["parent"]),
        "links": pa.ListArray.from_arrays(
            pa.array(np.frombuffer(cols["link_offsets"], dtype=np.int32)), link_struct
        ),
        "name": _text(cols["name"]),
        "kind": _KIND_NAMES.take(pa.array(np.frombuffer(cols["kind"], dtype=np.uint8))),
        "start_ns": pa.array(np.frombuffer(cols["start"], dtype=np.int64)),
        "end_ns": pa.array(np.frombuffer(cols["end"], dtype=np.int64)),
        "status": _STATUS_NAMES.take(pa.array(np.frombuffer(cols["status"], dtype=np.uint8))),
        "service": _text(cols["service"]).take(res_of),
        "stack": _text(cols["stack"]).take(res_of),
        "workload": pc.coalesce(_text(cols["workload"]), res_workload.take(res_of)),
        "event_id": _text(cols["event_id"]),
        "hop": _text(cols["hop"]),
        "derived": pa.array(np.frombuffer(cols["derived"], dtype=np.uint8).astype(bool)),
        "attributes": _map(cols, "attrs"),
        "resource": _map(cols, "res_attrs").take(res_of),
        "source": pc.take(pa.array([source]), pa.array(np.zeros(n, dtype=np.int32))),
    }
    return pa.Table.from_arrays([columns[f.name] for f in SPAN_SCHEMA], schema=SPAN_SCHEMA)
