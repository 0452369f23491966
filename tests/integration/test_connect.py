"""Kafka Connect + Debezium 3.6.1 Postgres: plugin, fairness overrides, and a real CDC round trip."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from hopscope.deploy.base import Context
from hopscope.deploy.registry import service_class
from hopscope.deploy.services.kafka import CDC_HEALTH_CONNECTOR, CDC_HEALTH_TOPIC, DEBEZIUM_PG_CLASS, Connect

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def connect(deployed: Context) -> Connect:
    svc = service_class("connect")(deployed)
    assert isinstance(svc, Connect)
    return svc


def test_debezium_postgres_plugin_is_loaded(connect: Connect) -> None:
    plugins = httpx.get(f"{connect.cfg.url}/connector-plugins", timeout=10).json()
    versions = {p["class"]: p["version"] for p in plugins}
    assert versions.get(DEBEZIUM_PG_CLASS) == "3.6.1.Final"


def test_internal_topics_are_replicated_three_times(connect: Connect) -> None:
    for topic in ("hopscope-connect-configs", "hopscope-connect-offsets", "hopscope-connect-status"):
        assert connect.kafka.topic_facts(topic)["replication_factor"] == 3


def test_cdc_round_trip_carries_the_traceparent(connect: Connect) -> None:
    before_us = time.time_ns() // 1000
    event = connect.cdc_round_trip()
    after_us = time.time_ns() // 1000
    assert event["op"] == "c"
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", event["after"]["traceparent"])
    source = event["source"]
    assert (source["connector"], source["db"], source["table"]) == (
        "postgresql",
        "hopscope",
        "hopscope_cdc_health",
    )
    # The commit time Postgres reports must fall inside the round trip (same host clock, 1 s slack).
    assert before_us - 1_000_000 <= source["ts_us"] <= after_us
    facts = connect.kafka.topic_facts(CDC_HEALTH_TOPIC)
    assert (facts["replication_factor"], facts["min.insync.replicas"]) == (3, 2)


def test_connector_config_is_idempotent_and_fair(connect: Connect) -> None:
    connect.cdc_round_trip()  # registers the health connector if this is a fresh worker
    config = httpx.get(f"{connect.cfg.url}/connectors/{CDC_HEALTH_CONNECTOR}/config", timeout=10).json()
    assert connect.put_connector_config(CDC_HEALTH_CONNECTOR, config) == "unchanged"
    assert config["plugin.name"] == "pgoutput"
    assert int(config["poll.interval.ms"]) <= 10
    assert config["producer.override.enable.idempotence"] == "true"
    assert config["producer.override.acks"] == "all"
    assert config["producer.override.compression.type"] == "lz4"
    # The password is a config-provider reference, never the secret itself.
    assert config["database.password"].startswith("${file:")
