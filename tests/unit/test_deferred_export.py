"""Deferred span export: nothing is encoded or sent while a phase runs, everything is sent at the
flush, in bounded requests, and nothing is lost when the hold is full or the collector refuses."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from hopscope.core.attributes import ATTR_HOP
from hopscope.instrumentation.tracing import (
    EXPORT_MODE_ENV,
    DeferredSpanProcessor,
    resolve_export_mode,
    setup_tracing,
    shutdown_tracing,
)


class Recording(SpanExporter):
    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.calls: list[int] = []
        self.names: list[str] = []
        self.result = result
        self.closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls.append(len(spans))
        self.names += [s.name for s in spans]
        return self.result

    def shutdown(self) -> None:
        self.closed = True


def _spans(provider: TracerProvider, n: int, prefix: str = "s") -> None:
    tracer = provider.get_tracer("t")
    for i in range(n):
        with tracer.start_as_current_span(f"{prefix}{i}", attributes={ATTR_HOP: "h"}):
            pass


def test_nothing_is_sent_before_the_flush_and_everything_after_in_chunks() -> None:
    exporter = Recording()
    provider = setup_tracing("svc", "kafka", "run-1", exporter=exporter, export="deferred")
    assert isinstance(provider, TracerProvider)
    _spans(provider, 1300)
    assert exporter.calls == []  # the phase's hot path never reached the exporter
    shutdown_tracing(provider)
    assert exporter.calls == [512, 512, 276]
    assert exporter.names == [f"s{i}" for i in range(1300)]  # all of them, in order
    assert exporter.closed


def test_a_full_hold_exports_early_and_loses_nothing() -> None:
    exporter = Recording()
    proc = DeferredSpanProcessor(exporter, chunk=10, max_held=25)
    provider = TracerProvider()
    provider.add_span_processor(proc)
    _spans(provider, 60)
    assert proc.early_exports > 0 and sum(exporter.calls) < 60
    provider.shutdown()
    assert sorted(exporter.names, key=lambda s: int(s[1:])) == [f"s{i}" for i in range(60)]
    assert proc.exported == 60 and proc.failed == 0


def test_refused_exports_are_counted_not_hidden() -> None:
    exporter = Recording(SpanExportResult.FAILURE)
    proc = DeferredSpanProcessor(exporter, chunk=4)
    provider = TracerProvider()
    provider.add_span_processor(proc)
    _spans(provider, 10)
    assert proc.force_flush() is False
    assert proc.failed == 10 and proc.exported == 0


def test_spans_the_sampler_dropped_are_not_held() -> None:
    exporter = Recording()
    provider = setup_tracing("svc", "kafka", "run-1", exporter=exporter, export="deferred")
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("housekeeping"):  # no hop: HopRoots drops it
        pass
    _spans(provider, 2)
    shutdown_tracing(provider)
    assert exporter.names == ["s0", "s1"]


def test_the_export_mode_comes_from_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(EXPORT_MODE_ENV, raising=False)
    assert resolve_export_mode() == "deferred"
    monkeypatch.setenv(EXPORT_MODE_ENV, "batch")
    assert resolve_export_mode() == "batch"
    assert resolve_export_mode("deferred") == "deferred"
    provider = setup_tracing("svc", "kafka", "run-1", exporter=Recording())
    assert isinstance(provider, TracerProvider)
    processors = provider._active_span_processor._span_processors
    assert isinstance(processors[0], BatchSpanProcessor)
    shutdown_tracing(provider)
    monkeypatch.setenv(EXPORT_MODE_ENV, "sometimes")
    with pytest.raises(ValueError, match="HOPSCOPE_SPAN_EXPORT must be 'deferred' or 'batch'"):
        resolve_export_mode()


def test_leaf_spans_are_built_only_at_the_flush_with_their_recorded_times_and_parent() -> None:
    from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanKind

    from hopscope.instrumentation.carriers import parse_traceparent
    from hopscope.instrumentation.hops import LeafSpans
    from hopscope.instrumentation.tracing import deferred_processor

    exporter = Recording()
    provider = setup_tracing("svc", "kafka", "run-1", exporter=exporter, export="deferred")
    processor = deferred_processor(provider)
    assert processor is not None
    leaves = LeafSpans(provider, "t")
    parent = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "test")
    for i in range(3):
        leaves.end(
            "subscriber.receive", event_id=f"e{i}", workload="write_notify", kind=SpanKind.CONSUMER,
            parent=parent, subscriber="eu", start_time=1_000 + i, end_time=2_000 + i,
        )  # fmt: skip
    assert processor._held == [] and exporter.calls == []  # recorded, not yet a span
    with pytest.raises(ValueError, match="parent context is invalid"):  # a bad parent fails at once
        leaves.end("subscriber.receive", event_id="bad", workload="w", parent=INVALID_SPAN_CONTEXT)
    exported: list[ReadableSpan] = []
    exporter.export = lambda spans: exported.extend(spans) or SpanExportResult.SUCCESS  # type: ignore[method-assign]
    shutdown_tracing(provider)
    assert [(s.start_time, s.end_time) for s in exported] == [(1000, 2000), (1001, 2001), (1002, 2002)]
    assert {s.parent.span_id for s in exported} == {0xB7AD6B7169203331}
    assert {s.context.trace_id for s in exported} == {0x0AF7651916CD43DD8448EB211C80319C}


def test_leaf_spans_without_deferred_export_are_built_at_once() -> None:
    from hopscope.instrumentation.hops import LeafSpans

    exporter = Recording()
    provider = setup_tracing("svc", "kafka", "run-1", exporter=exporter, export="batch")
    LeafSpans(provider, "t").end("x.receive", event_id="e", workload="w", start_time=5, end_time=9)
    shutdown_tracing(provider)
    assert exporter.names == ["x.receive"]
