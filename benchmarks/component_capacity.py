"""Each component's own maximum throughput on this host, measured standalone on the running services.

A pipeline is as fast as its slowest part. This script drives each part alone, as hard as it
goes, at the stack's settings, so the report can say which part sets each pipeline's limit:

| component | what is driven | figure |
|---|---|---|
| `kafka-producer` | Kafka's ProducerPerformance (`kafka-producer-perf-test`) on a fresh RF 3 topic with the pipelines' topic configs and producer settings (acks=all, idempotence, lz4, linger), `--throughput -1` | records/s, latency p50/p99 (at saturation the latency is mostly time queued in the producer's buffer) |
| `kafka-consumer` | Kafka's ConsumerPerformance (`kafka-consumer-perf-test`) reading back what the producer test wrote, at the pipelines' consumer settings | records/s over the fetch time (group join left out) |
| `kafka-streams` | the stack's Streams app (aggregate), started with a fresh application id on an input topic pre-filled with aggregate-shaped records (the workload's payload size and skewed keys) | records/s out of the app after its JIT warm-up |
| `postgres-insert` | `pgbench`, 4 clients (the write_notify pool), the write_notify INSERT into a table of the same shape (autocommit, `synchronous_commit=on`) | tx/s, latency p50/p99 from pgbench's per-transaction log |
| `harper-confirmed-write` | concurrent REST PUTs to node 1's `Notify` resource, each waiting for one replica's confirmation (`X-Replicate-To`) | writes/s, latency p50/p99 |

Everything the script creates (topics, consumer groups, the Streams app and its state, the
Postgres table, the Harper records) is removed afterwards. The measurements take the host-wide
measurement lock (`/tmp/hopscope-measure.lock`) so they never overlap another measurement on
this 2-core host; when run under `flock /tmp/hopscope-measure.lock …` the lock is already ours.

Needs the services (`hopscope up`). Run:

    .venv/bin/python benchmarks/component_capacity.py [--seconds 10] [--only kafka-producer ...]

The figures go to a table and to JSON (`--out`, default `<state dir>/capacity/components.json`):
one entry per component; measuring only some components replaces their entries and keeps the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib.util
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import psutil
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

LOCK_PATH = Path("/tmp/hopscope-measure.lock")
PGBENCH = Path("/usr/lib/postgresql/15/bin/pgbench")
PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance"
#: a valid W3C traceparent for the rows and writes (nothing here is traced)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

#: librdkafka settings the Java client has under another name
JAVA_NAMES = {
    "queue.buffering.max.ms": "linger.ms",
    "fetch.wait.max.ms": "fetch.max.wait.ms",
    "message.timeout.ms": "delivery.timeout.ms",
    "message.max.bytes": "max.request.size",
}
#: librdkafka settings the Java client does not have (it would ignore them with a warning)
LIBRDKAFKA_ONLY = {
    "log_level",
    "debug",
    "statistics.interval.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queued.min.messages",
    "socket.timeout.ms",
    "log.connection.close",
    "api.version.request",
    "enable.partition.eof",
}

COMPONENTS = (
    "kafka-producer",
    "kafka-consumer",
    "kafka-streams",
    "postgres-insert",
    "harper-confirmed-write",
)


#: what each component's figure is, for the table and the JSON
WHAT = {
    "kafka-producer": "kafka-producer-perf-test (ProducerPerformance), --throughput -1, records after the warm-up tenth",
    "kafka-consumer": "kafka-consumer-perf-test (ConsumerPerformance) reading the producer test's topic; rate over the fetch time",
    "kafka-streams": "the stack's Streams app (aggregate) fed directly: records out per second after its warm-up",
    "postgres-insert": "pgbench: the write_notify INSERT (one row, autocommit) into a table of the same shape",
    "harper-confirmed-write": "concurrent REST PUTs to node 1's Notify, each confirmed by a replica",
}


class MeasureError(RuntimeError):
    """A measurement could not be made; the message says what failed and where to look."""


# --- results -------------------------------------------------------------------------


@dataclass
class Measurement:
    component: str
    measure: str
    rate_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    settings: dict[str, Any]
    seconds: float | None
    measured_at: str
    host: dict[str, Any]
    unit: str = "records/s"
    #: what else the tool reported (whole-run figures, CPU use, counts)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def failed(cls, component: str, error: str, started: str) -> Measurement:
        return cls(component, WHAT[component], None, None, None, {}, None, started, host_info(), error=error)


def host_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count()}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- pure helpers (unit-tested) ------------------------------------------------------


@dataclass(frozen=True)
class JavaProps:
    """librdkafka settings turned into Java client properties, and what was left out and why."""

    props: dict[str, str]
    renamed: dict[str, str]
    dropped: dict[str, str]


def java_client_props(settings: Mapping[str, Any], by_flag: Mapping[str, str] | None = None) -> JavaProps:
    """Map a confluent-kafka (librdkafka) config to Java client properties.

    `by_flag` names settings the tool takes as its own flag (key → why it is dropped here).
    """
    by_flag = by_flag or {}
    props: dict[str, str] = {}
    renamed: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for key, value in settings.items():
        if key in by_flag:
            dropped[key] = by_flag[key]
            continue
        if key in LIBRDKAFKA_ONLY:
            dropped[key] = "librdkafka only"
            continue
        java_key = JAVA_NAMES.get(key, key)
        if java_key != key:
            renamed[key] = java_key
        props[java_key] = str(value).lower() if isinstance(value, bool) else str(value)
    return JavaProps(props, renamed, dropped)


_PRODUCER_SUMMARY = re.compile(
    r"^(?P<records>\d+) (?P<steady>steady state )?records sent, (?P<rate>[\d.]+) records/sec "
    r"\((?P<mb>[\d.]+) MB/sec\), (?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, "
    r"(?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99\.9th",
    re.M,
)
_PRODUCER_INTERVAL = re.compile(r"^\d+ records sent, ([\d.]+) records/sec \([\d.]+ MB/sec\), [\d.]+ ms avg latency, [\d.]+ ms max latency\.$", re.M)  # fmt: skip


def parse_producer_perf(stdout: str) -> dict[str, dict[str, float]]:
    """ProducerPerformance's summary lines: `all` (every record) and, with warm-up records, `steady`."""
    out: dict[str, dict[str, float]] = {}
    for m in _PRODUCER_SUMMARY.finditer(stdout):
        figures = {k: float(v) for k, v in m.groupdict().items() if k != "steady"}
        out["steady" if m.group("steady") else "all"] = figures
    if "all" not in out:
        raise MeasureError(f"ProducerPerformance printed no summary line: {stdout[-400:]!r}")
    return out


def parse_producer_intervals(stdout: str) -> list[float]:
    """records/s of each progress line (the reporting interval's own rate)."""
    return [float(m.group(1)) for m in _PRODUCER_INTERVAL.finditer(stdout)]


def parse_consumer_perf(stdout: str) -> dict[str, str]:
    """ConsumerPerformance's result as column → value, by the header line's own column names."""
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if "nMsg.sec" in line and i + 1 < len(lines):
            names = [c.strip() for c in line.split(",")]
            values = [v.strip() for v in lines[i + 1].split(",")]
            if len(values) == len(names):
                return dict(zip(names, values, strict=True))
    raise MeasureError(f"ConsumerPerformance printed no header and result line: {stdout[-400:]!r}")


_PGBENCH_FIGURES = {
    "transactions": re.compile(r"number of transactions actually processed: (\d+)"),
    "failed": re.compile(r"number of failed transactions: (\d+)"),
    "latency_avg_ms": re.compile(r"latency average = ([\d.]+) ms"),
    "latency_stddev_ms": re.compile(r"latency stddev = ([\d.]+) ms"),
    "tps": re.compile(r"tps = ([\d.]+) \(without initial connection time\)"),
}


def parse_pgbench_summary(stdout: str) -> dict[str, float]:
    """pgbench's end-of-run figures; tps is required, the others when printed."""
    out = {name: float(m.group(1)) for name, rx in _PGBENCH_FIGURES.items() if (m := rx.search(stdout))}
    if "tps" not in out:
        raise MeasureError(f"pgbench printed no tps line: {stdout[-400:]!r}")
    return out


def percentiles_ms(latencies_ms: Sequence[float] | np.ndarray) -> tuple[float | None, float | None]:
    arr = np.asarray(latencies_ms, dtype=float)
    if arr.size == 0:
        return None, None
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def flock_holders(proc_locks: str, inode: int) -> list[int]:
    """PIDs holding a FLOCK on the file with this inode, from /proc/locks."""
    pids = []
    for line in proc_locks.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; blocked waiters have "->" after the number
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue
        dev_inode = parts[5].split(":")
        if len(dev_inode) == 3 and dev_inode[2] == str(inode):
            pids.append(int(parts[4]))
    return pids


def merge_entries(
    existing: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The file's entries with the new ones replacing those of the same component, in component order."""
    by_name = {str(e.get("component")): dict(e) for e in existing}
    by_name.update({str(e["component"]): dict(e) for e in new})
    order = {name: i for i, name in enumerate(COMPONENTS)}
    return sorted(by_name.values(), key=lambda e: order.get(str(e.get("component")), len(order)))


# --- the measurement lock --------------------------------------------------------------


@contextlib.contextmanager
def measurement_lock(console: Console) -> Iterator[None]:
    """Exclusive host-wide lock for the measuring part; waits (saying so) while another holds it."""
    with LOCK_PATH.open("a") as fh:
        if _held_by_an_ancestor():
            yield
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            console.print("[yellow]waiting for another measurement[/] (lock /tmp/hopscope-measure.lock)")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _held_by_an_ancestor() -> bool:
    # Under `flock /tmp/hopscope-measure.lock <this script>` our parent holds the lock: taking it
    # again on a new open file would wait for ourselves.
    try:
        holders = set(flock_holders(Path("/proc/locks").read_text(), LOCK_PATH.stat().st_ino))
        ancestors = {p.pid for p in psutil.Process().parents()}
    except (OSError, psutil.Error):
        return False
    return bool(holders & ancestors)


# --- running a tool --------------------------------------------------------------------


@dataclass
class ToolRun:
    output: str
    seconds: float
    child_cpu_s: float


def run_tool(
    argv: Sequence[str],
    *,
    timeout: float,
    on_line: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    name: str = "",
) -> ToolRun:
    """Run a tool to the end (stdout and stderr together), handing each line to `on_line`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    lines: list[str] = []
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                with contextlib.suppress(Exception):
                    on_line(line.rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait(10)
        raise MeasureError(f"{name or argv[0]} did not finish within {timeout:.0f} s") from exc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(5)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = "".join(lines)
    if proc.returncode != 0:
        tail = " | ".join(output.strip().splitlines()[-6:])
        raise MeasureError(f"{name or argv[0]} exited {proc.returncode}: {tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ToolRun(output, time.monotonic() - t0, cpu)


class CpuMeter:
    """Busy share of the host's cores, and this process's own CPU, over a window."""

    def __init__(self) -> None:
        self._host = psutil.cpu_times()
        self._own = time.process_time()
        self._t0 = time.monotonic()

    def read(self) -> dict[str, float]:
        host = psutil.cpu_times()
        wall = max(time.monotonic() - self._t0, 1e-9)
        idle = (host.idle + getattr(host, "iowait", 0.0)) - (
            self._host.idle + getattr(self._host, "iowait", 0.0)
        )
        total = sum(host) - sum(self._host)
        return {
            "host_cpu_busy": round(1.0 - idle / total, 3) if total > 0 else 0.0,
            "this_process_cpu_cores": round((time.process_time() - self._own) / wall, 3),
        }


# --- the session -------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float
    payload_bytes: int
    producer_records: int | None
    streams_records: int | None
    streams_warmup: int
    harper_clients: int
    pg_clients: int | None


@dataclass
class Session:
    """What every measurement shares: the services, a scratch folder, cleanups, progress."""

    ctx: Any  # hopscope.deploy.base.Context
    opts: Options
    tag: str
    work: Path
    log_dir: Path
    progress: Progress
    cleanups: contextlib.ExitStack
    cleanup_problems: list[str] = field(default_factory=list)
    perf_topic: PerfTopic | None = None
    perf_topic_failed: str | None = None

    def say(self, task: Any, text: str) -> None:
        self.progress.update(task, description=text)

    def cleanup(self, what: str, fn: Callable[[], object]) -> None:
        """Run a cleanup; a failure is reported, never raised (it must not hide a figure)."""
        try:
            fn()
        except Exception as exc:
            self.cleanup_problems.append(f"{what}: {type(exc).__name__}: {exc}")

    @property
    def kafka(self) -> Any:
        from hopscope.deploy.services.kafka import Kafka

        return Kafka(self.ctx)


#: A closed Streams app does not leave its group; the broker drops the member after the
#: session timeout (45 s), and only then can the group be deleted.
GROUP_EXPIRY_S = 50.0


def delete_group(kafka: Any, group: str, until: float | None = None) -> None:
    """Delete a consumer group, retrying while it still has members (until `until`, monotonic)."""
    from confluent_kafka import KafkaError, KafkaException

    while True:
        try:
            for fut in kafka.admin().delete_consumer_groups([group]).values():
                fut.result(30)
            return
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.NON_EMPTY_GROUP or until is None or time.monotonic() > until:
                raise
        time.sleep(2)


def delete_topics(kafka: Any, names: Sequence[str]) -> None:
    if not names:
        return
    for fut in kafka.admin().delete_topics(list(names), operation_timeout=30).values():
        fut.result(60)


# --- kafka-producer / kafka-consumer -----------------------------------------------------


@dataclass
class PerfTopic:
    """The producer test's topic (the consumer test reads it back), and the producer's figures."""

    name: str
    records: int
    measurement: Measurement


def producer_props(bootstrap: str) -> JavaProps:
    from hopscope.pipelines.kafka.common import producer_config

    return java_client_props(producer_config(bootstrap), {"bootstrap.servers": "given as --bootstrap-server"})


def _producer_argv(kafka: Any, topic: str, records: int, payload: int, props: JavaProps) -> list[str]:
    return kafka.tool_argv(
        PRODUCER_PERF,
        "--bootstrap-server", kafka.bootstrap(), "--topic", topic,
        "--num-records", str(records), "--record-size", str(payload), "--throughput", "-1",
        "--warmup-records", str(records // 10), "--reporting-interval", "1000",
        "--command-property", *(f"{k}={v}" for k, v in props.props.items()),
    )  # fmt: skip


def _calibrate_producer(s: Session, topic: str, props: JavaProps, task: Any) -> tuple[int, float]:
    """Records for `--seconds` of producing: a short first run's best one-second rate."""
    probe = 20_000
    s.say(task, f"kafka-producer: calibrating ({probe} records)")
    run = run_tool(
        _producer_argv(s.kafka, topic, probe, s.opts.payload_bytes, props),
        timeout=180,
        name="ProducerPerformance (calibration)",
    )
    figures = parse_producer_perf(run.output)
    rate = max([figures["all"]["rate"], *parse_producer_intervals(run.output)])
    return probe, rate


def ensure_perf_topic(s: Session, task: Any) -> PerfTopic:
    """Create the topic and run the producer test once (both Kafka measurements use it)."""
    if s.perf_topic is not None:
        return s.perf_topic
    if s.perf_topic_failed is not None:
        raise MeasureError(f"the producer test that fills the topic failed: {s.perf_topic_failed}")
    try:
        s.perf_topic = _produce_perf_topic(s, task)
    except Exception as exc:
        s.perf_topic_failed = f"{type(exc).__name__}: {exc}"
        raise
    return s.perf_topic


def _produce_perf_topic(s: Session, task: Any) -> PerfTopic:
    from hopscope.pipelines.kafka.common import TOPIC_CONFIGS
    from hopscope.pipelines.kafka.pipeline import EVENT_PARTITIONS

    kafka = s.kafka
    topic = f"hopscope.capacity.{s.tag}.perf"
    kafka.ensure_topic(topic, EVENT_PARTITIONS, rf=3, configs=TOPIC_CONFIGS)
    s.cleanups.callback(s.cleanup, f"delete topic {topic}", lambda: delete_topics(kafka, [topic]))
    props = producer_props(kafka.bootstrap())
    written = 0
    if s.opts.producer_records:
        records, calibration = s.opts.producer_records, None
    else:
        written, calibration = _calibrate_producer(s, topic, props, task)
        # the calibration run is short and cold: its rate is about 4/5 of a longer run's
        records = int(min(max(1.25 * calibration * s.opts.seconds, 10_000), 20_000_000))

    def run(count: int) -> tuple[ToolRun, dict[str, float]]:
        def show(line: str) -> None:
            if m := re.match(r"^(\d+) records sent, ([\d.]+) records/sec", line):
                s.say(task, f"kafka-producer: {float(m.group(2)):,.0f} records/s ({count:,} records)")

        s.say(task, f"kafka-producer: {count:,} records")
        cpu = CpuMeter()
        done = run_tool(
            _producer_argv(kafka, topic, count, s.opts.payload_bytes, props),
            timeout=max(120.0, s.opts.seconds * 6 + 60),
            on_line=show,
            name="ProducerPerformance",
        )
        return done, cpu.read()

    last, usage = run(records)
    figures = parse_producer_perf(last.output)
    runs = [{"records": records, **figures.get("steady", figures["all"])}]
    main = figures.get("steady", figures["all"])
    if not s.opts.producer_records and main["records"] / main["rate"] < 0.7 * s.opts.seconds:
        # A warm cluster can go several times faster than the cold calibration: once more at the
        # rate just measured, so the figure covers about --seconds.
        written += records
        records = int(min(main["rate"] * s.opts.seconds * 1.1 / 0.9, 20_000_000))
        last, usage = run(records)
        figures = parse_producer_perf(last.output)
        main = figures.get("steady", figures["all"])
        runs.append({"records": records, **main})
    measured = main["records"]
    seconds = measured / main["rate"] if main["rate"] else None
    m = Measurement(
        "kafka-producer",
        WHAT["kafka-producer"],
        main["rate"],
        main["p50"],
        main["p99"],
        {
            "tool": f"{PRODUCER_PERF} (kafka-tools, Kafka {kafka_version()})",
            "topic": {"partitions": EVENT_PARTITIONS, "replication_factor": 3, **TOPIC_CONFIGS},
            "record_bytes": s.opts.payload_bytes,
            "records": records,
            "warmup_records": records // 10,
            "producer_props": props.props,
            "renamed_from_librdkafka": props.renamed,
            "dropped_librdkafka_settings": props.dropped,
        },
        round(seconds, 2) if seconds else None,
        now_iso(),
        host_info(),
        details={
            "whole_run": figures["all"],
            "steady_state": figures.get("steady"),
            "calibration_records_per_s": calibration,
            "runs_steady_state": runs,
            "latency_note": "at --throughput -1 the latency is mostly time queued in the producer's buffer",
            "tool_cpu_cores": round(last.child_cpu_s / last.seconds, 3),
            **usage,
        },
    )
    return PerfTopic(topic, written + records, m)


def measure_kafka_producer(s: Session, task: Any) -> Measurement:
    return ensure_perf_topic(s, task).measurement


def consumer_props(bootstrap: str) -> JavaProps:
    from hopscope.pipelines.kafka.common import consumer_config

    return java_client_props(
        consumer_config(bootstrap, "unused"),
        {
            "bootstrap.servers": "given as --bootstrap-server",
            "group.id": "given as --group (a fresh group)",
            # the pipelines' consumers start at the end; the test must read what is there
            "auto.offset.reset": "the test reads the topic from its start",
        },
    )


def measure_kafka_consumer(s: Session, task: Any) -> Measurement:
    if s.perf_topic is None:
        s.say(task, "kafka-consumer: filling the topic with the producer test first")
    topic = ensure_perf_topic(s, task)
    kafka = s.kafka
    group = f"hopscope-capacity-{s.tag}"
    props = consumer_props(kafka.bootstrap())
    s.cleanups.callback(
        s.cleanup,
        f"delete consumer group {group}",
        lambda: delete_group(kafka, group),
    )
    s.say(task, f"kafka-consumer: reading {topic.records:,} records")
    argv = kafka.tool_argv(
        CONSUMER_PERF,
        "--bootstrap-server", kafka.bootstrap(), "--topic", topic.name, "--group", group,
        "--num-records", str(topic.records), "--timeout", "10000",
        *(a for k, v in props.props.items() for a in ("--command-property", f"{k}={v}")),
    )  # fmt: skip
    cpu = CpuMeter()
    run = run_tool(argv, timeout=max(120.0, s.opts.seconds * 6 + 60), name="ConsumerPerformance")
    usage = cpu.read()
    cols = parse_consumer_perf(run.output)
    consumed = int(float(cols["data.consumed.in.nMsg"]))
    if consumed < topic.records:
        raise MeasureError(f"ConsumerPerformance read {consumed} of the topic's {topic.records} records")
    fetch_s = float(cols["fetch.time.ms"]) / 1000
    return Measurement(
        "kafka-consumer",
        WHAT["kafka-consumer"],
        float(cols["fetch.nMsg.sec"]),
        None,
        None,
        {
            "tool": f"{CONSUMER_PERF} (kafka-tools, Kafka {kafka_version()})",
            "records": topic.records,
            "record_bytes": s.opts.payload_bytes,
            "consumer_props": props.props,
            "renamed_from_librdkafka": props.renamed,
            "dropped_librdkafka_settings": props.dropped,
        },
        round(fetch_s, 2),
        now_iso(),
        host_info(),
        details={
            "columns": cols,
            "records_per_s_with_group_join": float(cols["nMsg.sec"]),
            "tool_cpu_cores": round(run.child_cpu_s / run.seconds, 3),
            **usage,
        },
    )


def kafka_version() -> str:
    from hopscope.deploy.services.kafka import KAFKA_VERSION

    return KAFKA_VERSION


# --- kafka-streams -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prefill(s: Session, topic: str, count: int, task: Any) -> dict[str, Any]:
    """Aggregate-shaped records (the workload's payload size and key skew) into the input topic."""
    from confluent_kafka import Producer

    from hopscope.pipelines.kafka.common import EventPayload, now_ns, producer_config
    from hopscope.pipelines.workload import load_workload

    workload = load_workload("aggregate")
    weights = 1.0 / np.arange(1, workload.key_count + 1, dtype=np.float64) ** workload.key_skew
    keys = np.random.default_rng(workload.seed).choice(
        workload.key_count, size=count, p=weights / weights.sum()
    )
    producer = Producer(producer_config(s.kafka.bootstrap()))
    pad = "x" * workload.payload_bytes
    for i, k in enumerate(keys.tolist()):
        key = f"k{k}"
        body = EventPayload(f"cap-{i}", key, {}, now_ns(), float(i % 100), pad).encode()
        while True:
            try:
                producer.produce(topic, body, key.encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
            s.say(task, f"kafka-streams: pre-filling the input topic {i:,}/{count:,}")
    if producer.flush(120) > 0:
        raise MeasureError(f"pre-filling {topic}: records still unsent after 120 s")
    return {
        "records": count,
        "payload_bytes": workload.payload_bytes,
        "keys": workload.key_count,
        "key_skew": workload.key_skew,
    }


def _output_count(consumer: Any, topic: str, partitions: int) -> int:
    from confluent_kafka import TopicPartition

    return sum(
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in range(partitions)
    )


def _wait_output(
    count: Callable[[], int], target: int, deadline: float, alive: Callable[[], bool], what: str
) -> tuple[float, int]:
    """Poll until the output holds `target` records or the deadline passes; (time, count) then."""
    while True:
        n, t = count(), time.monotonic()
        if n >= target or t >= deadline:
            return t, n
        if not alive():
            raise MeasureError(f"the Streams app exited while {what}")
        time.sleep(0.1)


def measure_kafka_streams(s: Session, task: Any) -> Measurement:
    from confluent_kafka import Consumer

    from hopscope.pipelines.kafka.aggregate import STREAMS_WARMUP
    from hopscope.pipelines.kafka.common import TOPIC_CONFIGS
    from hopscope.pipelines.kafka.pipeline import EVENT_PARTITIONS
    from hopscope.pipelines.kafka.streams_app import StreamsApp, StreamsSettings, ensure_jar, logged_configs

    kafka, opts = s.kafka, s.opts
    app_id = f"hopscope-capacity-agg-{s.tag}"
    topic_in, topic_out = f"hopscope.capacity.{s.tag}.events", f"hopscope.capacity.{s.tag}.aggregates"
    warm = max(opts.streams_warmup, STREAMS_WARMUP)
    # More than the app can take in --seconds (an upper bound of its rate here): the window ends by time.
    measured = opts.streams_records or int(opts.seconds * 20_000)

    def drop_topics() -> None:
        names = kafka.admin().list_topics(timeout=10).topics
        delete_topics(kafka, [t for t in names if t in (topic_in, topic_out) or t.startswith(app_id)])

    s.cleanups.callback(s.cleanup, "delete the Streams topics", drop_topics)
    for topic in (topic_in, topic_out):
        kafka.ensure_topic(topic, EVENT_PARTITIONS, rf=3, configs=TOPIC_CONFIGS)
    s.say(task, "kafka-streams: building or finding the app's jar")
    jar = ensure_jar(s.ctx.cache_dir)
    fill = _prefill(s, topic_in, warm + measured, task)

    state = s.work / "streams-state"
    log = s.log_dir / f"kafka-streams-{s.tag}.log"
    app = StreamsApp(
        jar,
        StreamsSettings(kafka.bootstrap(), app_id, topic_in, topic_out, free_port(), state, app_id, ""),
        log,
    )
    stopped_at: list[float] = []
    s.cleanups.callback(
        s.cleanup,
        f"delete consumer group {app_id}",
        lambda: delete_group(kafka, app_id, until=(stopped_at or [time.monotonic()])[0] + GROUP_EXPIRY_S),
    )
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap(), "group.id": f"{app_id}-watch", "log_level": 3}
    )
    try:
        s.say(task, "kafka-streams: starting the app")
        t_start = time.monotonic()
        app.start()
        t_running = time.monotonic()

        def count() -> int:
            n = _output_count(consumer, topic_out, EVENT_PARTITIONS)
            s.say(task, f"kafka-streams: {n:,} records out")
            return n

        def alive() -> bool:
            return app.proc is not None and app.proc.poll() is None

        t_warm, n_warm = _wait_output(count, warm, time.monotonic() + 120, alive, "warming up")
        if n_warm < warm:
            raise MeasureError(
                f"the Streams app put out {n_warm} of {warm} warm-up records in 120 s; log: {log}"
            )
        cpu = CpuMeter()
        t_end, n_end = _wait_output(count, warm + measured, t_warm + opts.seconds, alive, "measuring")
        usage = cpu.read()
        configs = logged_configs(log)
    finally:
        consumer.close()
        app.stop()
        stopped_at.append(time.monotonic())
        shutil.rmtree(state, ignore_errors=True)
    window = t_end - t_warm
    processed = n_end - n_warm
    return Measurement(
        "kafka-streams",
        WHAT["kafka-streams"],
        processed / window if window > 0 else None,
        None,
        None,
        {
            "app": f"{jar.parent.name}/{jar.name}",
            "input": fill,
            "warmup_records": warm,
            "topics": {"partitions": EVENT_PARTITIONS, "replication_factor": 3, **TOPIC_CONFIGS},
            "logged_configs": configs,
            "tracing": "off",
        },
        round(window, 2),
        now_iso(),
        host_info(),
        details={
            "records_in_window": processed,
            "input_exhausted": n_end >= warm + measured,
            "start_to_running_s": round(t_running - t_start, 2),
            "running_to_warm_s": round(t_warm - t_running, 2),
            "cold_records_per_s": round(n_warm / (t_warm - t_running), 1) if t_warm > t_running else None,
            "log": str(log),
            **usage,
        },
    )


# --- postgres-insert -------------------------------------------------------------------------


def pgbench_script(table: str, payload_bytes: int) -> str:
    """One write_notify INSERT per transaction (autocommit), a key over 1000 keys."""
    return (
        "\\set k random(0, 999)\n"
        f"INSERT INTO {table} (run_id, event_id, key, traceparent, payload, sent_ns) VALUES "
        f"('component-capacity', gen_random_uuid()::text, 'k' || :k, '{TRACEPARENT}', "
        f"repeat('x', {payload_bytes}), (extract(epoch from clock_timestamp()) * 1e9)::bigint);\n"
    )


def measure_postgres_insert(s: Session, task: Any) -> Measurement:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from hopscope.deploy.services.postgres import Postgres
    from hopscope.experiment.crosschecks import parse_pgbench_log
    from hopscope.pipelines.kafka.write_notify import PG_POOL, WN_TABLE

    if not PGBENCH.is_file():
        raise MeasureError(f"pgbench not found at {PGBENCH} (Debian package postgresql-15)")
    dsn = Postgres(s.ctx).dsn()
    info = conninfo_to_dict(dsn)
    # the password travels in the environment, never on a command line (ps) or in a message
    env = {
        **os.environ,
        "PGPASSWORD": str(info.pop("password", "") or ""),
        "PGOPTIONS": "-c synchronous_commit=on",
    }
    conninfo = make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
    table = f"hopscope_capacity_{s.tag}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigserial PRIMARY KEY, run_id text NOT NULL, event_id text NOT NULL, "
            "key text NOT NULL, traceparent text NOT NULL, payload text NOT NULL, sent_ns bigint NOT NULL)"
        )
        server = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("synchronous_commit", "fsync", "wal_level", "server_version")
        }

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")

    s.cleanups.callback(s.cleanup, f"drop table {table}", drop)
    script = s.work / "insert.sql"
    script.write_text(pgbench_script(table, s.opts.payload_bytes))
    clients = s.opts.pg_clients or PG_POOL
    seconds = max(1, round(s.opts.seconds))
    argv = [
        str(PGBENCH), "--no-vacuum", f"--client={clients}", "--jobs=1", f"--time={seconds}",
        f"--file={script}", "--log", f"--log-prefix={s.work / 'pgbench'}", "--progress=1", conninfo,
    ]  # fmt: skip

    def show(line: str) -> None:
        if m := re.match(r"progress: ([\d.]+) s, ([\d.]+) tps", line):
            s.say(task, f"postgres-insert: {float(m.group(2)):,.0f} tx/s at {m.group(1)} s")

    s.say(task, f"postgres-insert: pgbench, {clients} clients, {seconds} s")
    cpu = CpuMeter()
    run = run_tool(argv, timeout=seconds + 120, on_line=show, env=env, cwd=s.work, name="pgbench")
    usage = cpu.read()
    summary = parse_pgbench_summary(run.output)
    logs = sorted(s.work.glob("pgbench.*"))
    ms = np.concatenate([parse_pgbench_log(p.read_text(), p.name) for p in logs]) if logs else np.array([])
    p50, p99 = percentiles_ms(ms)
    return Measurement(
        "postgres-insert",
        WHAT["postgres-insert"],
        summary["tps"],
        p50,
        p99,
        {
            "tool": f"pgbench ({PGBENCH})",
            "clients": clients,
            "threads": 1,
            "script": pgbench_script("<table>", s.opts.payload_bytes).strip(),
            "table_shape_of": WN_TABLE,
            "server": server,
            "cdc": "none: the temporary table is in no publication (the pipeline's table is)",
        },
        float(seconds),
        now_iso(),
        host_info(),
        unit="tx/s",
        details={
            **summary,
            "logged_transactions": int(ms.size),
            "tool_cpu_cores": round(run.child_cpu_s / run.seconds, 3),
            **usage,
        },
    )


# --- harper-confirmed-write ---------------------------------------------------------------------


def sibling(name: str) -> ModuleType:
    """Another script of this folder, imported by path (benchmarks/ is no package)."""
    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"hopscope_benchmarks_{name}", path)
    if spec is None or spec.loader is None:
        raise MeasureError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: A confirmed write on loopback that takes longer than this waited for something other than work.
STALLED_MS = 1000.0


@dataclass
class WriteLoad:
    """What the concurrent writers did: latencies of the counted writes, every id written, timeouts."""

    latencies_ms: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: the slowest answered write, window or not (a stalled confirmation shows here)
    slowest_ms: float = 0.0


async def _confirmed_writes(
    load: WriteLoad,
    url: str,
    headers: dict[str, str],
    body: bytes,
    clients: int,
    warm_s: float,
    seconds: float,
    timeout: float,
    tag: str,
) -> float:
    """Closed-loop writers, one connection each; counts the writes confirmed inside the window.

    Returns the window's length. Every id written goes into `load.ids` (the cleanup deletes them).
    """
    import httpx

    start = time.monotonic()
    counted_from, until = start + warm_s, start + warm_s + seconds

    async def writer(n: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits) as http:
            i = 0
            while time.monotonic() < until:
                record_id = f"cap-{tag}-{n}-{i}"
                i += 1
                load.ids.append(record_id)
                t0 = time.perf_counter()
                try:
                    resp = await http.put(f"{url}/{record_id}", content=body)
                except httpx.TimeoutException:
                    load.timed_out.append(record_id)
                    continue
                except httpx.HTTPError as exc:
                    load.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latency_ms = (time.perf_counter() - t0) * 1000
                load.slowest_ms = max(load.slowest_ms, latency_ms)
                if resp.status_code >= 300:
                    load.errors.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                elif counted_from <= time.monotonic() <= until:
                    load.latencies_ms.append(latency_ms)

    await asyncio.gather(*(writer(n) for n in range(clients)))
    return until - counted_from


def measure_harper_confirmed_write(s: Session, task: Any) -> Measurement:
    import orjson

    from hopscope.deploy.services.harper import HARPER_VERSION, Harper
    from hopscope.pipelines.harper.component_deploy import ensure_deployed

    harper = Harper(s.ctx)
    client = harper.client()
    procs = harper.processes()
    if not harper.is_external() and not (procs and all(p.alive and p.pid for p in procs)):
        raise MeasureError("the Harper cluster is not running: `hopscope up --only harper` first")
    s.say(task, "harper-confirmed-write: checking the component and replication")
    ensure_deployed(harper)
    client.wait_replicating(timeout=60)
    replicas = s.ctx.config.harper.confirm_replicas
    timeout = s.ctx.config.harper.request_timeout
    headers = {
        **client.auth_headers(),
        "content-type": "application/json",
        **client.confirm_headers(replicas),
    }
    run_id = f"component-capacity-{s.tag}"
    body = orjson.dumps(
        {"key": "k", "runId": run_id, "workload": "write_notify", "payload": "x" * s.opts.payload_bytes}
    )
    node = client.node(1)
    warm_s = min(2.0, s.opts.seconds / 5)
    pids = [int(p.pid) for p in procs if p.pid]
    cpu_ms = sibling("harper_write_cost").cpu_ms if pids else None
    load = WriteLoad()

    def remove_records() -> None:
        for i in range(0, len(load.ids), 1000):
            client.operation(
                1,
                {
                    "operation": "delete",
                    "database": "hopscope",
                    "table": "NotifyEvent",
                    "ids": load.ids[i : i + 1000],
                },
                timeout=120,
            )

    s.cleanups.callback(s.cleanup, f"delete the Harper records of {run_id}", remove_records)
    s.say(task, f"harper-confirmed-write: {s.opts.harper_clients} clients, {s.opts.seconds:g} s")
    cpu = CpuMeter()
    nodes_before = cpu_ms(pids) if cpu_ms else []
    window = asyncio.run(
        _confirmed_writes(
            load,
            f"{node.rest_url}/Notify",
            headers,
            body,
            s.opts.harper_clients,
            warm_s,
            s.opts.seconds,
            timeout,
            s.tag,
        )
    )
    usage = cpu.read()
    nodes_cpu = (
        [
            round((b - a) / 1000 / (window + warm_s), 3)
            for a, b in zip(nodes_before, cpu_ms(pids), strict=True)
        ]
        if cpu_ms
        else []
    )
    p50, p99 = percentiles_ms(load.latencies_ms)
    details: dict[str, Any] = {
        "writes_sent": len(load.ids),
        "confirmed_writes": len(load.latencies_ms),
        "timed_out": len(load.timed_out),
        "slowest_answered_ms": round(load.slowest_ms, 1),
        "errors": load.errors[:5],
        "harper_node_cpu_cores": nodes_cpu,
        **usage,
    }
    m = Measurement(
        "harper-confirmed-write",
        WHAT["harper-confirmed-write"],
        len(load.latencies_ms) / window if window > 0 else None,
        p50,
        p99,
        {
            "harper": HARPER_VERSION,
            "clients": s.opts.harper_clients,
            "connections_per_client": 1,
            "node": node.name,
            "header": client.confirm_headers(replicas),
            "record_bytes": s.opts.payload_bytes,
            "request_timeout_s": timeout,
            "warmup_s": warm_s,
        },
        round(window, 2),
        now_iso(),
        host_info(),
        unit="writes/s",
        details=details,
    )
    if load.timed_out:
        details["timed_out_writes_found"] = _where_stored(client, load.timed_out[:8])
    if load.timed_out or load.slowest_ms > STALLED_MS:
        with contextlib.suppress(Exception):
            details["replication_after"] = {n.name: client.peers(n) for n in client.nodes}
        m.error = (
            f"confirmations stalled: {len(load.timed_out)} write(s) got no answer within {timeout:g} s, "
            f"the slowest answered one took {load.slowest_ms / 1000:.1f} s "
            f"({len(load.latencies_ms)} confirmed in the window); the rate is not a capacity. "
            "Try fewer --harper-clients; details in the JSON"
        )
    elif load.errors:
        m.error = f"{len(load.errors)} write(s) failed, first: {load.errors[0]}"
    return m


def _where_stored(client: Any, ids: Sequence[str]) -> dict[str, int]:
    """How many of these record ids each node holds (did the write land though its confirmation did not?)."""
    import httpx

    out: dict[str, int] = {}
    with client.http(timeout=5) as http:
        for node in client.nodes:
            found = 0
            for record_id in ids:
                with contextlib.suppress(httpx.HTTPError):
                    found += http.get(f"{node.rest_url}/Notify/{record_id}").status_code == 200
            out[node.name] = found
    return out


MEASURES: dict[str, Callable[[Session, Any], Measurement]] = {
    "kafka-producer": measure_kafka_producer,
    "kafka-consumer": measure_kafka_consumer,
    "kafka-streams": measure_kafka_streams,
    "postgres-insert": measure_postgres_insert,
    "harper-confirmed-write": measure_harper_confirmed_write,
}


# --- output ---------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def settings_summary(m: Measurement) -> str:
    st = m.settings
    if m.component == "kafka-producer":
        p = st.get("producer_props", {})
        return (
            f"RF 3, {st['topic']['partitions']} partitions, acks={p.get('acks')}, {p.get('compression.type')}, "
            f"linger {p.get('linger.ms')} ms, idempotent={p.get('enable.idempotence')}, "
            f"{st['record_bytes']} B, {st['records']:,} records"
        )
    if m.component == "kafka-consumer":
        p = st.get("consumer_props", {})
        return f"{st['records']:,} records, fetch.min.bytes={p.get('fetch.min.bytes')}, fetch.max.wait.ms={p.get('fetch.max.wait.ms')}"
    if m.component == "kafka-streams":
        cfg = st.get("logged_configs", {}).get("StreamsConfig", {})
        return (
            f"{st['input']['records']:,} records ({st['input']['payload_bytes']} B, {st['input']['keys']} keys, "
            f"skew {st['input']['key_skew']}), commit {cfg.get('commit.interval.ms', '?')} ms, "
            f"cache {cfg.get('statestore.cache.max.bytes', '?')} B, RF 3, 1 thread"
        )
    if m.component == "postgres-insert":
        return f"{st['clients']} clients, synchronous_commit={st['server']['synchronous_commit']}, fsync={st['server']['fsync']}"
    if m.component == "harper-confirmed-write":
        return f"{st['clients']} clients → node {st['node']}, confirm={next(iter(st['header'].values()))}, {st['record_bytes']} B"
    return ""


def render(console: Console, results: Sequence[Measurement], seconds: float) -> None:
    table = Table(
        title=f"Component capacity, standalone, on this host ({os.cpu_count()} CPUs; --seconds {seconds:g})"
    )
    for col, justify in (
        ("component", "left"), ("measured", "left"), ("settings", "left"), ("throughput", "right"),
        ("p50 ms", "right"), ("p99 ms", "right"), ("s", "right"), ("host CPU busy", "right"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for m in results:
        busy = m.details.get("host_cpu_busy")
        busy_text = "–" if busy is None else f"{busy * 100:.0f} %"
        if m.error and m.rate_per_s is None:
            table.add_row(
                m.component, escape(m.measure), f"[red]{escape(m.error)}[/]", "[red]failed[/]", "", "", "", ""
            )
            continue
        rate = f"{_fmt(m.rate_per_s, 0)} {m.unit}"
        if m.error:
            rate = f"[red]{rate} (invalid)[/]"
        table.add_row(
            m.component, escape(m.measure), escape(settings_summary(m)), rate,
            _fmt(m.p50_ms, 2), _fmt(m.p99_ms, 2), _fmt(m.seconds, 1), busy_text,
        )  # fmt: skip
    console.print(table)
    for m in results:
        if m.error and m.rate_per_s is not None:
            console.print(f"[red]{m.component}:[/] {escape(m.error)}")


def write_json(path: Path, results: Sequence[Measurement]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    existing: list[dict[str, Any]] = []
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):
            loaded = json.loads(path.read_text())
            if isinstance(loaded, list):
                existing = [e for e in loaded if isinstance(e, dict)]
    entries = merge_entries(existing, [asdict(m) for m in results])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=2, default=str) + "\n")
    tmp.replace(path)


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="NAME",
                    help=f"measure only this component (repeatable, or comma-separated): {', '.join(COMPONENTS)}")  # fmt: skip
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each measurement (default 10)")
    ap.add_argument(
        "--payload-bytes", type=int, default=256, help="record / row / write payload size (default 256)"
    )
    ap.add_argument(
        "--producer-records",
        type=int,
        help="records for the producer test (default: calibrated to --seconds)",
    )
    ap.add_argument(
        "--streams-records",
        type=int,
        help="records pre-filled for the Streams app after its warm-up (default: 20000 × --seconds)",
    )
    ap.add_argument(
        "--streams-warmup",
        type=int,
        default=5000,
        help="records the Streams app processes before the window (default 5000)",
    )
    # 2, not more: with more concurrent confirmed writers Harper 4.7 drops confirmations (D14)
    ap.add_argument(
        "--harper-clients", type=int, default=2, help="concurrent Harper writers (default 2; D14)"
    )
    ap.add_argument("--pg-clients", type=int, help="pgbench clients (default: the write_notify pool size)")
    ap.add_argument("--out", type=Path, help="JSON file (default <state dir>/capacity/components.json)")
    args = ap.parse_args(argv)
    chosen = [n.strip() for item in (args.only or []) for n in item.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in COMPONENTS]
    if unknown:
        ap.error(f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(COMPONENTS)}")
    args.components = [c for c in COMPONENTS if c in chosen] if chosen else list(COMPONENTS)
    if args.seconds <= 0:
        ap.error("--seconds must be positive")
    return args


def run_all(console: Console, args: argparse.Namespace, ctx: Any) -> list[Measurement]:
    opts = Options(
        args.seconds, args.payload_bytes, args.producer_records, args.streams_records,
        args.streams_warmup, args.harper_clients, args.pg_clients,
    )  # fmt: skip
    tag = f"{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:6]}"
    log_dir = ctx.state_dir / "capacity" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    results: list[Measurement] = []
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    )
    with (
        tempfile.TemporaryDirectory(prefix="hopscope-capacity-") as tmp,
        progress,
        contextlib.ExitStack() as cleanups,
    ):
        session = Session(ctx, opts, tag, Path(tmp), log_dir, progress, cleanups)
        for name in args.components:
            task = progress.add_task(name, total=None)
            started = now_iso()
            try:
                m = MEASURES[name](session, task)
                progress.update(
                    task, description=f"{name}: {_fmt(m.rate_per_s, 0)} {m.unit}", total=1, completed=1
                )
            except Exception as exc:
                m = Measurement.failed(name, f"{type(exc).__name__}: {exc}", started)
                progress.update(task, description=f"[red]{name}: failed[/]", total=1, completed=1)
            results.append(m)
        progress.add_task("cleaning up", total=None)
        cleanups.close()
    for problem in session.cleanup_problems:
        console.print(f"[yellow]cleanup:[/] {escape(problem)}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=max(160, Console().width))
    try:
        from hopscope.deploy.base import Context
        from hopscope.deploy.config import load_config

        ctx = Context(load_config())
    except Exception as exc:
        console.print(f"[red]cannot load the hopscope configuration:[/] {escape(str(exc))}")
        return 2
    out = args.out or ctx.state_dir / "capacity" / "components.json"
    try:
        with measurement_lock(console):
            results = run_all(console, args, ctx)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/] (what was created so far was removed)")
        return 130
    render(console, results, args.seconds)
    try:
        write_json(out, results)
        console.print(f"JSON: {out}")
    except OSError as exc:
        console.print(f"[red]cannot write {out}:[/] {escape(str(exc))}")
        return 2
    return 1 if any(m.error for m in results) else 0


if __name__ == "__main__":
    sys.exit(main())
