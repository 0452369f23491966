"""Pass 1 of a partition: what one partition's analysis sends back, and how partitions merge.

A partition's `Run` runs the single-process analysis unchanged on its whole traces; from its
per-pair deliveries × hops matrices this keeps, per stack × workload, only mergeable figures:
moments and a DDSketch per hop and of the end-to-end time, the co-moments behind the
variance shares, path totals (critical-path shares), the first-section offsets (the hop
order), the hop transitions (the graph) and the additive data-quality counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from ddsketch import DDSketch

from ..run import Run
from ..stats import NS_PER_MS, PairMatrix
from . import sketch
from .moments import CoMoments, Moments

Pair = tuple[str, str]

#: quality() entries that are not additive counts: named here, merged on their own
_NOT_COUNTS = ("stack", "workload", "missing_expected_hops_by_hop", "unattributed")


def _added(a: Counter, b: Counter) -> Counter:
    """a + b keeping zero counts (Counter's `+` drops them, and a zero count is a figure)."""
    out = Counter(a)
    out.update(b)
    return out


@dataclass
class HopSummary:
    """One hop of one pair, over the deliveries whose path holds it (values in ms)."""

    values: Moments
    sketch: DDSketch
    total_ns: float  # Σ of the hop's time over the pair's deliveries: crit_share's numerator
    offset_ns: float  # Σ of its first sections' offsets from the root start: the hop order

    def merge(self, other: HopSummary) -> HopSummary:
        return HopSummary(
            self.values.merge(other.values),
            sketch.merged([self.sketch, other.sketch]),
            self.total_ns + other.total_ns,
            self.offset_ns + other.offset_ns,
        )


@dataclass
class PairSummary:
    e2e: Moments  # ms, per analysed delivery (Σ of its path)
    e2e_sketch: DDSketch
    total_ns: float  # Σ of the deliveries' path times: crit_share's denominator
    co: CoMoments  # ns
    hops: dict[str, HopSummary]
    transitions: Counter[tuple[str | None, str]]
    counts: Counter[str]  # quality(): additive counts
    missing_by_hop: Counter[str]
    unattributed: Moments = field(default_factory=Moments)
    unattributed_sketch: DDSketch = field(default_factory=sketch.new_sketch)
    with_ledger: bool = False

    def merge(self, other: PairSummary) -> PairSummary:
        hops = dict(self.hops)
        for label, h in other.hops.items():
            hops[label] = hops[label].merge(h) if label in hops else h
        return PairSummary(
            self.e2e.merge(other.e2e),
            sketch.merged([self.e2e_sketch, other.e2e_sketch]),
            self.total_ns + other.total_ns,
            self.co.merge(other.co),
            hops,
            _added(self.transitions, other.transitions),
            _added(self.counts, other.counts),
            _added(self.missing_by_hop, other.missing_by_hop),
            self.unattributed.merge(other.unattributed),
            sketch.merged([self.unattributed_sketch, other.unattributed_sketch]),
            self.with_ledger or other.with_ledger,
        )

    def hop_order(self) -> list[str]:
        """Hops by mean first-section offset (the single-process path's column order; ties by name)."""
        return sorted(self.hops, key=lambda h: (self.hops[h].offset_ns / max(self.hops[h].values.n, 1), h))


@dataclass
class PartitionSummary:
    pairs: dict[Pair, PairSummary] = field(default_factory=dict)
    truncated: Counter[str] = field(default_factory=Counter)
    spans: int = 0

    def merge(self, other: PartitionSummary) -> PartitionSummary:
        pairs = dict(self.pairs)
        for pair, s in other.pairs.items():
            pairs[pair] = pairs[pair].merge(s) if pair in pairs else s
        return PartitionSummary(pairs, _added(self.truncated, other.truncated), self.spans + other.spans)


def _pair_summary(
    run: Run, pair: Pair, m: PairMatrix, quality: dict, e2e_unattributed: np.ndarray | None
) -> PairSummary:
    e_ns = m.values.sum(1)
    hops = {}
    for j, label in enumerate(m.labels):
        present = m.present[:, j]
        v = m.values[present, j] / NS_PER_MS
        hops[label] = HopSummary(
            Moments.of(v),
            sketch.of_values(v),
            float(m.values[:, j].sum()),
            float(m.mean_offset_ns[j]) * len(v),
        )
    t = run.transitions(*pair)
    transitions: Counter[tuple[str | None, str]] = Counter()
    for prev, hop, n in zip(t["prev"], t["hop"], t["n"], strict=True):
        transitions[(None if prev is None else str(prev), str(hop))] += int(n)
    counts: Counter[str] = Counter(
        {k: int(v) for k, v in quality.items() if k not in _NOT_COUNTS and not isinstance(v, dict)}
    )
    out = PairSummary(
        Moments.of(e_ns / NS_PER_MS),
        sketch.of_values(e_ns / NS_PER_MS),
        float(e_ns.sum()),
        CoMoments.of(m.labels, m.values),
        hops,
        transitions,
        counts,
        Counter(quality.get("missing_expected_hops_by_hop") or {}),
    )
    if e2e_unattributed is not None:
        u = e2e_unattributed[~np.isnan(e2e_unattributed)]
        out.unattributed, out.unattributed_sketch, out.with_ledger = Moments.of(u), sketch.of_values(u), True
    return out


def summarise(run: Run) -> tuple[PartitionSummary, dict[Pair, tuple[list[str], np.ndarray]]]:
    """The partition's pass-1 summary and, per pair, (hop labels, deliveries × hops matrix in ns)
    for the tail pass."""
    matrices = run.pair_matrices()
    quality = run.quality()["pairs"]
    e2e = run.e2e() if run.ledger is not None else None
    out = PartitionSummary(truncated=Counter(run.truncated))
    kept: dict[Pair, tuple[list[str], np.ndarray]] = {}
    for pair in run.pairs():
        q = quality.get(f"{pair[0]}/{pair[1]}", {})
        m = matrices.get(pair)
        if m is None:
            continue
        unattributed = None
        if e2e is not None and "unattributed_ms" in e2e.columns:
            sel = (e2e["stack"] == pair[0]) & (e2e["workload"] == pair[1])
            unattributed = e2e.loc[sel, "unattributed_ms"].to_numpy(dtype=float)
        out.pairs[pair] = _pair_summary(run, pair, m, q, unattributed)
        out.spans += int(q.get("spans", 0))
        kept[pair] = (list(m.labels), m.values)
    return out, kept
