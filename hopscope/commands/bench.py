"""`hopscope bench`: one workload on one stack (the engine is `hopscope.pipelines.bench`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hopscope.analysis.ledger import sweep_steps
from hopscope.analysis.report.experiment_sections import sweep_plot
from hopscope.analysis.run import read_ledger
from hopscope.analysis.sweep import knee_rule
from hopscope.commands.errors import UsageProblem, writable_dir
from hopscope.commands.json_output import JsonOption, print_json
from hopscope.deploy.config import load_config
from hopscope.pipelines.bench import LIVE_ROOT_SPANS_MAX_RATE, resolve_bench, run_bench
from hopscope.pipelines.capacity import Capacity, capacity_from_steps, rate_warning, record_capacities
from hopscope.pipelines.driver import get_driver_factory, known_stacks
from hopscope.pipelines.loadgen import LoadResult
from hopscope.pipelines.stack import stack_names_for_help
from hopscope.pipelines.workload import WORKLOADS_DIR, Workload


def _stack_help() -> str:
    return f"a discovered stack or a simulation ({stack_names_for_help(known_stacks)})"


def print_result(
    console: Console, stack: str, workload: Workload, result: LoadResult, simulation: bool
) -> None:
    summary = result.summary()
    title = f"{stack} / {workload.name}" + (" — SIMULATION (loopback)" if simulation else "")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("target rate (ev/s)", f"{result.target_rate:,.1f}")
    table.add_row("schedule rate (ev/s)", f"{result.schedule_rate:,.1f}")
    table.add_row("achieved rate (ev/s)", f"{result.achieved_rate:,.1f} ({result.rate_error():+.2%})")
    table.add_row("events sent / planned", f"{result.sent_events:,} / {result.target_events:,}")
    if result.not_sent_events:
        table.add_row("[red]not sent (in-flight limit)", f"{result.not_sent_events:,}")
    table.add_row("CPU (% of a core)", f"{result.cpu_percent:.1f}")
    for outcome, count in result.ledger.counts.items():
        table.add_row(f"outcome {outcome}", f"{count:,}")
    if result.ledger.unknown_receipts:
        table.add_row("[red]receipts for unknown events", f"{result.ledger.unknown_receipts:,}")
    for name, stats in summary["latency_us"].items():
        if stats.get("count"):
            table.add_row(
                f"{name} p50/p99/max (ms)",
                f"{stats['p50'] / 1e3:.2f} / {stats['p99'] / 1e3:.2f} / {stats['max'] / 1e3:.2f}",
            )
    console.print(table)


def report_sweep(
    console: Console, stack: str, workload: str, run_dir: Path, *, tracing: bool, record: bool
) -> Capacity:
    """The sweep's steps as a table and a plot (`sweep.html` in the run directory), and the
    capacity found, recorded for this host (a simulation's is not)."""
    steps = sweep_steps(read_ledger(run_dir), None)
    steps = steps[(steps["stack"] == stack) & (steps["workload"] == workload)]
    table = Table(title=f"{stack} / {workload}: latency vs offered rate (knee: {knee_rule()})")
    for col in ("offered (ev/s)", "achieved (ev/s)", "events", "delivered", "p50 (ms)", "p99 (ms)", ""):
        table.add_column(col, justify="right")
    for s in steps.to_dict("records"):
        mark = "knee" if s["knee"] else ("sustained" if s["sustained"] else "")
        table.add_row(
            f"{s['target_rate']:,.0f}", f"{s['achieved_rate']:,.1f}", f"{s['events']:,}",
            f"{s['delivered']:,}", f"{s['p50_ms']:,.1f}", f"{s['p99_ms']:,.1f}", mark,
        )  # fmt: skip
    console.print(table)
    cap = capacity_from_steps(stack, workload, steps.to_dict("records"), tracing=tracing, run_dir=run_dir)
    figure = sweep_plot(steps)
    if figure is not None:
        figure.write_html(run_dir / "sweep.html", include_plotlyjs="cdn")
    if cap.sustained_rate is None:
        console.print(f"capacity: even {cap.offered[0]:g} ev/s is past the knee; offer lower rates")
    elif cap.knee_rate is None:
        console.print(
            f"capacity: at least {cap.sustained_rate:g} ev/s (no offered rate reached the knee; offer higher)"
        )
    else:
        console.print(
            f"capacity: {cap.sustained_rate:g} ev/s sustained (p50 {cap.p50_ms:.1f} ms, p99 "
            f"{cap.p99_ms:.1f} ms), knee at {cap.knee_rate:g} ev/s"
        )
    if record:
        console.print(f"recorded for this host in {record_capacities([cap])}")
    return cap


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        stack: Annotated[
            str,
            typer.Option("--stack", help=_stack_help()),
        ],
        workload: Annotated[str, typer.Option("--workload", help="workload name or YAML path")],
        rate: Annotated[
            float | None, typer.Option("--rate", help="events/s (replaces an ingest sweep)")
        ] = None,
        duration: Annotated[
            float | None, typer.Option("--duration", help="measured seconds (per sweep step)")
        ] = None,
        warmup: Annotated[
            float | None, typer.Option("--warmup", help="warm-up seconds, flagged in the ledger")
        ] = None,
        schedule: Annotated[str | None, typer.Option("--schedule", help="constant | poisson")] = None,
        payload_bytes: Annotated[int | None, typer.Option("--payload-bytes")] = None,
        subscribers: Annotated[
            int | None, typer.Option("--subscribers", help="unfiltered subscriber count")
        ] = None,
        seed: Annotated[int | None, typer.Option("--seed")] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="run directory (default runs/<run id>)")
        ] = None,
        tracing: Annotated[bool, typer.Option("--tracing/--no-tracing")] = True,
        otlp_endpoint: Annotated[
            str | None, typer.Option("--otlp-endpoint", help="collector OTLP endpoint")
        ] = None,
        progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
        root_spans: Annotated[
            str,
            typer.Option(
                "--root-spans",
                help="live: root span per event in the send path; deferred: built after the run "
                f"(cheaper); auto: deferred above {LIVE_ROOT_SPANS_MAX_RATE:.0f} events/s",
            ),
        ] = "auto",
        workloads_dir: Annotated[Path, typer.Option("--workloads-dir")] = WORKLOADS_DIR,
        sweep: Annotated[
            str | None,
            typer.Option(
                "--sweep",
                help="find the capacity: comma-separated offered rates, rising (e.g. 25,50,100,200,400); "
                "each step runs --warmup + --duration s; the highest rate below the knee is recorded "
                "for this host and later runs above it are warned about",
            ),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Run one workload open-loop against one stack; writes the ledger and the manifest."""
        console = Console(stderr=True)
        overrides: dict[str, Any] = {
            "rate": rate,
            "duration_s": duration,
            "warmup_s": warmup,
            "schedule": schedule,
            "payload_bytes": payload_bytes,
            "subscribers": subscribers,
            "seed": seed,
        }
        if sweep is not None:
            try:
                overrides["rate_sweep"] = tuple(float(r) for r in sweep.split(",") if r.strip())
            except ValueError:
                raise UsageProblem("--sweep", sweep, "takes comma-separated rates") from None
            overrides["rate"] = None
        if out is not None:
            writable_dir(out)
        if otlp_endpoint is None:
            # The root spans must reach the same collector the drivers export to.
            otlp_endpoint = load_config().collector.otlp_grpc_endpoint
        # a bad workload or stack is exit 2, a failed preflight 3, a stack not clean 4 (hopscope.commands.errors)
        resolved = resolve_bench(stack, workload, overrides, workloads_dir)
        if not resolved.rate_sweep or len(resolved.rate_sweep) < 2:
            warning = rate_warning(stack, resolved.name, max(r for r, _ in resolved.phases()))
            if warning:
                console.print(f"[yellow]warning:[/] {warning}")
        run_dir, result = run_bench(
            stack,
            resolved,
            root_spans=root_spans,
            out=out,
            tracing=tracing,
            otlp_endpoint=otlp_endpoint,
            progress=progress,
            console=console,
        )
        simulation = bool(getattr(get_driver_factory(stack), "simulation", False))
        if as_json:
            summary = {
                "run_dir": run_dir,
                "stack": stack,
                "workload": resolved.name,
                "simulation": simulation,
            }
            print_json({**summary, **result.summary()})
        else:
            print_result(console, stack, resolved, result, simulation)
        if resolved.rate_sweep and len(resolved.rate_sweep) > 1:
            report_sweep(console, stack, resolved.name, run_dir, tracing=tracing, record=not simulation)
        console.print(f"run directory: {run_dir}")
