"""One delivery's waterfall as a plotly figure: a bar per span on the event's time axis (Jaeger's
row order, indented by depth), the delivery's critical path drawn inside the bars, its wait gaps
leading into the span whose hop names them, span links as arrows, the delivery span outlined."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .plots import finish_layout
from .tables import fmt_ms

#: more rows than this are cut to the path's rows and the first others (a note says how many)
MAX_ROWS = 120

OFF_PATH = "#c9ced8"
PATH = "#1d2330"
WAIT = "#E69F00"
LINK = "#CC79A7"
#: one per level of depth before a row's name (tick labels are right-aligned: spaces would not show)
INDENT = "· "

#: WATERFALL_COLUMNS the figure reads
NEEDED = ["row", "depth", "span_id", "link_span_id", "service", "name", "hop", "kind", "is_delivery",
          "start_ms", "duration_ms", "end_ms", "critical_ms", "wait_before_ms", "path_sections",
          "wait_sections", "on_critical_path"]  # fmt: skip


def shown_rows(spans: pd.DataFrame, limit: int = MAX_ROWS) -> tuple[pd.DataFrame, int]:
    """The rows to draw (every row of the path and the delivery first, then others in row order
    up to `limit`) and how many were left out."""
    if len(spans) <= limit:
        return spans, 0
    must = spans["on_critical_path"].to_numpy(bool) | spans["is_delivery"].to_numpy(bool)
    room = max(limit - int(must.sum()), 0)
    keep = must | ((np.cumsum(~must) <= room) & ~must)
    return spans[keep], len(spans) - int(keep.sum())


def _label(rec: pd.Series) -> str:
    name = str(rec["hop"])
    if rec["name"] and rec["name"] != rec["hop"]:
        name += f" ({rec['name']})"
    text = f"{rec['service']}: {name}" if rec["service"] else name
    if len(text) > 56:
        text = text[:55] + "…"
    return INDENT * int(rec["depth"]) + text


def _sections(
    spans: pd.DataFrame, column: str, y: dict[int, int]
) -> tuple[list[float], list[float], list[int]]:
    base, width, rows = [], [], []
    for row, sections in zip(spans["row"], spans[column], strict=True):
        for a, b in sections:
            base.append(a)
            width.append(b - a)
            rows.append(y[row])
    return base, width, rows


def waterfall_figure(spans: pd.DataFrame, title: str | None = None) -> go.Figure | None:
    """The figure of one waterfall frame (`Run.trace`), None when it has no span."""
    if spans.empty:
        return None
    spans = spans.sort_values("row")
    y = {row: k for k, row in enumerate(spans["row"])}
    ys = list(range(len(spans)))
    fig = go.Figure()
    hover = [
        f"{r.service}: {r.hop}<br>name {r.name} · {r.kind}<br>span {r.span_id}<br>start {fmt_ms(r.start_ms)} ms, "
        f"duration {fmt_ms(r.duration_ms)} ms<br>on the critical path {fmt_ms(r.critical_ms)} ms"
        + (f", wait before {fmt_ms(r.wait_before_ms)} ms" if r.wait_before_ms > 0 else "")
        for r in spans.itertuples()
    ]
    on = spans["on_critical_path"].to_numpy(bool)
    fig.add_trace(
        go.Bar(
            name="span", orientation="h", y=ys, base=spans["start_ms"], x=spans["duration_ms"], width=0.7,
            marker=dict(color=np.where(on, "#8fb8de", OFF_PATH).tolist(),
                        line=dict(color=np.where(spans["is_delivery"], PATH, "rgba(0,0,0,0)").tolist(), width=2)),
            hovertext=hover, hoverinfo="text",
        )
    )  # fmt: skip
    for column, name, color in (
        ("path_sections", "critical path", PATH),
        ("wait_sections", "wait (gap)", WAIT),
    ):
        base, width, rows = _sections(spans, column, y)
        if not base:
            continue
        fig.add_trace(
            go.Bar(
                name=name, orientation="h", y=rows, base=base, x=width, width=0.3, marker_color=color,
                hovertemplate=f"{name}: %{{x:.3f}} ms from %{{base:.3f}} ms<extra></extra>",
            )
        )  # fmt: skip
    ends = dict(zip(spans["span_id"], zip(spans["end_ms"], ys, strict=True), strict=True))
    arrows = [
        dict(x=r.start_ms, y=y[r.row], ax=ends[r.link_span_id][0], ay=ends[r.link_span_id][1], xref="x", yref="y",
             axref="x", ayref="y", showarrow=True, arrowhead=2, arrowwidth=1.3, arrowcolor=LINK, text="")
        for r in spans.itertuples()
        if r.link_span_id is not None and r.link_span_id in ends
    ]  # fmt: skip
    finish_layout(
        fig, int(120 + 24 * len(spans)), title, legend_y=1.0 + 40 / (120 + 24 * len(spans)),
        barmode="overlay", annotations=arrows, bargap=0.2,
    )  # fmt: skip
    fig.update_yaxes(
        tickmode="array", tickvals=ys, ticktext=[_label(r) for _, r in spans.iterrows()], autorange="reversed",
        automargin=True, tickfont=dict(size=11),
    )  # fmt: skip
    fig.update_xaxes(title_text="ms after the event's root span started", zeroline=False)
    return fig
