"""`hopscope analyze RUN_DIR [--strict] [--mode event|jaeger] [--to-postgres DSN]`: ingest
RUN_DIR/spans/ when spans.parquet is missing (the one place that does), analyse, write the
tables and the report, optionally fill the dashboards' results tables.

`--cluster ADDRESS` / `--workers N` run the analysis on a Dask cluster instead
(`hopscope.analysis.distributed`); RUN may then also be a glob of span Parquet files or an
fsspec URL (s3://…)."""

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
        run: Annotated[
            str,
            typer.Argument(
                metavar="RUN",
                help=f"run directory ({SPANS_PARQUET}, or {SPANS_DIR}/ to ingest); with --cluster / "
                "--workers also a span Parquet file, a glob of them or a URL (s3://…, file://…)",
            ),
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
        cluster: Annotated[
            str | None,
            typer.Option(
                "--cluster",
                metavar="ADDRESS",
                help="run the analysis on this Dask scheduler (tcp://host:8786): partitions by trace, "
                "quantiles from merged DDSketches (analysis/README.md, Distributed)",
            ),
        ] = None,
        workers: Annotated[
            int | None,
            typer.Option("--workers", metavar="N", help="run it on a local Dask cluster of N worker processes"),
        ] = None,
        worker_memory: Annotated[
            str | None,
            typer.Option(
                "--worker-memory",
                metavar="SIZE",
                help="memory limit per local worker (--workers), e.g. 3GiB (default: the machine's memory shared out)",
            ),
        ] = None,
        scratch: Annotated[
            str | None,
            typer.Option(
                "--scratch",
                metavar="URL",
                help="folder every worker reads and writes, for the shuffle by trace (default: a "
                "temporary folder inside the output folder; give a shared one, e.g. s3://…, for a "
                "remote cluster)",
            ),
        ] = None,
        out_dir: Annotated[
            Path | None,
            typer.Option(
                "--out",
                metavar="DIR",
                help="where a distributed analysis writes its tables and report (default: RUN when it "
                "is a local directory)",
            ),
        ] = None,
        partition_spans: Annotated[
            int | None,
            typer.Option(
                "--partition-spans",
                metavar="N",
                help="spans per partition of a distributed analysis (default 2,000,000)",
            ),
        ] = None,
    ) -> None:
        """Analyse a run and write report.html, report.md and the analysis tables into RUN_DIR."""
        if cluster is not None or workers is not None:
            if cluster is not None and workers is not None:
                raise UsageProblem("--workers", workers, "give --cluster or --workers, not both")
            _distributed(
                run, cluster=cluster, workers=workers, worker_memory=worker_memory, scratch=scratch,
                out_dir=out_dir, partition_spans=partition_spans, label=label, mapping=mapping,
                strict=strict, as_json=as_json, limit=limit,
            )  # fmt: skip
            return
        for option, value in (("--worker-memory", worker_memory), ("--scratch", scratch), ("--out", out_dir),
                              ("--partition-spans", partition_spans)):  # fmt: skip
            if value is not None:
                raise UsageProblem(option, value, "only with --cluster or --workers")
        run_dir = Path(run)
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


def _distributed(
    run: str,
    *,
    cluster: str | None,
    workers: int | None,
    worker_memory: str | None,
    scratch: str | None,
    out_dir: Path | None,
    partition_spans: int | None,
    label: str | None,
    mapping: Path | None,
    strict: bool,
    as_json: bool,
    limit: str | None,
) -> None:
    """`analyze --cluster / --workers`: the analysis on Dask, its tables and report into --out."""
    from hopscope.analysis.distributed import (
        SPANS_PER_PARTITION,
        analyze_distributed,
        connect,
        write_distributed,
    )
    from hopscope.analysis.mapping import load_mapping
    from hopscope.collector.ingest import ingest_run

    err = Console(stderr=True)
    if workers is not None and workers < 1:
        raise UsageProblem("--workers", workers, "needs at least 1 worker")
    if partition_spans is not None and partition_spans < 1:
        raise UsageProblem("--partition-spans", partition_spans, "needs at least 1 span")
    if worker_memory is not None and workers is None:
        raise UsageProblem("--worker-memory", worker_memory, "only with --workers (a local cluster)")
    local_dir = Path(run) if "://" not in run and Path(run).is_dir() else None
    if out_dir is None:
        if local_dir is None:
            raise UsageProblem("--out", None, f"{run} is not a local run directory: say where to write (--out DIR)")
        out_dir = local_dir
    out = writable_dir(out_dir, "--out")
    if label is not None and not label.strip():
        raise UsageProblem("--label", repr(label), "an empty name")
    rules = load_mapping(mapping) if mapping is not None else None
    if local_dir is not None and not (local_dir / SPANS_PARQUET).exists():
        ingest_run(local_dir, strict=strict, console=err, limits=parse_limits(limit))
    with connect(cluster, workers=workers, memory_limit=worker_memory) as client:
        result = analyze_distributed(
            run,
            client=client,
            scratch=scratch or str(out.resolve()),
            label=label,
            mapping=rules,
            spans_per_partition=partition_spans or SPANS_PER_PARTITION,
            console=err,
        )
    written = write_distributed(result, out)
    console = err if as_json else Console()
    report = [p for p in written if p.suffix in (".html", ".md")]
    console.print(f"report: [bold]{escape(str(report[-1]))}[/]", soft_wrap=True)
    console.print(f"        {report[0]}", soft_wrap=True, markup=False)
    console.print(f"engine: {result.engine.engine}; quantiles: {result.engine.accuracy}", soft_wrap=True, markup=False)
    if as_json:
        print_json({"run": run, "outputs": written, "engine": result.engine.as_dict()})


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
