"""`hopscope trace RUN_DIR TRACE_ID [--subscriber NAME] [--json]`: one trace's waterfall in the
terminal — its spans on the event's time axis, the critical path of one of its deliveries and
the wait gaps on it (`Run.trace`), with the links to the trace in the configured trace UIs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hopscope.commands.json_output import JsonOption, print_json
from hopscope.core.rundir import SPANS_PARQUET

#: the width of the table when the output is not a terminal
PIPE_WIDTH = 160


def register(app: typer.Typer) -> None:
    """Add `hopscope trace` to the main app."""

    @app.command("trace")
    def trace_cmd(
        run_dir: Annotated[
            Path, typer.Argument(help=f"an analysed or ingested run directory ({SPANS_PARQUET})")
        ],
        trace_id: Annotated[str, typer.Argument(help="the trace id (e.g. from the report or e2e.parquet)")],
        subscriber: Annotated[
            str | None,
            typer.Option(
                "--subscriber", help="mark the path of this subscriber's delivery (default: the slowest)"
            ),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Print one trace's waterfall: spans, critical path and wait gaps of one of its deliveries."""
        # Imported here so `hopscope --help` does not pay for pandas.
        from hopscope.analysis.report.trace_links import TraceLinks
        from hopscope.analysis.report.waterfall_terminal import bar_width_for, waterfall_renderable
        from hopscope.analysis.run import damage_named, load
        from hopscope.deploy.config import load_config

        links = TraceLinks(load_config().trace_url_templates())
        with damage_named(run_dir):
            spans = load(run_dir, traces=[trace_id]).trace(trace_id, subscriber=subscriber)
        if as_json:
            print_json(spans.to_dict(orient="records"))
            return
        trace = str(spans["trace_id"].iloc[0])
        console = Console()
        if not console.is_terminal:  # a pipe gets the whole table (rich would squeeze it into 80 columns)
            console = Console(width=PIPE_WIDTH)
        console.print(waterfall_renderable(spans, links.urls(trace), bar_width_for(console.width)))
