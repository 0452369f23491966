"""Instrumentation core against the OTel SDK's own in-memory exporter."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from hopscope.core import attributes as conventions
from hopscope.instrumentation import carriers
from hopscope.instrumentation.carriers import TraceparentError, parse_traceparent
from hopscope.instrumentation.derived import DerivedHop, DerivedTimestampError, derived_chain, derived_span
from hopscope.instrumentation.hops import hop_span, start_hop_span
from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing, tracing_enabled


@pytest.fixture
def traced() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_wait_hop_names_the_gap_before_a_hop() -> None:
    assert conventions.wait_hop("notifier.consume") == "wait:notifier.consume"


@given(
    trace_id=st.integers(1, 2**128 - 1),
    span_id=st.integers(1, 2**64 - 1),
    flags=st.sampled_from([0, 1, 3]),
)
def test_traceparent_round_trip(trace_id: int, span_id: int, flags: int) -> None:
    sc = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags))
    text = carriers.format_traceparent(sc)
    parsed = parse_traceparent(text)
    assert parsed.trace_id == f"{trace_id:032x}" and parsed.span_id == f"{span_id:016x}"
    assert parsed.flags == flags and parsed.format() == text
    back = parsed.span_context()
    assert (back.trace_id, back.span_id, int(back.trace_flags)) == (trace_id, span_id, flags)


def test_flags_03_are_accepted_and_sampled() -> None:
    tp = parse_traceparent("00-6c162f502024b31225fff021f8e6d04b-f0c8d9eec1cbd94d-03")
    assert tp.flags == 3 and tp.sampled


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("00-6C162F502024B31225FFF021F8E6D04B-f0c8d9eec1cbd94d-01", "malformed"),  # upper case
        ("00-6c162f502024b31225fff021f8e6d04-f0c8d9eec1cbd94d-01", "malformed"),  # 31 hex trace id
        ("00-00000000000000000000000000000000-f0c8d9eec1cbd94d-01", "trace id is all zeros"),
        ("00-6c162f502024b31225fff021f8e6d04b-0000000000000000-01", "span (parent) id is all zeros"),
        ("ff-6c162f502024b31225fff021f8e6d04b-f0c8d9eec1cbd94d-01", "version 'ff'"),
        ("00-6c162f502024b31225fff021f8e6d04b-f0c8d9eec1cbd94d-01-extra", "extra fields"),
        ("", "malformed"),
        (b"\xff\xfe", "not ASCII"),
    ],
)
def test_malformed_traceparent_errors_name_the_carrier(value: str | bytes, fragment: str) -> None:
    with pytest.raises(TraceparentError) as err:
        parse_traceparent(value, where="kafka topic t headers")
    assert fragment in str(err.value) and "kafka topic t headers" in str(err.value)


def test_future_version_with_extra_fields_is_accepted() -> None:
    assert parse_traceparent("01-6c162f502024b31225fff021f8e6d04b-f0c8d9eec1cbd94d-01-abc").version == 1


def test_carriers_round_trip(traced: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, _ = traced
    span = tracer.start_span("p")
    sc = span.get_span_context()
    want = (f"{sc.trace_id:032x}", f"{sc.span_id:016x}")

    d: dict[str, str] = {}
    carriers.inject_dict(d, span)
    assert (carriers.extract_dict(d).trace_id, carriers.extract_dict(d).span_id) == want

    headers = [("traceparent", b"00-11111111111111111111111111111111-2222222222222222-01"), ("k", b"v")]
    carriers.inject_kafka_headers(headers, sc)
    assert [k for k, _ in headers].count("traceparent") == 1 and ("k", b"v") in headers
    tp = carriers.extract_kafka_headers(headers)
    assert (tp.trace_id, tp.span_id) == want

    http = {"TraceParent": "00-11111111111111111111111111111111-2222222222222222-01"}
    carriers.inject_http_headers(http, trace.set_span_in_context(span))
    assert list(http) == ["traceparent"]
    assert carriers.extract_http_headers({"TRACEPARENT": http["traceparent"]}).span_id == want[1]

    env = carriers.parse_envelope(carriers.make_envelope("ev-1", {"x": 1}, span))
    assert env.event_id == "ev-1" and env.payload == {"x": 1} and env.parent.trace_id == want[0]

    payload: dict[str, object] = {"id": "a"}
    carriers.inject_payload(payload, span)
    assert carriers.extract_payload(payload).span_id == want[1]


def test_carrier_errors() -> None:
    good = "00-6c162f502024b31225fff021f8e6d04b-f0c8d9eec1cbd94d-01"
    other = "00-6c162f502024b31225fff021f8e6d04b-f0c8d9eec1cbd94e-01"
    with pytest.raises(TraceparentError, match="no 'traceparent' header"):
        carriers.extract_kafka_headers([("a", b"b")])
    with pytest.raises(TraceparentError, match="2 different"):
        carriers.extract_kafka_headers([("traceparent", good.encode()), ("traceparent", other.encode())])
    with pytest.raises(TraceparentError, match=r"missing field\(s\) \['event_id'\]"):
        carriers.parse_envelope(orjson.dumps({"traceparent": good, "payload": 1}))
    with pytest.raises(TraceparentError, match="not JSON"):
        carriers.parse_envelope(b"{nope")
    with pytest.raises(TraceparentError, match=r"event e7\)\.traceparent"):
        carriers.parse_envelope(orjson.dumps({"traceparent": "00-zz", "event_id": "e7", "payload": 1}))
    with pytest.raises(TraceparentError, match="invalid"):
        carriers.format_traceparent(trace.INVALID_SPAN_CONTEXT)


def test_consumer_hop_is_child_and_link_of_producer(
    traced: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = traced
    with hop_span(
        tracer, "client.produce", event_id="e1", workload="fanout", kind=SpanKind.PRODUCER
    ) as producer:
        headers: list[tuple[str, bytes]] = []
        carriers.inject_kafka_headers(headers, producer)
    parent = carriers.extract_kafka_headers(headers)
    with (
        hop_span(
            tracer, "router.consume", event_id="e1", workload="fanout", kind=SpanKind.CONSUMER, parent=parent
        ) as consumer,
        hop_span(tracer, "redis.route", event_id="e1", workload="fanout") as inner,
    ):
        pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    p, c, i = spans["client.produce"], spans["router.consume"], spans["redis.route"]
    assert p.parent is None
    assert c.context.trace_id == p.context.trace_id
    assert c.parent is not None and c.parent.span_id == p.context.span_id
    assert [(lk.context.trace_id, lk.context.span_id) for lk in c.links] == [
        (p.context.trace_id, p.context.span_id)
    ]
    assert i.parent is not None and i.parent.span_id == c.context.span_id and not i.links  # internal: no link
    assert c.attributes[conventions.ATTR_HOP] == "router.consume"
    assert (
        c.attributes[conventions.ATTR_EVENT_ID] == "e1"
        and c.attributes[conventions.ATTR_WORKLOAD] == "fanout"
    )
    assert consumer.get_span_context().span_id == c.context.span_id and inner is not None


def test_subscriber_attribute_and_invalid_parent(traced: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = traced
    span = start_hop_span(
        tracer, "subscriber.receive", event_id="e", workload="w", subscriber="eu", kind=SpanKind.CONSUMER
    )
    span.end()
    assert exporter.get_finished_spans()[0].attributes[conventions.ATTR_SUBSCRIBER] == "eu"
    with pytest.raises(ValueError, match="parent context is invalid"):
        start_hop_span(tracer, "x", event_id="e", workload="w", parent=trace.INVALID_SPAN_CONTEXT)


def test_derived_spans_have_exact_times_parent_and_flag(
    traced: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = traced
    root = tracer.start_span("client.insert", start_time=1_000)
    root.end(end_time=5_000)
    producer_sc = root.get_span_context()
    last = derived_chain(
        tracer,
        2_000,
        [
            DerivedHop("pg.commit", 3_000, "source.ts_us", 1_000),
            DerivedHop("debezium.capture", 7_000, "ts_us", 1_000),
            DerivedHop("kafka.append", 9_000_000, "LogAppendTime", 1_000_000),
        ],
        parent=producer_sc,
        event_id="e9",
        workload="write_notify",
        link=producer_sc,
    )
    spans = {s.name: s for s in exporter.get_finished_spans()}
    pg, dbz, kafka = spans["pg.commit"], spans["debezium.capture"], spans["kafka.append"]
    assert (pg.start_time, pg.end_time) == (2_000, 3_000)
    assert (dbz.start_time, dbz.end_time) == (3_000, 7_000)
    assert (kafka.start_time, kafka.end_time) == (7_000, 9_000_000)
    assert pg.parent.span_id == producer_sc.span_id
    assert dbz.parent.span_id == pg.context.span_id and kafka.parent.span_id == dbz.context.span_id
    assert [lk.context.span_id for lk in pg.links] == [producer_sc.span_id] and not dbz.links
    assert all(s.attributes[conventions.ATTR_DERIVED] is True for s in (pg, dbz, kafka))
    assert kafka.attributes[conventions.ATTR_DERIVED_PRECISION_NS] == 1_000_000
    assert dbz.attributes[conventions.ATTR_DERIVED_FROM] == "ts_us"
    assert last.span_id == kafka.context.span_id


def test_derived_span_rejects_end_before_start(traced: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = traced
    with pytest.raises(
        DerivedTimestampError, match=r"'pg.commit' of event e1: end 10 is 5 ns before start 15"
    ):
        derived_span(
            tracer, "pg.commit", 15, 10, parent=None, event_id="e1", workload="w", derived_from="source.ts_us"
        )
    assert exporter.get_finished_spans() == ()


def test_setup_tracing_resource_and_disabled_path() -> None:
    exporter = InMemorySpanExporter()
    provider = setup_tracing("kafka.notifier", "kafka", "run-1", exporter=exporter)
    assert tracing_enabled(provider)
    provider.get_tracer("t").start_span("a", attributes={conventions.ATTR_HOP: "a"}).end()
    shutdown_tracing(provider)
    (span,) = exporter.get_finished_spans()
    attrs = span.resource.attributes
    assert (attrs["service.name"], attrs["hopscope.stack"], attrs["hopscope.run_id"]) == (
        "kafka.notifier",
        "kafka",
        "run-1",
    )

    off = setup_tracing("x", "kafka", "run-1", enabled=False)
    assert not tracing_enabled(off)
    span = off.get_tracer("t").start_span("a")
    assert not span.get_span_context().is_valid
    shutdown_tracing(off)


def test_setup_tracing_rejects_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="grpc"):
        setup_tracing("x", "kafka", "r", protocol="thrift")


def test_consumer_after_derived_spans_links_parent_and_producer(
    traced: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = traced
    producer = tracer.start_span("client.insert", kind=SpanKind.PRODUCER)
    producer.end()
    psc = producer.get_span_context()
    last = derived_chain(
        tracer, producer.start_time, [DerivedHop("kafka.append", producer.start_time + 10, "LogAppendTime")],
        parent=psc, event_id="e", workload="w",
    )  # fmt: skip
    with hop_span(
        tracer,
        "notifier.consume",
        event_id="e",
        workload="w",
        kind=SpanKind.CONSUMER,
        parent=last,
        links=[psc],
    ):
        pass
    consumer = next(s for s in exporter.get_finished_spans() if s.name == "notifier.consume")
    assert consumer.parent.span_id == last.span_id
    assert {lk.context.span_id for lk in consumer.links} == {last.span_id, psc.span_id}
