"""Row-at-a-time builder of SPAN_SCHEMA tables, shared by every reader except the fast OTLP path."""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from hopscope.core.attributes import (
    ATTR_DERIVED,
    ATTR_EVENT_ID,
    ATTR_HOP,
    ATTR_SERVICE,
    ATTR_STACK,
    ATTR_WORKLOAD,
)
from hopscope.core.schema import SPAN_SCHEMA

#: Span attributes that get their own column.
SPAN_LIFTED = frozenset({ATTR_WORKLOAD, ATTR_EVENT_ID, ATTR_HOP, ATTR_DERIVED})
#: Resource attributes that get their own column (workload is a fallback for the span's).
RESOURCE_LIFTED = frozenset({ATTR_SERVICE, ATTR_STACK, ATTR_WORKLOAD})

#: Attribute a reader sets on a span it kept but had to repair (comma-separated problem kinds).
ATTR_INGEST_FLAG = "hopscope.ingest.flag"

_TRUE = frozenset({"true", "1", "yes"})


def is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


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


def _split(
    kvs: Mapping[str, str | None] | list[tuple[str, str | None]], lifted_keys: frozenset[str]
) -> tuple[list[tuple[str, str | None]], dict[str, str | None]]:
    rest: list[tuple[str, str | None]] = []
    lifted: dict[str, str | None] = {}
    for k, v in kvs.items() if isinstance(kvs, Mapping) else kvs:
        if k in lifted_keys:
            lifted[k] = v
        else:
            rest.append((k, v))
    return rest, lifted


@dataclass
class SpanRows:
    """Column lists for one source; `table()` turns them into SPAN_SCHEMA."""

    source: str
    cols: dict[str, list] = field(default_factory=lambda: {n: [] for n in SPAN_SCHEMA.names})

    def __len__(self) -> int:
        return len(self.cols["trace_id"])

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
        attributes: Mapping[str, str | None] | list[tuple[str, str | None]],
        resource: Mapping[str, str | None] | list[tuple[str, str | None]],
    ) -> None:
        """Add one span; lifts the hopscope.* and service keys out of the two maps.

        The maps may be dicts or (key, value) pairs; pairs keep a repeated key as often as
        it was written (like the fast path), and the lifted column takes its last value.
        """
        attrs, lifted = _split(attributes, SPAN_LIFTED)
        res, res_lifted = _split(resource, RESOURCE_LIFTED)
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
