"""`hopscope analyze` (to be written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `hopscope analyze` to the main app (not yet)."""
