"""`hopscope analyze RUN_DIR [--strict] [--mode event|jaeger]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    """Add `hopscope analyze` to the main app."""

    @app.command("analyze")
    def analyze_cmd(
        run_dir: Annotated[Path, typer.Argument(help="run directory (spans.parquet, or spans/ to ingest)")],
        strict: Annotated[
            bool,
            typer.Option(
                "--strict",
                help="ingest stops at the first bad record; exit 1 if the report flags any data-quality problem",
            ),
        ] = False,
        mode: Annotated[
            str, typer.Option("--mode", help="critical-path mode: event (follows links) or jaeger")
        ] = "event",
    ) -> None:
        """Analyse a run and write report.html, report.md and the analysis tables into RUN_DIR."""
        # Imported here so `hopscope --help` does not pay for pandas/plotly.
        from hopscope.collector.errors import IngestError

        from .analyze import AnalyzeError, Mode, analyze_run

        try:
            chosen = Mode(mode)
        except ValueError:
            raise typer.BadParameter(f"{mode!r}: choose event or jaeger", param_hint="--mode") from None
        out, err = Console(), Console(stderr=True)
        try:
            result = analyze_run(run_dir, strict=strict, mode=chosen, console=err)
        except (AnalyzeError, IngestError) as e:
            err.print(f"[red]analyze failed:[/] {e}", soft_wrap=True)
            raise typer.Exit(1) from None
        out.print(f"report: [bold]{result.report.html}[/]", soft_wrap=True)
        out.print(f"        {result.report.markdown}", soft_wrap=True)
        out.print(f"tables: {', '.join(p.name for p in result.outputs[:-2])}", soft_wrap=True)
        if result.problems:
            err.print(
                f"[yellow]{len(result.problems)} data-quality problem(s)[/] (see the report's Data quality):"
            )
            for line in result.problems[:20]:
                err.print(f"  - {line}", soft_wrap=True)
            if strict:
                raise typer.Exit(1)
