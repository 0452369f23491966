"""`hopscope bench`: one workload on one stack, open loop, with ledger and manifest."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing
from hopscope.rundir import base_manifest, create_run_dir, update_manifest

from .driver import PreflightError, UnknownStackError, create_driver, get_driver_factory, known_stacks
from .ledger import write_ledger
from .loadgen import LoadGenerator, LoadResult
from .workload import WORKLOADS_DIR, Workload, WorkloadError, load_workload


class BenchConfigError(ValueError):
    """Bad command-line configuration, found before any load is sent."""


def resolve_bench(
    stack: str, workload_name: str, overrides: dict[str, Any], workloads_dir: Path = WORKLOADS_DIR
) -> Workload:
    """Validate workload + stack together; raises WorkloadError / UnknownStackError."""
    workload = load_workload(workload_name, overrides, workloads_dir)
    factory = get_driver_factory(stack)
    simulation = bool(getattr(factory, "simulation", False))
    if not simulation and stack not in workload.stacks:
        raise UnknownStackError(
            f"workload {workload.name!r} defines no hops for stack {stack!r} "
            f"(defined: {', '.join(sorted(workload.stacks))}); add them to its YAML file"
        )
    return workload


#: Above this many events/s the root spans are built after the run: live ones cost ~100 µs of
#: the generator's CPU per event (benchmarks/loadgen_bench.py), which at 10k/s is a whole core.
LIVE_ROOT_SPANS_MAX_RATE = 2000.0


def resolve_root_spans(mode: str, workload: Workload) -> str:
    """`auto` → live at modest rates (spans reach the collector while the run goes on), deferred
    above LIVE_ROOT_SPANS_MAX_RATE (same spans, same ids and times, built after the run)."""
    if mode not in ("auto", "live", "deferred"):
        raise WorkloadError(f"root spans must be 'auto', 'live' or 'deferred', got {mode!r}")
    if mode != "auto":
        return mode
    peak = max(r for r, _ in workload.phases()) + (workload.point_read_rate or 0.0)
    return "deferred" if peak > LIVE_ROOT_SPANS_MAX_RATE else "live"


def run_bench(
    stack: str,
    workload: Workload,
    *,
    out: Path | None = None,
    tracing: bool = True,
    otlp_endpoint: str | None = None,
    schedule: str | None = None,
    progress: bool = True,
    console: Console | None = None,
    driver_options: dict[str, Any] | None = None,
    root_spans: str = "auto",
) -> tuple[Path, LoadResult]:
    console = console or Console(stderr=True)
    root_spans = resolve_root_spans(root_spans, workload)
    driver = create_driver(stack, tracing=tracing, otlp_endpoint=otlp_endpoint, **(driver_options or {}))
    driver.preflight(workload)  # before any load, before the run dir exists
    run_dir, run_id = create_run_dir(out, prefix=f"bench-{stack}-{workload.name}")
    if driver.simulation:
        console.print(
            f"[bold yellow]SIMULATION[/]: stack {stack!r} is an in-process loopback, not a real system"
        )
    provider = setup_tracing("hopscope.loadgen", stack, run_id, endpoint=otlp_endpoint, enabled=tracing)
    try:
        generator = LoadGenerator(
            workload,
            driver,
            stack=stack,
            run_id=run_id,
            run_dir=run_dir,
            tracer_provider=provider,
            schedule=schedule,
            progress=progress,
            console=console,
            root_spans=root_spans,  # type: ignore[arg-type]
        )
        result = asyncio.run(generator.run())
    finally:
        shutdown_tracing(provider)
    paths = write_ledger(result.ledger, run_dir)
    update_manifest(
        run_dir,
        **base_manifest(run_id, "bench"),
        stack=stack,
        simulation=driver.simulation,
        workload=workload.model_dump(mode="json"),
        schedule=schedule or workload.schedule,
        tracing={"enabled": tracing, "otlp_endpoint": otlp_endpoint, "root_spans": root_spans},
        driver=driver.manifest(),
        expected_hops={
            stack: workload.expected_hops(stack)
            if stack in workload.stacks
            else {workload.name: ["loadgen.send"]}
        },
        load=result.summary(),
        files={k: p.name for k, p in paths.items()},
    )
    return run_dir, result


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


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        stack: Annotated[str, typer.Option("--stack", help=f"stack driver ({', '.join(known_stacks())})")],
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
    ) -> None:
        """Run one workload open-loop against one stack; writes ledger.parquet and manifest.json."""
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
        if otlp_endpoint is None:
            # The root spans must reach the same collector the drivers export to.
            from hopscope.deploy.config import load_config

            otlp_endpoint = load_config().collector.otlp_grpc_endpoint
        try:
            resolved = resolve_bench(stack, workload, overrides, workloads_dir)
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
        except (WorkloadError, UnknownStackError) as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from exc
        except PreflightError as exc:
            console.print(f"[red]{exc}[/] — no load was sent")
            raise typer.Exit(3) from exc
        simulation = bool(getattr(get_driver_factory(stack), "simulation", False))
        print_result(console, stack, resolved, result, simulation)
        console.print(f"run directory: {run_dir}")
