"""One workload on one stack, open loop: the driver, the load generator, the ledger and the
run directory's manifest. `hopscope bench` is this with a command line; the experiment
(`hopscope.experiment`) runs it once per phase."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from hopscope.core.rundir import (
    SPANS_DIR,
    base_manifest,
    create_run_dir,
    new_run_id,
    safe_name,
    update_manifest,
)
from hopscope.deploy.lifecycle import service_pids
from hopscope.instrumentation.tracing import resolve_export_mode, setup_tracing, shutdown_tracing

from .clean_start import NotCleanError, TelemetryBusy
from .collector_files import collector_runs_root, move_spans, wait_until_written, writes_into
from .driver import UnknownStackError, create_driver, get_driver_factory
from .ledger import write_ledger
from .loadgen import LoadGenerator, LoadResult
from .stack import expected_hops, find_stack
from .workload import WORKLOADS_DIR, Workload, WorkloadError, load_workload


def resolve_bench(
    stack: str, workload_name: str, overrides: dict[str, Any], workloads_dir: Path = WORKLOADS_DIR
) -> Workload:
    """Validate workload + stack together; raises WorkloadError / StackError."""
    workload = load_workload(workload_name, overrides, workloads_dir)
    check_stack(stack, workload)
    return workload


def check_stack(stack: str, workload: Workload) -> None:
    """The stack has a driver and declares the workload's hops (a simulation needs none);
    raises StackError (UnknownStackError for an unknown stack) before any load."""
    found = find_stack(stack)
    if found is not None:
        found.check_workload(workload)
    elif not getattr(get_driver_factory(stack), "simulation", False):
        raise UnknownStackError(
            f"stack {stack!r} has a registered driver but no declaration: no hops for workload "
            f"{workload.name!r} (a stack declares them in its folder's stack.yaml)"
        )


#: Above this many events/s the root spans are built after the run: live ones cost ~100 µs of
#: the generator's CPU per event (benchmarks/loadgen_bench.py), which at 10k/s is a whole core.
LIVE_ROOT_SPANS_MAX_RATE = 2000.0


def resolve_root_spans(mode: str, workload: Workload) -> str:
    """`auto` → deferred (same spans, same ids and times, built after the run) whenever spans are
    exported at the end anyway (deferred export, the default: D15); with batch export, live at
    modest rates (spans reach the collector while the run goes on) and deferred above
    LIVE_ROOT_SPANS_MAX_RATE."""
    if mode not in ("auto", "live", "deferred"):
        raise WorkloadError(f"root spans must be 'auto', 'live' or 'deferred', got {mode!r}")
    if mode != "auto":
        return mode
    if resolve_export_mode() == "deferred":
        return "deferred"
    peak = max(r for r, _ in workload.phases()) + (workload.point_read_rate or 0.0)
    return "deferred" if peak > LIVE_ROOT_SPANS_MAX_RATE else "live"


#: the services that take spans (Prometheus only scrapes metrics every few seconds)
TELEMETRY_SPAN_SERVICES = ("collector", "jaeger")


def telemetry_backlog() -> TelemetryBusy:
    """The collector and trace store as a clean-start backlog source (none when not deployed here)."""
    pids, _states = service_pids(TELEMETRY_SPAN_SERVICES)
    return TelemetryBusy(pids)


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
    collect_spans: bool = True,
) -> tuple[Path, LoadResult]:
    console = console or Console(stderr=True)
    root_spans = resolve_root_spans(root_spans, workload)
    check_stack(stack, workload)
    driver = create_driver(stack, tracing=tracing, otlp_endpoint=otlp_endpoint, **(driver_options or {}))
    driver.preflight(workload)  # before any load, before the run dir exists
    existed = out is not None and out.exists()
    run_dir, run_id = create_run_dir(out, prefix=f"bench-{stack}-{workload.name}")
    # An --out the collector does not write into gets its spans moved in after the run; its
    # run id (the collector's folder) is then made unique, so two --out folders of one name
    # (a/write_notify, b/write_notify) never share one.
    runs_root = collector_runs_root() if collect_spans and tracing else None
    gather = runs_root is not None and not writes_into(runs_root, run_dir)
    if gather:
        run_id = new_run_id(safe_name(run_dir.name))
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
            telemetry=telemetry_backlog(),
        )
        result = asyncio.run(generator.run())
    except NotCleanError:
        if not existed:  # refused before the first event: nothing of this run is a result
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        shutdown_tracing(provider)
    paths = write_ledger(result.ledger, run_dir)
    spans: dict[str, object] = {}
    if gather and runs_root is not None:
        src = runs_root / run_id / SPANS_DIR
        wait_until_written(src)
        moved = move_spans(runs_root, run_id, run_dir / SPANS_DIR)
        spans = {"collector_folder": str(src), "files_moved": moved}
        if not moved:
            console.print(
                f"[yellow]warning:[/] no span files came to {src} (is the collector running? "
                f"`hopscope status`); when they do: `hopscope ingest {src} --out {run_dir}`"
            )
    update_manifest(
        run_dir,
        **base_manifest(run_id, "bench"),
        stack=stack,
        simulation=driver.simulation,
        workload=workload.model_dump(mode="json"),
        schedule=schedule or workload.schedule,
        tracing={"enabled": tracing, "otlp_endpoint": otlp_endpoint, "root_spans": root_spans},
        driver=driver.manifest(),
        expected_hops={stack: expected_hops(stack, workload)},
        load=result.summary(),
        files={k: p.name for k, p in paths.items()},
        **({"spans_gathered": spans} if spans else {}),
    )
    return run_dir, result
