"""`hopscope analyze RUN_DIR [--strict] [--mode event|jaeger] [--to-postgres DSN]`: ingest
RUN_DIR/spans/ when spans.parquet is missing (the one place that does), analyse, write the
tables and the report, optionally fill the dashboards' results tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hopscope.core.rundir import SPANS_DIR, SPANS_PARQUET


def register(app: typer.Typer) -> None:
    """Add `hopscope analyze` to the main app."""

    @app.command("analyze")
    def analyze_cmd(
        run_dir: Annotated[
            Path, typer.Argument(help=f"run directory ({SPANS_PARQUET}, or {SPANS_DIR}/ to ingest)")
        ],
        strict: Annotated[
            bool,
            typer.Option(
                "--strict",
                help="ingest stops at the first bad record; exit 1 if the report flags any data-quality problem",
            ),
        ] = False,
        mode: Annotated[
            str,
            typer.Option(
                "--mode",
                help="critical-path mode: event (follows links; the attribution) or jaeger (adds Jaeger "
                "UI's per-trace paths beside it)",
            ),
        ] = "event",
        to_postgres: Annotated[
            str | None,
            typer.Option(
                "--to-postgres",
                metavar="DSN",
                help="also write the results tables the Attribution dashboard reads into this Postgres "
                "(a libpq DSN; `deployed` = hopscope's own Postgres; default $HOPSCOPE_RESULTS_DSN)",
            ),
        ] = None,
    ) -> None:
        """Analyse a run and write report.html, report.md and the analysis tables into RUN_DIR."""
        # Imported here so `hopscope --help` does not pay for pandas/plotly.
        from hopscope.analysis import RunDirError
        from hopscope.analysis.report.analyze import Mode, analyze_run
        from hopscope.collector.errors import IngestError
        from hopscope.collector.ingest import ingest_run

        try:
            chosen = Mode(mode)
        except ValueError:
            raise typer.BadParameter(f"{mode!r}: choose event or jaeger", param_hint="--mode") from None
        out, err = Console(), Console(stderr=True)
        if not run_dir.is_dir():
            err.print(f"[red]analyze failed:[/] {run_dir}: not a directory", soft_wrap=True)
            raise typer.Exit(1)
        try:
            ingest_run(run_dir, strict=strict, console=err)
            result = analyze_run(run_dir, mode=chosen, console=err)
        except (RunDirError, IngestError) as e:
            err.print(f"[red]analyze failed:[/] {e}", soft_wrap=True)
            raise typer.Exit(1) from None
        out.print(f"report: [bold]{result.report.html}[/]", soft_wrap=True)
        out.print(f"        {result.report.markdown}", soft_wrap=True)
        out.print(f"tables: {', '.join(p.name for p in result.outputs[:-2])}", soft_wrap=True)
        _to_postgres(result.run, run_dir, to_postgres, out, err)
        if result.problems:
            err.print(
                f"[yellow]{len(result.problems)} data-quality problem(s)[/] (see the report's Data quality):"
            )
            for line in result.problems[:20]:
                err.print(f"  - {line}", soft_wrap=True)
            if strict:
                raise typer.Exit(1)


def _to_postgres(run: object, run_dir: Path, dsn: str | None, out: Console, err: Console) -> None:
    """Fill the Attribution dashboard's results tables (when a DSN is given or in the
    environment); a Postgres that refuses is exit 1."""
    from hopscope.dashboards.results_tables import ResultsError
    from hopscope.dashboards.results_target import results_dsn, write_run_results

    target = results_dsn(dsn)
    if not target:
        return
    try:
        run_id, written = write_run_results(run, run_dir, target)  # type: ignore[arg-type]
    except ResultsError as e:
        err.print(f"[red]{e}[/]", soft_wrap=True)
        raise typer.Exit(1) from None
    rows = ", ".join(f"{table} {n}" for table, n in written.items())
    out.print(f"postgres: run [bold]{run_id}[/] — {rows}", soft_wrap=True)
