"""The `hopscope` command line. Thin: one module per concern in `hopscope.commands`, each
with a `register(app)` function; the work is in the parts they call.

This layer is the only one that may import every part (tests/unit/test_import_rules.py).
"""

from __future__ import annotations

import typer

from hopscope.commands import analyze, bench, dashboards, ingest, run, services, synth

app = typer.Typer(
    name="hopscope",
    help="Tracing-based latency analyzer: where tail latency builds up, hop by hop.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

for module in (ingest, analyze, synth, services, bench, dashboards, run):
    module.register(app)


if __name__ == "__main__":
    app()
