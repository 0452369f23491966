"""Contrib instrumentation on our clients: library spans nest under hops, and only there."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hopscope.instrumentation.carriers import format_traceparent, parse_traceparent
from hopscope.instrumentation.deferred import DeferredProvider
from hopscope.instrumentation.hops import hop_span
from hopscope.instrumentation.libraries import trace_client, within_traceparent
from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing


@pytest.fixture(params=["live", "deferred"])
def provider_and_spans(request):  # type: ignore[no-untyped-def]
    """The SDK's provider (spans built as they happen), or the deferred one (spans built at the
    flush, contrib instrumentations included): every test below must hold for both."""
    exporter = InMemorySpanExporter()
    sdk = setup_tracing(
        "svc", "kafka", "run-1", exporter=exporter, export="batch" if request.param == "live" else "deferred"
    )
    yield (sdk if request.param == "live" else DeferredProvider(sdk)), exporter
    shutdown_tracing(sdk)


def _spans(provider, exporter):  # type: ignore[no-untyped-def]
    provider.force_flush()
    return {s.name: s for s in exporter.get_finished_spans()}


def test_library_spans_outside_a_hop_start_no_trace(provider_and_spans) -> None:  # type: ignore[no-untyped-def]
    provider, exporter = provider_and_spans
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("SELECT"):  # a library call made outside any hop
        pass
    with (
        hop_span(tracer, "notifier.consume", event_id="e1", workload="w"),
        tracer.start_as_current_span("PUBLISH"),
    ):
        pass
    spans = _spans(provider, exporter)
    assert set(spans) == {"notifier.consume", "PUBLISH"}
    assert spans["PUBLISH"].parent.span_id == spans["notifier.consume"].context.span_id


def test_httpx_client_span_nests_under_the_carried_context(provider_and_spans) -> None:  # type: ignore[no-untyped-def]
    provider, exporter = provider_and_spans
    tracer = provider.get_tracer("t")
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["traceparent"])
        return httpx.Response(200, json={})

    client = trace_client(httpx.Client(transport=httpx.MockTransport(answer)), provider)
    with hop_span(tracer, "client.send", event_id="e1", workload="w") as root:
        carried = format_traceparent(root.get_span_context())
    untraced = httpx.Client(transport=httpx.MockTransport(answer))
    with within_traceparent(carried):
        client.get("http://iq.invalid/aggregates/k")
        untraced.get("http://iq.invalid/aggregates/k", headers={"traceparent": carried})
    spans = _spans(provider, exporter)
    get = spans["GET"]
    assert get.parent.span_id == root.get_span_context().span_id
    assert get.context.trace_id == root.get_span_context().trace_id
    # the server is handed the library span's context, a child of the event's root
    assert parse_traceparent(seen[0], "header").span_id == f"{get.context.span_id:016x}"
    assert seen[1] == carried  # an uninstrumented client passes the carrier through
    assert len(spans) == 2


def test_kafka_producer_send_span_nests_and_its_context_goes_into_the_headers(provider_and_spans) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka import Producer

    provider, exporter = provider_and_spans
    tracer = provider.get_tracer("t")
    # No broker is needed: produce() only enqueues; the record is purged unsent.
    producer = trace_client(
        Producer({"bootstrap.servers": "127.0.0.1:9", "socket.timeout.ms": 100}), provider
    )
    with hop_span(tracer, "kafka.produce", event_id="e1", workload="w") as root:
        carried = format_traceparent(root.get_span_context())
    headers: list[tuple[str, bytes]] = []
    with within_traceparent(carried):
        producer.produce("events", value=b"x", headers=headers)
    producer.produce("events", value=b"warm-up")  # outside any event: no span recorded
    producer.purge()
    spans = _spans(provider, exporter)
    send = spans["events send"]
    assert send.parent.span_id == root.get_span_context().span_id
    ((key, value),) = headers
    assert key == "traceparent"
    assert parse_traceparent(value.decode(), "header").span_id == f"{send.context.span_id:016x}"
    assert len(spans) == 2


def test_tracing_off_leaves_the_client_alone() -> None:
    provider = setup_tracing("svc", "kafka", "run-1", enabled=False)
    client = httpx.Client()
    assert trace_client(client, provider) is client
    assert not getattr(client, "_is_instrumented_by_opentelemetry", False)
    with pytest.raises(TypeError, match="no contrib instrumentation"):
        trace_client(object(), setup_tracing("svc", "kafka", "run-1", exporter=InMemorySpanExporter()))
