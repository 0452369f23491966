"""Row-at-a-time builder of SPAN_SCHEMA tables, shared by every reader except the fast OTLP path.

`SpanRows.add` is the last gate of the reader contract: it checks every value's type and
range before appending anything (a bad span raises `BadRecord` and leaves no partial row),
so `table()` cannot fail on one bad span and lose the file's other spans. It also applies
the name / attribute size limits (cut at a character boundary, counted, flagged on the span).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from hopscope.collector.errors import DEFAULT_LIMITS, BadRecord, Limits, Problems, short
from hopscope.core.attributes import (
    ATTR_DERIVED,
    ATTR_EVENT_ID,
    ATTR_HOP,
    ATTR_SERVICE,
    ATTR_STACK,
    ATTR_WORKLOAD,
)
from hopscope.core.schema import KINDS, SPAN_SCHEMA, STATUSES

#: Span attributes that get their own column.
SPAN_LIFTED = frozenset({ATTR_WORKLOAD, ATTR_EVENT_ID, ATTR_HOP, ATTR_DERIVED})
#: Resource attributes that get their own column (workload is a fallback for the span's).
RESOURCE_LIFTED = frozenset({ATTR_SERVICE, ATTR_STACK, ATTR_WORKLOAD})

#: Attribute a reader sets on a span it kept but had to repair (comma-separated problem kinds).
ATTR_INGEST_FLAG = "hopscope.ingest.flag"

#: The largest timestamp (ns) the int64 columns hold.
INT64_MAX = (1 << 63) - 1

_TRUE = frozenset({"true", "1", "yes"})
_KINDS = frozenset(KINDS)
_STATUSES = frozenset(STATUSES)

Pairs = Mapping[str, str | None] | Sequence[tuple[str, str | None]]


def is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


def micros(v: object, field: str) -> int:
    """A µs timestamp or duration (Jaeger, Zipkin): a non-negative int whose nanoseconds fit int64."""
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise BadRecord(field, f"missing or unparseable µs value {short(v)}", "bad_timestamp")
    if v * 1000 > INT64_MAX:
        raise BadRecord(field, f"{v} µs is past the int64 nanosecond range", "bad_timestamp")
    return v


def format_double(x: float) -> str:
    """Spell a double exactly as Arrow's float64→string cast does (the fast path's spelling).

    Arrow's thresholds for exponent notation differ from Python's repr (1e15, 1e-05),
    so the slow paths ask Arrow itself; doubles are rare enough in span attributes.
    """
    # Cached by bit pattern: 0.0 == -0.0 would share a cache entry.
    return _format_double_bits(struct.pack("<d", float(x)))


@functools.lru_cache(maxsize=4096)
def _format_double_bits(bits: bytes) -> str:
    (x,) = struct.unpack("<d", bits)
    return pa.array([x], pa.float64()).cast(pa.string())[0].as_py()


def cut_utf8(text: str, limit: int) -> str | None:
    """`text` cut to at most `limit` UTF-8 bytes at a character boundary; None if it fits."""
    if len(text) * 4 <= limit:  # a character is at most 4 bytes: the common case costs no encode
        return None
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return None
    return raw[:limit].decode("utf-8", "ignore")


def _split(kvs: Pairs, lifted_keys: frozenset[str], limit: int, what: str) -> tuple[list, dict, int]:
    """(the other pairs, the lifted keys' values, how many keys/values were cut to `limit`)."""
    if isinstance(kvs, Mapping):
        items = kvs.items()
    elif isinstance(kvs, list | tuple):
        items = kvs
    else:
        raise BadRecord(what, f"{what} is not a map: {short(kvs)}")
    rest: list[tuple[str, str | None]] = []
    lifted: dict[str, str | None] = {}
    cut = 0
    for kv in items:
        if not isinstance(kv, tuple) or len(kv) != 2:
            raise BadRecord(what, f"not a key/value pair: {short(kv)}")
        k, v = kv
        if type(k) is not str:
            raise BadRecord(what, f"attribute key is not a string: {short(k)}")
        if v is not None and type(v) is not str:
            raise BadRecord(f"{what}[{short(k, 60)}]", f"attribute value is not text: {short(v)}")
        shorter = cut_utf8(k, limit)
        if shorter is not None:
            k, cut = shorter, cut + 1
        if v is not None:
            shorter = cut_utf8(v, limit)
            if shorter is not None:
                v, cut = shorter, cut + 1
        if k in lifted_keys:
            lifted[k] = v
        else:
            rest.append((k, v))
    return rest, lifted, cut


def _id(value: object, width: int, what: str) -> str:
    if type(value) is not str or len(value) != width:
        raise BadRecord(what, f"id is not {width} hex digits: {short(value)}", "bad_id")
    return value


def _ns(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise BadRecord(what, f"timestamp out of range (0 … 2^63-1 ns): {short(value)}", "bad_timestamp")
    return value


@dataclass
class SpanRows:
    """Column lists for one source; `table()` turns them into SPAN_SCHEMA.

    `problems` (optional) carries the limits and counts what was repaired.
    """

    source: str
    problems: Problems | None = None
    cols: dict[str, list] = field(default_factory=lambda: {n: [] for n in SPAN_SCHEMA.names})

    def __len__(self) -> int:
        return len(self.cols["trace_id"])

    @property
    def limits(self) -> Limits:
        return self.problems.limits if self.problems is not None else DEFAULT_LIMITS

    def add(
        self,
        *,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        links: list[tuple[str, str]],
        name: str,
        kind: str,
        start_ns: int,
        end_ns: int,
        status: str,
        attributes: Pairs,
        resource: Pairs,
        flags: Sequence[str] = (),
    ) -> None:
        """Add one span; lifts the hopscope.* and service keys out of the two maps.

        The maps may be dicts or (key, value) pairs; pairs keep a repeated key as often as
        it was written (like the fast path), and the lifted column takes its last value.
        Every value is checked before anything is appended: a bad one raises BadRecord.
        `flags`: repairs the reader made (set as ATTR_INGEST_FLAG and counted as adjusted).
        """
        limits = self.limits
        _id(trace_id, 32, "traceId")
        _id(span_id, 16, "spanId")
        if parent_span_id:
            _id(parent_span_id, 16, "parentSpanId")
        if not isinstance(links, list):
            raise BadRecord("links", f"links is not a list: {short(links)}")
        for i, link in enumerate(links):
            if not isinstance(link, tuple) or len(link) != 2:
                raise BadRecord(f"links[{i}]", f"not a (trace, span) pair: {short(link)}")
            _id(link[0], 32, f"links[{i}].traceId")
            _id(link[1], 16, f"links[{i}].spanId")
        if type(name) is not str:
            raise BadRecord("name", f"name is not a string: {short(name)}")
        if kind not in _KINDS:
            raise BadRecord("kind", f"unknown kind {short(kind)}")
        if status not in _STATUSES:
            raise BadRecord("status", f"unknown status {short(status)}")
        _ns(start_ns, "start")
        _ns(end_ns, "end")
        if end_ns < start_ns:
            raise BadRecord("end", f"ends {start_ns - end_ns} ns before it starts", "end_before_start")
        attrs, lifted, cut = _split(attributes, SPAN_LIFTED, limits.max_attribute_bytes, "attributes")
        res, res_lifted, res_cut = _split(resource, RESOURCE_LIFTED, limits.max_attribute_bytes, "resource")
        flags = list(flags)
        if cut or res_cut:
            flags.append("attribute_truncated")
        shorter = cut_utf8(name, limits.max_name_bytes)
        if shorter is not None:
            name = shorter
            flags.append("name_truncated")
        if flags:
            attrs = [kv for kv in attrs if kv[0] != ATTR_INGEST_FLAG]
            attrs.append((ATTR_INGEST_FLAG, ",".join(flags)))
            if self.problems is not None:
                for flag in flags:
                    self.problems.adjust(flag)
        c = self.cols
        c["trace_id"].append(trace_id)
        c["span_id"].append(span_id)
        c["parent_span_id"].append(parent_span_id or None)
        c["links"].append([{"trace_id": t, "span_id": s} for t, s in links])
        c["name"].append(name)
        c["kind"].append(kind)
        c["start_ns"].append(start_ns)
        c["end_ns"].append(end_ns)
        c["status"].append(status)
        c["service"].append(res_lifted.get(ATTR_SERVICE))
        c["stack"].append(res_lifted.get(ATTR_STACK))
        workload = lifted.get(ATTR_WORKLOAD)
        c["workload"].append(workload if workload is not None else res_lifted.get(ATTR_WORKLOAD))
        c["event_id"].append(lifted.get(ATTR_EVENT_ID))
        c["hop"].append(lifted.get(ATTR_HOP))
        c["derived"].append(is_true(lifted.get(ATTR_DERIVED)))
        c["attributes"].append(attrs)
        c["resource"].append(res)
        c["source"].append(self.source)

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.cols, schema=SPAN_SCHEMA)
