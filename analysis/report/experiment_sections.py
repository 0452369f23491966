"""Report sections of a `hopscope run` (the figures that need more than one phase).

They read `ctx.experiment` — `RUN_DIR/experiment.json` written by `hopscope run`: every
phase (stack × workload × repeat, tracing on/off) with its status, driver manifest (the
fairness values read back from the services) and ledger figures, plus the cross-checks.
In a run without it (`hopscope bench`, `hopscope synth`) every function here yields nothing.

Ledger figures (intended send → first receipt, per expected subscriber) are used for
repeats, the overhead A/B and the ingest sweep, because they are measured the same way with
tracing off; the trace-based figures stay in the per-hop parts.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hopscope.core.attributes import WAIT_PREFIX

from ..sweep import knee_index, knee_rule
from .context import ReportContext
from .section import Section, figure_part, note, slug
from .tables import Column, count, fmt_ms, fmt_share, make_table, ms, share, text

#: Repeats of one figure disagreeing by more than this ((max − min) ÷ median) are flagged.
REPEAT_FLAG_SPREAD = 0.10
FIGURES = ("p50", "p99", "p999")
#: A phase delivering less than this share of its measured events is flagged.
MIN_DELIVERED = 0.95
FIGURE_NAMES = {"p50": "p50", "p99": "p99", "p999": "p99.9"}


def apply_experiment(ctx: ReportContext, experiment: dict[str, Any]) -> None:
    """Attach a run's experiment.json; its stacks and workloads join the report's lists so a
    stack whose every phase failed still gets its column and its "no data" notes."""
    ctx.experiment = experiment
    ordered = list(experiment.get("stacks", []))
    ctx.stacks[:] = ordered + [s for s in ctx.stacks if s not in ordered]
    for w in experiment.get("workloads", []):
        if w not in ctx.workloads:
            ctx.workloads.append(w)


def _stack_label(ctx: ReportContext, stack: str, key: str, default: str | None = None) -> str:
    """The stack's wording for `key` from the run's `stack_info` (written from its declaration);
    `default` (the stack's name if None) when the run or the declaration has none."""
    info = ((ctx.experiment or {}).get("stack_info") or {}).get(stack) or {}
    return info.get(key) or (stack if default is None else default)


def phases(ctx: ReportContext, **match: Any) -> list[dict[str, Any]]:
    out = []
    for p in (ctx.experiment or {}).get("phases", []):
        ph = p["phase"]
        if all(ph.get(k) == v for k, v in match.items()):
            out.append(p)
    return out


def _delivered_share(p: dict[str, Any]) -> float | None:
    fig = p.get("figures") or {}
    events = fig.get("events")
    if not events:
        return None
    return (fig.get("outcomes") or {}).get("delivered", 0) / events


def _both(html_md: tuple[str, str], title_html: str = "", title_md: str = "") -> tuple[str, str]:
    return title_html + html_md[0], title_md + html_md[1]


# -- run status: failed phases -------------------------------------------------------------


def run_status_section(ctx: ReportContext) -> Iterable[Section]:
    exp = ctx.experiment
    if not exp:
        return
    all_phases = exp.get("phases", [])
    failed = [p for p in all_phases if p["status"] != "ok"]
    rows = [
        {
            "phase": p["phase"]["label"],
            "stack": p["phase"]["stack"],
            "workload": p["phase"]["workload"],
            "repeat": p["phase"]["repeat"],
            "tracing": "on" if p["phase"]["tracing"] else "off",
            "status": p["status"],
            "seconds": p["seconds"],
            "span_files": p.get("span_files", 0),
            "events": (p.get("figures") or {}).get("events"),
            "delivered": _delivered_share(p),
            "error": p.get("error") or "",
        }
        for p in all_phases
    ]
    frame = pd.DataFrame(rows)
    cols = [text("phase"), text("tracing"), text("status"), Column("seconds", "seconds", lambda v: f"{float(v):.0f}", True),
            count("events", "events (measured)"), share("delivered", "delivered"), count("span_files", "span files"),
            text("error")]  # fmt: skip
    table = make_table(
        frame,
        cols,
        caption=f"Phases in run order; delivered = share of measured events delivered to every expected subscriber "
        f"(under {MIN_DELIVERED:.0%} flagged)",
        flag=lambda rec, f: (
            (rec["status"] != "ok" and f in ("status", "error"))
            or (
                f == "delivered"
                and rec["delivered"] == rec["delivered"]
                and rec["delivered"] is not None
                and rec["delivered"] < MIN_DELIVERED
            )
        ),
    )
    summary = (
        f"Profile {exp.get('profile')!r}: {len(all_phases)} phases "
        f"({len(all_phases) - len(failed)} ok, {len(failed)} failed), stacks {', '.join(exp.get('stacks', []))}, "
        f"repeats {exp.get('repeat')}; stacks interleaved per workload, order flipped on odd repeats."
    )
    parts_html = [f"<p>{html.escape(summary)}</p>"]
    parts_md = [summary + "\n"]
    if exp.get("up_error"):
        h, m = note(f"Starting the services failed: {exp['up_error']}")
        parts_html.append(h)
        parts_md.append(m)
    for p in all_phases:
        d = _delivered_share(p)
        if p["status"] == "ok" and d is not None and d < MIN_DELIVERED:
            h, m = note(f"{p['phase']['label']} ran but delivered only {d:.0%} of its events: its latency figures "
                        "cover the delivered ones only.")  # fmt: skip
            parts_html.append(h)
            parts_md.append(m)
    no_spans = [p["phase"]["label"] for p in all_phases if p["status"] == "ok" and p["phase"]["tracing"]
                and not p.get("span_files")]  # fmt: skip
    if no_spans:
        h, m = note(f"No span file reached the run for traced phase(s) {', '.join(no_spans)} (collector down or "
                    "refusing data?): their trace-based parts are empty; ledger figures remain.")  # fmt: skip
        parts_html.append(h)
        parts_md.append(m)
    for p in failed:
        h, m = note(
            f"FAILED {p['phase']['label']}: {p.get('error')} — its figures are missing from this report."
        )
        parts_html.append(h.replace('class="note"', 'class="note flag"'))
        parts_md.append(m)
    parts_html.append(
        f"<details{' open' if failed else ''}><summary>all phases</summary>{table.to_html()}</details>"
    )
    parts_md.append(table.to_markdown())
    yield Section("run-status", "Run and phases", "".join(parts_html), "\n".join(parts_md))


# -- fairness --------------------------------------------------------------------------------


def _lookup(doc: Any, path: str) -> list[Any]:
    """Dotted path into a manifest; `name[]` fans out over a list. Keys may contain dots
    (`min.insync.replicas`), so the longest matching key wins at each level."""
    if not path:
        return [doc]
    if isinstance(doc, list):
        return [v for item in doc for v in _lookup(item, path)]
    if not isinstance(doc, dict):
        return []
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        rest = ".".join(parts[i:])
        fan = key.endswith("[]")
        k = key[:-2] if fan else key
        if k in doc:
            val = doc[k]
            if fan:
                if not isinstance(val, list):
                    return []
                if not rest:
                    return [len(val)]
                return [v for item in val for v in _lookup(item, rest)]
            return _lookup(val, rest)
    return []


def fairness_frame(ctx: ReportContext) -> pd.DataFrame:
    exp = ctx.experiment
    drivers: dict[str, list[dict[str, Any]]] = {}
    for p in exp.get("phases", []):
        if p["status"] == "ok" and p.get("driver"):
            drivers.setdefault(p["phase"]["stack"], []).append(p["driver"])
    services = exp.get("services_fairness") or {}
    rows = []
    for spec in exp.get("fairness_expected", []):
        row: dict[str, Any] = {"control": spec["control"], "expected": spec.get("expected") or "(stated)"}
        verdicts = []
        for stack in ctx.stacks:
            path = spec.get(stack)
            if path is None:
                row[stack] = "n/a"
                continue
            values: list[Any] = []
            for d in drivers.get(stack, []):
                values += _lookup(d, path)
            values += _lookup(services.get(stack, {}), path)
            shown = sorted({_norm(v) for v in values})
            row[stack] = ", ".join(shown) if shown else "not read back"
            if not shown:
                verdicts.append("not read back")
            elif spec.get("expected") is not None and shown != [_norm(spec["expected"])]:
                verdicts.append("NO")
            else:
                verdicts.append("yes")
        if not verdicts:
            continue  # a control of a stack that is not in this run
        row["matches"] = (
            "NO" if "NO" in verdicts else ("not read back" if "not read back" in verdicts else "yes")
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _norm(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def fairness_section(ctx: ReportContext) -> Iterable[Section]:
    if not ctx.experiment:
        return
    frame = fairness_frame(ctx)
    if frame.empty:
        h, m = note("No control of the study applies to the stacks of this run.")
        yield Section("fairness", "Fairness controls", h, m)
        return
    sources = [label for s in ctx.stacks if (label := _stack_label(ctx, s, "read_back_label", ""))]
    cols = [
        text("control"),
        text("expected"),
        *[text(s, f"{s} (in force)") for s in ctx.stacks],
        text("matches"),
    ]
    table = make_table(
        frame,
        cols,
        caption="Controls of the study; values are those the drivers read back from the running services "
        + (f"({', '.join(sources)}) " if sources else "")
        + "for the phases that ran; every distinct value seen is listed.",
        flag=lambda rec, f: rec["matches"] != "yes" and f in ("matches", *ctx.stacks),
    )
    yield Section("fairness", "Fairness controls", table.to_html(), table.to_markdown())


# -- repeats ---------------------------------------------------------------------------------


def repeat_frame(ctx: ReportContext, workload: str, key: str = "e2e_ms") -> pd.DataFrame:
    rows = []
    for stack in ctx.stacks:
        runs = [p for p in phases(ctx, stack=stack, workload=workload, tracing=True) if p["status"] == "ok"]
        for fig in FIGURES:
            vals = [((p.get("figures") or {}).get(key) or {}).get(fig) for p in runs]
            vals = [float(v) for v in vals if v is not None]
            if not vals:
                continue
            arr = np.asarray(vals)
            med = float(np.median(arr))
            spread = float((arr.max() - arr.min()) / med) if len(arr) > 1 and med > 0 else None
            rows.append(
                {
                    "stack": stack,
                    "figure": FIGURE_NAMES[fig],
                    "repeats": len(arr),
                    "values": " / ".join(fmt_ms(v) for v in arr),
                    "median_ms": med,
                    "min_ms": float(arr.min()),
                    "max_ms": float(arr.max()),
                    "spread": spread,
                    "flag": "repeats disagree > 10 %"
                    if spread is not None and spread > REPEAT_FLAG_SPREAD
                    else "ok",
                }
            )
    return pd.DataFrame(rows)


def workload_repeats(ctx: ReportContext, workload: str) -> Section | None:
    if not ctx.experiment:
        return None
    frame = repeat_frame(ctx, workload)
    anchor = slug(workload, "repeats")
    if frame.empty:
        h, m = note(f"No traced phase of {workload} finished, so there are no ledger figures.")
        return Section(anchor, "Repeats and spread (ledger e2e)", h, m)
    cols = [text("stack"), text("figure"), count("repeats"), text("values", "per repeat (ms)"),
            ms("median_ms", "median (ms)"), ms("min_ms", "min (ms)"), ms("max_ms", "max (ms)"),
            share("spread", "spread (max−min)÷median"), text("flag")]  # fmt: skip
    table = make_table(
        frame,
        cols,
        caption="Ledger end-to-end latency (intended send → first receipt) of each traced repeat",
        flag=lambda rec, f: rec["flag"] != "ok" and f in ("spread", "flag"),
    )
    extra = ""
    if int(frame["repeats"].max()) < 2:
        extra = " One repeat only: no spread (use --repeat N, the full profile runs 3)."
    dis_html, dis_md = _disagreements(ctx, workload)
    return Section(
        anchor,
        "Repeats and spread (ledger e2e)",
        table.to_html() + _p(extra) + dis_html,
        table.to_markdown() + extra + dis_md,
    )


def _disagreements(ctx: ReportContext, workload: str) -> tuple[str, str]:
    """Pairs of repeats whose 95 % intervals of a quantile do not overlap (the verdicts' figure)."""
    d = ctx.disagreements
    if d is None or d.empty:
        return "", ""
    d = d[d["workload"] == workload]
    if d.empty:
        return "", ""
    rows = pd.DataFrame(
        {
            "stack": d["stack"],
            "figure": [FIGURE_NAMES.get(str(q), str(q)) for q in d["quantile_name"]],
            "repeats": [f"r{a} vs r{b}" for a, b in zip(d["repeat_a"], d["repeat_b"], strict=True)],
            "a": [
                f"{fmt_ms(v)} [{fmt_ms(c[0])}–{fmt_ms(c[1])}]"
                for v, c in zip(d["value_a"], d["ci_a"], strict=True)
            ],
            "b": [
                f"{fmt_ms(v)} [{fmt_ms(c[0])}–{fmt_ms(c[1])}]"
                for v, c in zip(d["value_b"], d["ci_b"], strict=True)
            ],
            "flag": "disagree beyond their intervals",
        }
    )
    t = make_table(
        rows,
        [text("stack"), text("figure"), text("repeats"), text("a", "first (ms) [95 %]"),
         text("b", "second (ms) [95 %]"), text("flag")],
        caption=f"Repeats whose 95 % intervals do not overlap ({ctx.verdict_figure}): drift or a disturbed "
        "phase; the headline's intervals include this spread",
        flag=lambda rec, f: f == "flag",
    )  # fmt: skip
    return t.to_html(), "\n\n" + t.to_markdown()


def _p(s: str) -> str:
    return f'<p class="note">{html.escape(s.strip())}</p>' if s.strip() else ""


# -- ingest sweep ----------------------------------------------------------------------------


def sweep_frame(ctx: ReportContext, workload: str) -> pd.DataFrame:
    rows = []
    for stack in ctx.stacks:
        for p in phases(ctx, stack=stack, workload=workload, tracing=True):
            for step in (p.get("figures") or {}).get("sweep") or []:
                rows.append({"stack": stack, "repeat": p["phase"]["repeat"], **step})
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    agg = (
        df.groupby(["stack", "target_rate"], sort=True)
        .agg(
            repeats=("repeat", "nunique"),
            events=("events", "sum"),
            delivered=("delivered", "sum"),
            achieved_rate=("achieved_rate", "median"),
            p50_ms=("p50_ms", "median"),
            p99_ms=("p99_ms", "median"),
            p999_ms=("p999_ms", "median"),
        )
        .reset_index()
    )
    agg["knee"] = ""
    for _stack, g in agg.groupby("stack"):  # the knee's definition: analysis/sweep.py
        k = knee_index(g.to_dict("records"))
        if k is not None:
            agg.loc[g.index[k], "knee"] = "knee"
    return agg


def sweep_figure(ctx: ReportContext, frame: pd.DataFrame) -> go.Figure | None:
    return sweep_plot(frame, ctx.stack_color)


def sweep_plot(
    frame: pd.DataFrame, color_of: Callable[[str], str | None] = lambda _s: None
) -> go.Figure | None:
    """p50 (dotted) and p99 (solid) against the offered rate per stack, the knee marked (×);
    `frame` has stack, target_rate, p50_ms, p99_ms and knee ("knee" or True on the knee's row)."""
    if frame.empty:
        return None
    fig = go.Figure()
    for stack, g in frame.groupby("stack", sort=False):
        color = color_of(str(stack))
        for key, dash in (("p50_ms", "dot"), ("p99_ms", "solid")):
            fig.add_trace(
                go.Scatter(
                    x=g["target_rate"], y=g[key], mode="lines+markers", name=f"{stack} {key[:-3]}",
                    line={"color": color, "dash": dash},
                )
            )  # fmt: skip
        knee = g[g["knee"].map(lambda v: v is True or v == "knee")]
        if len(knee):
            fig.add_trace(
                go.Scatter(
                    x=knee["target_rate"], y=knee["p99_ms"], mode="markers+text", name=f"{stack} knee",
                    marker={"symbol": "x", "size": 16, "color": color}, text=["knee"], textposition="top center",
                )
            )  # fmt: skip
    fig.update_layout(
        height=420,
        xaxis_title="offered rate (events/s)",
        yaxis_title="ledger e2e latency (ms)",
        yaxis_type="log",
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
    )
    return fig


def _run_sweep_frame(ctx: ReportContext, workload: str) -> pd.DataFrame:
    """A single run's sweep (a `bench --sweep`, no experiment): the run's ledger sweep steps."""
    sweeps = getattr(ctx.run, "sweeps", None)
    frame = sweeps() if callable(sweeps) else pd.DataFrame()
    if frame.empty:
        return frame
    frame = frame[frame["workload"] == workload].copy()
    frame["knee"] = np.where(frame["knee"].astype(bool), "knee", "")
    return frame


def workload_sweep(ctx: ReportContext, workload: str) -> Section | None:
    frame = sweep_frame(ctx, workload) if ctx.experiment else _run_sweep_frame(ctx, workload)
    if frame.empty:
        return None
    anchor = slug(workload, "sweep")
    plot_h, plot_m = figure_part(
        anchor,
        "latency vs offered rate",
        sweep_figure(ctx, frame),
        f"p50 (dotted) and p99 (solid) per offered rate; the knee (×) is the first rate with {knee_rule()}.",
        "No sweep steps.",
    )
    cols = [text("stack"), Column("target_rate", "offered (ev/s)", lambda v: f"{float(v):,.0f}", True),
            Column("achieved_rate", "achieved (ev/s)", lambda v: "–" if v is None or v != v else f"{float(v):,.0f}", True),
            count("events"), count("delivered"), ms("p50_ms", "p50 (ms)"), ms("p99_ms", "p99 (ms)"),
            ms("p999_ms", "p99.9 (ms)"), text("knee")]  # fmt: skip
    table = make_table(
        frame,
        cols,
        caption="Rate sweep (median over repeats)",
        flag=lambda rec, f: f == "knee" and rec["knee"] == "knee",
    )
    return Section(
        anchor,
        "Latency vs offered rate (sweep)",
        plot_h + table.to_html(),
        plot_m + "\n" + table.to_markdown(),
    )


# -- point reads -----------------------------------------------------------------------------


def workload_point_reads(ctx: ReportContext, workload: str) -> Section | None:
    if not ctx.experiment:
        return None
    frame = repeat_frame(ctx, workload, key="point_read_ms")
    if frame.empty:
        return None
    anchor = slug(workload, "point-reads")
    wide = frame.pivot_table(index="figure", columns="stack", values="median_ms", aggfunc="first")
    wide = wide.reindex([FIGURE_NAMES[f] for f in FIGURES]).reset_index()
    stacks = [s for s in ctx.stacks if s in wide.columns]
    lines = []
    if len(stacks) == 2:
        a, b = stacks
        wide["ratio"] = wide[a] / wide[b]
        lines.append(f"ratio = {a} ÷ {b}")
    cols = [text("figure"), *[ms(s, f"{s} (ms)") for s in stacks]]
    if "ratio" in wide.columns:
        cols.append(Column("ratio", "ratio", lambda v: "–" if v != v else f"{float(v):.2f}×", True))
    caption = (
        "Point reads of the aggregate (intended send → response), median over repeats: "
        + ", ".join(
            f"{s}: {label}" if (label := _stack_label(ctx, s, "point_read_label", "")) else s for s in stacks
        )
        + (f"; {lines[0]}" if lines else "")
    )
    table = make_table(wide, cols, caption=caption)
    spread = make_table(
        frame,
        [
            text("stack"),
            text("figure"),
            text("values", "per repeat (ms)"),
            share("spread", "spread"),
            text("flag"),
        ],
        flag=lambda rec, f: rec["flag"] != "ok" and f in ("spread", "flag"),
    )
    return Section(
        anchor,
        "Point reads of the aggregate",
        table.to_html() + spread.to_html(),
        table.to_markdown() + "\n" + spread.to_markdown(),
    )


# -- instrumentation overhead ------------------------------------------------------------------


def overhead_frame(ctx: ReportContext) -> pd.DataFrame:
    rows = []
    for workload in ctx.workloads:
        for stack in ctx.stacks:
            off = [
                p for p in phases(ctx, stack=stack, workload=workload, tracing=False) if p["status"] == "ok"
            ]
            if not off:
                continue
            reps = {p["phase"]["repeat"] for p in off}
            on = [
                p
                for p in phases(ctx, stack=stack, workload=workload, tracing=True)
                if p["status"] == "ok" and p["phase"]["repeat"] in reps
            ]
            row: dict[str, Any] = {"workload": workload, "stack": stack, "pairs": min(len(on), len(off))}
            shares = [d for p in off if (d := _delivered_share(p)) is not None]
            row["off_delivered"] = min(shares) if shares else None
            for fig in ("p50", "p99"):
                v_on = [
                    p["figures"]["e2e_ms"].get(fig)
                    for p in on
                    if p.get("figures", {}).get("e2e_ms", {}).get(fig) is not None
                ]
                v_off = [
                    p["figures"]["e2e_ms"].get(fig)
                    for p in off
                    if p.get("figures", {}).get("e2e_ms", {}).get(fig) is not None
                ]
                if v_on and v_off:
                    a, b = float(np.median(v_on)), float(np.median(v_off))
                    row[f"on_{fig}_ms"], row[f"off_{fig}_ms"] = a, b
                    row[f"overhead_{fig}_ms"] = a - b
                    row[f"overhead_{fig}"] = (a - b) / b if b > 0 else None
            switch = [p.get("driver", {}).get("tracing") for p in off]
            row["switch"] = (
                "generator + stack" if switch and all(s is False for s in switch)
                else "generator only (driver has no tracing switch)"
            )  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def overhead_section(ctx: ReportContext) -> Iterable[Section]:
    if not ctx.experiment:
        return
    frame = overhead_frame(ctx)
    if frame.empty:
        h, m = note("No tracing-off phase ran (profile overhead_ab: false, or every such phase failed).")
        yield Section("overhead", "Instrumentation overhead", h, m)
        return
    cols = [text("workload"), text("stack"), count("pairs", "on/off pairs"),
            ms("on_p50_ms", "traced p50 (ms)"), ms("off_p50_ms", "untraced p50 (ms)"),
            ms("overhead_p50_ms", "overhead p50 (ms)"), Column("overhead_p50", "overhead p50", fmt_share, True),
            ms("on_p99_ms", "traced p99 (ms)"), ms("off_p99_ms", "untraced p99 (ms)"),
            ms("overhead_p99_ms", "overhead p99 (ms)"), Column("overhead_p99", "overhead p99", fmt_share, True),
            share("off_delivered", "untraced: delivered"), text("switch", "what tracing-off turned off")]  # fmt: skip
    table = make_table(
        frame,
        cols,
        caption="Same workload, same rate, tracing on then off back to back (ledger e2e, median over pairs). "
        "Negative overhead = the difference is within run-to-run noise.",
        flag=lambda rec, f: (
            (f == "switch" and str(rec["switch"]).startswith("generator only"))
            or (
                f == "off_delivered"
                and rec.get("off_delivered") is not None
                and rec["off_delivered"] < MIN_DELIVERED
            )
        ),
    )
    yield Section("overhead", "Instrumentation overhead", table.to_html(), table.to_markdown())


# -- cross-checks --------------------------------------------------------------------------------
#
# Each result in the run's cross-checks carries what the report needs (written by the experiment
# from the stack's declaration): `stack`, `label`, and `traced` = {measure, candidates, what},
# the figure of that stack's traces the tool is compared with. A result without them (a run made
# before they were stored) is shown under its name, with no traced figure.

#: Measures: `hop` = the hop's own latency (hop statistics); `partial_sum` = the partial sum of
#: the path's hops up to and including the hop (tail growth).
#: The report's description of a traced figure when the declaration gives none
DEFAULT_WHAT = {"hop": "{hop}", "partial_sum": "{hop} (partial sum)"}


def _frame_for(ctx: ReportContext, measure: str, stack: str, workload: str) -> pd.DataFrame:
    if measure == "partial_sum":
        return ctx.growth(stack, workload)
    if measure == "hop":
        return ctx.hops(stack, workload)
    return pd.DataFrame()


def traced_figure(ctx: ReportContext, stack: str | None, traced: Any) -> tuple[str, dict[str, float]] | None:
    """(description, {p50, p99}) of the first declared candidate with data, or None."""
    if not stack or not isinstance(traced, dict):
        return None
    measure = str(traced.get("measure"))
    for cand in traced.get("candidates") or []:
        workload, hop = cand.get("workload"), cand.get("hop")
        frame = _frame_for(ctx, measure, stack, workload)
        if frame.empty:
            continue
        row = frame[frame["hop"] == hop]
        if not len(row):
            continue
        r = row.iloc[0]
        what = (traced.get("what") or DEFAULT_WHAT.get(measure, "{hop}")).replace(
            "{hop}", str(hop).removeprefix(WAIT_PREFIX)
        )
        return f"{stack}/{workload}: {what}", {"p50": float(r["p50_ms"]), "p99": float(r["p99_ms"])}
    return None


def crosscheck_frame(ctx: ReportContext) -> pd.DataFrame:
    checks = (ctx.experiment or {}).get("crosschecks") or {}
    rows = []
    for name, c in checks.items():
        if not isinstance(c, dict):
            continue
        traced = traced_figure(ctx, c.get("stack"), c.get("traced"))
        row: dict[str, Any] = {
            "check": c.get("label") or name,
            "status": c.get("status"),
            "traced_hop": traced[0] if traced else "no traced data",
        }
        if c.get("status") != "ok":
            row["note"] = c.get("error")
        for fig in ("p50", "p99"):
            row[f"tool_{fig}_ms"] = c.get(f"{fig}_ms")
            if traced:
                row[f"traced_{fig}_ms"] = traced[1][fig]
                tv = c.get(f"{fig}_ms")
                row[f"ratio_{fig}"] = traced[1][fig] / tv if tv else None
        rows.append(row)
    return pd.DataFrame(rows)


def crosscheck_section(ctx: ReportContext) -> Iterable[Section]:
    if not ctx.experiment or not ctx.experiment.get("crosschecks"):
        return
    frame = crosscheck_frame(ctx)

    def ratio(f):
        return Column(
            f,
            f.replace("ratio_", "ratio ") + " (traced ÷ tool)",
            lambda v: "–" if v is None or v != v else f"{float(v):.2f}×",
            True,
        )

    cols = [text("check"), text("status"), ms("tool_p50_ms", "tool p50 (ms)"), ms("traced_p50_ms", "traced p50 (ms)"), ratio("ratio_p50"),
            ms("tool_p99_ms", "tool p99 (ms)"), ms("traced_p99_ms", "traced p99 (ms)"), ratio("ratio_p99"),
            text("traced_hop", "traced figure"), text("note")]  # fmt: skip
    table = make_table(
        frame,
        cols,
        caption="Independent tools next to the traced hop. The tools send one record/row at a time (closed loop), "
        "the traced figure is measured open loop from the intended send time under the workload's load, so "
        "a ratio above 1 is expected; an order of magnitude apart points at the instrumentation.",
        flag=lambda rec, f: f == "status" and rec["status"] != "ok",
    )
    yield Section("crosschecks", "Independent cross-checks", table.to_html(), table.to_markdown())
