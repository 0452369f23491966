"""The merged summaries as the single-process path's tables: hop_stats, e2e_summary,
tail_growth, quality and the hop graphs, with the same columns (quantiles from the merged
sketches, everything else exact)."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd

from .. import graph
from ..quality import span_source_problems
from ..run import E2E_SUMMARY_COLUMNS, HOP_STATS_COLUMNS, TAIL_GROWTH_COLUMNS
from ..span_file import MAX_VALUE_BYTES
from ..stats import QUANTILES
from . import sketch
from .summaries import Pair, PairSummary, PartitionSummary
from .tails import GROWTH, TAILS, PairTail


@dataclass
class Results:
    hop_stats: pd.DataFrame
    e2e_summary: pd.DataFrame
    tail_growth: pd.DataFrame
    quality: dict
    graphs: dict[Pair, nx.DiGraph]
    #: tail shares whose threshold is the sketch's estimate (the band missed): "stack/workload tail"
    approximate_tails: list[str] = field(default_factory=list)


def _distribution(m: object, sk: object) -> dict[str, float]:
    from .moments import Moments

    assert isinstance(m, Moments)
    if m.n == 0:
        return {"mean_ms": np.nan, "std_ms": np.nan, **dict.fromkeys(QUANTILES, np.nan), "max_ms": np.nan}
    return {
        "mean_ms": m.mean,
        "std_ms": m.std,
        # a sketch's quantile is a bucket's representative: clipped to the exact extremes
        **{name: sketch.quantile(sk, q, m.min, m.max) for name, q in QUANTILES.items()},  # type: ignore[arg-type]
        "max_ms": m.max,
    }


def hop_rows(pair: Pair, s: PairSummary, shares: dict[str, np.ndarray]) -> list[dict[str, object]]:
    order = s.hop_order()
    rows = []
    for j, hop in enumerate(order):
        h = s.hops[hop]
        rows.append(
            {
                "stack": pair[0],
                "workload": pair[1],
                "hop": hop,
                "order": j,
                "count": h.values.n,
                **_distribution(h.values, h.sketch),
                "var_share": s.co.var_share(hop) if s.co.n else np.nan,
                **{key: float(shares[key][j]) for key in TAILS},
                "crit_share": h.total_ns / s.total_ns if s.total_ns > 0 else np.nan,
                "mean_offset_ms": h.offset_ns / max(h.values.n, 1) / 1e6,
            }
        )
    return rows


def growth_rows(pair: Pair, order: list[str], tail: PairTail) -> list[dict[str, object]]:
    return [
        {
            "stack": pair[0],
            "workload": pair[1],
            "hop": hop,
            "order": j,
            **{name: sketch.quantile(tail.growth[j], q) for name, q in GROWTH.items()},
        }
        for j, hop in enumerate(order)
        if tail.growth[j].count
    ]


def quality(
    merged: PartitionSummary,
    manifest: dict,
    ingest_report: dict,
    warmup_events: dict[Pair, int],
) -> dict:
    """quality.json as the single-process path writes it: counts summed over partitions; the
    unattributed time's quantiles from its merged sketch."""
    out: dict = {"pairs": {}}
    for pair in sorted(merged.pairs):
        s = merged.pairs[pair]
        entry: dict = {"stack": pair[0], "workload": pair[1], **{k: int(v) for k, v in s.counts.items()}}
        entry["missing_expected_hops_by_hop"] = {k: int(v) for k, v in s.missing_by_hop.items() if v}
        entry["warmup_events_excluded"] = int(warmup_events.get(pair, 0))
        if s.with_ledger:
            u = s.unattributed
            entry["unattributed"] = (
                {"n": 0}
                if u.n == 0
                else {
                    "n": u.n,
                    "mean_ms": u.mean,
                    "p50_ms": sketch.quantile(s.unattributed_sketch, 0.5, u.min, u.max),
                    "p99_ms": sketch.quantile(s.unattributed_sketch, 0.99, u.min, u.max),
                    "max_ms": u.max,
                    "min_ms": u.min,
                }
            )
        out["pairs"][f"{pair[0]}/{pair[1]}"] = entry
    out["span_sources"] = span_source_problems(manifest)
    out["ingest"] = {
        "malformed_records": int(sum((ingest_report.get("skipped") or {}).values())),
        "skipped": ingest_report.get("skipped") or {},
        "files": ingest_report.get("files"),
    }
    out["load"] = {"values_truncated": dict(merged.truncated), "max_value_chars": MAX_VALUE_BYTES}
    return out


def tables(
    merged: PartitionSummary,
    tails: dict[Pair, PairTail],
    shares: dict[Pair, dict[str, np.ndarray]],
    quality_doc: dict,
) -> Results:
    hop, e2e, growth = [], [], []
    graphs = {}
    for pair in sorted(merged.pairs):
        s = merged.pairs[pair]
        rows = hop_rows(pair, s, shares[pair])
        hop.extend(rows)
        e2e.append(
            {"stack": pair[0], "workload": pair[1], "count": s.e2e.n, **_distribution(s.e2e, s.e2e_sketch)}
        )
        if pair in tails:
            growth.extend(growth_rows(pair, s.hop_order(), tails[pair]))
        if rows:
            stats = pd.DataFrame(rows, columns=HOP_STATS_COLUMNS)
            transitions = pd.DataFrame(
                [{"prev": p, "hop": h, "n": n} for (p, h), n in s.transitions.items()],
                columns=["prev", "hop", "n"],
            )
            graphs[pair] = graph.build(pair[0], pair[1], stats, transitions)
    return Results(
        pd.DataFrame(hop, columns=HOP_STATS_COLUMNS),
        pd.DataFrame(e2e, columns=E2E_SUMMARY_COLUMNS),
        pd.DataFrame(growth, columns=TAIL_GROWTH_COLUMNS),
        quality_doc,
        graphs,
    )
