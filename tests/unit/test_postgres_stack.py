"""The `postgres` stack (issue #18): PostgreSQL alone, LISTEN/NOTIFY — its pure parts.

No services: the declaration, channel routing (no misdelivery by construction), the
notification envelope, LISTEN/NOTIFY's limits checked before any load, the derived hops' clamps,
the spans built from a run's records, and the `pgsync` service's configuration.
"""

from __future__ import annotations

import itertools

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hopscope.core.attributes import ATTR_HOP, ATTR_SUBSCRIBER
from hopscope.deploy.config import ConfigError, load_config
from hopscope.deploy.registry import resolve
from hopscope.pipelines.driver import PreflightError
from hopscope.pipelines.postgres.driver import PIPELINES, PostgresDriver, run_tag
from hopscope.pipelines.postgres.notify import (
    MAX_CHANNEL_BYTES,
    MAX_PAYLOAD_BYTES,
    LimitError,
    Notification,
    channel_for,
    channel_prefix,
    check_limits,
    field_order,
    subscriber_channels,
)
from hopscope.pipelines.postgres.spans import SpanRecords, build_spans, derived_chain
from hopscope.pipelines.stack import load_stack
from hopscope.pipelines.workload import load_workload

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_declared_with_every_workload_and_its_own_service() -> None:
    stack = load_stack("postgres")
    assert stack.driver_factory() is PostgresDriver
    assert tuple(stack.spec.services) == ("pgsync",)
    assert set(stack.spec.workloads) == set(PIPELINES) == {"write_notify", "fanout", "aggregate", "ingest"}
    for name, hops in stack.spec.workloads.items():
        assert hops.durability is not None and hops.durability.copies_before_notify == 2, name
        assert hops.hops[0].name == "client.insert"
    # the hops the driver's spans name are the declared ones
    for name, pipeline in PIPELINES.items():
        declared = [h.name for h in stack.hops(name).hops]
        if pipeline.trigger_hop is not None:
            assert declared[1:4] == [pipeline.trigger_hop, "pg.commit", "pg.replica.confirm"]
            assert declared[-1] == pipeline.receive_hop
    assert [h.name for h in stack.hops("aggregate").point_read_hops] == ["client.point_read", "pg.select"]
    assert {c.read_back for c in stack.spec.fairness} >= {
        "postgres.synchronous_commit",
        "postgres.synchronous_standby_names",
        "replicas[].sync_state",
    }


def test_up_only_postgres_stack_is_the_pair() -> None:
    assert resolve("pgsync") == ["pgsync"]


def test_pgsync_config_has_its_own_ports() -> None:
    cfg = load_config(environ={})
    ports = {cfg.pgsync.primary_port, cfg.pgsync.replica_port}
    assert len(ports) == 2 and cfg.postgres.port not in ports
    assert load_config(environ={"HOPSCOPE_PGSYNC__REPLICA_PORT": "26000"}).pgsync.replica_port == 26000
    with pytest.raises(ConfigError, match="pgsync"):
        load_config(environ={"HOPSCOPE_PGSYNC__NOPE": "1"})


def test_fanout_channels_deliver_exactly_the_matching_subscribers() -> None:
    workload = load_workload("fanout")
    prefix = channel_prefix(run_tag("20260101-000000-abc"), "fanout")
    listening = {s.name: set(subscriber_channels(prefix, workload, s)) for s in workload.subscribers}
    order = field_order(workload)
    combos = [
        dict(zip(order, values, strict=True))
        for values in itertools.product(*(workload.fields[f] for f in order))
    ]
    assert len(combos) == 6
    for fields in combos:
        # the channel the trigger computes for a row with these fields
        channel = channel_for(prefix, order, fields)
        told = {name for name, chans in listening.items() if channel in chans}
        assert told == set(workload.expected_subscribers(fields)), fields
    assert listening["all"] == {channel_for(prefix, order, c) for c in combos}
    assert listening["ap-alerts"] == {f"{prefix}_alerts_ap"}


def test_write_notify_has_one_channel_per_run() -> None:
    workload = load_workload("write_notify")
    a, b = channel_prefix(run_tag("run-a"), "write_notify"), channel_prefix(run_tag("run-b"), "write_notify")
    assert a != b
    assert {c for s in workload.subscribers for c in subscriber_channels(a, workload, s)} == {a}


def test_limits_refuse_payloads_notify_cannot_carry() -> None:
    prefix = channel_prefix("x" * 24, "fanout")
    for name in ("write_notify", "fanout", "aggregate", "ingest"):
        check_limits(load_workload(name), prefix)  # the shipped workloads fit
    with pytest.raises(LimitError, match=rf"PostgreSQL's limit is {MAX_PAYLOAD_BYTES}"):
        check_limits(load_workload("write_notify", {"payload_bytes": 8000}), prefix)
    check_limits(load_workload("write_notify", {"payload_bytes": 7000}), prefix)
    with pytest.raises(LimitError, match="over 63 bytes"):
        check_limits(load_workload("fanout"), "p" * MAX_CHANNEL_BYTES)


def test_preflight_names_the_limit_before_connecting() -> None:
    driver = PostgresDriver(check_collector=False)
    with pytest.raises(PreflightError, match=r"LISTEN/NOTIFY limit: .*payload_bytes 9000"):
        driver.preflight(load_workload("write_notify", {"payload_bytes": 9000}))
    with pytest.raises(PreflightError, match="not one of"):
        driver.preflight(load_workload("write_notify").model_copy(update={"name": "other"}))


def test_notification_envelope_parses_or_says_why() -> None:
    raw = orjson.dumps(
        {"e": "r-1", "tp": TP, "k": "k7", "tr": 1_700_000_000_000_000, "n": 3, "s": 4.5}
    ).decode()
    note = Notification.parse(raw, "hs_ag_x")
    assert (note.event_id, note.traceparent, note.count, note.total) == ("r-1", TP, 3, 4.5)
    assert Notification.parse(raw.replace(', "n":3', ""), "c").event_id == "r-1"
    with pytest.raises(ValueError, match="channel hs_x: notification is not the stack's envelope"):
        Notification.parse('{"e": "r-1"}', "hs_x")
    with pytest.raises(ValueError, match="not the stack's envelope"):
        Notification.parse("not json", "hs_x")


def test_derived_chain_clamps_coarse_stamps_to_the_previous_end() -> None:
    sent, ack = 1_000_000_500, 1_004_000_000
    # the trigger's µs stamp truncated below the client's ns send: clamped, never negative
    chain = derived_chain(sent, ack, trig_us=1_000_000, commit_us=1_000_900)
    assert chain == [(sent, sent), (sent, 1_000_900_000), (1_000_900_000, ack)]
    assert derived_chain(sent, ack, None, 5) is None


def test_spans_chain_under_the_root_and_receipts_under_the_confirmation() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    records = SpanRecords()
    records.write("e1", TP, 1_000, 9_000)
    records.receipt("e1", "sub-0", TP, 8_000, 8_500)  # told before the writer heard its commit
    records.receipt("e1", "sub-1", TP, 9_500, 9_600)
    counts = build_spans(
        records, {"e1": (0, 0)}, client=tracer, receiver=tracer, workload="write_notify",
        trigger_hop="pg.trigger", receive_hop="subscriber.receive",
    )  # fmt: skip
    assert counts["chains"] == 1 and counts["receipts"] == 2 and counts["errors"] == 0
    spans = {
        (s.attributes[ATTR_HOP], s.attributes.get(ATTR_SUBSCRIBER)): s for s in exporter.get_finished_spans()
    }
    trig, commit, confirm = (
        spans[("pg.trigger", None)],
        spans[("pg.commit", None)],
        spans[("pg.replica.confirm", None)],
    )
    assert trig.parent.span_id == 0xB7AD6B7169203331
    assert commit.parent.span_id == trig.context.span_id and confirm.parent.span_id == commit.context.span_id
    assert (confirm.start_time, confirm.end_time) == (1_000, 9_000)
    for sub in ("sub-0", "sub-1"):
        receive = spans[("subscriber.receive", sub)]
        assert receive.parent.span_id == confirm.context.span_id
        assert 0xB7AD6B7169203331 in [link.context.span_id for link in receive.links]
