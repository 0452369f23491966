"""Spans built from timestamps a component wrote into the event.

Postgres commit time (`source.ts_us`), Debezium's read time (`ts_us`) and the
broker's `LogAppendTime` (ms) are points a component cannot emit a span for.
A derived span covers [start_ns, end_ns] with `hopscope.derived=true`, the field
it came from and the timestamp resolution, so the analysis can tell a real
zero-length hop from a quantised one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind

from hopscope.core.attributes import (
    ATTR_DERIVED,
    ATTR_DERIVED_FROM,
    ATTR_DERIVED_PRECISION_NS,
    ATTR_EVENT_ID,
    ATTR_HOP,
    ATTR_WORKLOAD,
)

from .edges import Edge

NS_PER_US = 1_000
NS_PER_MS = 1_000_000


class DerivedTimestampError(ValueError):
    """Embedded timestamps that cannot form a span (end before start)."""


def ms_to_ns(ms: int | float) -> int:
    return round(ms * NS_PER_MS)


def us_to_ns(us: int | float) -> int:
    return round(us * NS_PER_US)


def _as_context(parent: Context | SpanContext | trace.Span | None) -> Context | None:
    if parent is None or isinstance(parent, Context):
        return parent
    if isinstance(parent, SpanContext):
        return trace.set_span_in_context(trace.NonRecordingSpan(parent))
    return trace.set_span_in_context(parent)


def derived_span(
    tracer: trace.Tracer,
    hop: str,
    start_ns: int,
    end_ns: int,
    *,
    parent: Context | SpanContext | trace.Span | None,
    event_id: str,
    workload: str,
    derived_from: str,
    precision_ns: int = 1,
    links: Sequence[SpanContext] = (),
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, str | int | float | bool] | None = None,
    name: str | None = None,
    edge: Edge | None = None,
) -> trace.Span:
    """Create and end a span covering [start_ns, end_ns]; returns it (already ended).

    A negative duration is an error, not clamped: it means the clocks of the
    writer and this host disagree, and hiding that would corrupt the hop.
    """
    if end_ns < start_ns:
        raise DerivedTimestampError(
            f"derived hop {hop!r} of event {event_id}: end {end_ns} is {start_ns - end_ns} ns before "
            f"start {start_ns} (from {derived_from})"
        )
    attrs: dict[str, str | int | float | bool] = {
        ATTR_HOP: hop,
        ATTR_EVENT_ID: event_id,
        ATTR_WORKLOAD: workload,
        ATTR_DERIVED: True,
        ATTR_DERIVED_FROM: derived_from,
        ATTR_DERIVED_PRECISION_NS: precision_ns,
    }
    if edge is not None:
        attrs.update(edge.attributes_for(tracer))
    attrs.update(attributes or {})
    span = tracer.start_span(
        name or hop,
        context=_as_context(parent),
        kind=kind,
        attributes=attrs,
        links=[Link(sc) for sc in links],
        start_time=start_ns,
    )
    span.end(end_time=end_ns)
    return span


@dataclass(frozen=True, slots=True)
class DerivedHop:
    hop: str
    end_ns: int  # the hop starts where the previous one ended
    derived_from: str
    precision_ns: int = 1
    edge: Edge | None = None


def derived_chain(
    tracer: trace.Tracer,
    start_ns: int,
    hops: Sequence[DerivedHop],
    *,
    parent: Context | SpanContext | trace.Span,
    event_id: str,
    workload: str,
    link: SpanContext | None = None,
) -> SpanContext:
    """Consecutive derived hops, each a child of the previous one (the first of `parent`).

    Returns the last span's context: the next real span (e.g. the consumer)
    becomes its child. `link` (usually the producer's context) is attached to
    the first derived span so the hop across the broker is also reachable by link.
    """
    current: Context | SpanContext | trace.Span = parent
    previous_end = start_ns
    last: SpanContext | None = None
    for i, step in enumerate(hops):
        span = derived_span(
            tracer,
            step.hop,
            previous_end,
            step.end_ns,
            parent=current,
            event_id=event_id,
            workload=workload,
            derived_from=step.derived_from,
            precision_ns=step.precision_ns,
            links=[link] if (link is not None and i == 0) else (),
            edge=step.edge,
        )
        last = span.get_span_context()
        current = last
        previous_end = step.end_ns
    if last is None:
        raise ValueError("derived_chain needs at least one hop")
    return last
