"""The Kafka stack's service-level settings, read from the running brokers (the experiment
records them beside what each driver read back; named in `stack.yaml` as `services_readback`)."""

from __future__ import annotations

from typing import Any

from hopscope.deploy.base import Context
from hopscope.deploy.services.kafka import CONNECT_KAFKA_VERSION, DEBEZIUM_VERSION, KAFKA_VERSION, Kafka
from hopscope.deploy.services.postgres import PG_VERSION

BROKER_KEYS = ("default.replication.factor", "min.insync.replicas", "compression.type", "num.partitions")


def read_services(ctx: Context) -> dict[str, Any]:
    broker = Kafka(ctx).broker_configs()
    return {
        "broker": {k: broker.get(k) for k in BROKER_KEYS},
        # the versions deploy installs (the method section lists them)
        "kafka_version": KAFKA_VERSION,
        "connect_kafka_version": CONNECT_KAFKA_VERSION,
        "debezium_version": DEBEZIUM_VERSION,
        "postgres_version": PG_VERSION,
    }
