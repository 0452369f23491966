"""Apache Kafka 4.4 (3 KRaft brokers) and Kafka Connect + Debezium, run from Maven Central jars.

(Service classes to be written; the config sections are fixed here.)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

KAFKA_VERSION = "4.4.0"
DEBEZIUM_VERSION = "3.6.1.Final"


class KafkaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    broker_ports: list[int] = [29092, 29093, 29094]
    controller_ports: list[int] = [29192, 29193, 29194]
    heap: str = "512m"
    #: e.g. "kafka1.example:9092,kafka2.example:9092" — then no local brokers are started.
    external_bootstrap: str | None = None

    @property
    def bootstrap(self) -> str:
        return self.external_bootstrap or ",".join(f"127.0.0.1:{p}" for p in self.broker_ports)


class ConnectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = 28083
    heap: str = "512m"
    #: e.g. "http://connect.example:8083" — then no local worker is started.
    external_url: str | None = None

    @property
    def url(self) -> str:
        return self.external_url or f"http://127.0.0.1:{self.port}"
