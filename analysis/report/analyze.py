"""`analyze_run(RUN_DIR)`: analyse a run directory's spans.parquet, write the tables and the report.

Reads only the run directory (spans.parquet, manifest.json, ledger.parquet, ingest_report.json,
experiment.json). Span files not yet ingested are the caller's job: `hopscope analyze` ingests
`spans/` first when it must; here a missing spans.parquet is `NoSpans`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hopscope.core.rundir import (
    EXPERIMENT,
    MANIFEST,
    MANIFEST_SHAPE,
    QUALITY,
    REPORT_HTML,
    REPORT_MD,
    RunDirError,
    Shape,
    read_json_file,
)

from ..mapping import Mapping
from ..outputs import staged_outputs
from ..run import NoSpans, Run, damage_named, load
from ..run_files import EXPERIMENT_SHAPE
from .context import ReportContext
from .experiment_sections import apply_experiment
from .outline import REPORT_SECTIONS
from .render import ReportFiles, write_report
from .sections import quality_problems
from .trace_links import TraceLinks


class Mode(StrEnum):
    """Critical-path mode: `event` follows span links across brokers (the attribution), `jaeger`
    adds Jaeger UI's per-trace paths beside it."""

    event = "event"
    jaeger = "jaeger"


#: what the report's header says about each mode
MODE_META = {
    Mode.event: "event mode",
    Mode.jaeger: 'jaeger mode: Jaeger UI\'s per-trace critical paths (section "Jaeger-mode critical paths") '
    "beside the event-mode attribution",
}


#: what the report's header says produced the figures (a distributed analysis names its cluster
#: and its quantile sketch's accuracy instead: analysis/distributed)
SINGLE_PROCESS_ENGINE = "one process; exact quantiles"


@dataclass
class AnalyzeResult:
    report: ReportFiles
    outputs: list[Path]
    problems: list[str] = field(default_factory=list)
    #: the analysed run, for callers that pass it on (e.g. to the dashboards' results tables)
    run: Run | None = None


def _version() -> str:
    try:
        return metadata.version("hopscope")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_json(path: Path, shape: Shape | None = None) -> dict[str, Any]:
    """A JSON object from the run directory ({} when the file is absent; experiment.json and
    manifest.json are checked against their shapes unless another is given)."""
    path = Path(path)
    if shape is None:
        shape = {EXPERIMENT: EXPERIMENT_SHAPE, MANIFEST: MANIFEST_SHAPE}.get(path.name)
    return read_json_file(path, shape)


def analyze_run(
    run_dir: Path,
    *,
    mode: Mode = Mode.event,
    console: Console | None = None,
    label: str | None = None,
    mapping: Mapping | None = None,
    trace_links: TraceLinks | None = None,
) -> AnalyzeResult:
    """Analyse RUN_DIR in place: load, write the tables, write the report. `problems` lists every
    data-quality problem the report flags (the caller decides the exit code). Foreign traces get
    their stack named `label` (default RUN_DIR's name) and hops by `mapping` or the defaults
    (`foreign.py`); a mapping rule that matched nothing is one of the `problems`. `trace_links`:
    where the waterfalls' trace ids open (none: ids without links)."""
    console = console or Console(stderr=True)
    run_dir = Path(run_dir)
    mode = Mode(mode)
    columns = (
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress, damage_named(run_dir):
        steps = progress.add_task("load the run", total=4)
        run = load(run_dir, mode=mode.value, label=label, mapping=mapping)
        run_id = str(run.manifest.get("run_id") or run_dir.name)
        progress.update(steps, advance=1, description="critical paths, hop statistics")
        meta = {
            "run": run_id,
            "critical path": MODE_META[mode],
            "engine": SINGLE_PROCESS_ENGINE,
            "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "hopscope": _version(),
        }
        title = f"hopscope report — {run_id}"
        foreign = run.foreign
        if foreign is not None:
            ops = foreign.entry_operations
            title = f"hopscope report — {', '.join(foreign.stacks)}: " + (
                ", ".join(ops) if len(ops) <= 3 else f"{', '.join(ops[:3])} and {len(ops) - 3} more"
            )
            meta["label"] = foreign.label
            meta["mapping"] = (foreign.mapping.source if foreign.mapping else None) or "none (defaults)"
        ctx = ReportContext.from_run(run, title=title, meta=meta, trace_links=trace_links)
        apply_experiment(ctx, read_json(run_dir / EXPERIMENT))
        # every file of this analysis is written aside and moved into place at the end: a failure
        # leaves the run directory's earlier analysis whole
        with staged_outputs(run_dir, stale=Run.STALE_OUTPUTS, last=(REPORT_MD, REPORT_HTML)) as tmp:
            progress.update(steps, advance=1, description=f"write parquet / graphml / {QUALITY}")
            outputs = [run_dir / p.name for p in run.write_outputs(tmp, staged=False)]
            progress.update(steps, advance=1, description="report sections")
            n_sections = len(REPORT_SECTIONS) + max(len(ctx.workloads) - 1, 0)
            sec = progress.add_task("  sections", total=n_sections)
            staged = write_report(
                ctx,
                tmp,
                on_done=lambda title: progress.update(sec, advance=1, description=f"  {escape(title)}"),
            )
            # the count above is an estimate (a section may write nothing): end the bar where
            # it stands, so a log or a pipe never keeps it half full
            written = next(t.completed for t in progress.tasks if t.id == sec)
            progress.update(sec, total=written, description=f"  {written:.0f} sections")
        files = ReportFiles(run_dir / staged.html.name, run_dir / staged.markdown.name)
        progress.update(steps, advance=1, description="done")
    problems = quality_problems(ctx) + (foreign.unmatched_rules if foreign is not None else [])
    return AnalyzeResult(files, [*outputs, files.html, files.markdown], problems, run)


__all__ = ["AnalyzeResult", "Mode", "NoSpans", "RunDirError", "analyze_run", "read_json"]
