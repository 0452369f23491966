"""Each workload's parts that show single deliveries and time: the p50, p99 and slowest
delivery of every stack as waterfalls linked to the trace UIs, and the latency over the run's
time per phase. The report's order is in outline.py."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..timeline import NS_PER_S
from .context import ReportContext
from .section import Section, figure_html, figure_part, note, slug
from .tables import Column, count, fmt_ms, make_table, ms, text
from .timeline_plot import latency_over_time, phase_label
from .waterfall_plot import shown_rows, waterfall_figure

WATERFALL_LEGEND = (
    "Each bar is a span of the delivery's event on the event's time axis (0 = its root span's start), "
    "indented under its parent (or the span it links to); blue bars hold a part of the delivery's "
    "event-mode critical path, grey ones none, the outlined bar is the delivery. Inside the bars: the "
    "critical path (dark) and the wait gaps on it (amber: time covered by no span, before the span "
    "whose hop names the wait). Pink arrows are span links. The path's sections and gaps add up to the "
    "delivery's e2e."
)


def _links_html(ctx: ReportContext, trace_id: str) -> str:
    links = " · ".join(
        f'<a class="trace-link" data-ui="{html.escape(name)}" data-trace-id="{html.escape(trace_id)}" '
        f'href="{html.escape(url)}" target="_blank" rel="noopener">{html.escape(name)}</a>'
        for name, url in ctx.trace_links.urls(trace_id)
    )
    return f"<code>{html.escape(trace_id)}</code>" + (f" — open in {links}" if links else "")


def _links_md(ctx: ReportContext, trace_id: str) -> str:
    links = ", ".join(f"[{name}]({url})" for name, url in ctx.trace_links.urls(trace_id))
    return f"`{trace_id}`" + (f" ({links})" if links else "")


def _heading(spans: pd.DataFrame) -> str:
    head = spans.iloc[0]
    parts = [
        f"{head['stack']} · {head['pick']} of {int(head['deliveries']):,} deliveries: {fmt_ms(head['e2e_ms'])} ms"
    ]
    if head["delivery"] is not None:
        parts.append(f"subscriber {head['delivery']}")
    if head["event_id"] is not None:
        parts.append(f"event {head['event_id']}")
    return ", ".join(parts)


PATH_COLUMNS: list[Column] = [
    count("row", "row"),
    text("label", "span"),
    ms("start_ms", "start (ms)"),
    ms("duration_ms", "duration (ms)"),
    ms("wait_before_ms", "wait before (ms)"),
    ms("critical_ms", "on the path (ms)"),
]


def _path_table(spans: pd.DataFrame) -> str:
    on = spans[spans["on_critical_path"]]
    on = on.assign(
        label=[f"{s}: {h}" if s else str(h) for s, h in zip(on["service"], on["hop"], strict=True)]
    )
    return make_table(on, PATH_COLUMNS, caption="The spans on the critical path").to_markdown()


def workload_deliveries(ctx: ReportContext, workload: str) -> Section | None:
    anchor = slug(workload, "deliveries")
    title = "Single deliveries: p50, p99, slowest"
    if ctx.waterfalls is None:
        h, m = note("This run object has no single deliveries to show.")
        return Section(anchor, title, h, m)
    w = ctx.waterfalls[ctx.waterfalls["workload"] == workload]
    if w.empty:
        h, m = note(f"No analysed delivery in {workload}.")
        return Section(anchor, title, h, m)
    intro = WATERFALL_LEGEND
    if ctx.trace_links.templates:
        intro += (
            " The links open the trace in "
            + " and ".join(name for name, _ in ctx.trace_links.templates)
            + " while that store still holds it (the local Jaeger keeps the most recent traces in memory)."
        )
    parts_html, parts_md = [f"<p>{html.escape(intro)}</p>"], [intro + "\n"]
    for stack in ctx.stacks:
        mine = w[w["stack"] == stack]
        if mine.empty:
            n_html, n_md = note(f"{stack}: no analysed delivery in {workload}.")
            parts_html.append(n_html)
            parts_md.append(n_md)
            continue
        for k, (_, spans) in enumerate(mine.groupby("pick", sort=False)):
            trace_id = str(spans["trace_id"].iloc[0])
            heading = _heading(spans)
            drawn, left_out = shown_rows(spans)
            fig = waterfall_figure(drawn)
            parts_html.append(
                f'<p class="waterfall-head"><b>{html.escape(heading)}</b>; trace {_links_html(ctx, trace_id)}</p>'
            )
            if left_out:
                parts_html.append(
                    note(
                        f"{left_out} spans off the critical path are not drawn (the trace has {len(spans)})."
                    )[0]
                )
            if fig is not None:
                parts_html.append(figure_html(fig, slug(anchor, stack, str(k))))
            parts_md.append(f"**{heading}**; trace {_links_md(ctx, trace_id)}\n\n{_path_table(spans)}")
    return Section(anchor, title, "".join(parts_html), "\n".join(parts_md))


OVER_TIME_COLUMNS: list[Column] = [
    text("stack"),
    text("label", "phase"),
    text("started", "started (UTC)"),
    count("seconds"),
    count("deliveries"),
    ms("p50_ms", "p50 (ms)"),
    ms("worst_p99_ms", "highest 1-s p99 (ms)"),
    count("worst_second", "in second"),
]


def _phase_rows(ctx: ReportContext, workload: str) -> pd.DataFrame:
    """Per phase: when it started, its seconds, deliveries, and the second with the highest p99."""
    assert ctx.phases is not None and ctx.per_second is not None
    sec = ctx.per_second[ctx.per_second["workload"] == workload]
    rows = []
    for _, p in ctx.phases[ctx.phases["workload"] == workload].iterrows():
        g = sec[(sec["stack"] == p["stack"]) & (sec["phase"] == p["phase"])]
        e = ctx.deliveries(str(p["stack"]), workload)
        inside = (
            e[(e["start_ns"] >= p["start_ns"]) & (e["start_ns"] <= p["end_ns"] + NS_PER_S)]
            if "start_ns" in e
            else e
        )
        worst = g.loc[g["p99_ms"].idxmax()] if len(g) else None
        rows.append(
            {
                "stack": p["stack"],
                "label": phase_label(p),
                "started": pd.Timestamp(int(p["start_ns"]), unit="ns").strftime("%Y-%m-%d %H:%M:%S"),
                "seconds": int(np.ceil((int(p["end_ns"]) - int(p["start_ns"])) / NS_PER_S)),
                "deliveries": int(g["deliveries"].sum()),
                "p50_ms": float(np.quantile(inside["e2e_ms"], 0.5)) if len(inside) else None,
                "worst_p99_ms": float(worst["p99_ms"]) if worst is not None else None,
                "worst_second": int(worst["second"]) if worst is not None else None,
            }
        )
    return pd.DataFrame(rows)


def workload_latency_over_time(ctx: ReportContext, workload: str) -> Section | None:
    anchor = slug(workload, "over-time")
    title = "Latency over the run's time"
    fig = latency_over_time(ctx, workload)
    h, m = figure_part(
        anchor,
        "latency over time",
        fig,
        "Per second of each phase, the p50 (solid) and p99 (dashed) trace e2e of the deliveries whose "
        "event was sent in that second (warm-up excluded, as everywhere), on the clock; each band is a "
        "phase (stack and repeat), its warm-up shaded grey; the time between this workload's phases is cut "
        "out. A stall, a GC pause or a rebalance shows as a rise where it happened. Few deliveries in a "
        "second make its p99 close to its maximum (hover: the count).",
        "No deliveries with a start time to place on the run's time axis.",
    )
    if fig is not None:
        rows = _phase_rows(ctx, workload)
        if not rows.empty:
            t = make_table(rows, OVER_TIME_COLUMNS, caption="Per phase, in run order")
            h += t.to_html()
            m += "\n" + t.to_markdown()
    return Section(anchor, title, h, m)
