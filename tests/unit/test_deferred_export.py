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
