"""Breakage injected into generated spans (orphans, missing hops, duplicate ids, clock skew),
counted exactly so the truth can state it."""

from __future__ import annotations

import numpy as np

from .model import NS, Breakage, PairSpec


def inject(
    spans: dict[str, np.ndarray],
    b: Breakage,
    rng: np.random.Generator,
    n: int,
    chain: list[np.ndarray],
    rpc_servers: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    pair: PairSpec,
) -> tuple[dict[str, int], int]:
    """Inject breakage in place (marks `drop`, re-parents, shifts) and count it exactly."""
    total = len(spans["id"])
    spans["drop"] = np.zeros(total, bool)
    spans["dup"] = np.zeros(total, bool)
    counts = {
        "orphan_spans": 0,
        "missing_hop_events": 0,
        "duplicate_span_ids": 0,
        "clock_skew_corrections": 0,
        "orphan_events": 0,
    }
    pool = rng.permutation(n)
    k_orphan = round(b.orphan_rate * n)
    k_missing = round(b.missing_hop_rate * n)
    k_dup = round(b.duplicate_rate * n)
    # Chain spans that have a successor span in the prefix chain (so dropping them leaves a child).
    droppable = chain[:-1]
    missing_truth = 0
    if droppable:
        parent = spans["parent"]
        orph_ev = pool[:k_orphan]
        miss_ev = pool[k_orphan : k_orphan + k_missing]
        for evs, kind in ((orph_ev, "orphan"), (miss_ev, "missing")):
            which = rng.integers(0, len(droppable), len(evs))
            for ev, w in zip(evs.tolist(), which.tolist(), strict=True):
                victim = droppable[w][ev]
                spans["drop"][victim] = True
                child = droppable[w + 1][ev] if w + 1 < len(droppable) else chain[-1][ev]
                kids = np.flatnonzero(parent == victim)
                if kind == "orphan":
                    counts["orphan_spans"] += len(kids)
                    counts["orphan_events"] += 1
                else:
                    parent[kids] = parent[victim]
                    counts["missing_hop_events"] += 1
                del child
                missing_truth += 1
    dup_ev = pool[k_orphan + k_missing : k_orphan + k_missing + k_dup]
    spans["dup"][dup_ev] = True  # the root span of the event (ids 0..n-1 are roots)
    counts["duplicate_span_ids"] = len(dup_ev)
    if rpc_servers and b.skew_rate > 0:
        sid, pre, evs = rpc_servers[0]
        k = round(b.skew_rate * len(sid))
        pick = rng.choice(len(sid), k, replace=False)
        victims = sid[pick]
        touched = np.zeros(n, bool)
        touched[spans["event"][spans["drop"]]] = True
        ok = ~touched[evs[pick]]
        victims, pick = victims[ok], pick[ok]
        shift = pre[pick] + np.rint(rng.uniform(*b.skew_ms, len(pick)) * NS).astype(np.int64)
        spans["start"][victims] -= shift
        spans["end"][victims] -= shift
        counts["clock_skew_corrections"] = len(victims)
    return counts, missing_truth
