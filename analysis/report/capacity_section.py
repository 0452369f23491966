"""The "Capacity" section: each pipeline's highest sustained rate beside its parts' own.

Every workload the run offered at several rates (a `capacity` profile, a rate sweep, a
`bench --sweep`) has a capacity per stack: the highest offered rate below the knee
(`analysis/sweep.py`), with its latency. Beside it, when the run carries them, the host's
standalone figures for the components each pipeline passes through (`benchmarks/
component_capacity.py`, named by the stack's `capacity_parts`): the slowest part bounds the
pipeline, and a pipeline below half of it is flagged. Why it is below is then measured, not
guessed: the phases' resource records give the CPU every process spent per event (the stack,
its glue, the load generator, the telemetry), and the host's cores divided by it are the rate
at which the host itself runs out of CPU (`host_ceiling`). A knee near that ceiling is the
host's limit; a knee far below it is the pipeline's (coordination between its parts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ..resources import resources_frame
from ..sweep import knee_rule
from .context import ReportContext
from .section import Section, figure_part, note
from .tables import Column, count, make_table, ms, text

#: a pipeline below this share of its slowest part's standalone capacity is flagged
PART_SHARE_FLAG = 0.5
#: a knee at or above this share of the host's CPU ceiling counts as the host's limit
HOST_CEILING_SHARE = 0.5


def _rate(v: object) -> str:
    return "–" if v is None or v != v else f"{float(v):,.0f}"  # type: ignore[arg-type]


def components(ctx: ReportContext, *, valid_only: bool = True) -> dict[str, dict[str, Any]]:
    """The run's standalone component figures by component name (empty when not measured).

    A measurement the benchmark marked invalid (`error`: e.g. Harper's stalled confirmations,
    D14) is no capacity: it never stands as a pipeline's slowest part; `valid_only=False` keeps
    it for the components table, which shows why it is invalid."""
    doc = (ctx.experiment or {}).get("components_capacity") or {}
    rows = doc.get("components") if isinstance(doc, dict) else None
    if isinstance(rows, dict):
        rows = rows.get("components")
    out = {}
    for row in rows or []:
        if isinstance(row, dict) and row.get("component") and isinstance(row.get("rate_per_s"), int | float):
            if valid_only and row.get("error"):
                continue
            out[str(row["component"])] = row
    return out


def cpu_per_event(ctx: ReportContext) -> tuple[dict[tuple[str, str], float], int | None]:
    """(workload, stack) → CPU ms per event of every measured process (median over the traced
    phases that finished), and the host's core count from the records."""
    frame = resources_frame(ctx.experiment)
    cores = next(
        (
            int(p["resources"]["cores"])
            for p in (ctx.experiment or {}).get("phases", [])
            if isinstance(p.get("resources"), dict) and p["resources"].get("cores")
        ),
        None,
    )
    if frame.empty:
        return {}, cores
    frame = frame[(frame["status"] == "ok") & frame["tracing"]]
    out: dict[tuple[str, str], float] = {}
    for (workload, stack), g in frame.groupby(["workload", "stack"], sort=False):
        per_phase = [
            1e3 * float(ph["cpu_s"].fillna(0.0).sum()) / float(ph["events"].iloc[0])
            for _, ph in g.groupby("phase", sort=False)
            if ph["events"].iloc[0]
        ]
        if per_phase:
            out[(str(workload), str(stack))] = float(pd.Series(per_phase).median())
    return out, cores


def capacity_frame(ctx: ReportContext) -> pd.DataFrame:
    """One row per swept workload × stack: offered range, sustained rate and its latency, the
    knee, the slowest measured part and the pipeline's share of it."""
    sweeps = getattr(ctx.run, "sweeps", None)
    steps = sweeps() if callable(sweeps) else pd.DataFrame()
    if steps is None or steps.empty:
        return pd.DataFrame()
    parts_of = (ctx.experiment or {}).get("capacity_parts") or {}
    parts = components(ctx)
    cpu, cores = cpu_per_event(ctx)
    rows = []
    for (workload, stack), g in steps.groupby(["workload", "stack"], sort=False):
        ms_per_event = cpu.get((str(workload), str(stack)))
        ceiling = cores * 1e3 / ms_per_event if cores and ms_per_event else None
        top = g[g["sustained"].astype(bool)]
        knee = g[g["knee"].astype(bool)]
        sustained = float(top["target_rate"].iloc[0]) if len(top) else None
        measured = [(name, float(parts[name]["rate_per_s"])) for name in (parts_of.get(stack) or {}).get(workload, []) if name in parts]  # fmt: skip
        slowest = min(measured, key=lambda m: m[1]) if measured else None
        share = sustained / slowest[1] if sustained and slowest and slowest[1] > 0 else None
        rows.append(
            {
                "workload": workload,
                "stack": stack,
                "offered": f"{_rate(g['target_rate'].min())}–{_rate(g['target_rate'].max())}",
                "sustained_rate": sustained,
                "bound": "knee reached" if len(knee) else "≥ (no knee reached)",
                "knee_rate": float(knee["target_rate"].iloc[0]) if len(knee) else None,
                "p50_ms": float(top["p50_ms"].iloc[0]) if len(top) else None,
                "p99_ms": float(top["p99_ms"].iloc[0]) if len(top) else None,
                "events": int(top["events"].iloc[0]) if len(top) else None,
                "slowest_part": f"{slowest[0]} ({_rate(slowest[1])}/s)" if slowest else "–",
                "share_of_part": share,
                "cpu_ms_per_event": ms_per_event,
                "host_ceiling": ceiling,
                # without a knee the sustained rate is only a lower bound: nothing to flag
                "flag": "below half its slowest part"
                if share is not None and share < PART_SHARE_FLAG and len(knee)
                else "",
            }
        )
    return pd.DataFrame(rows)


def why_below(row: Any, cores: int | None) -> str:
    """The measured reason a pipeline sits below half its slowest part (one sentence)."""
    head = f"{row.stack}/{row.workload} sustains {_rate(row.sustained_rate)} ev/s, {row.share_of_part:.0%} of {row.slowest_part}"
    ceiling, per_event = row.host_ceiling, row.cpu_ms_per_event
    if ceiling is None or ceiling != ceiling:
        return f"{head}; no resource record to say why."
    limit = (
        row.knee_rate if row.knee_rate is not None and row.knee_rate == row.knee_rate else row.sustained_rate
    )
    cost = f"its processes spend {per_event:.2f} ms of CPU per event, so the host's {cores} cores run out near {_rate(ceiling)} ev/s"
    if limit >= HOST_CEILING_SHARE * ceiling:
        return f"{head}: the host's limit, not a part's — {cost} (knee at {_rate(limit)})."
    return (
        f"{head}, and not for lack of CPU — {cost}, well above its knee at {_rate(limit)}: the limit is "
        "in the pipeline (waits and coordination between its parts)."
    )


def capacity_figure(ctx: ReportContext, frame: pd.DataFrame) -> go.Figure | None:
    if frame.empty or frame["sustained_rate"].isna().all():
        return None
    fig = go.Figure()
    for stack, g in frame.groupby("stack", sort=False):
        fig.add_trace(
            go.Bar(
                x=g["workload"], y=g["sustained_rate"], name=str(stack),
                marker={"color": ctx.stack_color(str(stack))},
                text=[_rate(v) for v in g["sustained_rate"]], textposition="outside",
            )
        )  # fmt: skip
    fig.update_layout(
        barmode="group",
        height=380,
        yaxis_title="highest sustained rate (events/s)",
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
    )
    return fig


def capacity_section(ctx: ReportContext) -> Iterable[Section]:
    frame = capacity_frame(ctx)
    if frame.empty:
        return
    plot_h, plot_m = figure_part(
        "capacity",
        "highest sustained rate",
        capacity_figure(ctx, frame),
        "Per workload and stack, the highest offered rate below the knee; a stack whose lowest "
        "offered rate is already past the knee has no bar.",
        "No stack sustained any offered rate.",
    )
    cols = [
        text("workload"), text("stack"), text("offered", "offered (ev/s)"),
        Column("sustained_rate", "sustained (ev/s)", _rate, True), text("bound"),
        Column("knee_rate", "knee (ev/s)", _rate, True), ms("p50_ms", "p50 at it (ms)"),
        ms("p99_ms", "p99 at it (ms)"), count("events", "events at it"), text("slowest_part", "slowest part alone"),
        Column("share_of_part", "share of it", lambda v: "–" if v is None or v != v else f"{float(v):.0%}", True),
        ms("cpu_ms_per_event", "CPU per event, all processes (ms)"),
        Column("host_ceiling", "host CPU ceiling (ev/s)", _rate, True),
        text("flag"),
    ]  # fmt: skip
    table = make_table(
        frame,
        cols,
        caption=f"Capacity per workload × stack (knee: {knee_rule()}; figures: median over repeats)",
        flag=lambda rec, f: f == "flag" and bool(rec["flag"]),
    )
    body_h, body_m = plot_h + table.to_html(), plot_m + "\n" + table.to_markdown()
    parts = components(ctx, valid_only=False)
    if parts:
        comp = pd.DataFrame(
            [
                {
                    "component": name,
                    "measure": row.get("measure", ""),
                    "rate": row["rate_per_s"],
                    "p50_ms": row.get("p50_ms"),
                    "p99_ms": row.get("p99_ms"),
                    "measured_at": row.get("measured_at", ""),
                    "invalid": f"not a capacity: {row['error']}" if row.get("error") else "",
                }
                for name, row in parts.items()
            ]
        )
        ctab = make_table(
            comp,
            [
                text("component"),
                text("measure"),
                Column("rate", "standalone (/s)", _rate, True),
                ms("p50_ms"),
                ms("p99_ms"),
                text("measured_at", "measured"),
                text("invalid", "flag"),
            ],
            caption="The components alone on this host (benchmarks/component_capacity.py)",
            flag=lambda rec, f: f == "invalid" and bool(rec["invalid"]),
        )
        body_h += ctab.to_html()
        body_m += "\n" + ctab.to_markdown()
    else:
        h, m = note(
            "The components' standalone capacity was not measured on this host: run "
            "`benchmarks/component_capacity.py` before the run to see which part sets each limit."
        )
        body_h += h
        body_m += m
    flagged = frame[frame["flag"] != ""]
    _, cores = cpu_per_event(ctx)
    if len(flagged):
        h, m = note(
            " ".join(
                [
                    "Below half of their slowest part alone:",
                    *(why_below(r, cores) for r in flagged.itertuples()),
                ]
            )
        )
        body_h += h
        body_m += m
    yield Section("capacity", "Capacity", body_h, body_m)
