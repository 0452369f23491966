"""Deliveries and per-delivery hop contributions (the long table every statistic comes from).

A delivery is one subscriber receive span (it carries `hopscope.subscriber`); in a
stack × workload where no span names a subscriber, each trace's last-ending span
is its one delivery. A delivery's end-to-end time is its end minus its root's
start, and each hop's contribution is the time it occupies on the delivery's
event-mode critical path, so the contributions of a delivery add up to its
end-to-end time exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from .critical_path import event_parent, event_paths
from .spans import SpanArrays
from .tree import levels, top_of

WAIT_PREFIX = "wait:"


@dataclass
class Deliveries:
    target: np.ndarray  # span index of the delivery span
    trace: np.ndarray  # trace code
    subscriber: np.ndarray  # object: subscriber name, None when the pair has no subscribers
    root: np.ndarray  # span index of the root above the target (-1 if none)
    valid: np.ndarray  # bool: the path reaches a true root (no orphan / cycle on the way)


@dataclass
class HopValues:
    """One row per delivery × label on the critical path."""

    delivery: np.ndarray  # int64 index into Deliveries
    label: np.ndarray  # int32 label code (see label_names)
    value_ns: np.ndarray  # int64 time on the path
    offset_ns: np.ndarray  # int64 first section start − root start
    label_names: np.ndarray  # object: hop names, then "wait:<hop>" names
    e2e_ns: np.ndarray  # per delivery: Σ contributions (= end − root start)


def pair_codes(sa: SpanArrays) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """A (stack, workload) code per trace and the list of pairs."""
    keys = np.char.add(np.char.add(sa.trace_stack.astype(str), "\x1f"), sa.trace_workload.astype(str))
    uniq, code = np.unique(keys, return_inverse=True)
    pairs = [tuple(k.split("\x1f", 1)) for k in uniq.tolist()]
    return code.astype(np.int64), pairs  # type: ignore[return-value]


def find_deliveries(sa: SpanArrays, pair_of_trace: np.ndarray, n_pairs: int, end: np.ndarray) -> Deliveries:
    is_sub = sa.subscriber >= 0
    pair_of_span = pair_of_trace[sa.trace]
    pair_has_subs = np.bincount(pair_of_span[is_sub], minlength=n_pairs) > 0
    sub_targets = np.flatnonzero(is_sub)
    # Pairs without subscribers: the trace's last-ending span (first one on ties).
    if len(sa.trace_lo):
        tmax = np.maximum.reduceat(end, sa.trace_lo)
        cand = np.flatnonzero((end == tmax[sa.trace]) & ~pair_has_subs[pair_of_span])
        _, first = np.unique(sa.trace[cand], return_index=True)
        last_targets = cand[first]
    else:
        last_targets = np.zeros(0, np.int64)
    target = np.concatenate([sub_targets, last_targets]).astype(np.int64)
    target.sort()
    parent = event_parent(sa)
    top = top_of(parent, levels(parent, np.ones(sa.n, dtype=bool)))
    root = top[target]
    valid = (root >= 0) & ~sa.has_parent_id[np.maximum(root, 0)]
    names = np.append(sa.subscriber_names, None).astype(object)
    sub = names[np.where(sa.subscriber[target] >= 0, sa.subscriber[target], len(sa.subscriber_names))]
    return Deliveries(target=target, trace=sa.trace[target], subscriber=sub, root=root, valid=valid)


def hop_values(sa: SpanArrays, dl: Deliveries, start: np.ndarray, end: np.ndarray) -> HopValues:
    """Walk every valid delivery's event path at once and sum sections per (delivery, label)."""
    walkers = np.flatnonzero(dl.valid)
    sec = event_paths(sa, dl.target[walkers], start, end)
    label_names = np.concatenate(
        [sa.hop_names, np.char.add(WAIT_PREFIX, sa.hop_names.astype(str)).astype(object)]
    )
    delivery = walkers[sec.walker]
    con = duckdb.connect()
    con.execute("SET enable_progress_bar=false")
    tbl = pa.table(
        {
            "d": delivery,
            "l": sec.label,
            "a": sec.start,
            "dur": sec.end - sec.start,
        }
    )
    con.register("sec", tbl)
    agg = con.sql("SELECT d, l, sum(dur)::BIGINT AS v, min(a) AS a0 FROM sec GROUP BY d, l").to_arrow_table()
    con.close()
    d = agg.column("d").to_numpy()
    root_start = start[np.maximum(dl.root, 0)]
    # float64 sums are exact here: a delivery's total stays far below 2**53 ns (104 days)
    e2e = np.rint(np.bincount(d, weights=agg.column("v").to_numpy(), minlength=len(dl.target))).astype(
        np.int64
    )
    return HopValues(
        delivery=d,
        label=agg.column("l").to_numpy().astype(np.int32),
        value_ns=agg.column("v").to_numpy(),
        offset_ns=agg.column("a0").to_numpy() - root_start[d],
        label_names=label_names,
        e2e_ns=e2e,
    )
