"""CLI commands of this folder, registered on the main `hopscope` app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this folder's commands to the main app (none yet)."""
