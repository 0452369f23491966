"""A distributed analysis' files: the tables in the single-process path's names and columns
(hop_stats, e2e_summary, tail_growth .parquet, quality.json, one GraphML per pair) and a short
report (report.md / report.html) that says which engine and which accuracy produced them.
All or nothing, as the single-process path writes (`outputs.staged_outputs`)."""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

import networkx as nx
import pandas as pd

from hopscope.core.rundir import GRAPH_FILES, QUALITY, REPORT_HTML, REPORT_MD, graph_file, table_file

from ..outputs import staged_outputs
from .engine import DistributedAnalysis

#: the tables a distributed analysis writes (per-delivery tables — e2e, hop_values — stay on the
#: workers: only summaries travel)
TABLES = ("hop_stats", "e2e_summary", "tail_growth")


def _frames(a: DistributedAnalysis) -> dict[str, pd.DataFrame]:
    r = a.results
    return {"hop_stats": r.hop_stats, "e2e_summary": r.e2e_summary, "tail_growth": r.tail_growth}


def _engine_lines(a: DistributedAnalysis) -> list[str]:
    e = a.engine
    lines = [
        f"engine: {e.engine}, {e.workers} worker(s), {e.partitions} partitions by trace, {e.spans:,} spans",
        f"quantiles: {e.accuracy}; counts, means, std, max and the variance / tail / critical-path "
        "shares exact",
    ]
    if a.results.approximate_tails:
        lines.append(
            "tail thresholds from the sketch (the exact order statistics were not in the band): "
            + ", ".join(a.results.approximate_tails)
        )
    return lines


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def _md_table(df: pd.DataFrame) -> str:
    if not len(df):
        return "(none)"
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _markdown(a: DistributedAnalysis, title: str) -> str:
    out = [f"# {title}", ""]
    out += [f"- {line}" for line in _engine_lines(a)]
    out.append(f"- generated: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    for name, df in _frames(a).items():
        out += ["", f"## {name}", "", _md_table(df)]
    return "\n".join(out) + "\n"


def _html(a: DistributedAnalysis, title: str) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title></head><body>",
        f"<h1>{html.escape(title)}</h1><ul>",
        *[f"<li>{html.escape(line)}</li>" for line in _engine_lines(a)],
        "</ul>",
    ]
    for name, df in _frames(a).items():
        parts += [f"<h2>{html.escape(name)}</h2>", df.to_html(index=False, float_format="{:.4g}".format)]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_distributed(a: DistributedAnalysis, out_dir: Path) -> list[Path]:
    """Write the tables, quality.json, the graphs and the report into OUT_DIR; the paths written."""
    out_dir = Path(out_dir)
    title = f"hopscope report — {a.source.description} (distributed)"
    stale = (GRAPH_FILES, table_file("e2e"), table_file("jaeger_paths"), table_file("jaeger_stats"))
    with staged_outputs(out_dir, stale=stale, last=(REPORT_MD, REPORT_HTML)) as tmp:
        names = []
        for name, df in _frames(a).items():
            df.to_parquet(tmp / table_file(name), index=False)
            names.append(table_file(name))
        (tmp / QUALITY).write_text(json.dumps(a.results.quality, indent=2, sort_keys=True))
        names.append(QUALITY)
        for (stack, workload), g in a.results.graphs.items():
            nx.write_graphml(g, tmp / graph_file(stack, workload))
            names.append(graph_file(stack, workload))
        (tmp / REPORT_MD).write_text(_markdown(a, title), encoding="utf-8")
        (tmp / REPORT_HTML).write_text(_html(a, title), encoding="utf-8")
        names += [REPORT_MD, REPORT_HTML]
    return [out_dir / n for n in names]
