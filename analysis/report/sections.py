"""The sections of every analysed run: the headline, each workload's parts (summary, CDF,
breakdown, tail growth, shares, hop graph, hop table), the Jaeger-mode paths, data quality.
The report's order is in outline.py."""

from __future__ import annotations

import html
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..ledger import warmup_events
from ..quality import span_source_problems
from ..resources import host_bound_phases
from ..span_file import MAX_VALUE_BYTES
from ..verdicts import MIN_TAIL
from . import plots
from .context import ReportContext
from .control_lines import control_lines
from .headline import QUANTILE_LABELS, Headline, StackLatency, headline
from .method_section import durability_line, profile_line
from .section import Section, figure_part, note, slug
from .tables import Column, Table, count, fmt_count, fmt_ms, fmt_share, make_table, ms, share, text

#: Unattributed time above this share of the ledger's end-to-end latency (at p50) is flagged.
CLOSURE_FLAG_SHARE = 0.05


# -- the headline -----------------------------------------------------------------------

#: what each end-to-end figure the verdicts can use measures
FIGURE_MEANING = {
    "ledger e2e": "intended send → each expected subscriber's first receipt, from the load generator's "
    "ledger (complete whatever the tracing recorded)",
    "trace e2e": "root span start → delivery span end, from the traces (the run has no ledger receipts)",
}


def _tail_text(h: Headline) -> str:
    focus = h.losing_stack or (h.stacks[0].stack if h.stacks else None)
    if focus is None or (h.tail_hop is None and h.growth_hop is None):
        return "–"
    parts = []
    if h.tail_hop is not None:
        parts.append(f"{h.tail_hop} ({fmt_share(h.tail_hop_share)} of p99 excess)")
    if h.growth_hop is not None and h.growth_hop != h.tail_hop:
        parts.append(f"largest p99 step after {h.growth_hop} (+{fmt_ms(h.growth_step_ms)} ms)")
    return f"{focus}: " + "; ".join(parts)


def _figure_text(s: StackLatency | None, q: str, hidden: str = "–") -> str:
    """The figure as "12.3 [11.9–12.8]" (value [95 % interval]); `hidden` when not shown (fewer than
    10 samples beyond it), "–" without data."""
    f = s.figures.get(q) if s else None
    if f is None:
        return "–"
    if not f.shown:
        return hidden
    return f"{fmt_ms(f.value)} [{fmt_ms(f.ci_low)}–{fmt_ms(f.ci_high)}]"


def _rate(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f} ev/s"


def headline_frame(ctx: ReportContext, lines: list[Headline]) -> tuple[pd.DataFrame, list[Column]]:
    rows = []
    sweeps = any(h.compared_at is not None for h in lines)
    # a verdict from a phase where the machine, not the stack, was the limit must say so
    host_bound = host_bound_phases(ctx.experiment)
    for h in lines:
        row: dict[str, object] = {"workload": h.workload}
        by_stack = {s.stack: s for s in h.stacks}
        for stack in ctx.stacks:
            s = by_stack.get(stack)
            row[f"{stack}:n"] = s.deliveries if s else None
            for q in QUANTILE_LABELS:
                row[f"{stack}:{q}"] = _figure_text(s, q)
        for q in QUANTILE_LABELS:
            row[f"verdict:{q}"] = h.verdict_text(q)
        if sweeps:
            row["rate"] = _rate(h.compared_at) if h.compared_at is not None else "–"
        row["tail_opens"] = _tail_text(h)
        bound = [
            f"{s}: {', '.join(host_bound[(h.workload, s)])}"
            for s in ctx.stacks
            if (h.workload, s) in host_bound
        ]
        row["host_bound"] = "HOST-BOUND " + "; ".join(bound) if bound else "–"
        row["missing"] = ", ".join(h.missing) or "–"
        if not h.stacks and ctx.stacks_with_data(h.workload):
            # e.g. point reads: answered, never delivered; their figures are in their own section
            row["missing"] = f"no {ctx.verdict_figure} deliveries (traces only)"
        rows.append(row)
    columns = [text("workload", "entry operation" if ctx.foreign else "workload")]
    if ctx.foreign:
        for stack in ctx.stacks:
            columns.append(count(f"{stack}:n", f"{stack} n"))
            columns += [text(f"{stack}:{q}", f"{stack} {label} (ms)") for q, label in QUANTILE_LABELS.items()]
        columns.append(text("tail_opens", "where the tail opens"))
        return pd.DataFrame(rows), columns
    if sweeps:
        columns.append(text("rate", "offered rate"))
    for stack in ctx.stacks:
        columns.append(count(f"{stack}:n", f"{stack} n"))
        columns += [text(f"{stack}:{q}", f"{stack} {label} (ms)") for q, label in QUANTILE_LABELS.items()]
    columns += [text(f"verdict:{q}", f"verdict at {label}") for q, label in QUANTILE_LABELS.items()]
    columns += [
        text("tail_opens", "where the losing stack's tail opens"),
        text("host_bound", "host-bound phases (the verdict measures the machine too)"),
        text("missing", "stacks without data"),
    ]
    return pd.DataFrame(rows), columns


def warmup_excluded(ctx: ReportContext) -> int:
    """Warm-up events the ledger marks (left out of every figure)."""
    return len(warmup_events(getattr(ctx.run, "ledger", None)))


def _sweep_lines(ctx: ReportContext, lines: list[Headline]) -> list[str]:
    out = []
    hide = f"not shown (< {MIN_TAIL} samples beyond)"
    for h in lines:
        if h.compared_at is None:
            continue
        parts = []
        for stack, (rate, s) in h.sustained.items():
            if rate is None:
                parts.append(f"{stack}: none (its lowest offered rate is already past the knee)")
                continue
            figs = [
                f"{label} {t} ms" if (t := _figure_text(s, q, "")) not in ("", "–") else f"{label} {hide}"
                for q, label in (("p50", "p50"), ("p99", "p99"))
            ]
            parts.append(f"{stack}: {_rate(rate)} ({', '.join(figs)})")
        out.append(
            f"{h.workload} is a rate sweep: highest offered rate sustained below the knee — "
            + "; ".join(parts)
            + f". Its headline row compares the stacks at {_rate(h.compared_at)}, the highest rate every "
            "stack sustains (the whole curve: its sweep section)."
        )
    return out


def _disagreement_lines(ctx: ReportContext) -> list[str]:
    d = ctx.disagreements
    if d is None or d.empty:
        return []
    out = []
    for (workload, stack), g in d.groupby(["workload", "stack"], sort=False):
        qs = ", ".join(dict.fromkeys(QUANTILE_LABELS.get(str(q), str(q)) for q in g["quantile_name"]))
        out.append(
            f'{stack}/{workload}: repeats disagree beyond their intervals at {qs} (see its "Repeats and spread").'
        )
    return out


def _foreign_intro(ctx: ReportContext) -> list[str]:
    assert ctx.foreign is not None
    return [
        f"Traces of {ctx.foreign.label}, analysed with hopscope's foreign-trace defaults"
        + (" and a mapping file" if ctx.foreign.mapping is not None else "")
        + " (see Method). One figure per entry operation: trace e2e — the entry operation's root span "
        "start → each delivery's end (a trace's last-ending span; a consumer in a trace of its own "
        "is joined to its producer through its span link, one delivery per consumer). p50, p99 and p99.9 "
        f"with their 95 % interval (bootstrap over deliveries); a quantile with fewer than {MIN_TAIL} "
        "samples beyond it is not shown. Where the tail opens: the hop with the largest share of the p99 "
        "tail's excess over the mean, and — if different — the hop after which the p99 of the partial "
        "sum rises most."
    ]


def headline_section(ctx: ReportContext) -> Iterable[Section]:
    lines = [headline(ctx, w) for w in ctx.workloads]
    frame, columns = headline_frame(ctx, lines)
    figure = ctx.verdict_figure
    table = make_table(
        frame,
        columns,
        caption=f"End-to-end latency per delivery — {figure}: value [95 % interval] in ms, n = deliveries"
        + (" of each entry operation." if ctx.foreign else " (warm-up excluded). Ratio = runner-up ÷ lower."),
        flag=lambda rec, f: (
            (f == "missing" and rec["missing"] != "–" and "traces only" not in rec["missing"])
            or (f == "host_bound" and rec["host_bound"] != "–")
        ),
    )
    if ctx.foreign is not None:
        intro = _foreign_intro(ctx)
        yield Section(
            "headline",
            "Headline",
            "".join(f"<p>{html.escape(t)}</p>" for t in intro) + table.to_html("data headline"),
            "\n\n".join(intro) + "\n\n" + table.to_markdown(),
        )
        return
    warm = warmup_excluded(ctx)
    reps = ctx.estimates["repeats"] if "repeats" in ctx.estimates else pd.Series(dtype=int)
    rep_text = (
        f"{int(reps.min())}–{int(reps.max())} repeats" if len(reps) and reps.min() != reps.max()
        else f"{int(reps.max()) if len(reps) else 1} repeat(s)"
    )  # fmt: skip
    intro = [
        *filter(None, [profile_line(ctx)]),
        f"One figure: {figure} — {FIGURE_MEANING.get(figure, figure)}. Per workload, each stack's p50, p99 "
        f"and p99.9 with its 95 % interval (bootstrap over repeats and deliveries, {rep_text} per stack × "
        f'workload) and the verdict: "<stack> lower, ×ratio [interval]" only when the ratio\'s interval '
        f'excludes 1, else "no clear difference". A quantile with fewer than {MIN_TAIL} samples beyond it is '
        "not shown. Where the losing stack's tail opens: the hop with the largest share of the p99 tail's "
        "excess over the mean (trace-based), and — if different — the hop after which the p99 of the "
        "partial sum rises most.",
        f"Warm-up: {warm:,} warm-up event(s) excluded from every figure (ledger and traces)."
        if warm
        else "Warm-up: none marked in this run's ledger.",
        *_sweep_lines(ctx, lines),
        *_disagreement_lines(ctx),
        *control_lines(ctx, lines),
        *filter(None, [durability_line(ctx)]),
    ]
    body_html = "".join(f"<p>{html.escape(t)}</p>" for t in intro)
    yield Section(
        "headline",
        "Headline",
        body_html + table.to_html("data headline"),
        "\n\n".join(intro) + "\n\n" + table.to_markdown(),
    )


# -- per workload -----------------------------------------------------------------------


def _sentence(h: Headline, foreign: bool = False) -> str:
    if not h.stacks:
        return "No stack delivered any event in this workload."
    if foreign:
        s = h.stacks[0]
        few = f"p50 and p99 not shown: fewer than {MIN_TAIL} deliveries beyond them"
        figs = ", ".join(
            f"{label} {t} ms"
            for q, label in (("p50", "p50"), ("p99", "p99"))
            if (t := _figure_text(s, q)) != "–"
        )
        out = f"{s.stack}: {s.deliveries:,} deliveries; {figs or few}."
    elif not h.verdicts:
        s = h.stacks[0]
        out = f"Only {s.stack} has data: p50 {_figure_text(s, 'p50')} ms, p99 {_figure_text(s, 'p99')} ms."
    else:
        shown = [q for q, v in h.verdicts.items() if v.shown]
        out = "; ".join(f"at {QUANTILE_LABELS[q]}: {h.verdict_text(q)}" for q in shown) + "."
        out = out[0].upper() + out[1:]
    tail = _tail_text(h)
    if tail != "–":
        out += f" Tail opens at {tail}."
    return out


def workload_summary(ctx: ReportContext, workload: str) -> Section | None:
    h = headline(ctx, workload)
    sentence = _sentence(h, foreign=ctx.foreign is not None)
    parts_html = [f'<p class="verdict">{html.escape(sentence)}</p>']
    parts_md = [f"**{sentence}**\n"]
    for stack in h.missing:
        expected = ctx.run.expected_hops(stack, workload) if stack in ctx.stacks else []
        why = (
            f"expected hops {', '.join(expected)}, but no delivery was recorded"
            if expected
            else "the stack was not run for this workload"
        )
        n_html, n_md = note(f"No data for stack {stack} in {workload}: {why}.")
        parts_html.append(n_html)
        parts_md.append(n_md)
    rows = []
    for stack in ctx.stacks_with_data(workload):
        v = ctx.deliveries(stack, workload)["e2e_ms"].dropna().to_numpy(dtype=float)
        if len(v) == 0:
            continue
        q = np.quantile(v, [0.5, 0.9, 0.99, 0.999])
        rows.append(
            dict(
                stack=stack,
                deliveries=len(v),
                mean_ms=v.mean(),
                p50_ms=q[0],
                p90_ms=q[1],
                p99_ms=q[2],
                p999_ms=q[3],
                max_ms=v.max(),
            )
        )
    if rows:
        t = make_table(
            pd.DataFrame(rows),
            [
                text("stack"),
                count("deliveries"),
                ms("mean_ms"),
                ms("p50_ms"),
                ms("p90_ms"),
                ms("p99_ms"),
                ms("p999_ms", "p99.9 (ms)"),
                ms("max_ms"),
            ],
            caption="Trace e2e per delivery (root span start → delivery span end"
            + (
                "); the headline's figures"
                if ctx.foreign
                else "; warm-up excluded); the headline's figures and verdicts"
            )
            + f" are the {ctx.verdict_figure}",
        )
        parts_html.append(t.to_html())
        parts_md.append(t.to_markdown())
    return Section(slug(workload, "summary"), "Summary", "".join(parts_html), "\n".join(parts_md))


def workload_cdf(ctx: ReportContext, workload: str) -> Section | None:
    anchor = slug(workload, "cdf")
    h, m = figure_part(
        anchor,
        "end-to-end CDF",
        plots.e2e_cdf(ctx, workload),
        "Left: cumulative distribution on a log latency axis. Right: the tail, the fraction of "
        "deliveries at or above each latency, on log–log axes (a straight drop = light tail).",
        "No deliveries to plot.",
    )
    return Section(anchor, "End-to-end latency distribution", h, m)


def workload_breakdown(ctx: ReportContext, workload: str) -> Section | None:
    anchor = slug(workload, "breakdown")
    h, m = figure_part(
        anchor,
        "per-hop breakdown",
        plots.hop_breakdown(ctx, workload),
        "Median and p99 of each hop's own latency, one panel per stack, hops in path order.",
        "No per-hop statistics for this workload.",
    )
    return Section(anchor, "Per-hop breakdown", h, m)


def workload_growth(ctx: ReportContext, workload: str) -> Section | None:
    anchor = slug(workload, "growth")
    fig = plots.tail_growth(ctx, workload)
    h, m = figure_part(
        anchor,
        "tail growth",
        fig,
        "p50 (solid), p99 (dashed), p99.9 (dotted) of the latency accumulated up to and including "
        "each hop. Where the dashed and dotted lines pull away from the solid one, the tail opens.",
        "No tail-growth data for this workload.",
    )
    frames = [ctx.growth(s, workload) for s in ctx.stacks_with_data(workload)]
    frames = [f for f in frames if not f.empty]
    if frames:
        t = make_table(
            pd.concat(frames),
            [
                text("stack"),
                count("order", "#"),
                text("hop", "after hop"),
                ms("p50_ms"),
                ms("p99_ms"),
                ms("p999_ms", "p99.9 (ms)"),
            ],
            caption="Quantiles of the partial sum after each hop",
        )
        h += t.to_html()
        m += "\n" + t.to_markdown()
    return Section(anchor, "Tail growth along the path", h, m)


def workload_shares(ctx: ReportContext, workload: str) -> Section | None:
    anchor = slug(workload, "shares")
    h, m = figure_part(
        anchor,
        "variance and tail shares",
        plots.shares(ctx, workload),
        "Variance share = Cov(hop, e2e)/Var(e2e) (sums to 100 %). Tail share = the hop's part of the "
        "tail events' excess over the mean, for events above p99 and p99.9 (each sums to 100 %). "
        "Critical-path share = the hop's part of the critical path.",
        "No per-hop statistics for this workload.",
    )
    return Section(anchor, "Variance and tail attribution", h, m)


def workload_graphs(ctx: ReportContext, workload: str) -> Section | None:
    anchor = slug(workload, "graph")
    parts_html, parts_md = [], []
    for stack in ctx.stacks:
        fig = plots.hop_graph(ctx, stack, workload) if stack in ctx.stacks_with_data(workload) else None
        h, m = figure_part(
            slug(anchor, stack),
            f"{stack} hop graph",
            fig,
            "Checkpoints as nodes, hops as edges labelled with the hop name and its p99.",
            f"No hop graph for {stack} in {workload}.",
        )
        parts_html.append(h)
        parts_md.append(m)
    return Section(anchor, "Hop graph", "".join(parts_html), "\n".join(parts_md))


SERVICE_MAP_COLUMNS = [
    text("client"), text("server"), text("connection_type", "type"), text("hops", "named by"), count("calls"),
    count("errors"), ms("p50_ms"), ms("p99_ms"), ms("max_ms"),
]  # fmt: skip


def workload_service_map(ctx: ReportContext, workload: str) -> Section | None:
    """The systems an event passes, as the spans name them: one row per client → server edge."""
    sm = ctx.service_map
    if sm is None or sm.empty:  # no span file, or spans from before edges were named
        return None
    anchor = slug(workload, "service-map")
    parts_html, parts_md = [], []
    h, m = note(
        "Each edge is named by one span that crosses it (the receiving span where the receiver is "
        "traced, the calling span where it is not); its latency is that span's duration. The same "
        "edges feed the Hops dashboard's service graph."
    )
    parts_html.append(h)
    parts_md.append(m)
    for stack in ctx.stacks:
        edges = sm[(sm["stack"] == stack) & sm["workload"].isin([workload, "point_read"])]
        if edges.empty:
            h, m = note(f"{stack}: no span of {workload} names a service-map edge.")
        else:
            t = make_table(edges, SERVICE_MAP_COLUMNS, caption=f"{stack} · {workload}")
            h, m = t.to_html(), t.to_markdown()
        parts_html.append(h)
        parts_md.append(m)
    return Section(anchor, "Service map", "".join(parts_html), "\n".join(parts_md))


HOP_STAT_COLUMNS = [
    count("order", "#"), text("hop"), count("count"), ms("mean_ms"), ms("std_ms"), ms("p50_ms"),
    ms("p90_ms"), ms("p99_ms"), ms("p999_ms", "p99.9 (ms)"), ms("max_ms"), share("var_share", "var share"),
    share("tail_share_p99", "tail p99"), share("tail_share_p999", "tail p99.9"),
    share("crit_share", "crit. path"),
]  # fmt: skip


def workload_hop_table(ctx: ReportContext, workload: str) -> Section | None:
    anchor = slug(workload, "hops")
    parts_html, parts_md = [], []
    for stack in ctx.stacks:
        hops = ctx.hops(stack, workload)
        if hops.empty:
            n_html, n_md = note(f"{stack}: no per-hop statistics in {workload}.")
            parts_html.append(n_html)
            parts_md.append(n_md)
            continue
        t = make_table(hops, HOP_STAT_COLUMNS, caption=f"{stack} · {workload}")
        parts_html.append(t.to_html())
        parts_md.append(t.to_markdown())
    return Section(anchor, "Per-hop statistics", "".join(parts_html), "\n".join(parts_md))


# -- Jaeger mode ------------------------------------------------------------------------

JAEGER_COLUMNS = [
    count("order", "#"), text("hop"), count("traces"), ms("mean_ms"), ms("p50_ms"), ms("p99_ms"),
    ms("p999_ms", "p99.9 (ms)"), ms("max_ms"), share("crit_share", "crit. path"),
    ms("event_mean_ms", "event mode mean (ms)"),
]  # fmt: skip


def jaeger_section(ctx: ReportContext) -> Iterable[Section]:
    """Jaeger UI's critical path per trace (run loaded with mode="jaeger"), per stack × workload,
    with the event-mode mean of the same hop beside it. Nothing for an event-mode run."""
    js = ctx.jaeger_stats
    if js is None:
        return
    parts_html, parts_md = [], []
    intro = (
        "Jaeger UI's critical path of every trace: links are not followed and a PRODUCER's CONSUMER "
        "child is pruned, so the path stops where the event crosses a broker. Per hop: its time on "
        "the path per trace, over the traces whose path holds it. The event-mode figures above stay "
        "the attribution."
    )
    parts_html.append(f"<p>{html.escape(intro)}</p>")
    parts_md.append(intro + "\n")
    for workload in ctx.workloads:
        for stack in ctx.stacks:
            rows = js[(js["stack"] == stack) & (js["workload"] == workload)]
            if rows.empty:
                continue
            event = ctx.hops(stack, workload)
            means = dict(zip(event["hop"], event["mean_ms"], strict=True)) if not event.empty else {}
            rows = rows.sort_values(["order", "hop"], kind="stable").assign(
                event_mean_ms=lambda f, m=means: [m.get(h) for h in f["hop"]]
            )
            t = make_table(rows, JAEGER_COLUMNS, caption=f"{stack} · {workload} (Jaeger mode, per trace)")
            parts_html.append(t.to_html())
            parts_md.append(t.to_markdown())
    if len(parts_html) == 1:
        n_html, n_md = note("No trace has a Jaeger-mode critical path.")
        parts_html.append(n_html)
        parts_md.append(n_md)
    yield Section("jaeger-paths", "Jaeger-mode critical paths", "".join(parts_html), "\n".join(parts_md))


# -- data quality -----------------------------------------------------------------------

#: Quality columns that describe the data rather than count a problem with it.
INFORMATIONAL = {
    "stack", "workload", "traces", "complete_traces", "spans", "deliveries", "deliveries_analysed", "events",
    "clock_skew_corrections", "library_spans_folded", "warmup_events_excluded", "warmup_deliveries_excluded",
}  # fmt: skip


def is_problem(rec: pd.Series, check: str) -> bool:
    if check == "complete_traces" and "traces" in rec.index:
        return _positive(rec["traces"]) and _positive(float(rec["traces"]) - float(rec[check]))
    if check in INFORMATIONAL or check in ("stack", "workload") or check.startswith("unattributed_"):
        return False
    return _positive(rec[check])


def quality_problems(ctx: ReportContext) -> list[str]:
    """Every highlighted quality cell, closure flag and ingest skip, as one line each."""
    out = []
    q = ctx.quality
    ingest = ctx.meta.get("ingest_report") or {}
    # The core repeats the run-level counts on every pair; a line of their own says them once.
    run_level = {"malformed_records", "values_truncated"} if ingest else {"values_truncated"}
    if q is not None and not q.empty:
        for _, rec in q.iterrows():
            for check in q.columns:
                if check not in run_level and is_problem(rec, str(check)):
                    out.append(f"{rec['stack']}/{rec['workload']}: {check} = {rec[check]}")
    if "unattributed_ms" in ctx.e2e.columns and "ledger_e2e_ms" in ctx.e2e.columns:
        for _, rec in closure_frame(ctx.e2e).iterrows():
            if rec.get("flag") not in (None, "ok"):
                out.append(
                    f"{rec['stack']}/{rec['workload']}: unattributed time is "
                    f"{fmt_share(rec['unattributed_share_p50'])} of e2e at p50"
                )
    for kind, n in (ingest.get("skipped") or {}).items():
        if _positive(n):
            out.append(f"ingest skipped {n} × {kind}")
    cut = q["values_truncated"].iloc[0] if q is not None and "values_truncated" in q.columns and len(q) else 0
    if _positive(cut):
        out.append(f"{cut} over-long string value(s) cut to {MAX_VALUE_BYTES:,} characters on loading")
    out.extend(
        f"span source {line}" for line in span_source_problems(getattr(ctx.run, "manifest", None) or {})
    )
    return out


def ordered_pairs(ctx: ReportContext, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the report's workload-then-stack order (the order every other section uses)."""
    w = {name: i for i, name in enumerate(ctx.workloads)}
    s = {name: i for i, name in enumerate(ctx.stacks)}
    if frame.empty or "workload" not in frame.columns:
        return frame
    key = frame["workload"].map(w).fillna(len(w)) * (len(s) + 1) + frame["stack"].map(s).fillna(len(s))
    return frame.iloc[key.to_numpy().argsort(kind="stable")]


def quality_table(q: pd.DataFrame) -> Table:
    """Checks as rows, stack × workload pairs as columns (a pair per column stays readable
    however many checks the core adds). A problem count above zero is highlighted, and so
    are complete traces short of all traces."""
    checks = [
        c for c in q.columns if c not in ("stack", "workload") and not str(c).startswith("unattributed_")
    ]
    pairs = [f"{r['stack']} · {r['workload']}" for _, r in q.iterrows()]
    rows: list[list[str]] = []
    flagged: set[tuple[int, int]] = set()
    for i, check in enumerate(checks):
        fmt = fmt_ms if str(check).endswith("_ms") else fmt_count
        row = [str(check).replace("_", " ")]
        for j, (_, rec) in enumerate(q.iterrows(), start=1):
            value = rec[check]
            row.append(fmt(value))
            if is_problem(rec, str(check)):
                flagged.add((i, j))
        rows.append(row)
    return Table(
        ["check", *pairs],
        rows,
        [False] + [True] * len(pairs),
        flagged,
        "Counts per stack × workload; highlighted = something could not be used",
    )


def closure_frame(e2e: pd.DataFrame) -> pd.DataFrame:
    """Unattributed time (ledger e2e − trace e2e) per stack × workload."""
    rows = []
    for (stack, workload), g in e2e.groupby(["stack", "workload"], sort=False):
        un = g["unattributed_ms"].dropna().to_numpy(dtype=float)
        led = g["ledger_e2e_ms"].to_numpy(dtype=float)
        if len(un) == 0:
            # e.g. point reads: their ledger has an ack, not a receipt, so closure is not defined
            rows.append(
                dict(stack=stack, workload=workload, events=0, flag="not measured (no ledger receipts)")
            )
            continue
        ratio = np.abs(g["unattributed_ms"].to_numpy(dtype=float)) / led
        ratio = ratio[np.isfinite(ratio)]
        share50 = float(np.median(ratio)) if len(ratio) else float("nan")
        rows.append(
            dict(
                stack=stack,
                workload=workload,
                events=len(un),
                ledger_p50_ms=float(np.nanmedian(led)),
                unattributed_p50_ms=float(np.quantile(un, 0.5)),
                unattributed_p99_ms=float(np.quantile(un, 0.99)),
                unattributed_share_p50=share50,
                flag="unattributed > 5 % of e2e" if share50 > CLOSURE_FLAG_SHARE else "ok",
            )
        )
    # every column even when no pair has a measured closure (spans and ledger name other stacks)
    return pd.DataFrame(rows, columns=CLOSURE_COLUMNS)


CLOSURE_COLUMNS = [
    "stack", "workload", "events", "ledger_p50_ms", "unattributed_p50_ms", "unattributed_p99_ms",
    "unattributed_share_p50", "flag",
]  # fmt: skip


#: quality rows a foreign run cannot have: warm-up is the ledger's, expected hops the manifest's
FOREIGN_HIDDEN_CHECKS = (
    "warmup_events_excluded",
    "warmup_deliveries_excluded",
    "missing_expected_hops",
    "deliveries_without_ledger_receipt",
)


def quality_section(ctx: ReportContext) -> Iterable[Section]:
    parts_html, parts_md = [], []
    q = ctx.quality
    if q is None or q.empty:
        n_html, n_md = note("The analysis reported no data-quality rows.")
        parts_html.append(n_html)
        parts_md.append(n_md)
    else:
        if ctx.foreign is not None:  # counts of what only hopscope's experiment has (ledger, manifest)
            q = q.drop(columns=[c for c in FOREIGN_HIDDEN_CHECKS if c in q.columns])
        t = quality_table(ordered_pairs(ctx, q))
        parts_html.append(t.to_html())
        parts_md.append(t.to_markdown())

    ingest = ctx.meta.get("ingest_report")
    if ingest:
        skipped = ingest.get("skipped") or {}
        msg = (
            f"Ingest read {fmt_count(ingest.get('files'))} file(s), {fmt_count(ingest.get('spans'))} span(s); skipped: "
            + (", ".join(f"{k} {v}" for k, v in skipped.items()) if skipped else "nothing")
            + "."
        )
        readers = ingest.get("readers") or {}
        if readers:
            declined = ingest.get("fast_path_declined") or []
            msg += " Read by: " + ", ".join(f"{k} {v}" for k, v in readers.items()) + "."
            if declined:
                # not a loss: the tolerant reader read those files whole; it only took longer
                msg += f" A fast reader declined {len(declined)} file(s), e.g. {declined[0]}"
        parts_html.append(f"<p>{html.escape(msg)}</p>")
        parts_md.append(msg + "\n")
        errors = ingest.get("errors") or []
        if errors:
            shown = errors[:10]
            parts_html.append(
                "<details><summary>first ingest errors</summary><ul>"
                + "".join(f"<li><code>{html.escape(str(e))}</code></li>" for e in shown)
                + "</ul></details>"
            )
            parts_md.append("\n".join(f"- `{e}`" for e in shown) + "\n")

    title_html = "<h3>Hop closure</h3>"
    if ctx.foreign is not None:  # closure needs hopscope's ledger: a foreign run has none to have
        yield Section("quality", "Data quality", "".join(parts_html), "\n".join(parts_md))
        return
    if "unattributed_ms" in ctx.e2e.columns and "ledger_e2e_ms" in ctx.e2e.columns:
        c = ordered_pairs(ctx, closure_frame(ctx.e2e))
        t = make_table(
            c,
            [text("stack"), text("workload"), count("events", "deliveries"), ms("ledger_p50_ms", "ledger e2e p50 (ms)"),
             ms("unattributed_p50_ms", "unattributed p50 (ms)"),
             ms("unattributed_p99_ms", "unattributed p99 (ms)"),
             share("unattributed_share_p50", "|unattributed| ÷ e2e, p50"), text("flag")],
            caption="Ledger end-to-end minus the trace's end-to-end, per delivery",
            flag=lambda rec, f: f in ("flag", "unattributed_share_p50")
            and rec.get("flag") not in (None, "ok")
            and not str(rec.get("flag")).startswith("not measured"),
        )  # fmt: skip
        parts_html.append(title_html + t.to_html())
        parts_md.append("### Hop closure\n\n" + t.to_markdown())
    else:
        n_html, n_md = note("No ledger in this run: hop closure (unattributed time) was not measured.")
        parts_html.append(title_html + n_html)
        parts_md.append("### Hop closure\n\n" + n_md)
    yield Section("quality", "Data quality", "".join(parts_html), "\n".join(parts_md))


def _positive(value: object) -> bool:
    try:
        return float(value) > 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
