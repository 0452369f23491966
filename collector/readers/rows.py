"""Row-at-a-time builder of SPAN_SCHEMA tables, shared by every reader except the fast OTLP path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from hopscope.collector.schema import (
    ATTR_DERIVED,
    ATTR_EVENT_ID,
    ATTR_HOP,
    ATTR_SERVICE,
    ATTR_STACK,
    ATTR_WORKLOAD,
    SPAN_SCHEMA,
)

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
    """Spell a double the way Arrow's float→string cast does, so every reader agrees."""
    text = repr(float(x))
    if text.endswith(".0"):
        text = text[:-2]
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = exp[0] if exp[0] in "+-" else "+"
        text = f"{mantissa}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
    return text


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
        attributes: Mapping[str, str],
        resource: Mapping[str, str],
    ) -> None:
        """Add one span; lifts the hopscope.* and service keys out of the two maps."""
        attrs = dict(attributes)
        res = dict(resource)
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
        c["service"].append(res.pop(ATTR_SERVICE, None))
        c["stack"].append(res.pop(ATTR_STACK, None))
        res_workload = res.pop(ATTR_WORKLOAD, None)
        workload = attrs.pop(ATTR_WORKLOAD, None)
        c["workload"].append(workload if workload is not None else res_workload)
        c["event_id"].append(attrs.pop(ATTR_EVENT_ID, None))
        c["hop"].append(attrs.pop(ATTR_HOP, None))
        c["derived"].append(is_true(attrs.pop(ATTR_DERIVED, None)))
        c["attributes"].append(list(attrs.items()))
        c["resource"].append(list(res.items()))
        c["source"].append(self.source)

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.cols, schema=SPAN_SCHEMA)
