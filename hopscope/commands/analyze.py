"""`hopscope analyze RUN_DIR [--strict] [--mode event|jaeger] [--to-postgres DSN]`: ingest
RUN_DIR/spans/ when spans.parquet is missing (the one place that does), analyse, write the
tables and the report, optionally fill the dashboards' results tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from hopscope.commands.errors import EXIT_FAILED, CliError, UsageProblem, writable_dir
from hopscope.commands.ingest import LimitOption, parse_limits
from hopscope.commands.json_output import JsonOption, print_json
from hopscope.core.rundir import SPANS_DIR, SPANS_PARQUET

if TYPE_CHECKING:
    from hopscope.analysis.report.trace_links import TraceLinks


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
        limit: LimitOption = None,
        as_json: JsonOption = False,
        label: Annotated[
            str | None,
            typer.Option(
                "--label",
                help="name for the system whose traces these are (foreign traces: no hopscope.* "
                "attributes); the report's stack column and title (default: RUN_DIR's name)",
            ),
        ] = None,
        mapping: Annotated[
            Path | None,
            typer.Option(
                "--mapping",
                metavar="FILE",
                help="YAML rules (match service / name / kind / attributes by regex → hop, workload, "
                "stack) overriding the foreign-trace defaults (analysis/README.md)",
            ),
        ] = None,
        tempo_url_template: Annotated[
            str | None,
            typer.Option(
                "--tempo-url-template",
                metavar="URL",
                help="link each waterfall's trace to Tempo too: a URL with {trace_id} (default: "
                "[report] tempo_url_template of the config, else no Tempo link)",
            ),
        ] = None,
    ) -> None:
        """Analyse a run and write report.html, report.md and the analysis tables into RUN_DIR."""
        # Imported here so `hopscope --help` does not pay for pandas/plotly.
        from hopscope.analysis import RunDirError
        from hopscope.analysis.mapping import load_mapping
        from hopscope.analysis.report.analyze import Mode, analyze_run
        from hopscope.collector.ingest import ingest_run

        try:
            chosen = Mode(mode)
        except ValueError:
            raise typer.BadParameter(f"{mode!r}: choose event or jaeger", param_hint="--mode") from None
        out, err = Console(), Console(stderr=True)
        if not run_dir.is_dir():
            raise RunDirError(f"{run_dir}: {'not a directory' if run_dir.exists() else 'no such directory'}")
        try:
            writable_dir(run_dir, "RUN_DIR", create=False)
        except UsageProblem as e:  # an existing run directory: the analysis cannot be written there
            raise CliError(str(e), EXIT_FAILED) from None
        if label is not None and not label.strip():
            raise UsageProblem("--label", repr(label), "an empty name")
        rules = load_mapping(mapping) if mapping is not None else None  # a bad file fails first
        links = trace_links(tempo_url_template)
        limits = parse_limits(limit)
        target = _postgres_target(to_postgres)  # a DSN that cannot work fails before the analysis
        ingest_run(run_dir, strict=strict, console=err, limits=limits)
        result = analyze_run(run_dir, mode=chosen, console=err, label=label, mapping=rules, trace_links=links)
        if as_json:
            out = err  # the document alone on stdout
        out.print(f"report: [bold]{escape(str(result.report.html))}[/]", soft_wrap=True)
        out.print(f"        {result.report.markdown}", soft_wrap=True, markup=False)
        out.print(f"tables: {', '.join(p.name for p in result.outputs[:-2])}", soft_wrap=True, markup=False)
        if target:
            _to_postgres(result.run, run_dir, target, out)
        if as_json:
            print_json(
                {
                    "run_dir": run_dir,
                    "report": {"html": result.report.html, "markdown": result.report.markdown},
                    "outputs": result.outputs,
                    "verdicts": result.run.verdicts().to_dict(orient="records"),
                    "data_quality_problems": result.problems,
                }
            )
        if result.problems:
            err.print(
                f"[yellow]{len(result.problems)} data-quality problem(s)[/] (see the report's Data quality):"
            )
            for line in result.problems[:20]:
                err.print(f"  - {line}", soft_wrap=True, markup=False)
            if strict:
                raise typer.Exit(EXIT_FAILED)


def trace_links(tempo_url_template: str | None = None) -> TraceLinks:
    """Where the report's trace ids open: the configured Jaeger UI (`[jaeger]`, `[report]`), Tempo
    when configured or given (`--tempo-url-template`, checked here: a bad one is exit 2)."""
    from hopscope.analysis.report.trace_links import TraceLinks, template_problem
    from hopscope.deploy.config import load_config

    templates = dict(load_config().trace_url_templates())
    if tempo_url_template is not None:
        if problem := template_problem(tempo_url_template):
            raise UsageProblem("--tempo-url-template", tempo_url_template, problem)
        templates["Tempo"] = tempo_url_template
    return TraceLinks(tuple(templates.items()))


#: results_target.DSN_ENV, spelled here so the check needs no psycopg
RESULTS_DSN_ENV = "HOPSCOPE_RESULTS_DSN"


def _postgres_target(dsn: str | None) -> str | None:
    """The DSN --to-postgres (or $HOPSCOPE_RESULTS_DSN) names, checked to be one; None for none."""
    # checked before importing results_target: it needs psycopg (hopscope[dashboards]), which an
    # analysis without --to-postgres must not (tests/unit/test_install.py keeps the names equal)
    if not dsn and not os.environ.get(RESULTS_DSN_ENV):
        return None
    from hopscope.dashboards.results_target import check_dsn, results_dsn

    target = results_dsn(dsn)
    if target:
        check_dsn(target, "--to-postgres" if dsn else f"${RESULTS_DSN_ENV}")
    return target


def _to_postgres(run: object, run_dir: Path, target: str, out: Console) -> None:
    """Fill the Attribution dashboard's results tables; a Postgres that refuses is a ResultsError
    (exit 1)."""
    from hopscope.dashboards.results_target import write_run_results

    run_id, written = write_run_results(run, run_dir, target)  # type: ignore[arg-type]
    rows = ", ".join(f"{table} {n}" for table, n in written.items())
    out.print(f"postgres: run [bold]{escape(str(run_id))}[/] — {escape(rows)}", soft_wrap=True)
