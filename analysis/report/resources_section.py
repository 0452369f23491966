"""The "Resources and host load" section of a `hopscope run`: what each architecture costs
per event (CPU, memory, the services involved) and whether the host, not the stack, set the
pace (host-bound phases).

It reads `ctx.experiment` (`phases[].resources`, see `hopscope.analysis.resources`); the
services are the record's, named as data. Without such records it yields nothing.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..resources import host_bound_rule, host_cpu_samples, resources_frame
from .context import ReportContext
from .section import Section, figure_part, note
from .tables import Column, count, fmt_ms, fmt_share, make_table, text

ROLE_STACK = "stack"  # the record's role of a stack's own services (its operating cost)
RUNNING = ("running", "degraded")
PHASE_FIELDS = ("workload", "stack", "repeat", "tracing", "events", "host_cpu_mean", "host_cpu_share_above",
                "schedule_lag_p99_ms", "host_bound", "host_bound_reasons")  # fmt: skip


def _spread(values: list[float], fmt=fmt_ms) -> str:
    """median (min–max) over repeats; the median alone when they agree."""
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return "–"
    med = fmt(float(np.median(vals)))
    if min(vals) == max(vals):
        return med
    return f"{med} ({fmt(min(vals))}–{fmt(max(vals))})"


def _median(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and v == v]
    return float(np.median(vals)) if vals else None


def _pct(v: object) -> str:
    return "–" if v is None or v != v else f"{float(v):.0f} %"  # type: ignore[arg-type]


def _ok(ctx: ReportContext) -> pd.DataFrame:
    """The records of the phases that finished (a failed phase's cost per event means nothing)."""
    frame = resources_frame(ctx.experiment)
    return frame[frame["status"] == "ok"]


def _per_phase(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per phase: total and stack-only CPU ms per event, summed peak memory, host figures."""
    rows = []
    for phase, g in frame.groupby("phase", sort=False):
        first = g.iloc[0]
        events = first["events"]
        cpu = g["cpu_s"].fillna(0.0)
        stack_cpu = cpu[g["role"] == ROLE_STACK]
        involved = g[g["state"].isin(RUNNING)]["service"].tolist()
        missing = [f"{r.service}: {r.state}" for r in g.itertuples() if r.state not in RUNNING]
        rows.append(
            {
                **{k: first[k] for k in PHASE_FIELDS},
                "phase": phase,
                "total_ms_per_event": 1e3 * float(cpu.sum()) / events if events else None,
                "stack_ms_per_event": 1e3 * float(stack_cpu.sum()) / events
                if events and len(stack_cpu)
                else None,
                "peak_rss_mb": float(g["peak_rss_mb"].fillna(0.0).sum()),
                "involved": involved,
                "missing": missing,
            }
        )
    return pd.DataFrame(rows)


def _order(ctx: ReportContext, frame: pd.DataFrame) -> pd.DataFrame:
    w_order = {w: i for i, w in enumerate(ctx.workloads)}
    s_order = {s: i for i, s in enumerate(ctx.stacks)}
    keys = frame.assign(
        _w=frame["workload"].map(lambda w: w_order.get(w, len(w_order))),
        _s=frame["stack"].map(lambda s: s_order.get(s, len(s_order))),
        _t=~frame["tracing"].astype(bool),
    )
    return keys.sort_values(["_w", "_s", "_t"], kind="stable").drop(columns=["_w", "_s", "_t"])


def resource_summary_frame(ctx: ReportContext) -> pd.DataFrame:
    """Per workload × stack × tracing: the phases' cost per event and host load over repeats."""
    frame = _ok(ctx)
    if frame.empty:
        return pd.DataFrame()
    per = _per_phase(frame)
    rows = []
    for (workload, stack, tracing), g in per.groupby(["workload", "stack", "tracing"], sort=False):
        bound = g[g["host_bound"].astype(bool)]
        involved = list(dict.fromkeys(s for lst in g["involved"] for s in lst))
        missing = sorted({m for lst in g["missing"] for m in lst})
        rows.append(
            {
                "workload": workload,
                "stack": stack,
                "tracing": bool(tracing),
                "tracing_label": "on" if tracing else "off",
                "repeats": len(g),
                "events": _median(g["events"]),
                "total_ms_per_event": _median(g["total_ms_per_event"]),
                "total_cpu": _spread(g["total_ms_per_event"].tolist()),
                "stack_cpu": _spread(g["stack_ms_per_event"].tolist()),
                "peak_rss": _spread(g["peak_rss_mb"].tolist(), lambda v: f"{v:,.0f}"),
                "host_cpu": _spread(g["host_cpu_mean"].tolist(), _pct),
                "above": _spread(g["host_cpu_share_above"].tolist(), fmt_share),
                "lag_p99": _spread(g["schedule_lag_p99_ms"].tolist()),
                "host_bound": (
                    f"HOST-BOUND {len(bound)}/{len(g)}: " + ", ".join(f"r{r}" for r in bound["repeat"])
                    if len(bound)
                    else "no"
                ),
                "services": ", ".join(involved)
                + (f" (not measured: {', '.join(missing)})" if missing else ""),
            }
        )
    return _order(ctx, pd.DataFrame(rows)).reset_index(drop=True)


def resource_service_frame(ctx: ReportContext) -> pd.DataFrame:
    """Per workload × stack × service: CPU ms per event traced and untraced, peak memory."""
    frame = _ok(ctx)
    if frame.empty:
        return pd.DataFrame()
    rows = []
    for (workload, stack, service), g in frame.groupby(["workload", "stack", "service"], sort=False):
        if g["cpu_s"].isna().all() and g["role"].iloc[0] != ROLE_STACK:
            continue  # never measured, and not the stack's own: the summary names it
        on, off = g[g["tracing"]], g[~g["tracing"]]
        rows.append(
            {
                "workload": workload,
                "stack": stack,
                "tracing": True,  # for the ordering
                "service": service,
                "role": g["role"].iloc[0],
                "state": ", ".join(dict.fromkeys(g["state"])),
                "cpu_on": _spread(on["cpu_ms_per_event"].tolist()),
                "cpu_off": _spread(off["cpu_ms_per_event"].tolist()),
                "cpu_on_ms_per_event": _median(on["cpu_ms_per_event"]),
                "cpu_s": _spread(g["cpu_s"].tolist(), lambda v: f"{v:.2f}"),
                "peak_rss_mb": g["peak_rss_mb"].max(),
            }
        )
    return _order(ctx, pd.DataFrame(rows)).drop(columns=["tracing"]).reset_index(drop=True)


def host_cpu_figure(ctx: ReportContext, threshold: float) -> go.Figure | None:
    samples = host_cpu_samples(ctx.experiment)
    if samples.empty:
        return None
    fig = go.Figure()
    for phase, g in samples.groupby("phase", sort=False):
        stack = g["stack"].iloc[0]
        fig.add_trace(
            go.Scatter(
                x=g["t_s"], y=g["cpu_percent"], mode="lines", name=str(phase), legendgroup=stack,
                line={"color": ctx.stack_color(stack), "width": 1, "dash": "solid" if g["tracing"].iloc[0] else "dot"},
                opacity=0.7, showlegend=True,
                hovertemplate=f"{html.escape(str(phase))}<br>%{{x:.1f}} s: %{{y:.0f}} %<extra></extra>",
            )
        )  # fmt: skip
    fig.add_hline(y=threshold, line={"color": "#999", "dash": "dash"}, annotation_text=f"{threshold:g} %")
    fig.update_layout(
        height=420,
        xaxis_title="seconds into the phase",
        yaxis_title="host CPU (%, all cores)",
        yaxis_range=[0, 105],
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
    )
    return fig


def resources_section(ctx: ReportContext) -> Iterable[Section]:
    if not ctx.experiment:
        return
    summary = resource_summary_frame(ctx)
    if summary.empty:
        h, m = note("No phase of this run recorded its resources (a run made before they were recorded).")
        yield Section("resources", "Resources and host load", h, m)
        return
    rule = host_bound_rule(ctx.experiment)
    meaning = (
        f"A phase is host-bound when the host's CPU was above {rule['cpu_percent']:g} % for more than "
        f"{100 * rule['share']:g} % of it or the load generator fell behind its schedule (p99 of sent − intended "
        f"over {rule['schedule_lag_p99_ms']:g} ms): its latencies then measure the machine as much as the stack."
    )
    cols = [text("workload"), text("stack"), text("tracing_label", "tracing"), count("repeats"),
            Column("events", "events (median)", lambda v: "–" if v is None or v != v else f"{float(v):,.0f}", True),
            text("stack_cpu", "stack's services CPU ms/event"), text("total_cpu", "total CPU ms/event"),
            text("peak_rss", "peak memory (MB, Σ services)"), text("host_cpu", "host CPU mean"),
            text("above", "share above threshold"), text("lag_p99", "schedule lag p99 (ms)"),
            text("host_bound", "host-bound"), text("services", "services involved")]  # fmt: skip
    table = make_table(
        summary,
        cols,
        caption="Per workload × stack × tracing, median over repeats (min–max). CPU = user + system seconds of "
        "each service's process tree during the phase ÷ events sent; the stack's services include the processes "
        "its driver spawns (glue consumers, a Streams app); total adds the telemetry and the load generator; "
        "memory = sum of each service's peak RSS.",
        flag=lambda rec, f: f == "host_bound" and rec["host_bound"] != "no",
    )
    per_service = resource_service_frame(ctx)
    svc_cols = [text("workload"), text("stack"), text("service"), text("role"), text("state"),
                text("cpu_on", "CPU ms/event traced"), text("cpu_off", "CPU ms/event untraced"),
                text("cpu_s", "CPU s per phase"),
                Column("peak_rss_mb", "peak RSS (MB, max)", lambda v: "–" if v is None or v != v else f"{float(v):,.0f}", True)]  # fmt: skip
    svc_table = make_table(
        per_service,
        svc_cols,
        caption="Per service, median over repeats (min–max); a service that was not running is not measured "
        "(listed here, flagged, only when it is one of the stack's own).",
        flag=lambda rec, f: (
            f == "state"
            and rec["role"] == ROLE_STACK
            and not any(s in RUNNING for s in str(rec["state"]).split(", "))
        ),
    )
    bound = resources_frame(ctx.experiment).drop_duplicates("phase")
    bound = bound[bound["host_bound"]]
    notes_h, notes_m = [], []
    for r in bound.itertuples():
        h, m = note(f"HOST-BOUND {r.phase}: {r.host_bound_reasons}.")
        notes_h.append(h.replace('class="note"', 'class="note flag"'))
        notes_m.append(m)
    plot_h, plot_m = figure_part(
        "resources-host-cpu",
        "host CPU over each phase",
        host_cpu_figure(ctx, rule["cpu_percent"]),
        f"Host CPU (all cores) sampled during each phase, colour per stack, dotted = tracing off; "
        f"dashed line = {rule['cpu_percent']:g} %.",
        "No host CPU samples.",
    )
    html_parts = [
        f"<p>{html.escape(meaning)}</p>",
        *notes_h,
        table.to_html(),
        plot_h,
        f"<details><summary>per service</summary>{svc_table.to_html()}</details>",
    ]
    md_parts = [meaning + "\n", *notes_m, table.to_markdown(), plot_m, svc_table.to_markdown()]
    yield Section("resources", "Resources and host load", "".join(html_parts), "\n".join(md_parts))
