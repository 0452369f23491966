"""Load generator throughput and timing accuracy, with the LoopbackDriver simulation.

For each rate × schedule × tracing (off, live root spans, deferred root spans): target vs achieved rate (goal ±1 %),
send lag (sent − intended) p50/p99/max, and this process's CPU (% of one core).
Tracing "on" runs the real SDK path (root span per event, BatchSpanProcessor,
traceparent injection) into an exporter that counts and discards, so no
collector is needed; OTLP serialisation cost is not included.

    .venv/bin/python benchmarks/loadgen_bench.py [--seconds 10] [--rates 1000,5000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence

import numpy as np
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from rich.console import Console
from rich.table import Table

from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing
from hopscope.pipelines.driver import LoopbackConfig, LoopbackDriver
from hopscope.pipelines.loadgen import LoadGenerator
from hopscope.pipelines.workload import load_workload


class CountingExporter(SpanExporter):
    """Counts exported spans and drops them (benchmark only)."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def one_run(rate: float, schedule: str, tracing: str, seconds: float) -> dict[str, float]:
    workload = load_workload(
        "write_notify",
        {"rate": rate, "duration_s": seconds, "warmup_s": 0.0, "schedule": schedule, "subscribers": 3},
    )
    exporter = CountingExporter()
    provider = setup_tracing(
        "hopscope.loadgen", "loopback", "bench", enabled=tracing != "off", exporter=exporter
    )
    driver = LoopbackDriver(LoopbackConfig(ack_delay_s=0.0005, deliver_delay_s=0.001))
    gen = LoadGenerator(
        workload,
        driver,
        stack="loopback",
        run_id="bench",
        tracer_provider=provider,
        progress=False,
        root_spans="deferred" if tracing == "deferred" else "live",
    )
    result = asyncio.run(gen.run())
    shutdown_tracing(provider)
    lag_us = result.send_lag_ns / 1e3
    return {
        "events": result.sent_events,
        "schedule_rate": result.schedule_rate,
        "achieved_rate": result.achieved_rate,
        "rate_error": result.rate_error(),
        "lag_p50": float(np.percentile(lag_us, 50)),
        "lag_p99": float(np.percentile(lag_us, 99)),
        "lag_max": float(lag_us.max()),
        "cpu": result.cpu_percent,
        "cpu_us_per_event": result.cpu_percent / 100 * result.elapsed_s / max(1, result.sent_events) * 1e6,
        "spans": exporter.count,
        "delivered": result.ledger.counts["delivered"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="1000,5000,10000")
    parser.add_argument("--schedules", default="constant,poisson")
    parser.add_argument("--tracing", default="off,live,deferred", help="off | live | deferred root spans")
    args = parser.parse_args()
    console = Console(width=200)
    console.print(f"host: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}")
    table = Table(title=f"open-loop generator, LoopbackDriver (simulation), {args.seconds:g} s per run")
    for col in (
        "target/s",
        "schedule",
        "tracing",
        "scheduled/s",
        "achieved/s",
        "error",
        "lag p50 µs",
        "lag p99 µs",
        "lag max µs",
        "CPU %",
        "CPU µs/ev",
        "spans",
        "delivered",
    ):
        table.add_column(col, justify="right")
    for rate in [float(r) for r in args.rates.split(",")]:
        for schedule in args.schedules.split(","):
            for tracing in args.tracing.split(","):
                r = one_run(rate, schedule, tracing, args.seconds)
                table.add_row(
                    f"{rate:,.0f}",
                    schedule,
                    tracing,
                    f"{r['schedule_rate']:,.1f}",
                    f"{r['achieved_rate']:,.1f}",
                    f"{r['rate_error']:+.2%}",
                    f"{r['lag_p50']:,.0f}",
                    f"{r['lag_p99']:,.0f}",
                    f"{r['lag_max']:,.0f}",
                    f"{r['cpu']:.0f}",
                    f"{r['cpu_us_per_event']:.0f}",
                    f"{r['spans']:,}",
                    f"{r['delivered']:,}/{r['events']:,}",
                )
                console.print(
                    f"done: {rate:,.0f}/s {schedule} tracing={tracing} ({os.getloadavg()[0]:.1f} load)"
                )
    console.print(table)
    console.print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
