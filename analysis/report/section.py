"""What a report section is (`Section`, the section function types) and the pieces every
section module builds with: anchors, notes, plots with captions."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import plotly.graph_objects as go
import plotly.io as pio

from hopscope.core.rundir import REPORT_HTML

from .context import ReportContext


@dataclass
class Section:
    """One titled part of the report, rendered both ways."""

    anchor: str
    title: str
    html: str
    markdown: str
    children: list[Section] = field(default_factory=list)


SectionFn = Callable[[ReportContext], Iterable[Section]]
WorkloadPartFn = Callable[[ReportContext, str], Section | None]


def slug(*parts: str) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)


def note(message: str) -> tuple[str, str]:
    return f'<p class="note">{html.escape(message)}</p>', f"> {message}\n"


def figure_html(fig: go.Figure, div_id: str) -> str:
    height = int(fig.layout.height or 450)
    body = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_height=f"{height}px",
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="plot">{body}</div>'


def figure_part(anchor: str, title: str, fig: go.Figure | None, caption: str, empty: str) -> tuple[str, str]:
    """A plot with its caption; when there is nothing to draw, say why instead."""
    if fig is None:
        return note(empty)
    return (
        figure_html(fig, anchor + "-plot") + f'<p class="caption">{html.escape(caption)}</p>',
        f"*Plot in {REPORT_HTML}: {title}.* {caption}\n",
    )
