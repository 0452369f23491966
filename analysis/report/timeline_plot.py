"""Latency over the run's time for one workload: per second of each phase, the p50 (solid) and p99
(dashed) of the deliveries' trace e2e, every stack on one clock-time axis; each phase a band
named after its stack and repeat, its warm-up shaded; the stretches between this workload's
phases (other workloads, tracing-off twins) cut out of the axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .context import ReportContext
from .plots import finish_layout

#: a stretch longer than this between two phases is cut out of the axis
CUT_GAP_NS = 10 * 10**9
#: what stays of a cut stretch on each side (so a band's edge and label stay visible)
CUT_MARGIN_NS = 2 * 10**9
NS_PER_S = 10**9


def _clock(ns: np.ndarray | pd.Series | int) -> pd.DatetimeIndex | pd.Timestamp:
    """Clock time (UTC, no zone: plotly draws it as it is), to the µs plotly keeps."""
    if np.ndim(ns) == 0:
        return pd.Timestamp(int(ns), unit="ns").floor("us")
    return pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns").floor("us")


def phase_label(phase: pd.Series) -> str:
    """ "kafka r1" for a `hopscope run` phase or a repeat, the stack alone for a whole run."""
    if str(phase["phase"]) == "run":
        return str(phase["stack"])
    return f"{phase['stack']} r{int(phase['repeat'])}"


def cuts(phases: pd.DataFrame) -> list[dict]:
    """Plotly rangebreaks for the stretches between phases longer than CUT_GAP_NS."""
    spans = sorted(
        zip(phases["start_ns"].astype(np.int64), phases["end_ns"].astype(np.int64) + NS_PER_S, strict=True)
    )
    out, covered = [], None
    for a, b in spans:
        if covered is not None and a - covered > CUT_GAP_NS:
            out.append(dict(bounds=[_clock(covered + CUT_MARGIN_NS), _clock(a - CUT_MARGIN_NS)]))
        covered = b if covered is None else max(covered, b)
    return out


def latency_over_time(ctx: ReportContext, workload: str) -> go.Figure | None:
    if ctx.per_second is None or ctx.phases is None:
        return None
    sec = ctx.per_second[ctx.per_second["workload"] == workload]
    phases = ctx.phases[ctx.phases["workload"] == workload]
    if sec.empty:
        return None
    fig = go.Figure()
    for stack in [s for s in ctx.stacks if s in set(sec["stack"])]:
        mine = sec[sec["stack"] == stack]
        color = ctx.stack_color(stack)
        for field, dash, label in (("p50_ms", "solid", "p50"), ("p99_ms", "dash", "p99")):
            xs: list[object] = []
            ys: list[float | None] = []
            text: list[str] = []
            # one line per phase: a None between phases so plotly does not join them
            for phase, g in mine.groupby("phase", sort=False):
                xs += [*_clock(g["second_start_ns"]), None]
                ys += [*g[field].astype(float), None]
                text += [
                    f"{phase}, second {s}: {n} deliveries"
                    for s, n in zip(g["second"], g["deliveries"], strict=True)
                ]
                text.append("")
            fig.add_trace(
                go.Scatter(
                    x=xs, y=ys, name=f"{stack} {label}", mode="lines+markers", connectgaps=False,
                    line=dict(color=color, dash=dash, width=2 if label == "p99" else 1.5),
                    marker=dict(size=4), text=text,
                    hovertemplate=f"{stack} {label} %{{y:.3g}} ms<br>%{{text}}<extra></extra>",
                )
            )  # fmt: skip
    shapes, notes = [], []
    for k, (_, p) in enumerate(phases.iterrows()):
        color = ctx.stack_color(str(p["stack"]))
        end = int(p["end_ns"])
        shapes.append(dict(type="rect", xref="x", yref="paper", x0=_clock(p["start_ns"]), x1=_clock(end), y0=0,
                           y1=1, fillcolor=color, opacity=0.07, line=dict(color=color, width=1)))  # fmt: skip
        notes.append(dict(x=_clock(p["start_ns"]), y=1.0 if k % 2 == 0 else 0.93, xref="x", yref="paper",
                          xanchor="left", yanchor="bottom" if k % 2 == 0 else "top", showarrow=False,
                          text=phase_label(p), font=dict(size=10, color=color)))  # fmt: skip
        if int(p["warmup_end_ns"]) > int(p["start_ns"]):
            shapes.append(dict(type="rect", xref="x", yref="paper", x0=_clock(p["start_ns"]),
                               x1=_clock(p["warmup_end_ns"]), y0=0, y1=1, fillcolor="#777", opacity=0.18,
                               line=dict(width=0)))  # fmt: skip
            notes.append(dict(x=_clock(p["start_ns"]), y=0.5, xref="x", yref="paper", xanchor="left",
                              showarrow=False, text="warm-up", textangle=-90, font=dict(size=10, color="#555")))  # fmt: skip
    finish_layout(fig, 420, None, legend_y=1.12, shapes=shapes, annotations=notes)
    # a tick at each phase's start: plotly's own ticks follow the whole span, cut stretches included
    starts = _clock(phases["start_ns"].astype(np.int64))
    fig.update_xaxes(
        type="date", rangebreaks=cuts(phases), tickmode="array", tickvals=list(starts),
        ticktext=[t.strftime("%H:%M:%S") for t in starts], tickangle=0,
        title_text=f"clock time (UTC, {starts[0]:%Y-%m-%d}); a tick at each phase's start, gaps between phases cut",
    )  # fmt: skip
    fig.update_yaxes(type="log", minorloglabels="complete", title_text="trace e2e (ms, log)")
    return fig
