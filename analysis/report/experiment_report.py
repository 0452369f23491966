"""The report of a `hopscope run` directory: `analyze_run` on the merged spans, or — when no
span reached the run (collector down, every traced phase failed) — the same report built
from the ledgers and `experiment.json` alone, saying so, instead of no report at all."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console

from .analyze import EXPERIMENT_FILE, AnalyzeError, _read_json, analyze_run
from .context import ReportContext
from .experiment_sections import apply_experiment
from .render import write_report


def write_experiment_report(run_dir: Path, console: Console | None = None) -> Path:
    console = console or Console(stderr=True)
    try:
        return analyze_run(run_dir, console=console).report.html
    except AnalyzeError as exc:
        if "nothing to analyse" not in str(exc):
            raise
        console.print(f"[yellow]no spans in the run[/] ({exc}); report from the ledgers only")
    return _ledger_only_report(run_dir)


def _ledger_only_report(run_dir: Path) -> Path:
    from hopscope.analysis.run import Run
    from hopscope.core.schema import SPAN_SCHEMA

    manifest = _read_json(run_dir / "manifest.json")
    ledger_path = run_dir / "ledger.parquet"
    ledger = pq.read_table(ledger_path).to_pandas() if ledger_path.exists() else None
    run = Run.from_table(SPAN_SCHEMA.empty_table(), manifest=manifest, ledger=ledger, run_dir=run_dir)
    ctx = ReportContext.from_run(
        run,
        title=f"hopscope report — {manifest.get('run_id') or run_dir.name}",
        meta={
            "run": str(manifest.get("run_id") or run_dir.name),
            "spans": "NONE reached this run: trace-based parts are empty; ledger figures only",
            "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        },
    )
    apply_experiment(ctx, _read_json(run_dir / EXPERIMENT_FILE))
    return write_report(ctx, run_dir).html
