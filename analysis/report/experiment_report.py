"""The report of a `hopscope run` directory: `analyze_run` on the merged spans, or — when no
span reached the run (collector down, every traced phase failed) — the same report built
from the ledgers and `experiment.json` alone, saying so, instead of no report at all.

The run's span files must be ingested first (`hopscope.collector.ingest.ingest_run`): the
analysis reads spans.parquet only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.console import Console

from hopscope.core.rundir import EXPERIMENT, MANIFEST
from hopscope.core.schema import SPAN_SCHEMA

from ..run import NoSpans, Run, read_ledger
from .analyze import analyze_run, read_json
from .context import ReportContext
from .experiment_sections import apply_experiment
from .render import write_report
from .trace_links import TraceLinks


def write_experiment_report(
    run_dir: Path, console: Console | None = None, trace_links: TraceLinks | None = None
) -> Path:
    console = console or Console(stderr=True)
    try:
        return analyze_run(run_dir, console=console, trace_links=trace_links).report.html
    except NoSpans as exc:
        if exc.span_files:
            raise  # span files not ingested is not the same as no span at all
        console.print(f"[yellow]no spans in the run[/] ({exc}); report from the ledgers only")
    return _ledger_only_report(run_dir)


def _ledger_only_report(run_dir: Path) -> Path:
    manifest = read_json(run_dir / MANIFEST)
    run = Run.from_table(
        SPAN_SCHEMA.empty_table(), manifest=manifest, ledger=read_ledger(run_dir), run_dir=run_dir
    )
    ctx = ReportContext.from_run(
        run,
        title=f"hopscope report — {manifest.get('run_id') or run_dir.name}",
        meta={
            "run": str(manifest.get("run_id") or run_dir.name),
            "spans": "NONE reached this run: trace-based parts are empty; ledger figures only",
            "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        },
    )
    apply_experiment(ctx, read_json(run_dir / EXPERIMENT))
    run.write_verdict_tables(run_dir)  # what `hopscope run` prints
    return write_report(ctx, run_dir).html
