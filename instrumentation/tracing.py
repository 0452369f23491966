"""Tracer setup shared by every hopscope Python process.

`setup_tracing(..., enabled=False)` returns the API's no-op provider so the same
code runs with tracing off: that is one side of the tracing-overhead A/B.

Export is *deferred* by default: finished spans are held in memory and sent when the
process flushes (the end of its phase), not while it sends or receives events. Encoding
and sending OTLP in Python cost the measured processes ~1 ms of CPU per event on their own
hot paths, which moved the latencies they measure (`docs/decisions.md` D13, D15).
`HOPSCOPE_SPAN_EXPORT=batch` restores the SDK's background batch export (for a
long-running process, or to compare).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

from hopscope.core.attributes import ATTR_HOP, ATTR_RUN_ID, ATTR_SERVICE, ATTR_STACK

#: Env vars read when no endpoint/protocol is passed (OTel's own names first).
ENDPOINT_ENV = ("HOPSCOPE_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_ENV = ("HOPSCOPE_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
DEFAULT_GRPC_ENDPOINT = "http://127.0.0.1:4317"
DEFAULT_HTTP_ENDPOINT = "http://127.0.0.1:4318/v1/traces"

Protocol = Literal["grpc", "http/protobuf"]
ExportMode = Literal["deferred", "batch"]
EXPORT_MODE_ENV = "HOPSCOPE_SPAN_EXPORT"
#: spans per OTLP request when a deferred processor flushes (~0.3 MB: far below the
#: collector's 4 MiB gRPC message limit)
DEFERRED_CHUNK = 512
#: spans one process holds before it exports a chunk early (on its own path, counted):
#: ~1-2 KB each, so about a gigabyte at most
DEFERRED_MAX_HELD = 500_000

#: where a provider keeps its DeferredSpanProcessor (`deferred_processor`)
DEFERRED_ATTR = "hopscope_deferred"

log = logging.getLogger(__name__)


def _first_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def resolve_protocol(protocol: str | None = None) -> Protocol:
    value = protocol or _first_env(PROTOCOL_ENV) or "grpc"
    if value not in ("grpc", "http/protobuf"):
        raise ValueError(f"OTLP protocol must be 'grpc' or 'http/protobuf', got {value!r}")
    return value  # type: ignore[return-value]


def make_otlp_exporter(endpoint: str | None = None, protocol: str | None = None) -> SpanExporter:
    proto = resolve_protocol(protocol)
    url = endpoint or _first_env(ENDPOINT_ENV)
    if proto == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        url = url or DEFAULT_GRPC_ENDPOINT
        return GrpcExporter(endpoint=url, insecure=url.startswith("http://"))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    url = url or DEFAULT_HTTP_ENDPOINT
    if not url.rstrip("/").endswith("/v1/traces"):
        url = url.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=url)


def resolve_export_mode(mode: str | None = None) -> ExportMode:
    value = mode or os.environ.get(EXPORT_MODE_ENV) or "deferred"
    if value not in ("deferred", "batch"):
        raise ValueError(f"{EXPORT_MODE_ENV} must be 'deferred' or 'batch', got {value!r}")
    return value  # type: ignore[return-value]


class DeferredSpanProcessor(SpanProcessor):
    """Holds finished spans and exports them only on `force_flush()` / `shutdown()`.

    `on_end` is a list append under a lock (no encoding, no I/O, no thread woken), so a
    traced phase pays only for creating its spans. Past `max_held` spans a chunk is exported
    at once, on the caller's thread, and counted in `early_exports`: memory stays bounded
    and nothing is dropped. Spans whose export failed are counted in `failed`.
    """

    def __init__(
        self, exporter: SpanExporter, chunk: int = DEFERRED_CHUNK, max_held: int = DEFERRED_MAX_HELD
    ) -> None:
        self.exporter = exporter
        self.chunk = chunk
        self.max_held = max_held
        self._held: list[ReadableSpan] = []
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._stopped = False
        #: run first at every flush: they turn records held elsewhere into spans (`LeafSpans`)
        self.before_flush: list[Callable[[], None]] = []
        self.exported = 0
        self.failed = 0
        self.early_exports = 0

    def on_end(self, span: ReadableSpan) -> None:
        if self._stopped or not span.context.trace_flags.sampled:
            return
        with self._lock:
            self._held.append(span)
            full = len(self._held) >= self.max_held
        if full:
            self.early_exports += 1
            self._export(self._take(self.chunk))

    def _take(self, n: int | None = None) -> list[ReadableSpan]:
        with self._lock:
            if n is None or n >= len(self._held):
                out, self._held = self._held, []
            else:
                out, self._held = self._held[:n], self._held[n:]
        return out

    def _export(self, spans: list[ReadableSpan]) -> bool:
        ok = True
        with self._export_lock:
            for i in range(0, len(spans), self.chunk):
                part = spans[i : i + self.chunk]
                try:
                    result = self.exporter.export(part)
                except Exception as exc:  # an exporter must not raise; if it does, count and go on
                    log.warning("span export raised %s: %s", type(exc).__name__, exc)
                    result = SpanExportResult.FAILURE
                if result is SpanExportResult.SUCCESS:
                    self.exported += len(part)
                else:
                    self.failed += len(part)
                    ok = False
        return ok

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        for build in list(self.before_flush):
            build()
        return self._export(self._take())

    def shutdown(self) -> None:
        if self._stopped:
            return
        self.force_flush()
        self._stopped = True
        if self.failed:
            log.warning("%d span(s) could not be exported (the collector refused or was down)", self.failed)
        self.exporter.shutdown()


class HopRoots(Sampler):
    """Starts a trace only for a hop span (one that names `hopscope.hop` when it starts).

    Behind `ParentBased`: a span with a parent follows the parent's sampled flag. A
    library span (contrib instrumentation) made outside any hop — connection set-up,
    housekeeping queries — would otherwise be a trace of its own with no event.
    """

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if attributes and ATTR_HOP in attributes:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return SamplingResult(Decision.DROP, None, trace_state)

    def get_description(self) -> str:
        return "HopRoots"


def setup_tracing(
    service_name: str,
    stack: str,
    run_id: str,
    endpoint: str | None = None,
    enabled: bool = True,
    *,
    protocol: str | None = None,
    exporter: SpanExporter | None = None,
    extra_resource: dict[str, str | bool | int] | None = None,
    max_queue_size: int = 65536,
    set_global: bool = False,
    export: str | None = None,
) -> trace.TracerProvider:
    """A TracerProvider for one process, or the no-op provider when `enabled` is false.

    `exporter` replaces the OTLP exporter (tests pass the SDK's InMemorySpanExporter).
    `export`: "deferred" (default, or `HOPSCOPE_SPAN_EXPORT`) sends the spans at the flush
    only; "batch" is the SDK's background export, whose queue is larger than the SDK default
    (2048) because the load generator opens spans in bursts when it catches up (a full
    queue drops spans).
    """
    mode = resolve_export_mode(export)
    if not enabled:
        provider: trace.TracerProvider = trace.NoOpTracerProvider()
    else:
        attributes: dict[str, str | bool | int] = {
            ATTR_SERVICE: service_name,
            ATTR_STACK: stack,
            ATTR_RUN_ID: run_id,
        }
        attributes.update(extra_resource or {})
        sdk_provider = TracerProvider(
            resource=Resource.create(attributes), sampler=ParentBased(root=HopRoots())
        )
        span_exporter = exporter if exporter is not None else make_otlp_exporter(endpoint, protocol)
        processor: SpanProcessor = (
            DeferredSpanProcessor(span_exporter)
            if mode == "deferred"
            else BatchSpanProcessor(
                span_exporter,
                max_queue_size=max_queue_size,
                max_export_batch_size=min(4096, max_queue_size),
                schedule_delay_millis=500,
            )
        )
        sdk_provider.add_span_processor(processor)
        if isinstance(processor, DeferredSpanProcessor):
            setattr(sdk_provider, DEFERRED_ATTR, processor)
        provider = sdk_provider
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def deferred_processor(provider: trace.TracerProvider | None) -> DeferredSpanProcessor | None:
    """The provider's deferred processor, or None (batch export, tracing off)."""
    return getattr(provider, DEFERRED_ATTR, None)


def tracing_enabled(provider: trace.TracerProvider) -> bool:
    """An SDK provider, or one that builds its spans at the flush (`deferred.DeferredProvider`)."""
    return isinstance(provider, TracerProvider) or deferred_processor(provider) is not None


def shutdown_tracing(provider: trace.TracerProvider) -> None:
    """Flush and stop the exporter (no-op provider: nothing to do)."""
    if isinstance(provider, TracerProvider):
        provider.force_flush()
        provider.shutdown()
