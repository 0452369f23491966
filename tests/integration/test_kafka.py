"""Kafka 4.4, 3 KRaft brokers: cluster shape, durability defaults, the topic helper, Kafka's own tools."""

from __future__ import annotations

import re
import secrets
import subprocess
import time

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer, TopicPartition

from hopscope.deploy.base import Context
from hopscope.deploy.registry import service_class
from hopscope.deploy.services.kafka import HEALTH_TOPIC, Kafka

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka(deployed: Context) -> Kafka:
    svc = service_class("kafka")(deployed)
    assert isinstance(svc, Kafka)
    return svc


def test_three_brokers_with_durable_defaults(kafka: Kafka) -> None:
    brokers = kafka.admin().list_topics(timeout=10).brokers
    if not kafka.is_external():
        assert sorted(brokers) == [1, 2, 3]
        assert {b.port for b in brokers.values()} == set(kafka.cfg.broker_ports)
        assert {b.host for b in brokers.values()} == {"127.0.0.1"}
    conf = kafka.broker_configs()
    assert conf["min.insync.replicas"] == "2"
    assert conf["default.replication.factor"] == "3" or conf["auto.create.topics.enable"] == "false"
    assert conf["unclean.leader.election.enable"] == "false"


def test_cluster_id_is_kept_in_the_state_dir(kafka: Kafka) -> None:
    if kafka.is_external():
        pytest.skip("external cluster")
    cluster = kafka.ctx.service_dir("kafka") / "cluster.json"
    cluster_id = cluster.read_text().split('"cluster_id": "')[1].split('"')[0]
    for node in (1, 2, 3):
        meta = (kafka.node_dir(node) / "data" / "meta.properties").read_text()
        assert f"cluster.id={cluster_id}" in meta
        assert f"node.id={node}" in meta


def test_health_round_trip_topic_is_rf3_min_isr2(kafka: Kafka) -> None:
    kafka.health()
    facts = kafka.topic_facts(HEALTH_TOPIC)
    assert facts["replication_factor"] == 3
    assert facts["min.insync.replicas"] == 2
    assert facts["min_isr_now"] >= 2


def test_ensure_topic_sets_and_alters_log_append_time(kafka: Kafka) -> None:
    topic = "hopscope.test.append-time"
    kafka.ensure_topic(topic, 2, configs={"message.timestamp.type": "CreateTime"})
    assert kafka.ensure_topic(topic, 2, configs={"message.timestamp.type": "LogAppendTime"}) == "altered"
    assert kafka.ensure_topic(topic, 2, configs={"message.timestamp.type": "LogAppendTime"}) == "unchanged"
    facts = kafka.topic_facts(topic)
    assert facts["message.timestamp.type"] == "LogAppendTime"
    assert (facts["partitions"], facts["replication_factor"]) == (2, 3)

    # The broker must overwrite a producer timestamp from 1970 with its own append time.
    payload = secrets.token_hex(8).encode()
    acks: list = []
    producer = Producer(kafka.producer_config())
    before_ms = time.time() * 1000
    producer.produce(
        topic, payload, partition=0, timestamp=1_000, on_delivery=lambda e, m: acks.append((e, m))
    )
    producer.flush(15)
    assert acks and acks[0][0] is None
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap(), "group.id": "hopscope-test"})
    try:
        consumer.assign([TopicPartition(topic, 0, acks[0][1].offset())])
        msg = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and msg is None:
            got = consumer.poll(0.5)
            if got is not None and not got.error():
                msg = got
    finally:
        consumer.close()
    assert msg is not None and msg.value() == payload
    ts_type, ts_ms = msg.timestamp()
    assert ts_type == TIMESTAMP_LOG_APPEND_TIME
    assert before_ms - 1_000 <= ts_ms <= time.time() * 1000 + 1_000


def test_ensure_topic_refuses_a_replication_factor_change(kafka: Kafka) -> None:
    topic = "hopscope.test.rf"
    kafka.ensure_topic(topic, 1)
    with pytest.raises(ValueError, match="replication factor 3, wanted 1"):
        kafka.ensure_topic(topic, 1, rf=1)


def test_kafka_end_to_end_latency_tool_runs(kafka: Kafka) -> None:
    topic = "hopscope.test.e2e"
    kafka.ensure_topic(
        topic, 1, configs={"min.insync.replicas": "2", "message.timestamp.type": "LogAppendTime"}
    )
    argv = kafka.tool_argv(
        "org.apache.kafka.tools.EndToEndLatency",
        "--bootstrap-server", kafka.bootstrap(), "--topic", topic,
        "--num-records", "200", "--producer-acks", "all", "--record-size", "100",
    )  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    avg = re.search(r"Avg latency: ([0-9.]+) ms", out.stdout)
    assert avg is not None, out.stdout[-1000:]
    assert 0.0 < float(avg.group(1)) < 5_000.0


def test_kafka_producer_performance_tool_runs(kafka: Kafka) -> None:
    topic = "hopscope.test.e2e"
    kafka.ensure_topic(
        topic, 1, configs={"min.insync.replicas": "2", "message.timestamp.type": "LogAppendTime"}
    )
    argv = kafka.tool_argv(
        "org.apache.kafka.tools.ProducerPerformance",
        "--bootstrap-server", kafka.bootstrap(), "--topic", topic,
        "--num-records", "300", "--record-size", "100", "--throughput", "300",
        "--command-property", "acks=all", "linger.ms=1", "compression.type=lz4", "enable.idempotence=true",
    )  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"^300 records sent, .* ms avg latency", out.stdout, re.M), out.stdout[-1000:]
