"""The Kafka stack's service-level settings, read from the running brokers (the experiment
records them beside what each driver read back; named in `stack.yaml` as `services_readback`)."""

from __future__ import annotations

from typing import Any

from hopscope.deploy.base import Context
from hopscope.deploy.services.kafka import Kafka

BROKER_KEYS = ("default.replication.factor", "min.insync.replicas", "compression.type", "num.partitions")


def read_services(ctx: Context) -> dict[str, Any]:
    broker = Kafka(ctx).broker_configs()
    return {"broker": {k: broker.get(k) for k in BROKER_KEYS}}
