"""`DeferredTracer`: spans built at the flush are the spans the SDK would have built live — same
tree, ids, times, attributes, links and status — and nothing is built before the flush."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from hopscope.instrumentation.carriers import format_traceparent, parse_traceparent
from hopscope.instrumentation.deferred import DeferredTracer, HeldSpan, hot_path_tracer
from hopscope.instrumentation.derived import DerivedHop, derived_chain
from hopscope.instrumentation.edges import CONNECT, KAFKA, REDIS, Edge, messaging_from
from hopscope.instrumentation.hops import hop_span
from hopscope.instrumentation.tracing import deferred_processor, setup_tracing, shutdown_tracing

PRODUCER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _notify(tracer: trace.Tracer) -> dict[str, str]:
    """The notifier's shape: a derived chain after the producer, a consumer span, a publish
    span inside it whose context goes into the outgoing message, and a failed child."""
    producer = parse_traceparent(PRODUCER, "test").span_context()
    last = derived_chain(
        tracer, 1_000, [DerivedHop("pg.commit", 2_000, "source.ts_us", 1_000), DerivedHop("kafka.append", 3_000, "LogAppendTime (ms)", 1_000_000, Edge(CONNECT, KAFKA, "messaging_system"))],
        parent=producer, event_id="e1", workload="write_notify", link=producer,
    )  # fmt: skip
    carrier: dict[str, str] = {}
    with hop_span(tracer, "notifier.consume", event_id="e1", workload="write_notify", kind=SpanKind.CONSUMER,
                  parent=last, links=[producer], start_time=4_000, edge=messaging_from(KAFKA)):  # fmt: skip
        with hop_span(
            tracer,
            "redis.publish",
            event_id="e1",
            workload="write_notify",
            kind=SpanKind.PRODUCER,
            edge=Edge(server=REDIS, type="messaging_system"),
        ) as pub:
            carrier["traceparent"] = format_traceparent(pub.get_span_context())
            pub.set_attribute("hopscope.channels", 1)
        with (
            pytest.raises(RuntimeError),
            hop_span(tracer, "redis.route", event_id="e1", workload="write_notify"),
        ):
            raise RuntimeError("redis down")
    return carrier


def _shape(spans: list[ReadableSpan]) -> list[tuple]:
    by_id = {s.context.span_id: s.name for s in spans}
    return sorted(
        (
            s.name,
            by_id.get(s.parent.span_id, "remote") if s.parent else None,
            s.kind,
            tuple(sorted((k, v) for k, v in s.attributes.items())),
            len(s.links),
            s.status.status_code,
            [e.name for e in s.events],
        )
        for s in spans
    )


def test_deferred_spans_are_the_live_spans_built_later() -> None:
    live_exp, held_exp = Keep(), Keep()
    live = setup_tracing("svc", "kafka", "run-1", exporter=live_exp, export="batch")
    held = setup_tracing("svc", "kafka", "run-1", exporter=held_exp, export="deferred")
    _notify(live.get_tracer("t"))
    tracer = hot_path_tracer(held, "t")
    assert isinstance(tracer, DeferredTracer)
    carrier = _notify(tracer)
    processor = deferred_processor(held)
    assert processor is not None and processor._held == [] and tracer.built == 0  # nothing built yet
    shutdown_tracing(live)
    shutdown_tracing(held)
    assert tracer.built == 5
    assert _shape(held_exp.spans) == _shape(live_exp.spans)
    # the context propagated on the hot path is the exported span's own
    sent = parse_traceparent(carrier["traceparent"], "test").span_context()
    (publish,) = [s for s in held_exp.spans if s.name == "redis.publish"]
    assert (publish.context.trace_id, publish.context.span_id) == (sent.trace_id, sent.span_id)
    assert {s.context.trace_id for s in held_exp.spans} == {0x0AF7651916CD43DD8448EB211C80319C}
    (failed,) = [s for s in held_exp.spans if s.name == "redis.route"]
    assert (
        failed.status.status_code is StatusCode.ERROR
        and failed.events[0].attributes["exception.message"] == "redis down"
    )
    (commit,) = [s for s in held_exp.spans if s.name == "pg.commit"]
    assert (commit.start_time, commit.end_time) == (1_000, 2_000)
    # the service-map edges: the process's own end is its service.name, built or live
    edges = {
        s.name: (s.attributes.get("hopscope.edge.client"), s.attributes.get("hopscope.edge.server"))
        for s in held_exp.spans
    }
    assert edges == {
        "pg.commit": (None, None),
        "kafka.append": (CONNECT, KAFKA),
        "notifier.consume": (KAFKA, "svc"),
        "redis.publish": ("svc", REDIS),
        "redis.route": (None, None),
    }


def test_unsampled_spans_are_not_held() -> None:
    exporter = Keep()
    provider = setup_tracing("svc", "kafka", "run-1", exporter=exporter, export="deferred")
    tracer = hot_path_tracer(provider, "t")
    root = tracer.start_span("housekeeping")  # no hop: HopRoots would drop it
    assert not isinstance(root, HeldSpan) and not root.get_span_context().trace_flags.sampled
    with trace.use_span(root, end_on_exit=True):
        child = tracer.start_span("child", attributes={"hopscope.hop": "x"})
        assert not isinstance(child, HeldSpan)  # follows its unsampled parent
        child.end()
    hop_root = tracer.start_span("root", attributes={"hopscope.hop": "x"})
    assert isinstance(hop_root, HeldSpan)
    hop_root.end()
    shutdown_tracing(provider)
    assert [s.name for s in exporter.spans] == ["root"] and exporter.spans[0].parent is None


def test_batch_export_keeps_the_sdk_tracer() -> None:
    provider = setup_tracing("svc", "kafka", "run-1", exporter=Keep(), export="batch")
    assert not isinstance(hot_path_tracer(provider, "t"), DeferredTracer)
    with pytest.raises(ValueError, match="deferred export"):
        DeferredTracer(provider, "t")
    shutdown_tracing(provider)
