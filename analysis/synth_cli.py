"""`hopscope synth` (to be written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `hopscope synth` to the main app (not yet)."""
