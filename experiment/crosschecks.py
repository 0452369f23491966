"""Independent cross-checks of the traced figures, with tools that know nothing of our tracing.

- Kafka's own `org.apache.kafka.tools.EndToEndLatency` (kafka-tools jar), on an RF 3 topic
  with `min.insync.replicas=2`, at the stack's producer settings (acks=all, lz4, linger.ms,
  idempotence) and its consumer's fetch wait — against the traced Kafka hop. Beside it a
  like-for-like pair: the tool closed loop and hopscope's confluent-kafka client in the same
  mode (one 256 B record produced, acked, consumed, then the next), traced and untraced,
  compared in the mean (the tool prints its percentiles in whole ms).
- `pgbench` with a one-row INSERT script (autocommit, so INSERT + commit like the
  write_notify client) against our Postgres — against the traced `client.insert` hop. Beside
  that open-loop context, a like-for-like pair: pgbench closed loop (one client, no rate, N
  transactions) and hopscope's traced client in the same mode (one autocommit connection, the
  same statement, back to back, each INSERT inside a hop span with the contrib psycopg
  instrumentation) — their p50s must agree within 10 % (issue #15 item 4), given with the
  ratio's bootstrap interval.

A stack names the checks that apply to it in its `stack.yaml` (`crosschecks:`): a name from
`CHECKS` here, or its own `module:function` (module relative to the stack folder), called with a
`CheckRun`, with the check's label and the traced figure it is compared with. Each result is
stored in the run's cross-check file (`hopscope.core.rundir.CROSSCHECKS`) with its stack, label
and traced figure, so the report puts the tool's figure next to the traced one and gives their
ratio without knowing any stack. A check that cannot run says why, with no figure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from opentelemetry import trace
from rich.console import Console

from hopscope.core.rundir import CROSSCHECKS
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.services.kafka import Kafka
from hopscope.deploy.services.postgres import Postgres
from hopscope.pipelines.stack import CrossCheckSpec, Stack

E2E_TOPIC = "hopscope_crosscheck_e2e"
PG_TABLE = "hopscope_crosscheck_pgbench"
PGBENCH_CANDIDATES = ("/usr/lib/postgresql/15/bin/pgbench", "pgbench")

_AVG = re.compile(r"Avg latency:\s*([\d.]+)\s*ms")
_PCT = re.compile(r"Percentiles:\s*50th\s*=\s*(\d+),\s*99th\s*=\s*(\d+),\s*99\.9th\s*=\s*(\d+)")


class CrossCheckError(RuntimeError):
    pass


def parse_end_to_end_latency(stdout: str) -> dict[str, float]:
    """The tool's summary lines: `Avg latency: 27.4663 ms` and `Percentiles: 50th = 16, …` (ms)."""
    avg = _AVG.search(stdout)
    pct = _PCT.search(stdout)
    if not avg or not pct:
        raise CrossCheckError(f"EndToEndLatency output has no summary lines: {stdout[-400:]!r}")
    return {
        "mean_ms": float(avg.group(1)),
        "p50_ms": float(pct.group(1)),
        "p99_ms": float(pct.group(2)),
        "p999_ms": float(pct.group(3)),
    }


def parse_pgbench_log(text: str, source: str = "pgbench log") -> np.ndarray:
    """Per-transaction log lines `client_id tx_no time_us script_no epoch_s epoch_us` → ms."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise CrossCheckError(f"{source}: line {n}: expected ≥ 3 fields, got {line!r}")
        if parts[2] == "skipped":
            continue
        try:
            out.append(int(parts[2]) / 1e3)
        except ValueError as exc:
            raise CrossCheckError(f"{source}: line {n}: field 3 (latency µs) is {parts[2]!r}") from exc
    return np.asarray(out, dtype=float)


def _quantiles(ms: np.ndarray) -> dict[str, float]:
    return {
        "count": int(ms.size),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "p999_ms": float(np.percentile(ms, 99.9)),
    }


def kafka_settings(drivers: list[dict[str, Any]]) -> dict[str, str]:
    """Producer/consumer properties of the stack, from a Kafka driver manifest (else defaults)."""
    producer = next((d.get("producer") for d in drivers if d.get("producer")), None) or {
        "acks": "all",
        "compression.type": "lz4",
        "enable.idempotence": True,
        "linger.ms": 1,
    }
    consumer = next((d.get("consumer") for d in drivers if d.get("consumer")), None) or {}
    props = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in producer.items() if k != "acks"}
    if "fetch.wait.max.ms" in consumer:  # librdkafka name → the Java client's
        props["fetch.max.wait.ms"] = str(consumer["fetch.wait.max.ms"])
    if "fetch.min.bytes" in consumer:
        props["fetch.min.bytes"] = str(consumer["fetch.min.bytes"])
    props["acks"] = str(producer.get("acks", "all"))
    return props


def kafka_end_to_end(ctx: Any, props: dict[str, str], records: int, workdir: Path) -> dict[str, Any]:
    kafka = Kafka(ctx)
    kafka.ensure_topic(E2E_TOPIC, 1, 3, {"min.insync.replicas": "2"})
    conf = workdir / "endtoendlatency.properties"
    conf.write_text("".join(f"{k}={v}\n" for k, v in props.items() if k != "acks"))
    argv = kafka.tool_argv(
        "org.apache.kafka.tools.EndToEndLatency",
        "--bootstrap-server",
        kafka.bootstrap(),
        "--topic",
        E2E_TOPIC,
        "--num-records",
        str(records),
        "--producer-acks",
        props.get("acks", "all"),
        "--record-size",
        "256",
        "--command-config",
        str(conf),
    )
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise CrossCheckError(f"EndToEndLatency exited {done.returncode}: {done.stderr[-600:]}")
    return {
        "tool": "org.apache.kafka.tools.EndToEndLatency (kafka-tools)",
        "topic": kafka.topic_facts(E2E_TOPIC),
        "records": records,
        "record_size": 256,
        "properties": props,
        "seconds": round(time.monotonic() - t0, 1),
        **parse_end_to_end_latency(done.stdout),
    }


#: the statement both sides of the pgbench checks run
PG_INSERT = f"INSERT INTO {PG_TABLE} (payload) VALUES (repeat('x', 256))"


def _run_pgbench(
    binary: str, dsn: str, workdir: Path, name: str, mode: list[str], timeout: float
) -> np.ndarray:
    """pgbench with one client running PG_INSERT in `mode` (--time/--rate or --transactions);
    the per-transaction latencies (ms) from its log."""
    script = workdir / "insert_one.sql"
    script.write_text(PG_INSERT + ";\n")
    argv = [
        binary,
        "--no-vacuum",
        "--client=1",
        *mode,
        f"--file={script}",
        "--log",
        f"--log-prefix={workdir / name}",
        dsn,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=workdir)
    if done.returncode != 0:
        # the DSN carries the password: never echo the command line, only pgbench's complaint
        raise CrossCheckError(f"pgbench exited {done.returncode}: {done.stderr.replace(dsn, '<dsn>')[-600:]}")
    logs = sorted(workdir.glob(f"{name}.*"))
    if not logs:
        raise CrossCheckError(f"pgbench wrote no per-transaction log under {workdir}")
    ms = np.concatenate([parse_pgbench_log(p.read_text(), str(p)) for p in logs])
    if ms.size == 0:
        raise CrossCheckError("pgbench logged no transaction")
    return ms


def traced_inserts(dsn: str, transactions: int) -> np.ndarray:
    """hopscope's traced client in pgbench's closed-loop mode: one autocommit connection,
    PG_INSERT back to back, each inside a `client.insert` hop span with the contrib psycopg
    instrumentation under it, through the pipelines' own tracing (`setup_tracing`, spans held
    and built at the flush: `hot_path_provider`); the hop spans' durations (ms). The exporter is
    in memory: exporting happens after the loop in both cases and is not what this compares."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hopscope.instrumentation.deferred import hot_path_provider
    from hopscope.instrumentation.libraries import trace_client
    from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing

    exporter = InMemorySpanExporter()
    provider = setup_tracing("hopscope.crosscheck", "crosscheck", "crosscheck", exporter=exporter)
    hot = hot_path_provider(provider)
    tracer = hot.get_tracer("hopscope.crosscheck")
    with trace_client(psycopg.connect(dsn, autocommit=True), hot) as conn:
        for _ in range(transactions):
            with tracer.start_as_current_span("client.insert", attributes={"hopscope.hop": "client.insert"}):
                conn.execute(PG_INSERT)
    shutdown_tracing(provider)
    hops = [s for s in exporter.get_finished_spans() if s.name == "client.insert"]
    if len(hops) != transactions:
        raise CrossCheckError(f"traced twin: {len(hops)} hop spans for {transactions} INSERTs")
    return np.asarray([(s.end_time - s.start_time) / 1e6 for s in hops], dtype=float)


def untraced_inserts(dsn: str, transactions: int) -> np.ndarray:
    """The same client loop as `traced_inserts` with no tracing, timed around each statement:
    what the Python client itself costs beside the tool, apart from what tracing adds."""
    out = np.empty(transactions)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(transactions):
            t0 = time.perf_counter_ns()
            conn.execute(PG_INSERT)
            out[i] = (time.perf_counter_ns() - t0) / 1e6
    return out


def ratio_with_interval(
    a: np.ndarray, b: np.ndarray, q: float = 50.0, draws: int = 1000, seed: int = 0
) -> dict[str, float]:
    """q-th percentile of `a` ÷ that of `b`, with a 95 % bootstrap interval (each side resampled
    on its own: the two are independent samples)."""
    rng = np.random.default_rng(seed)
    ratios = np.array(
        [
            np.percentile(rng.choice(a, a.size), q) / np.percentile(rng.choice(b, b.size), q)
            for _ in range(draws)
        ]
    )
    return {
        "ratio": float(np.percentile(a, q) / np.percentile(b, q)),
        "ci_low": float(np.percentile(ratios, 2.5)),
        "ci_high": float(np.percentile(ratios, 97.5)),
    }


#: closed-loop transactions of each side of the like-for-like pair
LIKE_FOR_LIKE_TRANSACTIONS = 2000
#: how close the like-for-like p50s must be (issue #15 item 4's goal)
LIKE_FOR_LIKE_TOLERANCE = 0.10


def like_for_like_pgbench(binary: str, dsn: str, workdir: Path, transactions: int) -> dict[str, Any]:
    """pgbench and the traced client, both closed loop on one connection with PG_INSERT; the
    tool runs first and last (half the transactions each) so drift hits both sides alike."""
    half = max(1, transactions // 2)
    tool = np.concatenate(
        [
            _run_pgbench(binary, dsn, workdir, "closed-a", [f"--transactions={half}"], 600),
            _run_pgbench(binary, dsn, workdir, "closed-b", [f"--transactions={half}"], 600),
        ]
    )
    traced = traced_inserts(dsn, 2 * half)
    untraced = untraced_inserts(dsn, 2 * half)
    r = ratio_with_interval(traced, tool)
    bare = ratio_with_interval(untraced, tool)
    p50 = {
        name: float(np.percentile(a, 50))
        for name, a in (("tool", tool), ("traced", traced), ("untraced", untraced))
    }
    return {
        "mode": f"closed loop, 1 connection, autocommit, {2 * half} one-row INSERTs each",
        "tool": _quantiles(tool),
        "traced": _quantiles(traced),
        "untraced_client": _quantiles(untraced),
        "statistic": "p50",
        "ratio": r["ratio"],
        "ratio_ci": [r["ci_low"], r["ci_high"]],
        "untraced_ratio": bare["ratio"],
        "untraced_ratio_ci": [bare["ci_low"], bare["ci_high"]],
        "tolerance": LIKE_FOR_LIKE_TOLERANCE,
        "agrees": abs(r["ratio"] - 1) <= LIKE_FOR_LIKE_TOLERANCE,
        # where a disagreement comes from: the client itself, or what tracing adds to it
        "client_ms": p50["untraced"] - p50["tool"],
        "tracing_ms": p50["traced"] - p50["untraced"],
    }


#: librdkafka's names for the Java client's properties the tool is given
_JAVA_TO_LIBRDKAFKA = {"fetch.max.wait.ms": "fetch.wait.max.ms"}
_PRODUCER_KEYS = ("acks", "linger.ms", "compression.type", "enable.idempotence", "batch.size")
_CONSUMER_KEYS = ("fetch.wait.max.ms", "fetch.min.bytes")


def _client_configs(bootstrap: str, props: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The producer and consumer configs of our Python client (confluent-kafka) at the settings
    the tool was given."""
    native = {_JAVA_TO_LIBRDKAFKA.get(k, k): v for k, v in props.items()}
    producer = {"bootstrap.servers": bootstrap, **{k: native[k] for k in _PRODUCER_KEYS if k in native}}
    consumer = {
        "bootstrap.servers": bootstrap,
        "group.id": f"hopscope-crosscheck-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        **{k: native[k] for k in _CONSUMER_KEYS if k in native},
    }
    return producer, consumer


def kafka_client_loop(
    bootstrap: str, topic: str, props: dict[str, str], records: int, traced: bool
) -> np.ndarray:
    """hopscope's client in EndToEndLatency's mode: one 256-byte record, produce and wait for its
    ack (acks=all), then poll until the consumer has it; the next record only after. Per record
    (ms): produce start → record consumed. Traced: the produce inside a `client.produce` hop span
    with the contrib confluent-kafka instrumentation under it and the receipt a consumer hop span
    (the pipelines' own tracing, spans built after the loop), the latency taken from the spans
    as the analysis takes it; untraced: the same loop timed with a clock."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from hopscope.instrumentation.deferred import hot_path_provider
    from hopscope.instrumentation.libraries import trace_client
    from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing

    producer_cfg, consumer_cfg = _client_configs(bootstrap, props)
    exporter = InMemorySpanExporter()
    provider = setup_tracing(
        "hopscope.crosscheck", "crosscheck", "crosscheck", exporter=exporter, enabled=traced
    )
    hot = hot_path_provider(provider)
    tracer = hot.get_tracer("hopscope.crosscheck")
    producer = trace_client(Producer(producer_cfg), hot)
    consumer = Consumer(consumer_cfg)
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, high)])
        payload = b"x" * 256
        out = np.empty(records)
        for i in range(records):
            key = str(i).encode()
            t0 = time.perf_counter_ns()
            with tracer.start_as_current_span(
                "client.produce", kind=SpanKind.PRODUCER, attributes={"hopscope.hop": "client.produce"}
            ) as root:
                producer.produce(topic, payload, key=key, partition=0)
                producer.flush(30)
            while True:
                msg = consumer.poll(5)
                if msg is None:
                    raise CrossCheckError(f"like-for-like Kafka loop: record {i} not consumed within 5 s")
                if msg.error() is None and msg.key() == key:
                    break
            received = time.time_ns()
            out[i] = (time.perf_counter_ns() - t0) / 1e6
            if traced:
                tracer.start_span(
                    "crosscheck.consume",
                    context=trace.set_span_in_context(root),
                    kind=SpanKind.CONSUMER,
                    attributes={"hopscope.hop": "crosscheck.consume", "hopscope.event_id": str(i)},
                    start_time=received,
                ).end(end_time=received)
    finally:
        consumer.close()
        shutdown_tracing(provider)
    if not traced:
        return out
    spans = exporter.get_finished_spans()
    roots = {s.context.span_id: s for s in spans if s.name == "client.produce"}
    receipts = [s for s in spans if s.name == "crosscheck.consume" and s.parent is not None]
    if len(roots) != records or len(receipts) != records:
        raise CrossCheckError(
            f"traced twin: {len(roots)} produce and {len(receipts)} consume spans for {records} records"
        )
    return np.asarray([(r.start_time - roots[r.parent.span_id].start_time) / 1e6 for r in receipts])


def like_for_like_kafka(ctx: Any, props: dict[str, str], records: int, workdir: Path) -> dict[str, Any]:
    """EndToEndLatency and hopscope's client in its mode, both closed loop at the same settings;
    the tool runs first and last (half the records each) so drift hits both sides alike. The tool
    prints its mean with decimals but its percentiles in whole ms, so the pair compares means:
    our sides' bootstrap interval, widened by the spread of the tool's two runs."""
    half = max(1, records // 2)
    bootstrap = Kafka(ctx).bootstrap()
    first = kafka_end_to_end(ctx, props, half, workdir)
    traced = kafka_client_loop(bootstrap, E2E_TOPIC, props, 2 * half, traced=True)
    untraced = kafka_client_loop(bootstrap, E2E_TOPIC, props, 2 * half, traced=False)
    last = kafka_end_to_end(ctx, props, half, workdir)
    tool_means = [first["mean_ms"], last["mean_ms"]]
    tool_mean = float(np.mean(tool_means))
    r, r_ci = mean_ratio_with_interval(traced, tool_means)
    bare, bare_ci = mean_ratio_with_interval(untraced, tool_means)
    return {
        "mode": f"closed loop, one 256 B record at a time, produce → acked → consumed, {2 * half} records each",
        "statistic": "mean",
        "tool": {"count": 2 * half, "mean_ms": tool_mean, "runs": [first, last]},
        "traced": _quantiles(traced),
        "untraced_client": _quantiles(untraced),
        "ratio": r,
        "ratio_ci": r_ci,
        "untraced_ratio": bare,
        "untraced_ratio_ci": bare_ci,
        "tolerance": LIKE_FOR_LIKE_TOLERANCE,
        "agrees": abs(r - 1) <= LIKE_FOR_LIKE_TOLERANCE,
        "client_ms": float(untraced.mean()) - tool_mean,
        "tracing_ms": float(traced.mean() - untraced.mean()),
    }


def mean_ratio_with_interval(
    ours: np.ndarray, tool_means: list[float], draws: int = 1000, seed: int = 0
) -> tuple[float, list[float]]:
    """Our mean ÷ the tool's (the mean of its runs), with a 95 % interval: our side bootstrapped,
    divided by the highest and the lowest of the tool's run means (its spread is all it shows)."""
    rng = np.random.default_rng(seed)
    means = np.array([rng.choice(ours, ours.size).mean() for _ in range(draws)])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(ours.mean() / np.mean(tool_means)), [
        float(lo / max(tool_means)),
        float(hi / min(tool_means)),
    ]


def pgbench(ctx: Any, seconds: float, rate: float, workdir: Path) -> dict[str, Any]:
    binary = next((p for p in PGBENCH_CANDIDATES if shutil.which(p)), None)
    if binary is None:
        raise CrossCheckError(f"pgbench not found (looked for {', '.join(PGBENCH_CANDIDATES)})")
    dsn = Postgres(ctx).dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {PG_TABLE} (id bigserial PRIMARY KEY, payload text)")
        conn.execute(f"TRUNCATE {PG_TABLE}")
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    mode = [f"--time={max(1, round(seconds))}", f"--rate={rate:g}"]
    ms = _run_pgbench(binary, dsn, workdir, "pgbench", mode, seconds + 60)
    return {
        "tool": "pgbench (one-row INSERT, autocommit, 1 client)",
        "binary": binary,
        "rate": rate,
        "seconds": seconds,
        "synchronous_commit": sync[0] if sync else None,
        **_quantiles(ms),
        "like_for_like": like_for_like_pgbench(binary, dsn, workdir, LIKE_FOR_LIKE_TRANSACTIONS),
    }


@dataclass(frozen=True)
class CheckRun:
    """What a cross-check gets: the services, the manifests of its stack's drivers (phases that
    ran), how long to run and a scratch folder."""

    ctx: Context
    stack: str
    drivers: list[dict[str, Any]]
    seconds: float
    workdir: Path


#: one-row INSERTs per second of the pgbench check
PGBENCH_RATE = 100.0


#: closed-loop records of each side of the Kafka like-for-like pair
LIKE_FOR_LIKE_RECORDS = 2000


def check_kafka_end_to_end(run: CheckRun) -> dict[str, Any]:
    records = max(50, round(run.seconds * 50))
    props = kafka_settings(run.drivers)
    return {
        **kafka_end_to_end(run.ctx, props, records, run.workdir),
        "like_for_like": like_for_like_kafka(run.ctx, props, LIKE_FOR_LIKE_RECORDS, run.workdir),
    }


def check_pgbench(run: CheckRun) -> dict[str, Any]:
    return pgbench(run.ctx, run.seconds, PGBENCH_RATE, run.workdir)


Check = Callable[[CheckRun], dict[str, Any]]

#: The checks a stack can name in its declaration.
CHECKS: dict[str, Check] = {
    "kafka_end_to_end": check_kafka_end_to_end,
    "pgbench": check_pgbench,
}


def declared_checks(stack: Stack) -> list[tuple[CrossCheckSpec, Check]]:
    """(declaration, function) of each check the stack declares; CrossCheckError for a name
    that is neither known here nor a `module:function`."""
    out = []
    for spec in stack.spec.crosschecks:
        if ":" in spec.check:
            out.append((spec, stack.resolve(spec.check, "cross-check")))
        elif spec.check in CHECKS:
            out.append((spec, CHECKS[spec.check]))
        else:
            raise CrossCheckError(
                f"{stack.file}: cross-check {spec.check!r} is neither one of {sorted(CHECKS)} "
                "nor a 'module:function' of the stack"
            )
    return out


def run_crosschecks(
    run_dir: Path, results: list[Any], stacks: list[Stack], seconds: float, console: Console
) -> dict[str, Any]:
    """Run the checks the chosen stacks declare; every outcome (figure or error) is stored."""
    out: dict[str, Any] = {}
    planned = [(s, spec, fn) for s in stacks for spec, fn in declared_checks(s)]
    if not planned:
        return out
    ctx = Context(load_config())
    with tempfile.TemporaryDirectory(prefix="hopscope-crosscheck-") as tmp:
        work = Path(tmp)
        for stack, spec, fn in planned:
            drivers = [r.driver for r in results if r.phase.stack == stack.name and r.status == "ok"]
            name = spec.result_name
            key = name if name not in out else f"{stack.name}.{name}"
            # what the report needs beside the figure: whose check it is, its label, its traced twin
            info = {"stack": stack.name, **spec.report_info()}
            console.print(f"cross-check [bold]{key}[/] …")
            try:
                out[key] = {"status": "ok", **fn(CheckRun(ctx, stack.name, drivers, seconds, work)), **info}
                console.print(f"  p50 {out[key]['p50_ms']:.2f} ms, p99 {out[key]['p99_ms']:.2f} ms")
            except Exception as exc:  # one failing tool must not hide the other's figure
                out[key] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", **info}
                console.print(f"  [red]failed:[/] {out[key]['error']}")
    (run_dir / CROSSCHECKS).write_text(json.dumps(out, indent=2, default=str))
    return out
