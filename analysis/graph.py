"""The hop graph of one stack × workload: checkpoints as nodes, hops as edges carrying their statistics."""

from __future__ import annotations

import math

import networkx as nx
import pandas as pd

START = "event.start"


def checkpoint(hop: str) -> str:
    return f"after:{hop}"


def build(stack: str, workload: str, stats: pd.DataFrame, transitions: pd.DataFrame) -> nx.DiGraph:
    """Each hop becomes the edge (checkpoint before it → checkpoint after it).

    The checkpoint before a hop is the one after its most frequent predecessor on
    the deliveries' paths (`transitions`: columns prev, hop, n; prev is None for a
    path's first hop), so fan-out branches become a tree, never one node per span.
    """
    g = nx.DiGraph(stack=stack, workload=workload)
    g.add_node(START, label="event start")
    pred: dict[str, str | None] = {}
    if len(transitions):
        best = transitions.sort_values("n", ascending=False).drop_duplicates("hop")
        pred = {r.hop: (None if pd.isna(r.prev) else r.prev) for r in best.itertuples()}
    for row in stats.sort_values("order").itertuples(index=False):
        hop = row.hop
        before = pred.get(hop)
        u = START if before is None else checkpoint(before)
        v = checkpoint(hop)
        g.add_node(v, label=f"after {hop}")
        attrs = {}
        for key, value in row._asdict().items():
            if key in ("stack", "workload"):
                continue
            if isinstance(value, float) and math.isnan(value):
                continue
            attrs[key] = value.item() if hasattr(value, "item") else value
        g.add_edge(u, v, **attrs)
    return g
