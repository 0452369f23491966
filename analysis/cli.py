"""CLI commands of the analysis folder: `synth` (analysis core) and `analyze` (report)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `hopscope synth` and `hopscope analyze` to the main app."""
    from hopscope.analysis import synth_cli
    from hopscope.analysis.report import cli as report_cli

    synth_cli.register(app)
    report_cli.register(app)
