"""The Kafka stack's latency settings as data: one typed model every process of the stack reads.

`KafkaTuning` holds every client and Streams setting that moves latency — the producers'
linger, batch size and compression (the bench's librdkafka producer, the Streams app's Java
producer and Debezium's producer in Connect share one `producer` section, as they shared one
set of constants before), the consumers' fetch settings, the Streams commit interval and
record cache, Debezium's poll interval and batch. Its defaults are the values the stack ran
with when they were constants, so a profile that sets nothing runs exactly as before.

A profile sets it under `stack_options: {kafka: {tuning: {...}}}` (validated by
`KafkaOptions`, named by `stack.yaml`'s `options`); the driver passes it on: to the glue
processes inside their JSON config, to the Streams app as a properties text in its
environment, to Debezium through the connector config. Durability is not tuning: `acks` and
idempotence may be stated but never changed, and the topics' RF 3 / `min.insync.replicas=2`
are no field at all (the study compares stacks at matched durability, `docs/decisions.md` D4).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Keys a profile might reach for to trade durability for latency: refused with the reason.
DURABILITY_KEYS = frozenset(
    {"min_insync_replicas", "replication_factor", "min.insync.replicas", "replication.factor", "acks"}
)
DURABILITY_REASON = (
    "the study compares the stacks at matched durability (acks=all, RF 3, min.insync.replicas=2; "
    "docs/decisions.md D4), so a profile may not change it"
)

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProducerTuning(_Strict):
    """Every producer of the stack: the bench's (librdkafka), the Streams app's and Debezium's
    (Java; Debezium's through `producer.override.*` in its connector config)."""

    #: stated, never tuned: "all" is the only value accepted
    acks: Literal["all"] = "all"
    #: stated, never tuned (idempotence keeps retries from duplicating records)
    enable_idempotence: Literal[True] = True
    #: the Streams app gets it too (Streams' own producer default is 100 ms)
    linger_ms: int = Field(default=1, ge=0, le=60_000)
    #: None: each client's own default (librdkafka 1,000,000 B, the Java client 16,384 B)
    batch_size: int | None = Field(default=None, ge=1)
    compression: Compression = "lz4"

    @field_validator("acks", mode="before")
    @classmethod
    def _acks_all(cls, value: Any) -> Any:
        if str(value).lower() not in ("all", "-1"):
            raise ValueError(f"acks={value!r} refused: {DURABILITY_REASON}")
        return "all"

    @field_validator("enable_idempotence", mode="before")
    @classmethod
    def _idempotent(cls, value: Any) -> Any:
        if value is not True:
            raise ValueError(f"enable_idempotence={value!r} refused: {DURABILITY_REASON}")
        return value


class ConsumerTuning(_Strict):
    """The Python consumers (librdkafka): the glue processes and the bench's aggregate reader."""

    fetch_min_bytes: int = Field(default=1, ge=1)
    #: librdkafka's name; the Java client calls it fetch.max.wait.ms (range 0..300000)
    fetch_wait_max_ms: int = Field(default=5, ge=0, le=300_000)
    #: records a poll takes after its first (the first is handled as soon as it arrives): the
    #: Python counterpart of max.poll.records
    max_poll_records: int = Field(default=500, ge=1)


class StreamsTuning(_Strict):
    """The Kafka Streams app (`streams/`); its producer is `producer`, its fetch.min.bytes the
    consumers' — its fetch wait has its own default (10 ms, where the Python consumers had 5)."""

    #: At least once with the cache off, a commit gates no output: it flushes the producer and
    #: blocks the stream thread for an acks=all round trip (every 100 ms, an earlier value, that
    #: stalled processing for a large share of the time), so rarer commits only widen the replay
    #: window after a crash.
    commit_interval_ms: int = Field(default=1000, ge=0)
    #: 0: no record cache, every update is written and forwarded at once (like Harper's component)
    statestore_cache_max_bytes: int = Field(default=0, ge=0)
    fetch_max_wait_ms: int = Field(default=10, ge=0, le=300_000)


class DebeziumTuning(_Strict):
    """The write_notify connector (Debezium Postgres, in Connect)."""

    #: Debezium accepts positive values only
    poll_interval_ms: int = Field(default=1, ge=1)
    max_batch_size: int = Field(default=256, ge=1)


class KafkaTuning(_Strict):
    producer: ProducerTuning = ProducerTuning()
    consumer: ConsumerTuning = ConsumerTuning()
    streams: StreamsTuning = StreamsTuning()
    debezium: DebeziumTuning = DebeziumTuning()

    @model_validator(mode="before")
    @classmethod
    def _no_durability_keys(cls, data: Any) -> Any:
        # A durability key anywhere but producer.acks (which its validator explains) would
        # otherwise be refused as merely "extra": say why instead.
        if isinstance(data, dict):
            for section, body in data.items():
                # producer.acks has its own validator (stating "all" is fine)
                allowed = {"acks"} if section == "producer" else set()
                found = sorted((set(body) if isinstance(body, dict) else set()) & DURABILITY_KEYS - allowed)
                bad = section if section in DURABILITY_KEYS else (found[0] if found else None)
                if bad is not None:
                    raise ValueError(f"{bad} refused: {DURABILITY_REASON}")
        return data

    # --- what each client is given -----------------------------------------------------

    def producer_settings(self) -> dict[str, Any]:
        """librdkafka producer settings (bench process), without bootstrap and logging."""
        p = self.producer
        out: dict[str, Any] = {
            "acks": p.acks,
            "enable.idempotence": p.enable_idempotence,
            "compression.type": p.compression,
            "linger.ms": p.linger_ms,
        }
        if p.batch_size is not None:
            out["batch.size"] = p.batch_size
        return out

    def consumer_settings(self) -> dict[str, Any]:
        """librdkafka consumer settings that tune latency (glue, aggregate reader)."""
        c = self.consumer
        return {"fetch.min.bytes": c.fetch_min_bytes, "fetch.wait.max.ms": c.fetch_wait_max_ms}

    def streams_properties(self) -> dict[str, str]:
        """The Streams app's tuned properties (StreamsConfig names; `producer.`/`consumer.`
        prefixes are Streams' own). Durability stays in the app's code, applied after these."""
        p, s = self.producer, self.streams
        out = {
            "commit.interval.ms": str(s.commit_interval_ms),
            "statestore.cache.max.bytes": str(s.statestore_cache_max_bytes),
            "producer.linger.ms": str(p.linger_ms),
            "producer.compression.type": p.compression,
            "consumer.fetch.min.bytes": str(self.consumer.fetch_min_bytes),
            "consumer.fetch.max.wait.ms": str(s.fetch_max_wait_ms),
        }
        if p.batch_size is not None:
            out["producer.batch.size"] = str(p.batch_size)
        return out

    def debezium_settings(self) -> dict[str, Any]:
        """Keyword arguments of `debezium_postgres_config` (poll, batch, producer overrides)."""
        p = self.producer
        overrides = {
            "producer.override.linger.ms": str(p.linger_ms),
            "producer.override.compression.type": p.compression,
        }
        if p.batch_size is not None:
            # needs batch.size in the worker's override allowlist (deploy's template has it)
            overrides["producer.override.batch.size"] = str(p.batch_size)
        return {
            "poll_interval_ms": self.debezium.poll_interval_ms,
            "max_batch_size": self.debezium.max_batch_size,
            "extra": overrides,
        }


class KafkaOptions(_Strict):
    """What a profile may set for the Kafka stack (`stack_options.kafka`): driver options."""

    tuning: KafkaTuning = KafkaTuning()


def properties_text(props: dict[str, str]) -> str:
    """`key=value` lines for java.util.Properties.load (keys and values here need no escaping)."""
    for k, v in props.items():
        if any(c in f"{k}{v}" for c in "=:\\\n#! "):
            raise ValueError(f"Streams property {k}={v!r} would need escaping")
    return "".join(f"{k}={v}\n" for k, v in props.items())
