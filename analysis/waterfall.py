"""One delivery's spans as a waterfall: every span of its event on the event's time axis, in
Jaeger's row order, with the delivery's event-mode critical path and its wait gaps on them.

The path is `critical_path.event_paths` itself, run on the few traces asked for
(`span_arrays.select_traces`), so a waterfall marks exactly the sections the hop statistics
sum. A section lies on the span it belongs to; a gap (`wait:<hop>`) lies on the span whose
section follows it, the span whose hop names it. Per delivery, Σ critical_ms + Σ
wait_before_ms over its rows = its e2e.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .critical_path import event_paths
from .span_arrays import KIND_CODES, SpanArrays, select_traces
from .stats import NS_PER_MS

#: one row per span of the delivery's event (`Run.trace`, `Run.delivery_waterfalls`):
WATERFALL_COLUMNS = [
    # the delivery the rows belong to (the same on every row of one waterfall)
    "trace_id",  # the event's trace (a foreign consumer trace joined to its producer: the producer's)
    "stack",
    "workload",
    "event_id",
    "delivery",  # subscriber of the delivery whose path is marked (None: a pair without subscribers)
    "e2e_ms",  # that delivery's end − its root's start (NaN: its path reaches no true root)
    "warmup",  # the event is a warm-up event (its deliveries are in no figure)
    # the span
    "row",  # 0, 1, … top to bottom: depth first, children by start (Jaeger's order)
    "depth",  # in the event tree (a span's parent, else the span it links to)
    "span_id",
    "parent_span_id",  # None for a root, and for an orphan (its parent is not in the run)
    "link_span_id",  # a span of the same trace it links to (None: none)
    "service",
    "name",  # the span's own name
    "hop",  # hopscope.hop, else the name (foreign traces: their default hop)
    "kind",
    "subscriber",  # the span's own hopscope.subscriber (a delivery span)
    "is_delivery",  # the span is the delivery whose path is marked
    "start_ms",  # after the delivery's root started (clock-skew corrected, as every figure)
    "duration_ms",
    "end_ms",
    "clock_shift_ms",  # what the clock-skew correction moved the span by
    "on_critical_path",
    "critical_ms",  # the span's own time on the path (its self time there)
    "wait_before_ms",  # the `wait:<hop>` gap on the path right before the span's section
    "path_sections",  # [[start_ms, end_ms], …] the span's sections on the path
    "wait_sections",  # [[start_ms, end_ms], …] the gaps before them
]

KIND_NAMES = {code: name for name, code in KIND_CODES.items()}


@dataclass(frozen=True)
class Target:
    """One waterfall to build: a trace and, when it has one, the delivery whose path to mark."""

    trace: int  # trace code
    span: int = -1  # delivery span index (-1: the spans only, no path)
    root: int = -1  # the root above the delivery (-1: none)
    walkable: bool = False  # the delivery's path reaches a true root
    warmup: bool = False


def _name(names: np.ndarray, code: int) -> str | None:
    return str(names[code]) if 0 <= code < len(names) else None


def _row_order(parent: np.ndarray, start: np.ndarray) -> tuple[list[int], list[int]]:
    """Depth-first order of one trace's spans (local indices) and their depths: roots, then each
    span's children, both by start. Spans in a parent cycle come last, at depth 0."""
    n = len(parent)
    kids: list[list[int]] = [[] for _ in range(n)]
    for i in np.lexsort((np.arange(n), start)).tolist():
        if parent[i] >= 0:
            kids[int(parent[i])].append(i)
    order: list[int] = []
    depth = [0] * n
    seen = [False] * n
    stack = [i for i in np.lexsort((np.arange(n), start)).tolist() if parent[i] < 0][::-1]
    while stack:
        i = stack.pop()
        if seen[i]:
            continue
        seen[i] = True
        order.append(i)
        for k in reversed(kids[i]):
            depth[k] = depth[i] + 1
            stack.append(k)
    order += [i for i in range(n) if not seen[i]]
    return order, depth


@dataclass
class _PathMarks:
    """Per (walker, span) of the walked deliveries: time on the path, wait before, sections."""

    critical: dict[tuple[int, int], int]
    wait: dict[tuple[int, int], int]
    sections: dict[tuple[int, int], list[tuple[int, int]]]
    waits: dict[tuple[int, int], list[tuple[int, int]]]


def _marks(sub: SpanArrays, targets: np.ndarray, start: np.ndarray, end: np.ndarray) -> _PathMarks:
    marks = _PathMarks({}, {}, {}, {})
    if len(targets) == 0:
        return marks
    sec = event_paths(sub, targets, start, end)
    assert sec is not None
    order = np.lexsort((sec.start, sec.walker))
    walker, span = sec.walker[order].tolist(), sec.span[order].tolist()
    a, b = sec.start[order].tolist(), sec.end[order].tolist()
    for k in range(len(walker)):
        w, s = walker[k], span[k]
        if s >= 0:
            key = (w, s)
            marks.critical[key] = marks.critical.get(key, 0) + b[k] - a[k]
            marks.sections.setdefault(key, []).append((a[k], b[k]))
            continue
        # a gap belongs to the span of the section after it (its `wait:<hop>` names that hop)
        nxt = k + 1
        if nxt < len(walker) and walker[nxt] == w and span[nxt] >= 0:
            key = (w, span[nxt])
            marks.wait[key] = marks.wait.get(key, 0) + b[k] - a[k]
            marks.waits.setdefault(key, []).append((a[k], b[k]))
    return marks


def waterfalls(
    sa: SpanArrays, start: np.ndarray, end: np.ndarray, targets: list[Target]
) -> list[pd.DataFrame]:
    """One frame (WATERFALL_COLUMNS) per target, from the clock-skew-corrected `start` / `end`.
    All targets' paths are walked at once, on their traces only."""
    if not targets:
        return []
    traces = np.unique([t.trace for t in targets])
    sub, idx = select_traces(sa, traces)
    local_of = {int(t): k for k, t in enumerate(traces.tolist())}
    s_start, s_end = start[idx], end[idx]
    walked = [i for i, t in enumerate(targets) if t.walkable and t.span >= 0]
    walker_of = {i: w for w, i in enumerate(walked)}
    marks = _marks(sub, np.searchsorted(idx, [targets[i].span for i in walked]), s_start, s_end)
    event_parent = sub.event_parent
    ids = sub.span_ids_at(np.arange(sub.n))
    return [
        _frame(sub, ids, event_parent, s_start, s_end, local_of[t.trace], idx, t, walker_of.get(i, -1), marks)
        for i, t in enumerate(targets)
    ]


def _frame(
    sub: SpanArrays,
    ids: np.ndarray,
    event_parent: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    trace: int,
    idx: np.ndarray,
    t: Target,
    walker: int,
    marks: _PathMarks,
) -> pd.DataFrame:
    lo, hi = int(sub.trace_lo[trace]), int(sub.trace_hi[trace])
    span = np.searchsorted(idx, t.span) if t.span >= 0 else -1
    root = np.searchsorted(idx, t.root) if t.root >= 0 else -1
    origin = int(start[root]) if root >= 0 else int(start[lo:hi].min())
    local_parent = np.where(event_parent[lo:hi] >= 0, event_parent[lo:hi] - lo, -1)
    order, depth = _row_order(local_parent, start[lo:hi])

    def ms(ns: int) -> float:
        return (ns - origin) / NS_PER_MS

    rows = []
    for row, j in enumerate(order):
        i = lo + j
        key = (walker, i)
        parent, link = int(sub.parent[i]), int(sub.link_parent[i])
        sub_code = int(sub.subscriber[i])
        rows.append(
            {
                "row": row,
                "depth": depth[j],
                "span_id": ids[i],
                "parent_span_id": ids[parent] if parent >= 0 else None,
                "link_span_id": ids[link] if link >= 0 else None,
                "service": _name(sub.service_names, int(sub.service[i])),
                "name": _name(sub.hop_names, int(sub.name[i])),
                "hop": _name(sub.hop_names, int(sub.hop[i])),
                "kind": KIND_NAMES.get(int(sub.kind[i]), "UNSPECIFIED"),
                "subscriber": _name(sub.subscriber_names, sub_code),
                "is_delivery": i == span,
                "start_ms": ms(int(start[i])),
                "duration_ms": (int(end[i]) - int(start[i])) / NS_PER_MS,
                "end_ms": ms(int(end[i])),
                "clock_shift_ms": (int(start[i]) - int(sub.start[i])) / NS_PER_MS,
                "on_critical_path": marks.critical.get(key, 0) > 0,
                "critical_ms": marks.critical.get(key, 0) / NS_PER_MS,
                "wait_before_ms": marks.wait.get(key, 0) / NS_PER_MS,
                "path_sections": [[ms(a), ms(b)] for a, b in marks.sections.get(key, [])],
                "wait_sections": [[ms(a), ms(b)] for a, b in marks.waits.get(key, [])],
            }
        )
    head = {
        "trace_id": sub.trace_id_arrow[trace].as_py(),
        "stack": str(sub.trace_stack[trace]),
        "workload": str(sub.trace_workload[trace]),
        "event_id": sub.trace_event_arrow[trace].as_py(),
        "delivery": _name(sub.subscriber_names, int(sub.subscriber[span])) if span >= 0 else None,
        "e2e_ms": ms(int(end[span])) if span >= 0 and walker >= 0 else float("nan"),
        "warmup": t.warmup,
    }
    # column by column: from records pandas would turn the None of a missing id into NaN
    columns = {
        name: [head[name]] * len(rows) if name in head else [r[name] for r in rows]
        for name in WATERFALL_COLUMNS
    }
    return pd.DataFrame(
        {name: pd.Series(values, dtype=_DTYPES.get(name)) for name, values in columns.items()}
    )


#: the columns pandas must not guess: ids and names that may be None stay objects
_DTYPES = {
    name: object
    for name in (
        "trace_id",
        "event_id",
        "delivery",
        "span_id",
        "parent_span_id",
        "link_span_id",
        "service",
        "name",
        "hop",
        "kind",
        "subscriber",
        "path_sections",
        "wait_sections",
    )
}
