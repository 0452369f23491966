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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hopscope.core.attributes import WAIT_PREFIX
from hopscope.core.rundir import PHASES_DIR

from ..overhead import SEGMENT_BOOT, SEGMENTS, TARGETS, delivery_segments, grown_segment, overheads
from ..run import read_ledger
from ..sweep import knee_index, knee_rule
from ..verdicts import MIN_TAIL, N_BOOT
from .context import ReportContext
from .section import Section, figure_part, note, slug
from .tables import Column, count, fmt_ms, fmt_signed, make_table, ms, share, text

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
        # a setting the run's tuning leaves to each client's own default: nothing of ours to
        # read back where the client does not report it
        default = bool(spec.get("client_default"))
        stated = "(client default)" if default else "(stated)"
        row: dict[str, Any] = {"control": spec["control"], "expected": spec.get("expected") or stated}
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
            row[stack] = ", ".join(shown) if shown else ("client default" if default else "not read back")
            if not shown and not default:
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


#: what an overhead row rests on
BASIS_LEDGER = "ledger"
BASIS_FIGURES = "phase figures"


def _phase_ledger(ctx: ReportContext, p: dict[str, Any]) -> pd.DataFrame | None:
    """A phase's own ledger: RUN_DIR/phases/<phase id>/ledger.parquet (where `hopscope run`
    leaves it), else under the phase's recorded `run_dir`, else — a traced phase — its rows of
    the run's merged ledger (`phase_id`). None when there is none (a run without them)."""
    phase_id = p.get("phase_id")
    run_dir = getattr(ctx.run, "run_dir", None)
    dirs = [Path(run_dir) / PHASES_DIR / phase_id] if run_dir is not None and phase_id else []
    if p.get("run_dir"):
        dirs.append(Path(p["run_dir"]))
    for d in dirs:
        try:
            led = read_ledger(d)
        except (OSError, ValueError):  # an unreadable file is no ledger; the figures remain
            led = None
        if led is not None and len(led):
            return led
    merged = getattr(ctx.run, "ledger", None)
    if p["phase"]["tracing"] and phase_id and isinstance(merged, pd.DataFrame) and "phase_id" in merged:
        rows = merged[merged["phase_id"] == phase_id]
        if len(rows):
            return rows
    return None


def _ledger_pairs(
    ctx: ReportContext, on: list[dict], off: list[dict]
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """(traced, untraced) deliveries with their segments (`overhead.delivery_segments`: measured
    deliveries only, as the headline takes them) of every untraced phase and the traced phase of
    its repeat, where both ledgers hold deliveries."""
    pairs = []
    for p_off in sorted(off, key=lambda p: p["phase"]["repeat"]):
        p_on = next((p for p in on if p["phase"]["repeat"] == p_off["phase"]["repeat"]), None)
        if p_on is None:
            continue
        d_on = delivery_segments(_phase_ledger(ctx, p_on))
        d_off = delivery_segments(_phase_ledger(ctx, p_off))
        if len(d_on) and len(d_off):
            pairs.append((d_on, d_off))
    return pairs


def _figure_overheads(row: dict[str, Any], on: list[dict], off: list[dict]) -> None:
    """A run whose phases kept no ledger: the median over pairs of the phases' own p50/p99
    figures, without interval (what the report showed before the ledgers were read)."""
    row["pairs"] = min(len(on), len(off))
    for fig in TARGETS:
        v_on = [v for p in on if (v := ((p.get("figures") or {}).get("e2e_ms") or {}).get(fig)) is not None]
        v_off = [v for p in off if (v := ((p.get("figures") or {}).get("e2e_ms") or {}).get(fig)) is not None]
        if v_on and v_off:
            a, b = float(np.median(v_on)), float(np.median(v_off))
            row[f"on_{fig}_ms"], row[f"off_{fig}_ms"] = a, b
            row[f"overhead_{fig}_ms"] = a - b
            row[f"overhead_{fig}"] = (a - b) / b if b > 0 else None
            row[f"verdict_{fig}"] = "no interval (phase figures)"


def _ledger_overheads(row: dict[str, Any], pairs: list[tuple[pd.DataFrame, pd.DataFrame]]) -> None:
    traced = [t["latency_ms"].to_numpy(np.float64) for t, _ in pairs]
    untraced = [u["latency_ms"].to_numpy(np.float64) for _, u in pairs]
    row["pairs"] = len(pairs)
    row["deliveries_on"], row["deliveries_off"] = sum(map(len, traced)), sum(map(len, untraced))
    for o in overheads(traced, untraced):
        fig = o.quantile
        row[f"on_{fig}_ms"], row[f"off_{fig}_ms"] = o.traced_ms, o.untraced_ms
        row[f"overhead_{fig}_ms"] = o.traced_ms - o.untraced_ms
        row[f"overhead_{fig}"] = o.overhead if o.untraced_ms > 0 else None
        row[f"target_{fig}"], row[f"supported_{fig}"] = o.target, o.supported
        if o.supported and o.untraced_ms > 0:
            row[f"overhead_{fig}_ci_low"], row[f"overhead_{fig}_ci_high"] = o.ci_low, o.ci_high
            row[f"verdict_{fig}"] = o.verdict
            row[f"over_{fig}"] = o.ci_low > o.target
        else:
            row[f"verdict_{fig}"] = f"not shown (< {MIN_TAIL} beyond {fig})"
    grown, _ = grown_segment([t for t, _ in pairs], [u for _, u in pairs])
    if grown is not None:
        row["segment"], row["segment_span"] = grown.name, grown.span
        row["segment_growth_ms"] = grown.growth_ms
        row["segment_ci_low"], row["segment_ci_high"] = grown.ci_low, grown.ci_high


def overhead_frame(ctx: ReportContext) -> pd.DataFrame:
    """Per workload × stack with a tracing-off twin: traced and untraced p50/p99, the overhead
    (traced ÷ untraced − 1) with its 95 % interval (paired two-level bootstrap over the on/off
    pairs of one repeat each and their measured deliveries, `hopscope.analysis.overhead`), the
    verdict against its target (`TARGETS`), `over_<q>` when the interval lies above it, and the
    segment of the ledger e2e whose median grew most. `basis` says what a row rests on: the
    phases' ledgers, or — a run whose phases kept none — their figures (median over pairs, no
    interval)."""
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
            row: dict[str, Any] = {"workload": workload, "stack": stack, "over_p50": False, "over_p99": False}
            pairs = _ledger_pairs(ctx, on, off)
            if pairs:
                row["basis"] = BASIS_LEDGER
                _ledger_overheads(row, pairs)
            else:
                row["basis"] = BASIS_FIGURES
                _figure_overheads(row, on, off)
            shares = [d for p in off if (d := _delivered_share(p)) is not None]
            row["off_delivered"] = min(shares) if shares else None
            switch = [p.get("driver", {}).get("tracing") for p in off]
            row["switch"] = (
                "generator + stack" if switch and all(s is False for s in switch)
                else "generator only (driver has no tracing switch)"
            )  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def _over(rec: pd.Series, fig: str) -> bool:
    """The row's interval at `fig` lies entirely above its target."""
    return bool(rec.get(f"over_{fig}", False))


def _pct(v: Any) -> str:
    return "–" if v is None or v != v else f"{fmt_signed(100 * float(v), 1)} %"


def _with_interval(rec: pd.Series, fig: str) -> str:
    """The overhead with its interval in percentage points ("+20.0 % [+15.1, +25.3]"), or bare."""
    lo, hi = rec.get(f"overhead_{fig}_ci_low"), rec.get(f"overhead_{fig}_ci_high")
    if lo is None or lo != lo or hi is None or hi != hi:
        return _pct(rec.get(f"overhead_{fig}"))
    return f"{_pct(rec[f'overhead_{fig}'])} [{fmt_signed(100 * lo, 1)}, {fmt_signed(100 * hi, 1)}]"


def _segment_text(rec: pd.Series) -> str:
    g = rec.get("segment_growth_ms")
    if g is None or g != g:
        return "–"
    g, lo, hi = (fmt_signed(float(x), 2) for x in (g, rec["segment_ci_low"], rec["segment_ci_high"]))
    return f"{rec['segment']} {g} ms [{lo}, {hi}]"


def _flag_line(rec: pd.Series) -> str:
    """What the section says of a row whose interval lies above a target: "w on s: p99 +39 %
    [+18, +75] over the 5 % target; the after-ack segment (ack → receipt) grew most (+2.1 ms)"."""
    over = [
        f"{fig} {100 * rec[f'overhead_{fig}']:+.0f} % [{100 * rec[f'overhead_{fig}_ci_low']:+.0f}, "
        f"{100 * rec[f'overhead_{fig}_ci_high']:+.0f}] over the {100 * rec[f'target_{fig}']:.0f} % target"
        for fig in TARGETS
        if _over(rec, fig)
    ]
    line = f"{rec['workload']} on {rec['stack']}: {', '.join(over)}"
    g = rec.get("segment_growth_ms")
    if g is None or g != g:
        return line + "; no segment known (the ledgers hold no send or ack times)"
    if g <= 0:
        return line + f"; no segment's median grew (largest change: {rec['segment']} {g:+.2f} ms)"
    return line + f"; the {rec['segment']} segment ({rec['segment_span']}) grew most ({g:+.1f} ms)"


def overhead_section(ctx: ReportContext) -> Iterable[Section]:
    if not ctx.experiment:
        return
    frame = overhead_frame(ctx)
    if frame.empty:
        h, m = note("No tracing-off phase ran (profile overhead_ab: false, or every such phase failed).")
        yield Section("overhead", "Instrumentation overhead", h, m)
        return
    frame = frame.copy()
    for fig in TARGETS:
        frame[f"overhead_{fig}_text"] = [_with_interval(rec, fig) for _, rec in frame.iterrows()]
    frame["segment_text"] = [_segment_text(rec) for _, rec in frame.iterrows()]
    targets = ", ".join(f"{100 * target:.0f} % at {fig}" for fig, (_q, target) in TARGETS.items())
    cols = [text("workload"), text("stack"), count("pairs", "on/off pairs"), text("basis"),
            ms("on_p50_ms", "traced p50 (ms)"), ms("off_p50_ms", "untraced p50 (ms)"),
            text("overhead_p50_text", "overhead p50 [95 %]"), text("verdict_p50", "p50 verdict"),
            ms("on_p99_ms", "traced p99 (ms)"), ms("off_p99_ms", "untraced p99 (ms)"),
            text("overhead_p99_text", "overhead p99 [95 %]"), text("verdict_p99", "p99 verdict"),
            text("segment_text", "segment that grew most, median (ms) [95 %]"),
            share("off_delivered", "untraced: delivered"), text("switch", "what tracing-off turned off")]  # fmt: skip

    def flagged(rec: pd.Series, f: str) -> bool:
        over = [fig for fig in TARGETS if _over(rec, fig)]
        return (
            (bool(over) and f == "segment_text")
            or any(f in (f"overhead_{fig}_text", f"verdict_{fig}") for fig in over)
            or (f == "switch" and str(rec["switch"]).startswith("generator only"))
            or (
                f == "off_delivered"
                and rec.get("off_delivered") is not None
                and rec["off_delivered"] < MIN_DELIVERED
            )
        )

    caption = (
        "Same workload, same rate, tracing on then off back to back; ledger e2e of the measured (non-warm-up) "
        "deliveries. Overhead = traced quantile ÷ untraced quantile − 1 over the pooled deliveries of the pairs; "
        f"[95 %] = paired two-level bootstrap ({N_BOOT:,} draws) over the on/off pairs (picked alike for both "
        "arms) and the deliveries within each arm: with one pair it holds only the within-phase noise, not "
        f"the drift from run to run. Targets: at most {targets}; a row is flagged where an interval lies "
        f"entirely above its target. A quantile with fewer than {MIN_TAIL} deliveries beyond it has no interval. "
        "Segment: the part of the ledger e2e whose median grew most (traced − untraced; its interval from the "
        f"same bootstrap, {SEGMENT_BOOT} draws): "
        + ", ".join(f"{name} ({span})" for name, span in SEGMENTS.values())
        + "."
    )
    table = make_table(frame, cols, caption=caption, flag=flagged)
    notes: list[tuple[str, str]] = []
    over_rows = frame[frame["over_p50"].astype(bool) | frame["over_p99"].astype(bool)]
    for _, rec in over_rows.iterrows():
        notes.append(note("Over target: " + _flag_line(rec)))
    ledger_rows = frame[frame["basis"] == BASIS_LEDGER]
    if len(ledger_rows) and int(ledger_rows["pairs"].max()) == 1:
        notes.append(note("One on/off pair per workload × stack: each interval holds the noise inside the two "
                          "phases only, not the drift between runs (more tracing-off repeats: profile "
                          "overhead_repeats)."))  # fmt: skip
    if (frame["basis"] == BASIS_FIGURES).any():
        notes.append(note(f"Rows with basis '{BASIS_FIGURES}': their phases' ledgers are not in the run, so the "
                          "overhead is the median over pairs of the phases' own p50/p99, without interval or "
                          "verdict."))  # fmt: skip
    yield Section(
        "overhead",
        "Instrumentation overhead",
        "".join(h for h, _ in notes) + table.to_html(),
        "".join(m + "\n" for _, m in notes) + table.to_markdown(),
    )


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
    html_parts, md_parts = [table.to_html()], [table.to_markdown()]
    pairs = like_for_like_frame(ctx)
    if len(pairs):
        pair_table = make_table(
            pairs,
            [
                text("check"),
                text("mode"),
                text("statistic", "compared"),
                ms("tool_ms", "tool (ms)"),
                ms("untraced_ms", "our client untraced (ms)"),
                ms("traced_ms", "traced (ms)"),
                text("traced_ratio", "traced ÷ tool [95 %]"),
                text("untraced_ratio", "untraced ÷ tool [95 %]"),
                text("finding"),
            ],
            caption="Like for like: the tool and hopscope's client in the tool's own mode (closed loop, one "
            "connection, the same statement or record), to agree within 10 % — at the p50, or in the mean where "
            "the tool prints its percentiles in whole ms only. The untraced client separates "
            "what the client itself costs from what tracing adds to the traced figure.",
            flag=lambda rec, f: f == "finding" and not rec["agrees"],
        )
        html_parts.append(pair_table.to_html())
        md_parts.append(pair_table.to_markdown())
    yield Section("crosschecks", "Independent cross-checks", "\n".join(html_parts), "\n\n".join(md_parts))


def _ratio_text(ratio: float, ci: list[float]) -> str:
    return f"{ratio:.2f}× [{ci[0]:.2f}–{ci[1]:.2f}]"


#: a like-for-like pair's keys as runs before the pairs compared other statistics than p50 named them
_OLD_PAIR_KEYS = {
    "ratio": "p50_ratio",
    "ratio_ci": "p50_ratio_ci",
    "untraced_ratio": "untraced_p50_ratio",
    "untraced_ratio_ci": "untraced_p50_ratio_ci",
    "client_ms": "p50_client_ms",
    "tracing_ms": "p50_tracing_ms",
}


def _pair(pair: dict[str, Any], key: str) -> Any:
    return pair[key] if key in pair else pair[_OLD_PAIR_KEYS[key]]


def like_for_like_finding(pair: dict[str, Any]) -> str:
    """Which side a disagreement comes from: the client itself, or what tracing adds to it."""
    tol = float(pair.get("tolerance", 0.1))
    stat = pair.get("statistic", "p50")
    where = "at p50" if stat == "p50" else f"in the {stat}"
    tracing = fmt_signed(float(_pair(pair, "tracing_ms")), 3)
    if pair.get("agrees"):
        return f"agree within {tol:.0%}"
    lo, hi = _pair(pair, "untraced_ratio_ci")
    if lo <= 1 + tol and hi >= 1 - tol:
        return f"the untraced client agrees with the tool; the traced figure is longer by what tracing adds ({tracing} ms {where})"
    client = fmt_signed(float(_pair(pair, "client_ms")), 3)
    return f"the client itself differs from the tool ({client} ms {where}); tracing adds {tracing} ms"


def like_for_like_frame(ctx: ReportContext) -> pd.DataFrame:
    rows = []
    for name, c in ((ctx.experiment or {}).get("crosschecks") or {}).items():
        pair = c.get("like_for_like") if isinstance(c, dict) else None
        if not isinstance(pair, dict):
            continue
        stat = pair.get("statistic", "p50")
        rows.append(
            {
                "check": c.get("label") or name,
                "mode": pair.get("mode"),
                "statistic": stat,
                "tool_ms": pair["tool"][f"{stat}_ms"],
                "untraced_ms": pair["untraced_client"][f"{stat}_ms"],
                "traced_ms": pair["traced"][f"{stat}_ms"],
                "traced_ratio": _ratio_text(_pair(pair, "ratio"), _pair(pair, "ratio_ci")),
                "untraced_ratio": _ratio_text(
                    _pair(pair, "untraced_ratio"), _pair(pair, "untraced_ratio_ci")
                ),
                "finding": like_for_like_finding(pair),
                "agrees": bool(pair.get("agrees")),
            }
        )
    return pd.DataFrame(rows)
