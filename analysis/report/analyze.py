"""`hopscope analyze RUN_DIR`: ingest if needed, analyse, write the outputs and the report."""

from __future__ import annotations

import datetime as dt
import inspect
import json
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .context import ReportContext
from .experiment_sections import apply_experiment
from .render import ReportFiles, write_report
from .sections import REPORT_SECTIONS, quality_problems

SPANS_FILE = "spans.parquet"
SPANS_DIR = "spans"
#: written by `hopscope run`: phases, fairness read-back, cross-checks (see experiment_sections.py)
EXPERIMENT_FILE = "experiment.json"


class Mode(StrEnum):
    """Critical-path mode: `event` follows span links across brokers, `jaeger` is Jaeger UI's."""

    event = "event"
    jaeger = "jaeger"


class AnalyzeError(Exception):
    """The run directory cannot be analysed; the message says which file and why."""


@dataclass
class AnalyzeResult:
    report: ReportFiles
    outputs: list[Path]
    ingested: bool
    problems: list[str] = field(default_factory=list)
    #: the analysed run (hopscope.analysis.Run), for callers that pass it on (e.g. to Postgres)
    run: Any = None


def _needs_ingest(run_dir: Path) -> bool:
    if (run_dir / SPANS_FILE).exists():
        return False
    spans = run_dir / SPANS_DIR
    if spans.is_dir() and any(p.is_file() for p in spans.rglob("*")):
        return True
    raise AnalyzeError(
        f"{run_dir}: neither {SPANS_FILE} nor span files under {SPANS_DIR}/ — nothing to analyse "
        f"(run `hopscope ingest SRC --out {run_dir}` first)"
    )


def _load(run_dir: Path, mode: Mode):  # -> hopscope.analysis.Run
    from hopscope.analysis import load

    if "mode" in inspect.signature(load).parameters:
        return load(run_dir, mode=mode.value)
    if mode is not Mode.event:
        raise AnalyzeError(
            f"--mode {mode.value}: hopscope.analysis.load() takes no mode; its hop statistics follow "
            "the event-mode critical path only"
        )
    return load(run_dir)


def _version() -> str:
    try:
        return metadata.version("hopscope")
    except metadata.PackageNotFoundError:
        return "unknown"


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AnalyzeError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise AnalyzeError(f"{path}: expected a JSON object, found {type(doc).__name__}")
    return doc


def analyze_run(
    run_dir: Path, *, strict: bool = False, mode: Mode = Mode.event, console: Console | None = None
) -> AnalyzeResult:
    """Analyse RUN_DIR in place. With `strict`, ingest stops at the first bad record and
    `problems` lists every data-quality problem (the caller decides the exit code)."""
    console = console or Console(stderr=True)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AnalyzeError(f"{run_dir}: not a directory")
    ingested = _needs_ingest(run_dir)
    if ingested:
        from hopscope.collector.ingest import ingest

        console.print(f"[bold]ingest[/] {run_dir / SPANS_DIR} → {run_dir / SPANS_FILE}", soft_wrap=True)
        ingest([run_dir / SPANS_DIR], run_dir, strict=strict, console=console)

    manifest = _read_json(run_dir / "manifest.json")
    columns = (
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        steps = progress.add_task("load the run", total=4)
        run = _load(run_dir, mode)
        progress.update(steps, advance=1, description="critical paths, hop statistics")
        ctx = ReportContext.from_run(
            run,
            title=f"hopscope report — {manifest.get('run_id') or run_dir.name}",
            meta={
                "run": str(manifest.get("run_id") or run_dir.name),
                "critical path": f"{mode.value} mode",
                "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "hopscope": _version(),
            },
        )
        apply_experiment(ctx, _read_json(run_dir / EXPERIMENT_FILE))
        progress.update(steps, advance=1, description="write parquet / graphml / quality.json")
        outputs = run.write_outputs(run_dir)
        progress.update(steps, advance=1, description="report sections")
        n_sections = len(REPORT_SECTIONS) + max(len(ctx.workloads) - 1, 0)
        sec = progress.add_task("  sections", total=n_sections)
        files = write_report(
            ctx, run_dir, on_done=lambda title: progress.update(sec, advance=1, description=f"  {title}")
        )
        progress.update(steps, advance=1, description="done")
    return AnalyzeResult(files, [*outputs, files.html, files.markdown], ingested, quality_problems(ctx), run)


__all__ = ["AnalyzeError", "AnalyzeResult", "Mode", "analyze_run"]
