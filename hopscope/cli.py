"""The `hopscope` command line. Thin: one module per concern in `hopscope.commands`, each
with a `register(app)` function; the work is in the parts they call.

Errors: commands raise; `hopscope.commands.errors.HopscopeGroup` turns what they raise into one line and
an exit status (the table in the top-level README), with the traceback only under `--debug`.

This layer is the only one that may import every part (tests/unit/test_import_rules.py).
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from hopscope.commands import analyze, bench, dashboards, ingest, run, services, synth, trace
from hopscope.commands.errors import DEBUG_ENV, HopscopeGroup

app = typer.Typer(
    name="hopscope",
    help="Tracing-based latency analyzer: where tail latency builds up, hop by hop.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    cls=HopscopeGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("hopscope")
        except metadata.PackageNotFoundError:  # run from a source tree that was never installed
            version = "unknown (not installed)"
        typer.echo(f"hopscope {version}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit"),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help=f"on an error, show the traceback before the one-line message (also {DEBUG_ENV}=1)",
        ),
    ] = False,
) -> None:
    """Tracing-based latency analyzer: where tail latency builds up, hop by hop."""
    _otlp_headers_for_children()


def _otlp_headers_for_children() -> None:
    """With `[collector] otlp_auth = "bearer"`, every exporter this command starts (its own,
    the glue's, the Streams app's, Harper's) sends the token (deploy/otlp_auth.py)."""
    from hopscope.deploy import otlp_auth
    from hopscope.deploy.base import Context
    from hopscope.deploy.config import load_config

    try:
        config = load_config()
    except Exception:  # a command that needs the config reports it in its own words
        return
    otlp_auth.export_to_environment(Context(config))


for module in (ingest, analyze, trace, synth, services, bench, dashboards, run):
    module.register(app)


if __name__ == "__main__":
    app()
