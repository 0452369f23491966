"""`hop_span`: a span for one logical hop, parented the way the design requires.

Across a broker the consumer-side span is a *child* of the producer-side span
(so a trace stays one tree and the collector's servicegraph can pair them)
*and* carries a span link to it (the messaging conventions' way, and what
Jaeger-style tools follow). The contrib Kafka instrumentation only links, so
pipelines use this helper for their consumer spans.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind

from hopscope.core.attributes import ATTR_EVENT_ID, ATTR_HOP, ATTR_SUBSCRIBER, ATTR_WORKLOAD

from .carriers import TraceParent
from .edges import Edge
from .tracing import deferred_processor

Parent = Context | SpanContext | TraceParent | trace.Span | None

_LINKED_KINDS = (SpanKind.CONSUMER, SpanKind.SERVER)


def _parent_span_context(parent: Parent) -> SpanContext | None:
    if parent is None:
        return None
    if isinstance(parent, TraceParent):
        return parent.span_context()
    if isinstance(parent, SpanContext):
        return parent
    if isinstance(parent, trace.Span):
        return parent.get_span_context()
    return trace.get_current_span(parent).get_span_context()


def _checked_parent(parent: Parent, hop: str, event_id: str) -> SpanContext | None:
    parent_sc = _parent_span_context(parent)
    if parent is not None and (parent_sc is None or not parent_sc.is_valid):
        raise ValueError(f"hop {hop!r} of event {event_id}: parent context is invalid (no upstream trace)")
    return parent_sc


def start_hop_span(
    tracer: trace.Tracer,
    hop: str,
    *,
    event_id: str,
    workload: str,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Parent = None,
    link_parent: bool | None = None,
    subscriber: str | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    start_time: int | None = None,
    name: str | None = None,
    links: Sequence[SpanContext] = (),
    edge: Edge | None = None,
) -> trace.Span:
    """Start (not end) a hop span.

    `parent` is the extracted upstream context. `link_parent` defaults to true
    for CONSUMER/SERVER spans: they become children of the remote parent and
    also link to it. `links` adds more (e.g. the original producer when the
    parent is the last derived span in between). `parent=None` continues the current span (in-process
    nesting), or starts a new trace when there is none. `edge`: the service-map edge this
    span crosses (edges.py), when it is the one span that names it.
    """
    parent_sc = _checked_parent(parent, hop, event_id)
    if link_parent is None:
        link_parent = kind in _LINKED_KINDS
    attrs: dict[str, str | int | float | bool] = {
        ATTR_HOP: hop,
        ATTR_EVENT_ID: event_id,
        ATTR_WORKLOAD: workload,
    }
    if subscriber is not None:
        attrs[ATTR_SUBSCRIBER] = subscriber
    if edge is not None:
        attrs.update(edge.attributes_for(tracer))
    attrs.update(attributes or {})
    context: Context | None
    if parent is None:
        context = None  # the current context
    elif isinstance(parent, Context):
        context = parent  # keep baggage and anything else the caller's context holds
    else:
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent_sc))
    all_links = [Link(parent_sc)] if (link_parent and parent_sc is not None) else []
    all_links += [Link(sc) for sc in links if parent_sc is None or sc.span_id != parent_sc.span_id]
    return tracer.start_span(
        name or hop, context=context, kind=kind, attributes=attrs, links=all_links, start_time=start_time
    )


@contextmanager
def hop_span(
    tracer: trace.Tracer,
    hop: str,
    *,
    event_id: str,
    workload: str,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Parent = None,
    link_parent: bool | None = None,
    subscriber: str | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    start_time: int | None = None,
    name: str | None = None,
    links: Sequence[SpanContext] = (),
    edge: Edge | None = None,
) -> Iterator[trace.Span]:
    """Context manager form: the span is current inside the block and ends on exit."""
    span = start_hop_span(
        tracer,
        hop,
        event_id=event_id,
        workload=workload,
        kind=kind,
        parent=parent,
        link_parent=link_parent,
        subscriber=subscriber,
        attributes=attributes,
        start_time=start_time,
        name=name,
        links=links,
        edge=edge,
    )
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield span


class LeafSpans:
    """Hop spans that are leaves in this process (nothing here starts a child of them: a
    subscriber's receipt) — with deferred export, recorded as their arguments on the hot path
    and built with the SDK when the process flushes, so a receiving thread does no span work
    while the phase runs (D15). Without deferred export (batch, or tracing off) `end` builds
    the span at once."""

    def __init__(self, provider: trace.TracerProvider, tracer_name: str) -> None:
        self.tracer = provider.get_tracer(tracer_name)
        processor = deferred_processor(provider)
        self._held: list[tuple[str, int, dict[str, Any]]] | None = None
        if processor is not None:
            self._held = []
            processor.before_flush.append(self.build)

    def end(self, hop: str, *, end_time: int | None = None, **kwargs: Any) -> None:
        """A finished hop span: `start_hop_span`'s arguments, and its end (default: now)."""
        end = end_time if end_time is not None else time.time_ns()
        # a bad parent fails here, where the caller counts it, not later inside the flush
        _checked_parent(kwargs.get("parent"), hop, kwargs.get("event_id", "?"))
        if self._held is None:
            start_hop_span(self.tracer, hop, **kwargs).end(end_time=end)
        else:
            self._held.append((hop, end, kwargs))

    def build(self) -> None:
        if not self._held:
            return
        held, self._held = self._held, []
        for hop, end, kwargs in held:
            start_hop_span(self.tracer, hop, **kwargs).end(end_time=end)
