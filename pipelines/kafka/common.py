"""Settings every Kafka-stack process shares: topics, client configs, the event payload, receipts.

The topic settings are fairness controls of the study (RF 3, `min.insync.replicas=2`);
the client settings that tune latency come from one `KafkaTuning` (`tuning.py`: the
profile's, or the defaults), so the bench process, the glue processes, the Streams app
and the manifest cannot disagree.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from .tuning import KafkaTuning

#: The stack's settings when no profile tunes them (the values it always ran with).
DEFAULT_TUNING = KafkaTuning()

#: Topic configs of every pipeline topic (LogAppendTime: the broker's append time is a derived hop).
TOPIC_CONFIGS = {
    "min.insync.replicas": "2",
    "message.timestamp.type": "LogAppendTime",
    "compression.type": "producer",
}
#: Consumer settings that are not tuning: background commits, start at the end, quiet logs.
CONSUMER_FIXED = {
    "enable.auto.commit": True,
    "auto.commit.interval.ms": 500,
    "auto.offset.reset": "latest",
}
#: librdkafka's log level of every client here (errors only)
LOG_LEVEL = 3
#: What every glue process prints on stdout once it is subscribed and ready.
READY = "READY"
#: The Kafka Streams app's service.name (its spans, and the client end of its output edge)
STREAMS_SERVICE = "kafka.streams"
#: Prefix of the line a glue process prints before READY: `CONFIG <json>`, the consumer
#: settings it built its consumer with (the manifest records them as read back from it).
CONFIG = "CONFIG"
#: Prefix of a receipt line a sink process writes on stdout: `R <event_id> <subscriber> <ns>`.
RECEIPT = "R"


def now_ns() -> int:
    return time.time_ns()


def producer_config(bootstrap: str, tuning: KafkaTuning = DEFAULT_TUNING) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, **tuning.producer_settings(), "log_level": LOG_LEVEL}


def consumer_config(bootstrap: str, group: str, tuning: KafkaTuning = DEFAULT_TUNING) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        **tuning.consumer_settings(),
        **CONSUMER_FIXED,
        "log_level": LOG_LEVEL,
    }


@dataclass(frozen=True)
class Topics:
    """Per-run names: a run never reads another run's records."""

    run_tag: str

    @property
    def events(self) -> str:
        return f"hopscope.{self.run_tag}.events"

    @property
    def aggregate_out(self) -> str:
        return f"hopscope.{self.run_tag}.aggregates"

    @property
    def cdc_prefix(self) -> str:
        return f"hopscope_{self.run_tag}"


def run_tag(run_id: str) -> str:
    """A Kafka/Postgres-safe short tag of a run id (topics, groups, slots, tables)."""
    cleaned = "".join(c if c.isalnum() else "_" for c in run_id.lower())
    return cleaned[-40:].strip("_") or "run"


@dataclass
class EventPayload:
    """The JSON body of a produced event (and of the row in write_notify)."""

    event_id: str
    key: str
    fields: dict[str, str]
    sent_ns: int
    value: float
    pad: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | str, where: str) -> EventPayload:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{where}: event payload is not JSON ({exc}): {raw[:80]!r}") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: event payload must be a JSON object")
        missing = [k for k in ("event_id", "key", "fields", "sent_ns", "value") if k not in doc]
        if missing:
            raise ValueError(f"{where}: event payload lacks field(s) {missing}")
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def receipt_line(event_id: str, subscriber: str, received_ns: int) -> str:
    return f"{RECEIPT} {event_id} {subscriber} {received_ns}\n"


def parse_receipt_line(line: str) -> tuple[str, str, int] | None:
    parts = line.split()
    if len(parts) != 4 or parts[0] != RECEIPT:
        return None
    return parts[1], parts[2], int(parts[3])
