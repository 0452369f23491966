"""Pure parts of the Kafka-stack pipeline: payload codec, receipt lines, derived-hop clamping, jar hash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hopscope.instrumentation.derived import NS_PER_MS
from hopscope.pipelines.kafka.common import EventPayload, parse_receipt_line, receipt_line, run_tag
from hopscope.pipelines.kafka.glue import _chain
from hopscope.pipelines.kafka.streams_app import SOURCE_DIR, source_hash


def test_payload_round_trip_and_errors() -> None:
    p = EventPayload("r-1", "k7", {"region": "eu"}, 123, 4.0, pad="xx")
    assert EventPayload.decode(p.encode(), "t") == p
    with pytest.raises(ValueError, match=r"topic\[0\]@5: event payload is not JSON"):
        EventPayload.decode(b"{nope", "topic[0]@5")
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['sent_ns', 'value'\]"):
        EventPayload.decode(b'{"event_id": "a", "key": "k", "fields": {}}', "here")


def test_receipt_lines() -> None:
    line = receipt_line("run-1-17", "sink", 1_700_000_000_123_456_789)
    assert parse_receipt_line(line) == ("run-1-17", "sink", 1_700_000_000_123_456_789)
    assert parse_receipt_line("READY") is None
    assert parse_receipt_line("R only-two") is None


def test_run_tag_is_kafka_and_postgres_safe() -> None:
    tag = run_tag("bench-kafka-fanout-20261128T044239Z-d15d59")
    assert tag.replace("_", "").isalnum() and tag == tag.lower() and len(tag) <= 40
    assert run_tag("a.b-c") == "a_b_c"


def test_derived_chain_clamps_a_coarser_clock_to_zero_length() -> None:
    sent = 1_000_000_000_500_000  # 0.5 ms into a millisecond
    append_ms = sent // NS_PER_MS  # truncated: before the send
    hops = _chain(
        sent,
        [
            ("pg.commit", sent + 2_000, "source.ts_us", 1000, None),
            ("kafka.append", append_ms * NS_PER_MS, "LogAppendTime (ms)", NS_PER_MS, None),
        ],
    )
    assert [h.end_ns for h in hops] == [sent + 2_000, sent + 2_000]
    assert hops[1].precision_ns == NS_PER_MS
    later = _chain(sent, [("kafka.append", (append_ms + 3) * NS_PER_MS, "x", NS_PER_MS, None)])
    assert later[0].end_ns == (append_ms + 3) * NS_PER_MS


def test_streams_source_hash_follows_the_sources(tmp_path: Path) -> None:
    copy = tmp_path / "streams"
    shutil.copytree(SOURCE_DIR, copy, ignore=shutil.ignore_patterns("target"))
    before = source_hash(copy)
    assert before == source_hash(copy)
    java = next(copy.rglob("Main.java"))
    java.write_text(java.read_text() + "\n// changed\n")
    assert source_hash(copy) != before


@pytest.mark.parametrize("root_spans", ["live", "deferred"])
def test_point_read_root_span_is_the_point_read_hop(root_spans: str) -> None:
    import asyncio

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hopscope.core.attributes import ATTR_HOP, ATTR_WORKLOAD
    from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing
    from hopscope.pipelines.driver import LoopbackDriver
    from hopscope.pipelines.loadgen import LoadGenerator
    from hopscope.pipelines.workload import load_workload

    exporter = InMemorySpanExporter()
    provider = setup_tracing("hopscope.loadgen", "kafka", "t", exporter=exporter)
    w = load_workload("aggregate", {"rate": 40, "point_read_rate": 40, "duration_s": 0.5, "warmup_s": 0})
    gen = LoadGenerator(
        w,
        LoopbackDriver(),
        stack="kafka",
        run_id="t",
        progress=False,
        tracer_provider=provider,
        root_spans=root_spans,
    )
    asyncio.run(gen.run())
    shutdown_tracing(provider)
    hops = {(s.attributes[ATTR_WORKLOAD], s.attributes[ATTR_HOP]) for s in exporter.get_finished_spans()}
    assert hops == {("aggregate", "client.produce"), ("point_read", "client.point_read")}
