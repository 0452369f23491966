"""Spans whose SDK work happens after the run: ids drawn on the hot path, spans built at the flush.

With deferred export (`tracing.py`) a process sends its spans when its run ends. A span's
creation still cost its process ~30–100 µs on the path it measures (sampler, attribute
containers, locks, context objects). `DeferredTracer` is a `Tracer` whose spans (`HeldSpan`)
only hold what they were given: the span id is drawn when the span starts, so its context can
be propagated at once (into a message header, as the parent of the next span, as the current
span of a contrib instrumentation); the SDK span — same ids, same times, same attributes,
links and status — is built when the process flushes (`DeferredSpanProcessor.before_flush`).

The sampling decision is the provider's (`ParentBased(HopRoots)`): a span follows its
parent's sampled flag, a root is sampled only when it names `hopscope.hop`. An unsampled span
is the API's `NonRecordingSpan`, as the SDK would return.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from random import getrandbits
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import Attributes, AttributeValue

from hopscope.core.attributes import ATTR_HOP

from .tracing import DEFERRED_ATTR, deferred_processor

SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class PresetIds(IdGenerator):
    """Hands the SDK the ids a span already carried (set them just before `start_span`)."""

    trace_id = 0
    span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id

    def is_trace_id_random(self) -> bool:
        return True


class HeldSpan(trace.Span):
    """A sampled span that records its arguments; the SDK builds it at the flush."""

    def __init__(
        self,
        owner: DeferredTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Attributes,
        links: Sequence[Link],
        start_time: int,
    ) -> None:
        self._owner = owner
        self.name = name
        self._context = context
        self.parent = parent
        self.kind = kind
        self.attributes: dict[str, AttributeValue] = dict(attributes or {})
        self.links = list(links)
        self.start_time = start_time
        self.end_time: int | None = None
        self.status: Status | None = None
        self.events: list[tuple[str, Attributes, int | None]] = []

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self.attributes.update(attributes)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def add_event(self, name: str, attributes: Attributes = None, timestamp: int | None = None) -> None:
        self.events.append((name, attributes, timestamp if timestamp is not None else time.time_ns()))

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        self.links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self.status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        attrs: dict[str, AttributeValue] = {
            "exception.type": type(exception).__name__,
            "exception.message": str(exception),
        }
        attrs.update(attributes or {})
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is not None:
            return
        self.end_time = end_time if end_time is not None else time.time_ns()
        self._owner._held.append(self)


class DeferredTracer(trace.Tracer):
    """A tracer of `HeldSpan`s, built with the provider's SDK tracer when the process flushes."""

    def __init__(self, provider: trace.TracerProvider, name: str) -> None:
        processor = deferred_processor(provider)
        if processor is None:
            raise ValueError("a DeferredTracer needs a provider with deferred export (setup_tracing)")
        self._ids = PresetIds()
        self._sdk = getattr(provider, "sdk", provider).get_tracer(name)
        self._sdk.id_generator = self._ids  # type: ignore[attr-defined]
        self._held: list[HeldSpan] = []
        self._build_lock = threading.Lock()
        self.built = 0
        processor.before_flush.append(self.build)

    @property
    def resource(self) -> Any:
        """The SDK tracer's resource (its `service.name` fills an edge's own end, edges.py)."""
        return getattr(self._sdk, "resource", None)

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            sampled = parent.trace_flags.sampled
            trace_id = parent.trace_id
        else:
            sampled = bool(attributes) and ATTR_HOP in attributes  # type: ignore[operator]
            trace_id = getrandbits(128) or 1
        span_id = getrandbits(64) or 1
        if not sampled:
            return trace.NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False))
        own = SpanContext(
            trace_id, span_id, is_remote=False, trace_flags=SAMPLED, trace_state=parent.trace_state
        )
        return HeldSpan(
            self,
            name,
            own,
            parent if parent.is_valid else None,
            kind,
            attributes,
            links or (),
            start_time if start_time is not None else time.time_ns(),
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current

    def build(self) -> None:
        """The SDK spans of every ended `HeldSpan`, same ids and times (called at the flush)."""
        with self._build_lock:
            held, self._held = self._held, []
            for span in held:
                self._ids.trace_id = span._context.trace_id
                self._ids.span_id = span._context.span_id
                ctx = (
                    trace.set_span_in_context(trace.NonRecordingSpan(span.parent))
                    if span.parent is not None
                    else Context()
                )
                sdk = self._sdk.start_span(
                    span.name,
                    context=ctx,
                    kind=span.kind,
                    attributes=span.attributes,
                    links=span.links,
                    start_time=span.start_time,
                )
                for name, attributes, timestamp in span.events:
                    sdk.add_event(name, attributes, timestamp)
                if span.status is not None:
                    sdk.set_status(span.status)
                sdk.end(end_time=span.end_time)
                self.built += 1


class DeferredProvider(trace.TracerProvider):
    """A provider whose tracers are `DeferredTracer`s: handed to the contrib instrumentations
    (psycopg, redis, httpx, confluent-kafka) so their spans are built at the flush too."""

    def __init__(self, sdk: trace.TracerProvider) -> None:
        self.sdk = sdk
        setattr(self, DEFERRED_ATTR, deferred_processor(sdk))
        self._tracers: dict[str, DeferredTracer] = {}

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        tracer = self._tracers.get(instrumenting_module_name)
        if tracer is None:
            tracer = self._tracers[instrumenting_module_name] = DeferredTracer(
                self, instrumenting_module_name
            )
        return tracer

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.sdk.force_flush(timeout_millis))  # type: ignore[attr-defined]


def hot_path_provider(provider: trace.TracerProvider) -> trace.TracerProvider:
    """A `DeferredProvider` when the provider exports deferred, else the provider itself."""
    return DeferredProvider(provider) if deferred_processor(provider) is not None else provider


def hot_path_tracer(provider: trace.TracerProvider, name: str) -> trace.Tracer:
    """A `DeferredTracer` when the provider exports deferred, else the provider's own tracer."""
    if deferred_processor(provider) is not None:
        return DeferredTracer(provider, name)
    return provider.get_tracer(name)
