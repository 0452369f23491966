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

import numpy as np
import pandas as pd

from hopscope.core.attributes import WAIT_PREFIX

from . import kernels
from .critical_path import event_paths
from .span_arrays import SpanArrays


@dataclass
class Deliveries:
    target: np.ndarray  # span index of the delivery span
    trace: np.ndarray  # trace code
    subscriber: np.ndarray  # object: subscriber name, None when the pair has no subscribers
    root: np.ndarray  # span index of the root above the target (-1 if none)
    valid: np.ndarray  # bool: the path reaches a true root (no orphan / cycle on the way)


@dataclass
class HopValues:
    """One row per delivery × label on the critical path, grouped by stack × workload pair
    (rows pair_rows[p]:pair_rows[p + 1] are pair p's), by delivery within a pair."""

    delivery: np.ndarray  # int64 index into Deliveries
    label: np.ndarray  # int32 label code (see label_names)
    value_ns: np.ndarray  # int64 time on the path
    offset_ns: np.ndarray  # int64 first section start − root start
    label_names: np.ndarray  # object: hop names, then "wait:<hop>" names
    e2e_ns: np.ndarray  # per delivery: Σ contributions (= end − root start)
    pair_rows: np.ndarray  # int64, n_pairs + 1 row bounds


def pair_codes(sa: SpanArrays) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """A (stack, workload) code per trace and the list of pairs (sorted by name; codes index it)."""
    # hashed, not sorted: a million traces name only a handful of stacks and workloads
    s_code, s_names = pd.factorize(sa.trace_stack.astype(object))
    w_code, w_names = pd.factorize(sa.trace_workload.astype(object))
    combined = s_code.astype(np.int64) * max(len(w_names), 1) + w_code
    seen = (
        np.flatnonzero(np.bincount(combined, minlength=len(s_names) * len(w_names))) if len(combined) else []
    )
    by_name = sorted((str(s_names[c // len(w_names)]), str(w_names[c % len(w_names)]), int(c)) for c in seen)
    code_of = np.zeros(len(s_names) * len(w_names), np.int64)
    for i, (_, _, c) in enumerate(by_name):
        code_of[c] = i
    return code_of[combined], [(stack, workload) for stack, workload, _ in by_name]


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
    root = sa.event_top[target]
    valid = (root >= 0) & ~sa.has_parent_id[np.maximum(root, 0)]
    names = np.append(sa.subscriber_names, None).astype(object)
    sub = names[np.where(sa.subscriber[target] >= 0, sa.subscriber[target], len(sa.subscriber_names))]
    return Deliveries(target=target, trace=sa.trace[target], subscriber=sub, root=root, valid=valid)


def hop_values(
    sa: SpanArrays,
    dl: Deliveries,
    start: np.ndarray,
    end: np.ndarray,
    pair_of_delivery: np.ndarray,
    n_pairs: int,
) -> HopValues:
    """Walk every valid delivery's event path at once and sum sections per (delivery, label)."""
    walkers = np.flatnonzero(dl.valid)
    # walked pair by pair, so each pair's rows come out together: the statistics slice them
    # instead of comparing and gathering all ~14 M rows per pair
    by_pair = np.argsort(pair_of_delivery[walkers], kind="stable")
    walkers = walkers[by_pair]
    first_walker = np.searchsorted(pair_of_delivery[walkers], np.arange(n_pairs + 1))
    # one Python string per hop name, not np.char.add: a fixed-width copy of every name is as
    # wide as the longest one
    waits = np.array([WAIT_PREFIX + str(h) for h in sa.hop_names], dtype=object)
    label_names = np.concatenate([sa.hop_names.astype(object), waits])
    origin = start[np.maximum(dl.root, 0)]  # each delivery's root start
    if kernels.AVAILABLE:
        # the kernel names rows by delivery and gives offsets from the origin itself
        d, label, value, offset, path, rows = kernels.event_path_sums(
            sa, dl.target[walkers], start, end, len(label_names), ids=walkers, origin=origin[walkers]
        )
        pair_rows = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])[first_walker]
        e2e = np.zeros(len(dl.target), np.int64)
        e2e[walkers] = path
    else:
        sums = PathSums(len(walkers), len(label_names))
        event_paths(sa, dl.target[walkers], start, end, sink=sums.add)
        d, label, value, first = sums.result()
        pair_rows = np.searchsorted(d, first_walker)  # the walker index d ascends
        d = walkers[d]
        offset = first - origin[d]
        # float64 sums are exact here: a delivery's total stays far below 2**53 ns (104 days)
        e2e = np.rint(np.bincount(d, weights=value, minlength=len(dl.target))).astype(np.int64)
    return HopValues(
        delivery=d,
        label=label,
        value_ns=value,
        offset_ns=offset,
        label_names=label_names,
        e2e_ns=e2e,
        pair_rows=pair_rows.astype(np.int64),
    )


class PathSums:
    """Per (walker, label): total time on the path and first section start, summed as the walk goes.

    A walkers × labels table when it is small enough (no section is kept); otherwise the
    sections are kept and summed by sorting at the end.
    """

    #: largest table (cells of 16 bytes)
    DENSE_CELLS = 1 << 25

    def __init__(self, n_walkers: int, n_labels: int) -> None:
        self.n_labels = n_labels
        self.dense = n_walkers * n_labels <= self.DENSE_CELLS
        if self.dense:
            self.total = np.zeros(n_walkers * n_labels, np.int64)
            self.first = np.full(n_walkers * n_labels, _NONE, np.int64)
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(
        self, walker: np.ndarray, span: np.ndarray, a: np.ndarray, b: np.ndarray, label: np.ndarray
    ) -> None:
        if not self.dense:
            self.parts.append((walker, label, a, b))
            return
        # one call names each walker once, so the keys are unique and fancy updates are exact;
        # a walker's later sections are earlier, so the last start written is the first one
        key = walker * self.n_labels + label
        self.total[key] += b - a
        self.first[key] = a

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(walker, label int32, total ns, first start ns), ordered by walker then label."""
        if self.dense:
            hit = np.flatnonzero(self.first != _NONE)
            value, first = self.total[hit], self.first[hit]
            self.total = self.first = np.zeros(0, np.int64)
            return hit // self.n_labels, (hit % self.n_labels).astype(np.int32), value, first
        if not self.parts:
            z = np.zeros(0, np.int64)
            return z, z.astype(np.int32), z, z
        walker, label, a, b = (np.concatenate([p[i] for p in self.parts]) for i in range(4))
        self.parts = []
        key = walker.astype(np.int64) * self.n_labels + label
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(ks)) + 1])
        hit = ks[starts]
        value = np.add.reduceat((b - a)[order], starts)
        first = np.minimum.reduceat(a[order], starts)
        return hit // self.n_labels, (hit % self.n_labels).astype(np.int32), value, first


_NONE = np.iinfo(np.int64).max  # "no section": a section never starts there
