"""`--json`: a command's machine-readable summary, one JSON document on stdout.

With `--json` the human tables still go to stderr (or not at all), so `hopscope bench … --json |
jq .` reads only the document. Values JSON does not know (paths, numpy numbers) are written as
strings or plain numbers; NaN becomes null.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

JsonOption = Annotated[
    bool, typer.Option("--json", help="print a machine-readable summary (JSON) on stdout instead of tables")
]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def print_json(payload: dict[str, Any] | list[Any]) -> None:
    typer.echo(json.dumps(_plain(payload), indent=2, allow_nan=False))
