"""Tracer setup shared by every hopscope Python process.

`setup_tracing(..., enabled=False)` returns the API's no-op provider so the same
code runs with tracing off: that is one side of the tracing-overhead A/B.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
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
) -> trace.TracerProvider:
    """A TracerProvider for one process, or the no-op provider when `enabled` is false.

    `exporter` replaces the OTLP exporter (tests pass the SDK's InMemorySpanExporter).
    The queue is larger than the SDK default (2048) because the load generator
    opens spans in bursts when it catches up; a full queue drops spans.
    """
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
        sdk_provider.add_span_processor(
            BatchSpanProcessor(
                exporter if exporter is not None else make_otlp_exporter(endpoint, protocol),
                max_queue_size=max_queue_size,
                max_export_batch_size=min(4096, max_queue_size),
                schedule_delay_millis=500,
            )
        )
        provider = sdk_provider
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def tracing_enabled(provider: trace.TracerProvider) -> bool:
    return isinstance(provider, TracerProvider)


def shutdown_tracing(provider: trace.TracerProvider) -> None:
    """Flush and stop the exporter (no-op provider: nothing to do)."""
    if isinstance(provider, TracerProvider):
        provider.force_flush()
        provider.shutdown()
