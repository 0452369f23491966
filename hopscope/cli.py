"""The `hopscope` command line. Thin: each concern registers its own commands.

Each folder (collector, analysis, deploy, pipelines, dashboards) owns a `cli.py`
with a `register(app)` function, so this file never grows logic of its own.
"""

from __future__ import annotations

import typer

from hopscope.analysis import cli as analysis_cli
from hopscope.collector import cli as collector_cli
from hopscope.dashboards import cli as dashboards_cli
from hopscope.deploy import cli as deploy_cli
from hopscope.pipelines import cli as pipelines_cli

from . import run_cli

app = typer.Typer(
    name="hopscope",
    help="Tracing-based latency analyzer: where tail latency builds up, hop by hop.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

for module in (collector_cli, analysis_cli, deploy_cli, pipelines_cli, dashboards_cli, run_cli):
    module.register(app)


if __name__ == "__main__":
    app()
