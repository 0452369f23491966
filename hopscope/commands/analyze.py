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
        to_postgres: Annotated[
            str | None,
            typer.Option(
                "--to-postgres",
                metavar="DSN",
                envvar="HOPSCOPE_RESULTS_DSN",
                help="also write the results tables the Attribution dashboard reads into this Postgres "
                "(a libpq DSN; `deployed` = hopscope's own Postgres)",
            ),
        ] = None,
    ) -> None:
        """Analyse a run and write report.html, report.md and the analysis tables into RUN_DIR."""
        # Imported here so `hopscope --help` does not pay for pandas/plotly.
        from hopscope.analysis.report.analyze import AnalyzeError, Mode, analyze_run
        from hopscope.collector.errors import IngestError

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
        if to_postgres:
            _write_postgres(result.run, run_dir, to_postgres, out, err)
        if result.problems:
            err.print(
                f"[yellow]{len(result.problems)} data-quality problem(s)[/] (see the report's Data quality):"
            )
            for line in result.problems[:20]:
                err.print(f"  - {line}", soft_wrap=True)
            if strict:
                raise typer.Exit(1)


def _write_postgres(run: object, run_dir: Path, dsn: str, out: Console, err: Console) -> None:
    """Fill the Attribution dashboard's results tables; a Postgres that refuses is exit 1."""
    import json

    import psycopg

    from hopscope.dashboards.results_tables import ResultsError, write_results

    if dsn == "deployed":
        from hopscope.deploy.base import Context
        from hopscope.deploy.config import load_config
        from hopscope.deploy.services.postgres import Postgres

        dsn = Postgres(Context(load_config())).dsn()
    manifest = run_dir / "manifest.json"
    run_id = (json.loads(manifest.read_text()).get("run_id") if manifest.is_file() else None) or run_dir.name
    try:
        written = write_results(run, dsn, run_id, run_dir=str(run_dir.resolve()))  # type: ignore[arg-type]
    except (psycopg.Error, ResultsError) as e:
        where = psycopg.conninfo.conninfo_to_dict(dsn) if "=" in dsn or "://" in dsn else {}
        target = f"{where.get('host', '?')}:{where.get('port', '5432')}/{where.get('dbname', '?')}"
        err.print(
            f"[red]writing results to Postgres {target} failed:[/] {type(e).__name__}: {e}", soft_wrap=True
        )
        raise typer.Exit(1) from None
    rows = ", ".join(f"{table} {n}" for table, n in written.items())
    out.print(f"postgres: run [bold]{run_id}[/] — {rows}", soft_wrap=True)
