"""The `kafka-low-latency` profile's tuning on the real Kafka stack, read back from the running
services (issue #15 item 3): short untraced benches with the profile's driver options, then the
settings as each service reports them — the write_notify connector's config from Connect's REST
API, the notifier glue process's own report of its consumer, the bench producer's config, and
the Streams app's client configs as its Kafka clients logged them at start — and the fairness
table built from those facts, as a `hopscope run --profile kafka-low-latency` report shows it.

Services: `hopscope up --only kafka-stack` (no collector: the benches run untraced). The
aggregate test builds the Streams app's jar for its current sources if it is not cached (Maven).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from hopscope.analysis.report.context import ReportContext
from hopscope.analysis.report.experiment_sections import fairness_frame
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.lifecycle import up
from hopscope.deploy.services.kafka import Connect
from hopscope.experiment.study import fairness_expected, load_profile, resolve_stack_options
from hopscope.pipelines.bench import resolve_bench, run_bench
from hopscope.pipelines.kafka.tuning import KafkaTuning
from hopscope.pipelines.kafka.write_notify import WN_CONNECTOR
from hopscope.pipelines.stack import load_stack

PROFILE = "kafka-low-latency"


@pytest.fixture(scope="module")
def stack() -> Context:
    ctx = Context(load_config())
    up(ctx, ",".join(load_stack("kafka").spec.services), Console(stderr=True))
    return ctx


@pytest.fixture(scope="module")
def options() -> dict[str, Any]:
    """The Kafka driver's options as `hopscope run --profile kafka-low-latency` passes them."""
    return resolve_stack_options(load_profile(PROFILE), [load_stack("kafka")])["kafka"]


def _bench(workload: str, out: Path, options: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    resolved = resolve_bench(
        "kafka", workload, {"rate": 20.0, "duration_s": 3.0, "warmup_s": 1.0, **overrides}
    )
    run_dir, _ = run_bench(
        "kafka",
        resolved,
        out=out / workload,
        tracing=False,
        progress=False,
        console=Console(stderr=True),
        driver_options=options,
    )
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    ours = ledger[ledger["workload"] == workload]
    assert len(ours) > 0
    assert (ours["outcome"] == "delivered").all(), ours["outcome"].value_counts().to_dict()
    assert (ours["ack_status"] == "ok").all(), ours["ack_message"].dropna().head().tolist()
    return json.loads((run_dir / "manifest.json").read_text())["driver"]


def _fairness(driver: dict[str, Any], options: dict[str, Any], workload: str) -> pd.DataFrame:
    """The report's fairness table for one phase with this driver manifest, under the profile."""
    empty = pd.DataFrame()
    ctx = ReportContext(SimpleNamespace(manifest={}), empty, empty, empty, empty, ["kafka"], [workload])  # type: ignore[arg-type]
    phase = {"stack": "kafka", "workload": workload, "repeat": 0, "tracing": False}
    ctx.experiment = {
        "fairness_expected": fairness_expected([load_stack("kafka")], {"kafka": options}),
        "phases": [{"status": "ok", "phase": phase, "driver": driver}],
    }
    return fairness_frame(ctx).set_index("control")


def test_write_notify_reads_back_the_low_latency_tuning(
    stack: Context, options: dict[str, Any], tmp_path: Path
) -> None:
    tuning = KafkaTuning.model_validate(options["tuning"])
    assert tuning != KafkaTuning(), "the profile tunes nothing: this test would prove nothing"
    driver = _bench("write_notify", tmp_path, options, subscribers=2)
    assert driver["tuning"] == options["tuning"]

    # Debezium's connector config: as the driver read it back, and asked of Connect again now
    live = Connect(stack).rest_get(f"/connectors/{WN_CONNECTOR}/config", timeout=10).json()
    for where, config in (("manifest", driver["debezium"]), ("Connect REST", live)):
        assert config["producer.override.linger.ms"] == str(tuning.producer.linger_ms), where
        assert config["producer.override.compression.type"] == tuning.producer.compression, where
        assert config["poll.interval.ms"] == str(tuning.debezium.poll_interval_ms), where
        assert config["max.batch.size"] == str(tuning.debezium.max_batch_size), where
        assert config["producer.override.acks"] == "all", where  # durability untouched
    # Connect accepted the tuned config: the task ran (the bench delivered every event) and the
    # driver paused it when the run ended (write_notify.after_stop: an idle 1 ms poll costs CPU)
    status = Connect(stack).connector_status(WN_CONNECTOR)
    assert {t["state"] for t in status["tasks"]} <= {"RUNNING", "PAUSED"}, status

    # the notifier glue process's own report of the consumer it built
    notifier = [c for c in driver["consumers"] if c["client"] == "notifier"]
    assert len(notifier) == 1, driver["consumers"]
    assert notifier[0]["fetch.wait.max.ms"] == tuning.consumer.fetch_wait_max_ms
    assert notifier[0]["fetch.min.bytes"] == tuning.consumer.fetch_min_bytes
    assert notifier[0]["max_poll_records"] == tuning.consumer.max_poll_records
    # the bench's producer settings (write_notify's records come from Debezium's producer)
    assert driver["producer"]["linger.ms"] == tuning.producer.linger_ms
    assert driver["producer"]["compression.type"] == tuning.producer.compression
    assert driver["producer"]["acks"] == "all"

    frame = _fairness(driver, options, "write_notify")
    for control in (
        "batching linger.ms",
        "compression",
        "consumer fetch.wait.max.ms",
        "consumer records per poll",
        "Debezium poll.interval.ms",
        "Debezium producer linger.ms",
        "Debezium producer compression",
        "Debezium producer acks",
        "min.insync.replicas",
        "replication factor",
    ):
        assert frame.loc[control, "matches"] == "yes", frame.loc[control].to_dict()
    assert frame.loc["Debezium producer linger.ms", "expected"] == "0"


def test_aggregate_streams_app_runs_with_the_low_latency_tuning(
    stack: Context, options: dict[str, Any], tmp_path: Path
) -> None:
    tuning = KafkaTuning.model_validate(options["tuning"])
    driver = _bench("aggregate", tmp_path, options, point_read_rate=5.0, key_count=50)
    logged = driver["streams"]["logged_configs"]  # as the app's Kafka clients logged them at start
    assert logged["StreamsConfig"]["commit.interval.ms"] == str(tuning.streams.commit_interval_ms)
    assert logged["StreamsConfig"]["statestore.cache.max.bytes"] == str(
        tuning.streams.statestore_cache_max_bytes
    )
    assert logged["ProducerConfig"]["linger.ms"] == str(tuning.producer.linger_ms)
    assert logged["ProducerConfig"]["compression.type"] == tuning.producer.compression
    assert logged["ConsumerConfig"]["fetch.max.wait.ms"] == str(tuning.streams.fetch_max_wait_ms)
    assert logged["ConsumerConfig"]["fetch.min.bytes"] == str(tuning.consumer.fetch_min_bytes)
    # durability is the app's own, after the tuning: unchanged
    assert (logged["ProducerConfig"]["acks"], logged["ProducerConfig"]["enable.idempotence"]) == (
        "-1",
        "true",
    )
    assert all(t["replication_factor"] == 3 for t in driver["streams"]["changelog_topics"])
    # the bench's aggregate reader reports its consumer as the glue processes do
    reader = [c for c in driver["consumers"] if c["client"] == "reader"]
    assert len(reader) == 1 and reader[0]["fetch.wait.max.ms"] == tuning.consumer.fetch_wait_max_ms

    frame = _fairness(driver, options, "aggregate")
    for control in (
        "Streams producer linger.ms",
        "Streams producer compression",
        "Streams commit.interval.ms",
        "Streams statestore.cache.max.bytes",
        "Streams consumer fetch.min.bytes",
        "Streams consumer fetch.max.wait.ms",
        "consumer fetch.wait.max.ms",
        "batching linger.ms",
    ):
        assert frame.loc[control, "matches"] == "yes", frame.loc[control].to_dict()
    # batch.size is left to each client: the Java producer's own default is read back
    assert frame.loc["Streams producer batch.size", "kafka"].isdigit()
