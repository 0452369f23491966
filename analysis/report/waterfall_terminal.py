"""One delivery's waterfall for the terminal (`hopscope trace`): a rich table, one line per span in
Jaeger's row order, its figures, and a bar on the event's time axis where the critical path is
solid, a wait gap on it is shaded and the rest of the span is light."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .tables import fmt_ms

#: what a bar cell shows, strongest first: a critical-path section, a wait gap, the span
PATH_CELL, WAIT_CELL, SPAN_CELL = "█", "▒", "─"
PATH_STYLE, WAIT_STYLE, SPAN_STYLE = "bold", "yellow", "blue"
DEFAULT_BAR_WIDTH = 48


def _cells(
    width: int, scale: float, start: float, end: float, path: list[list[float]], wait: list[list[float]]
) -> list[tuple[str, str]]:
    """The bar's cells (character, style); a span too short for a cell still gets the one it starts in."""
    cells = [(" ", "")] * width

    def paint(a: float, b: float, mark: tuple[str, str]) -> None:
        first = min(max(int(a / scale), 0), width - 1)
        last = min(max(math.ceil(b / scale) - 1, first), width - 1)
        for c in range(first, last + 1):
            cells[c] = mark

    paint(start, end, (SPAN_CELL, SPAN_STYLE))
    for a, b in wait:
        paint(a, b, (WAIT_CELL, WAIT_STYLE))
    for a, b in path:
        paint(a, b, (PATH_CELL, PATH_STYLE))
    return cells


def bar(rec: pd.Series, width: int, scale: float) -> Text:
    out = Text()
    for char, style in _cells(
        width, scale, rec["start_ms"], rec["end_ms"], rec["path_sections"], rec["wait_sections"]
    ):
        out.append(char, style=style)
    return out


def _header(spans: pd.DataFrame, links: list[tuple[str, str]]) -> Text:
    head = spans.iloc[0]
    text = Text()
    text.append(f"trace {head['trace_id']}", style="bold")
    text.append(f"  {head['stack']} · {head['workload']}")
    if head["event_id"] is not None:
        text.append(f" · event {head['event_id']}")
    text.append("\n")
    if math.isnan(head["e2e_ms"]):
        text.append("no analysed delivery: spans only, no critical path\n", style="yellow")
    else:
        whose = f" to {head['delivery']}" if head["delivery"] is not None else ""
        text.append(f"critical path of the delivery{whose}: e2e {fmt_ms(head['e2e_ms'])} ms\n")
    if head["warmup"]:
        text.append("a warm-up event: in no figure of the report\n", style="yellow")
    for name, url in links:
        text.append(f"{name}: {url}\n")
    text.append(f"{PATH_CELL} critical path  ", style=PATH_STYLE)
    text.append(f"{WAIT_CELL} wait on the path  ", style=WAIT_STYLE)
    text.append(f"{SPAN_CELL} rest of the span", style=SPAN_STYLE)
    text.append("  ▶ the delivery")
    return text


#: the columns left of the bar take about this much room (the span's name is cut to fit)
NAME_WIDTH = 44
FIGURES_WIDTH = 4 * 11
PADDING = 2 * 6


def bar_width_for(console_width: int) -> int:
    """The bar's width on a console this wide (never under 16 cells)."""
    return max(16, min(DEFAULT_BAR_WIDTH * 2, console_width - NAME_WIDTH - FIGURES_WIDTH - PADDING))


def waterfall_renderable(
    spans: pd.DataFrame, links: list[tuple[str, str]] | None = None, bar_width: int = DEFAULT_BAR_WIDTH
) -> Group:
    """The header (trace, delivery, e2e, trace UI links, legend) and the table of spans."""
    spans = spans.sort_values("row")
    e2e = float(spans["e2e_ms"].iloc[0])
    total = max(float(spans["end_ms"].max()), e2e if math.isfinite(e2e) else 0.0, 1e-9)
    scale = total / bar_width
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("span", no_wrap=True, overflow="ellipsis", max_width=NAME_WIDTH)
    for column in ("start", "duration", "wait", "on path"):
        table.add_column(f"{column} ms", justify="right", no_wrap=True)
    table.add_column(f"0 … {fmt_ms(total)} ms", no_wrap=True, min_width=bar_width)
    for _, rec in spans.iterrows():
        name = f"{rec['service']}: {rec['hop']}" if rec["service"] else str(rec["hop"])
        mark = "▶ " if rec["is_delivery"] else "  "
        label = Text(mark + "  " * int(rec["depth"]) + name, style="bold" if rec["is_delivery"] else "")
        table.add_row(
            label,
            fmt_ms(rec["start_ms"]),
            fmt_ms(rec["duration_ms"]),
            fmt_ms(rec["wait_before_ms"]) if rec["wait_before_ms"] > 0 else "",
            fmt_ms(rec["critical_ms"]) if rec["on_critical_path"] else "",
            bar(rec, bar_width, scale),
        )
    return Group(_header(spans, links or []), table)
