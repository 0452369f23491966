"""hopscope.analysis: spans → hop timelines → critical paths → statistics → hop graph.

Notebook entry point: `hopscope.analysis.load(RUN_DIR)` returns a `Run`.
"""

from __future__ import annotations

from .run import MODES, NoSpans, Run, RunDirError, load

__all__ = ["MODES", "NoSpans", "Run", "RunDirError", "load"]
