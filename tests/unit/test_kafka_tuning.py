"""Kafka tuning as data (issue #15 item 3): one `KafkaTuning` (pipelines/kafka/tuning.py) sets
every latency setting of the Kafka stack — the bench's producer and consumers, the glue
processes, the Streams app, Debezium — its defaults are the values the stack ran with when
they were constants, durability cannot be tuned, and the `kafka-low-latency` profile differs
from `quick` only in those settings. No service is needed: the glue process is stood in for
by its own config-reading code, the Java side by `Settings.java` compiled alone."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import orjson
import pandas as pd
import pytest
from pydantic import ValidationError

from hopscope.analysis.report.context import ReportContext
from hopscope.analysis.report.experiment_sections import fairness_frame
from hopscope.analysis.report.method_section import profile_line
from hopscope.deploy.services.kafka import debezium_postgres_config
from hopscope.experiment.study import (
    ProfileError,
    fairness_expected,
    load_profile,
    resolve_stack_options,
    tuned_settings,
)
from hopscope.pipelines.kafka import driver as driver_module
from hopscope.pipelines.kafka.common import consumer_config, producer_config
from hopscope.pipelines.kafka.driver import KafkaDriver
from hopscope.pipelines.kafka.glue import CONFIG_ENV, GlueConfig, poll_batch, reported_settings
from hopscope.pipelines.kafka.streams_app import SOURCE_DIR, TUNING_ENV, StreamsApp, StreamsSettings
from hopscope.pipelines.kafka.tuning import KafkaTuning, properties_text
from hopscope.pipelines.stack import load_stack

#: a tuning that moves every setting away from its default (each to a value no default has)
MOVED = {
    "producer": {"linger_ms": 7, "batch_size": 32768, "compression": "zstd"},
    "consumer": {"fetch_min_bytes": 9, "fetch_wait_max_ms": 3, "max_poll_records": 50},
    "streams": {"commit_interval_ms": 250, "statestore_cache_max_bytes": 1024, "fetch_max_wait_ms": 4},
    "debezium": {"poll_interval_ms": 5, "max_batch_size": 4096},
}
DSN = "postgresql://u:pw@127.0.0.1:5432/db"


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a driver made here reads the deploy config: keep it off any real state or cache dir
    monkeypatch.setenv("HOPSCOPE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOPSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HOPSCOPE_CONFIG", raising=False)


def _cdc(**tuned: Any) -> dict[str, str]:
    return debezium_postgres_config(
        DSN, tables=["public.t"], topic_prefix="p", slot_name="s", publication_name="pub", **tuned
    )


# --- the defaults are the constants they replace ---------------------------------------------


def test_default_tuning_builds_exactly_what_the_constants_built() -> None:
    """The dicts `common.py` built from LINGER_MS / CONSUMER_LATENCY, the values Main.java set
    and the connector config write_notify registered, before any of it was data."""
    tuning = KafkaTuning()
    assert producer_config("b:1") == {
        "bootstrap.servers": "b:1",
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 1,
        "log_level": 3,
    }
    assert producer_config("b:1", tuning) == producer_config("b:1")
    assert consumer_config("b:1", "g", tuning) == {
        "bootstrap.servers": "b:1",
        "group.id": "g",
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 5,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 500,
        "auto.offset.reset": "latest",
        "log_level": 3,
    }
    # Main.java's former constants; fetch.min.bytes=1 is the Java consumer's own default
    assert tuning.streams_properties() == {
        "commit.interval.ms": "1000",
        "statestore.cache.max.bytes": "0",
        "producer.linger.ms": "1",
        "producer.compression.type": "lz4",
        "consumer.fetch.min.bytes": "1",
        "consumer.fetch.max.wait.ms": "10",
    }
    # write_notify registered poll_interval_ms=1, max_batch_size=256 over these defaults
    registered = _cdc(poll_interval_ms=1, max_batch_size=256)
    assert _cdc(**tuning.debezium_settings()) == registered
    assert "producer.override.batch.size" not in registered  # the worker's default stays
    assert tuning.consumer.max_poll_records == 500  # the glue's former BATCH


def test_poll_batch_takes_at_most_max_records() -> None:
    queued = list(range(10))

    class Fake:
        def poll(self, _timeout: float) -> Any:
            return queued.pop(0) if queued else None

        def consume(self, n: int, timeout: float) -> list[Any]:
            taken, queued[:] = queued[:n], queued[n:]
            return taken

    fake = Fake()
    assert poll_batch(fake, 4) == [0, 1, 2, 3]
    assert poll_batch(fake, 1) == [4]
    assert poll_batch(fake, 100) == [5, 6, 7, 8, 9]
    assert poll_batch(fake, 100) == []


# --- a profile's tuning reaches every client ------------------------------------------------


def test_overrides_reach_producer_consumer_streams_and_debezium(tmp_path: Path) -> None:
    tuning = KafkaTuning.model_validate(MOVED)
    producer = producer_config("b:1", tuning)
    assert (producer["linger.ms"], producer["batch.size"], producer["compression.type"]) == (7, 32768, "zstd")
    assert producer["acks"] == "all" and producer["enable.idempotence"] is True
    consumer = consumer_config("b:1", "g", tuning)
    assert (consumer["fetch.min.bytes"], consumer["fetch.wait.max.ms"]) == (9, 3)

    app = StreamsApp(
        Path("app.jar"),
        StreamsSettings("b:1", "app", "in", "out", 1, tmp_path / "state", "run", "", tuning=tuning),
        tmp_path / "streams.log",
    )
    passed = dict(line.split("=", 1) for line in app.environment()[TUNING_ENV].splitlines())
    assert passed == {
        "commit.interval.ms": "250",
        "statestore.cache.max.bytes": "1024",
        "producer.linger.ms": "7",
        "producer.compression.type": "zstd",
        "producer.batch.size": "32768",
        "consumer.fetch.min.bytes": "9",
        "consumer.fetch.max.wait.ms": "4",
    }
    # durability is never passed to the app: Main.java sets it after the tuned properties
    assert not [k for k in passed if "acks" in k or "idempotence" in k or "replication" in k]

    cdc = _cdc(**tuning.debezium_settings())
    assert (cdc["poll.interval.ms"], cdc["max.batch.size"], cdc["max.queue.size"]) == ("5", "4096", "16384")
    assert cdc["producer.override.linger.ms"] == "7"
    assert cdc["producer.override.compression.type"] == "zstd"
    assert cdc["producer.override.batch.size"] == "32768"
    assert cdc["producer.override.acks"] == "all"


def test_the_allowlist_lets_every_producer_override_the_tuning_sets_through() -> None:
    """Connect refuses a producer.override.* key its worker does not allow: the template must
    allow every one the tuning can set (and, for the lock-down, nothing else)."""
    template = (SOURCE_DIR.parents[2] / "deploy" / "kafka" / "connect-distributed.properties").read_text()
    line = next(
        x for x in template.splitlines() if x.startswith("connector.client.config.override.allowlist=")
    )
    allowed = set(line.split("=", 1)[1].split(","))
    tuned = KafkaTuning.model_validate(MOVED).debezium_settings()["extra"]
    always = {k for k in _cdc() if k.startswith("producer.override.")}
    assert {k.removeprefix("producer.override.") for k in {*tuned, *always}} == allowed


class _FakeGlue:
    """`subprocess.Popen` for `KafkaDriver.spawn`: its stdout is what the glue process prints,
    made by the glue's own code from the environment the driver handed over."""

    env: ClassVar[dict[str, str]] = {}

    def __init__(self, argv: list[str], *, env: dict[str, str], **_kw: Any) -> None:
        _FakeGlue.env = env
        self.pid = 4242
        cfg = GlueConfig(**orjson.loads(env[CONFIG_ENV]))
        settings = reported_settings(cfg.consumer_settings(), cfg.kafka_tuning.consumer.max_poll_records)
        self.stdout = io.BytesIO(f"CONFIG {orjson.dumps(settings).decode()}\nREADY\n".encode())

    def poll(self) -> int | None:
        return None


def test_the_glue_process_gets_the_drivers_tuning_and_reports_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver_module.subprocess, "Popen", _FakeGlue)
    driver = KafkaDriver(tuning=MOVED, tracing=False)
    driver.run = SimpleNamespace(run_id="run-1")  # type: ignore[assignment]
    driver.kafka = SimpleNamespace(bootstrap=lambda: "b:1")
    driver.log_dir = tmp_path
    driver.spawn("notifier", topic="t", redis_url="redis://x")

    passed = orjson.loads(_FakeGlue.env[CONFIG_ENV])
    assert passed["tuning"] == KafkaTuning.model_validate(MOVED).model_dump(mode="json")
    cfg = GlueConfig(**passed)
    assert cfg.consumer_settings()["fetch.wait.max.ms"] == 3
    assert cfg.consumer_settings()["group.id"] == "hopscope-notifier-run-1"
    # the process's report is the driver's record of that consumer
    assert driver._consumers == [
        {
            "client": "notifier",
            "fetch.min.bytes": 9,
            "fetch.wait.max.ms": 3,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 500,
            "auto.offset.reset": "latest",
            "max_poll_records": 50,
        }
    ]
    # a config without tuning (an older driver) runs on the defaults
    old = GlueConfig(**{k: v for k, v in passed.items() if k != "tuning"})
    assert old.consumer_settings()["fetch.wait.max.ms"] == 5


def test_the_manifest_reads_back_the_tuning_the_clients_were_built_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Conn:
        def execute(self, _sql: str) -> Any:
            return SimpleNamespace(fetchone=lambda: ["on"])

    monkeypatch.setattr(driver_module.psycopg, "connect", lambda *_a, **_k: contextlib.nullcontext(Conn()))
    driver = KafkaDriver(tuning=MOVED, tracing=False)
    driver.kafka = SimpleNamespace(topic_facts=lambda t: {"topic": t}, broker_configs=lambda: {})
    driver.pipeline = SimpleNamespace(topics=lambda: ["t"], read_back=lambda: {"debezium": {"x": 1}})  # type: ignore[assignment]
    driver._producer_cfg = producer_config("b:1", driver.tuning)
    driver.report_consumer("router", {"fetch.wait.max.ms": 3})
    facts = driver._read_back()
    assert facts["producer"] == {
        "acks": "all", "enable.idempotence": True, "compression.type": "zstd", "linger.ms": 7, "batch.size": 32768,
    }  # fmt: skip
    assert facts["consumer"]["fetch.wait.max.ms"] == 3 and facts["consumer"]["fetch.min.bytes"] == 9
    assert facts["consumers"] == [{"client": "router", "fetch.wait.max.ms": 3}]
    assert facts["linger_ms"] == 7
    assert facts["tuning"]["debezium"] == {"poll_interval_ms": 5, "max_batch_size": 4096}
    assert facts["debezium"] == {"x": 1}


@pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK")
def test_the_streams_app_reads_the_properties_python_writes(tmp_path: Path) -> None:
    """Settings.java (compiled alone: it needs only the JDK) parses the tuning text into the
    properties Main.java applies — the same keys and values as `streams_properties`."""
    source = SOURCE_DIR / "src" / "main" / "java" / "dev" / "hopscope" / "streams" / "Settings.java"
    pkg = tmp_path / "src" / "dev" / "hopscope" / "streams"
    pkg.mkdir(parents=True)
    shutil.copy(source, pkg)
    (pkg / "Probe.java").write_text(
        "package dev.hopscope.streams;\n"
        "public final class Probe { public static void main(String[] a) {\n"
        "  Settings s = Settings.fromEnv(System.getenv());\n"
        '  new java.util.TreeMap<>(s.tuning()).forEach((k, v) -> System.out.println(k + "\\t" + v));\n'
        "} }\n"
    )
    out = tmp_path / "classes"
    subprocess.run(["javac", "-d", str(out), *map(str, pkg.glob("*.java"))], check=True, timeout=120)
    props = KafkaTuning.model_validate(MOVED).streams_properties()
    env = {
        **os.environ,
        "HOPSCOPE_BOOTSTRAP": "b:1",
        "HOPSCOPE_STREAMS_STATE_DIR": str(tmp_path),
        TUNING_ENV: properties_text(props),
    }
    run = subprocess.run(
        ["java", "-cp", str(out), "dev.hopscope.streams.Probe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert dict(line.split("\t", 1) for line in run.stdout.splitlines()) == props
    # without the tuning the app refuses to start (it would run on Kafka's defaults)
    del env[TUNING_ENV]
    run = subprocess.run(["java", "-cp", str(out), "dev.hopscope.streams.Probe"], env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode != 0 and TUNING_ENV in run.stderr


# --- durability is not tuning -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tuning", "refused"),
    [
        ({"producer": {"acks": "1"}}, "acks='1' refused"),
        ({"producer": {"acks": 0}}, "acks=0 refused"),
        ({"producer": {"enable_idempotence": False}}, "enable_idempotence=False refused"),
        ({"min_insync_replicas": 1}, "min_insync_replicas refused"),
        ({"streams": {"replication_factor": 1}}, "replication_factor refused"),
    ],
)
def test_lowering_durability_is_refused(tuning: dict[str, Any], refused: str) -> None:
    with pytest.raises(ValidationError, match=refused) as err:
        KafkaTuning.model_validate(tuning)
    assert "matched durability" in str(err.value)
    with pytest.raises(ValidationError, match=refused):
        KafkaDriver(tuning=tuning)


def test_stating_acks_all_is_accepted() -> None:
    for stated in ("all", "-1", "ALL"):
        assert KafkaTuning.model_validate({"producer": {"acks": stated}}).producer.acks == "all"


def test_a_profile_that_lowers_acks_is_refused_at_load(tmp_path: Path) -> None:
    quick = (load_profile("quick").model_dump(mode="json")) | {"name": "fast-and-loose"}
    bad = tmp_path / "loose.yaml"
    bad.write_text(
        orjson.dumps(quick | {"stack_options": {"kafka": {"tuning": {"producer": {"acks": 1}}}}}).decode()
    )
    with pytest.raises(
        ProfileError, match=r"loose\.yaml: field stack_options: .*tuning\.producer\.acks.*acks=1 refused"
    ):
        load_profile(bad)
    # options for a stack that declares no options model, or for no stack at all
    bad.write_text(orjson.dumps(quick | {"stack_options": {"harper": {"tuning": {}}}}).decode())
    with pytest.raises(ProfileError, match="stack 'harper' takes no options"):
        load_profile(bad)
    bad.write_text(orjson.dumps(quick | {"stack_options": {"nats": {}}}).decode())
    with pytest.raises(ProfileError, match="unknown stack 'nats'"):
        load_profile(bad)


# --- the kafka-low-latency profile ------------------------------------------------------------


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_kafka_low_latency_is_quick_with_only_latency_settings_changed() -> None:
    quick, low = load_profile("quick"), load_profile("kafka-low-latency")
    assert low.name == "kafka-low-latency"
    same = {"name", "description", "stack_options"}
    assert low.model_dump(exclude=same) == quick.model_dump(exclude=same)

    stacks = [load_stack("kafka"), load_stack("harper")]
    tuned, default = resolve_stack_options(low, stacks), resolve_stack_options(quick, stacks)
    assert tuned["harper"] == default["harper"] == {}
    changed = {k for k, v in _flat(tuned["kafka"]).items() if _flat(default["kafka"])[k] != v}
    assert changed == set(tuned_settings(tuned, stacks)["kafka"])
    assert changed, "the profile tunes nothing"
    durability = {"tuning.producer.acks", "tuning.producer.enable_idempotence"}
    assert not changed & durability
    # every change lowers a wait or drops work on the path, never raises one
    flat_low, flat_default = _flat(tuned["kafka"]), _flat(default["kafka"])
    for key in changed - {"tuning.producer.compression"}:
        assert flat_low[key] < flat_default[key], key
    assert flat_low["tuning.producer.linger_ms"] == 0
    assert flat_low["tuning.streams.statestore_cache_max_bytes"] == 0


# --- the fairness table and the headline ------------------------------------------------------


def _ctx(experiment: dict[str, Any]) -> ReportContext:
    empty = pd.DataFrame()
    ctx = ReportContext(SimpleNamespace(manifest={}), empty, empty, empty, empty, ["kafka"], ["aggregate"])  # type: ignore[arg-type]
    ctx.experiment = experiment
    return ctx


def _phase(driver: dict[str, Any]) -> dict[str, Any]:
    return {"status": "ok", "phase": {"stack": "kafka", "workload": "aggregate", "repeat": 0, "tracing": True},
            "driver": driver}  # fmt: skip


def test_fairness_expects_the_profiles_values_and_flags_a_client_that_ignored_them() -> None:
    kafka = load_stack("kafka")
    options = resolve_stack_options(load_profile("kafka-low-latency"), [kafka])
    rows = fairness_expected([kafka], options)
    expected = {r["control"]: r["expected"] for r in rows}
    assert expected["batching linger.ms"] == "0" and expected["Streams producer linger.ms"] == "0"
    assert expected["Streams consumer fetch.max.wait.ms"] == "1"
    assert expected["compression"] == "none"
    defaults = {r["control"]: r["expected"] for r in fairness_expected([kafka])}  # no options: defaults
    assert (defaults["batching linger.ms"], defaults["compression"]) == ("1", "lz4")
    # the Streams app logged the tuned linger, the bench producer kept the old one
    driver = {
        "producer": {"linger.ms": 1, "compression.type": "none"},
        "streams": {"logged_configs": {"ProducerConfig": {"linger.ms": "0", "batch.size": "16384"}}},
    }
    frame = fairness_frame(_ctx({"fairness_expected": rows, "phases": [_phase(driver)]})).set_index("control")
    assert frame.loc["Streams producer linger.ms", "matches"] == "yes"
    assert (frame.loc["batching linger.ms", "kafka"], frame.loc["batching linger.ms", "matches"]) == (
        "1",
        "NO",
    )
    # batch.size left to each client: the Java default read back, the others said to be defaults
    assert frame.loc["Streams producer batch.size", "kafka"] == "16384"
    assert frame.loc["producer batch.size", "expected"] == "(client default)"
    assert frame.loc["producer batch.size", ["kafka", "matches"]].tolist() == ["client default", "yes"]
    # a tuned setting nobody reported is still flagged
    assert frame.loc["Debezium poll.interval.ms", "matches"] == "not read back"


def test_the_headline_names_the_profile_and_what_it_tuned() -> None:
    stacks = [load_stack("kafka"), load_stack("harper")]
    low = load_profile("kafka-low-latency")
    options = resolve_stack_options(low, stacks)
    line = profile_line(_ctx({
        "profile": low.name, "profile_description": low.description,
        "stack_options_tuned": tuned_settings(options, stacks),
    }))  # fmt: skip
    assert line is not None and line.startswith("Profile: kafka-low-latency — ")
    assert "kafka: tuning.producer.linger_ms=0" in line and "tuning.consumer.fetch_wait_max_ms=1" in line
    quick = load_profile("quick")
    plain = profile_line(_ctx({
        "profile": "quick", "profile_description": quick.description,
        "stack_options_tuned": tuned_settings(resolve_stack_options(quick, stacks), stacks),
    }))  # fmt: skip
    assert plain is not None and "Profile: quick" in plain and "default settings" in plain
    assert profile_line(_ctx({})) is None  # a bench run: no profile
