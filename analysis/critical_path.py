"""Critical paths, two modes (see analysis/README.md, "Critical path modes").

`jaeger`: exactly Jaeger UI's algorithm (jaeger-ui CriticalPath, 2026-08): orphans are
roots, a PRODUCER parent's CONSUMER child is pruned with its subtree, links are
ignored, children are clipped to their (clipped) parent, the walk follows the
last-finishing child and walks back to the child that finished before the
current one started.

`event`: the same walk, started at a delivery (a subscriber's receive span) and
climbing the *event* tree, where a span's parent is its parent span or, when that
is missing, a span it links to in the same trace. Nothing is pruned or clipped at
the end, so the path crosses PRODUCER→CONSUMER edges and async continuations
(children that start after their parent ended) and runs from the root's start
to the delivery's end; time covered by no span is a gap named `wait:<next hop>`.

Both walks are vectorised over all walkers (roots or deliveries) at once: one
numpy step per section. `jaeger_reference` and `event_reference` are plain
per-trace implementations the tests compare the vectorised walk with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hopscope.core.attributes import wait_hop

from .search import segmented_search
from .span_arrays import CONSUMER, PRODUCER, SpanArrays
from .tree import Children, children_csr, levels


@dataclass
class Sections:
    """Critical-path sections in emission order (per walker backwards in time)."""

    walker: np.ndarray  # int64 index of the walker (root or delivery)
    span: np.ndarray  # int64 span index, -1 for a gap
    start: np.ndarray  # int64 ns
    end: np.ndarray
    label: np.ndarray  # int32: hop code, or n_hops + hop code of the next hop for a gap


def jaeger_tree(
    sa: SpanArrays, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prune and clip like jaeger-ui's cpspan + sanitizeOverFlowingChildren; returns (start, end, kept)."""
    parent = sa.parent
    cs = start.copy()
    ce = end.copy()
    kept = np.zeros(sa.n, dtype=bool)
    for d, level in enumerate(levels(parent, np.ones(sa.n, dtype=bool))):
        if d == 0:
            kept[level] = True
            continue
        p = parent[level]
        ok = kept[p] & ~((sa.kind[p] == PRODUCER) & (sa.kind[level] == CONSUMER))
        s, e, ps, pe = cs[level], ce[level], cs[p], ce[p]
        after = s >= ps
        ok &= np.where(after, s < pe, e > ps)
        new_s = np.where(after, s, ps)
        new_e = np.minimum(e, pe)
        kept[level] = ok
        cs[level] = np.where(ok, new_s, s)
        ce[level] = np.where(ok, new_e, e)
    return cs, ce, kept


def event_tree(
    sa: SpanArrays, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Event tree with starts clipped to the parent's start; returns (parent, start, end, reachable)."""
    parent = sa.event_parent
    cs = start.copy()
    ce = end.copy()
    reach = np.zeros(sa.n, dtype=bool)
    for d, level in enumerate(sa.event_levels):
        reach[level] = True
        if d:
            cs[level] = np.maximum(cs[level], cs[parent[level]])
            ce[level] = np.maximum(ce[level], cs[level])
    return parent, cs, ce, reach


def _sync_children(
    sa: SpanArrays, parent: np.ndarray, start: np.ndarray, end: np.ndarray, member: np.ndarray
) -> Children:
    """Children a parent can have waited on: started before it ended, not a CONSUMER of a PRODUCER."""
    p = np.where(parent >= 0, parent, 0)
    sync = (
        member
        & (parent >= 0)
        & (start < end[p])
        & ~((sa.kind[p] == PRODUCER) & (sa.kind == CONSUMER))
        & (sa.parent == parent)  # a span attached only through a link is never waited on
    )
    return children_csr(parent, sync, end, -start)


Sink = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def walk(
    parent: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    kids: Children,
    hop: np.ndarray,
    n_hops: int,
    init: np.ndarray,
    *,
    split_gaps: bool,
    sink: Sink | None = None,
) -> Sections | None:
    """Run the last-finishing-child walk for every walker in `init` at once.

    Sections are returned, or, with `sink`, handed to it step by step as
    sink(walker, span, start, end, label); one call never names a walker twice, and a
    walker's later calls hold earlier sections.
    """
    child_end = end[kids.order]
    order_ext = np.append(kids.order, -1)  # so an empty child list still indexes
    w = np.arange(len(init), dtype=np.int64)
    cur = init.astype(np.int64)
    t = end[cur].copy()
    incl = np.ones(len(cur), dtype=bool)
    prev_label = np.full(len(cur), -1, np.int32)
    out: list[tuple[np.ndarray, ...]] = []
    emit_to = sink if sink is not None else (lambda *cols: out.append(cols))
    while len(cur):
        lo, hi = kids.lo[cur], kids.hi[cur]
        if incl.all():
            pos = segmented_search(child_end, lo, hi, t, side="right")
        else:
            pos = np.empty(len(cur), np.int64)
            i_in, i_ex = np.flatnonzero(incl), np.flatnonzero(~incl)
            pos[i_in] = segmented_search(child_end, lo[i_in], hi[i_in], t[i_in], side="right")
            pos[i_ex] = segmented_search(child_end, lo[i_ex], hi[i_ex], t[i_ex], side="left")
        has = pos > lo
        lfc = np.where(has, order_ext[np.maximum(pos - 1, 0)], -1)
        end_cur = end[cur]
        a = np.where(has, end[np.maximum(lfc, 0)], start[cur])
        b = t
        if split_gaps:
            own_b = np.minimum(b, end_cur)
            emit = own_b > a
            gap_a = np.maximum(a, end_cur)
            gap = b > gap_a
            gi = np.flatnonzero(gap)
            if len(gi):
                emit_to(w[gi], np.full(len(gi), -1), gap_a[gi], b[gi], n_hops + prev_label[gi])
            ei = np.flatnonzero(emit)
            if len(ei):
                hop_ei = hop[cur[ei]]
                emit_to(w[ei], cur[ei], a[ei], own_b[ei], hop_ei)
                prev_label[ei] = hop_ei
        else:
            ei = np.flatnonzero(b > a)
            if len(ei):
                emit_to(w[ei], cur[ei], a[ei], b[ei], hop[cur[ei]])
        nxt = np.where(has, lfc, parent[cur])
        t = a  # the child's end where one was followed, else this span's start
        incl = has
        alive = nxt >= 0
        w, cur, t, incl, prev_label = w[alive], nxt[alive], t[alive], incl[alive], prev_label[alive]
    if sink is not None:
        return None
    if not out:
        z = np.zeros(0, np.int64)
        return Sections(z, z, z, z, z.astype(np.int32))
    cols = [np.concatenate([o[i] for o in out]) for i in range(5)]
    return Sections(
        walker=cols[0].astype(np.int64),
        span=cols[1].astype(np.int64),
        start=cols[2].astype(np.int64),
        end=cols[3].astype(np.int64),
        label=cols[4].astype(np.int32),
    )


def jaeger_paths(
    sa: SpanArrays, start: np.ndarray | None = None, end: np.ndarray | None = None
) -> tuple[Sections, np.ndarray]:
    """Jaeger-mode critical paths of every root of every trace; returns (sections, roots)."""
    start = sa.start if start is None else start
    end = sa.end if end is None else end
    cs, ce, kept = jaeger_tree(sa, start, end)
    # LFC search needs children ordered by end; ties keep the earliest start (jaeger-ui strict `>`).
    kids = children_csr(sa.parent, kept, ce, -cs)
    roots = np.flatnonzero(kept & (sa.parent < 0))
    roots = roots[np.lexsort((cs[roots], sa.trace[roots]))]
    sec = walk(sa.parent, cs, ce, kids, sa.hop, len(sa.hop_names), roots, split_gaps=False)
    assert sec is not None
    return sec, roots


def event_paths(
    sa: SpanArrays,
    targets: np.ndarray,
    start: np.ndarray | None = None,
    end: np.ndarray | None = None,
    sink: Sink | None = None,
) -> Sections | None:
    """Event-mode critical paths ending at each target span (one walker per target)."""
    start = sa.start if start is None else start
    end = sa.end if end is None else end
    parent, cs, ce, reach = event_tree(sa, start, end)
    kids = _sync_children(sa, parent, cs, ce, reach)
    del reach
    return walk(parent, cs, ce, kids, sa.hop, len(sa.hop_names), targets, split_gaps=True, sink=sink)


# ---------------------------------------------------------------------------------------------
# Per-trace reference implementations (plain Python; the oracle for the vectorised walk).


@dataclass
class RefSpan:
    span_id: str
    parent_id: str | None
    start: int
    end: int
    kind: str = "INTERNAL"
    label: str = ""
    link_ids: tuple[str, ...] = ()


def jaeger_reference(spans: list[RefSpan]) -> list[tuple[str, int, int]]:
    """Jaeger UI's critical path of one trace: [(span_id, section_start, section_end)], latest first."""
    by_id = {s.span_id: s for s in spans}
    order = sorted(range(len(spans)), key=lambda i: spans[i].start)
    kids: dict[str | None, list[RefSpan]] = {}
    for i in order:
        s = spans[i]
        key = s.parent_id if s.parent_id in by_id else None
        kids.setdefault(key, []).append(s)
    times: dict[str, tuple[int, int]] = {}
    parent_of: dict[str, str | None] = {}

    def visit(s: RefSpan, parent: RefSpan | None) -> None:
        if parent is not None:
            if parent.kind == "PRODUCER" and s.kind == "CONSUMER":
                return
            ps, pe = times[parent.span_id]
            cs, ce = s.start, s.end
            if cs >= ps:
                if cs >= pe:
                    return
                ce = min(ce, pe)
            else:
                if ce <= ps:
                    return
                cs, ce = ps, min(ce, pe)
            times[s.span_id] = (cs, ce)
            parent_of[s.span_id] = parent.span_id
        else:
            times[s.span_id] = (s.start, s.end)
            parent_of[s.span_id] = None
        for c in kids.get(s.span_id, []):
            visit(c, s)

    roots = kids.get(None, [])
    for r in roots:
        visit(r, None)
    kept_kids = {sid: [c for c in kids.get(sid, []) if c.span_id in times] for sid in times}
    out: list[tuple[str, int, int]] = []
    for r in roots:
        sid: str | None = r.span_id
        t: int | None = None
        while sid is not None:
            s_start, s_end = times[sid]
            best = None
            for c in kept_kids[sid]:
                ce = times[c.span_id][1]
                if (t is None or ce < t) and (best is None or ce > times[best][1]):
                    best = c.span_id
            if best is not None:
                a, b = times[best][1], s_end if t is None else t
                if a != b:
                    out.append((sid, a, b))
                sid, t = best, None
            else:
                a, b = s_start, s_end if t is None else t
                if a != b:
                    out.append((sid, a, b))
                sid, t = parent_of[sid], s_start
    return out


def event_reference(spans: list[RefSpan], target_id: str) -> list[tuple[str, int, int]]:
    """Event-mode path of one trace ending at `target_id`: [(label, start, end)], latest first.

    Gaps are labelled `wait:<label of the next section>`.
    """
    by_id = {s.span_id: s for s in spans}
    parent: dict[str, str | None] = {}
    for s in spans:
        p = s.parent_id if s.parent_id in by_id else None
        if p is None:
            p = next((lid for lid in s.link_ids if lid in by_id and lid != s.span_id), None)
        parent[s.span_id] = p
    cs: dict[str, int] = {}
    ce: dict[str, int] = {}

    def clip(sid: str, seen: frozenset[str] = frozenset()) -> None:
        if sid in cs:
            return
        s = by_id[sid]
        p = parent[sid]
        if p is None or p in seen:
            cs[sid], ce[sid] = s.start, s.end
            return
        clip(p, seen | {sid})
        cs[sid] = max(s.start, cs[p])
        ce[sid] = max(s.end, cs[sid])

    for s in spans:
        clip(s.span_id)

    def sync_kids(sid: str) -> list[RefSpan]:
        p = by_id[sid]
        return [
            c
            for c in spans
            if c.parent_id == sid
            and parent[c.span_id] == sid
            and cs[c.span_id] < ce[sid]
            and not (p.kind == "PRODUCER" and c.kind == "CONSUMER")
        ]

    out: list[tuple[str, int, int]] = []
    prev: str | None = None
    sid: str | None = target_id
    t = ce[target_id]
    inclusive = True
    while sid is not None:
        cands = [c for c in sync_kids(sid) if (ce[c.span_id] <= t if inclusive else ce[c.span_id] < t)]
        best = None
        for c in sorted(cands, key=lambda c: (ce[c.span_id], -cs[c.span_id])):
            best = c
        label = by_id[sid].label
        a = ce[best.span_id] if best is not None else cs[sid]
        own_b = min(t, ce[sid])
        gap_a = max(a, ce[sid])
        if t > gap_a:
            out.append((wait_hop(prev), gap_a, t))
        if own_b > a:
            out.append((label, a, own_b))
            prev = label
        if best is not None:
            sid, t, inclusive = best.span_id, ce[best.span_id], True
        else:
            sid, t, inclusive = parent[sid], cs[sid], False
    return out
