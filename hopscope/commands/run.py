"""`hopscope run`: the whole experiment — every workload on every stack — into one run
directory with the comparison report. The work is in `hopscope.experiment.study`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hopscope.commands.errors import writable_dir
from hopscope.pipelines.stack import stack_names_for_help


def _stacks_help() -> str:
    return f"comma-separated (default: the profile's, else every discovered stack: {stack_names_for_help()})"


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        quick: Annotated[
            bool, typer.Option("--quick", help="the quick profile: a demo of a few minutes")
        ] = False,
        profile: Annotated[
            str,
            typer.Option(
                "--profile",
                help="profile name (quick, full, smoke, capacity, kafka-low-latency) or YAML path",
            ),
        ] = "full",
        stacks: Annotated[str | None, typer.Option("--stacks", help=_stacks_help())] = None,
        workloads: Annotated[
            str | None, typer.Option("--workloads", help="comma-separated, e.g. write_notify,ingest")
        ] = None,
        repeat: Annotated[
            int | None, typer.Option("--repeat", min=1, help="repeats (default: the profile's)")
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="run directory (default runs/<run id>)")
        ] = None,
        start: Annotated[bool, typer.Option("--up/--no-up", help="start what is not running first")] = True,
        report: Annotated[bool, typer.Option("--report/--no-report")] = True,
    ) -> None:
        """Run every workload on every stack (interleaved, with warm-up, tracing on/off A/B and
        cross-checks) and write one run directory with the comparison report."""
        # At call time: the study loads the analysis and deploy, which other commands' --help need not.
        from hopscope.experiment.study import headline_rows, load_profile, run_experiment

        console = Console(stderr=True)
        if out is not None:
            writable_dir(out)
        # a bad profile, stack or workload is exit 2 (hopscope.commands.errors)
        prof = load_profile("quick" if quick else profile)
        result = run_experiment(
            prof,
            out=out,
            stacks=_split(stacks),
            workloads=_split(workloads),
            repeat=repeat,
            start_services=start,
            analyze=report,
            console=console,
        )

        rows = headline_rows(result)
        figure = rows[0]["figure"] if rows else "ledger e2e"
        # the report's headline figure and verdicts, as the analysis wrote them (verdicts.parquet)
        table = Table(
            title=f"hopscope run — profile {prof.name}: {figure}, value [95 % interval] (as the report's headline)"
        )
        for col in (
            "workload",
            "stack",
            "n",
            "p50 (ms)",
            "p99 (ms)",
            "verdict at p50",
            "verdict at p99",
            "phases ok/failed",
        ):
            table.add_column(col, justify="right" if col == "n" or "(ms)" in col else "left")

        def fig(r: dict, q: str) -> str:
            v, ci = r.get(f"{q}_ms"), r.get(f"{q}_ci")
            if v is None:
                return "–"
            return f"{v:,.1f}" + (f" [{ci[0]:,.1f}–{ci[1]:,.1f}]" if ci else "")

        for r in rows:
            style = "red" if r["failed"] else None
            workload = r["workload"] + (f" @ {r['rate']:,.0f} ev/s" if r.get("rate") else "")
            table.add_row(
                workload,
                r["stack"],
                "–" if r.get("n") is None else f"{r['n']:,}",
                fig(r, "p50"),
                fig(r, "p99"),
                r.get("p50_verdict") or "",
                r.get("p99_verdict") or "",
                f"{r['ok']}/{r['failed']}",
                style=style,
            )
        console.print(table)
        for f in result.failed:
            console.print(f"[red]FAILED[/] {f.phase.label}: {f.error}")
        for f in result.without_spans:
            console.print(f"[red]NO SPANS[/] {f.phase.label}: no span file reached the run (collector down?)")
        if result.report_error:
            console.print(f"[red]report failed:[/] {result.report_error}")
        console.print(f"run directory: {result.run_dir}")
        if result.report:
            console.print(f"report: {result.report}  (and {result.report.with_suffix('.md')})")
        console.print(f"elapsed: {result.seconds / 60:.1f} min")
        if not result.ok:
            raise typer.Exit(1)
