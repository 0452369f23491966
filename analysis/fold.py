"""Library spans folded into the hop that made them.

The contrib instrumentations (psycopg, redis, httpx) emit a span per library call
inside a hop span: `INSERT` inside `pg.insert`, `PUBLISH` inside `redis.publish`,
`GET` inside a point read. They carry no `hopscope.hop`; left alone, the name
fallback would turn each into a hop of its own and split the time of the hop
that contains it. So a span without `hopscope.hop` whose parent is a hop span (or
another such library span) is *folded*: it leaves the hop model, and whatever
named it as parent or link now points at its hop ("anchor"). The spans stay in
`spans.parquet` (and in Jaeger) for anyone who wants the detail.

Traces with no `hopscope.hop` at all (other tools' traces, the conformance cases)
have nothing to fold: their spans keep the name fallback.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .span_arrays import PER_SPAN_VALUES, SpanArrays
from .tree import levels


def library_spans(parent: np.ndarray, hop_attr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(folded mask, anchor): anchor is the nearest hop-attributed ancestor of a folded span, else itself."""
    n = len(parent)
    folded = np.zeros(n, dtype=bool)
    anchor = np.arange(n, dtype=np.int64)
    candidate = ~hop_attr & (parent >= 0)
    if not candidate.any():
        return folded, anchor
    for level in levels(parent, np.ones(n, dtype=bool))[1:]:
        p = parent[level]
        f = candidate[level] & (hop_attr[p] | folded[p])
        if f.any():
            folded[level[f]] = True
            anchor[level[f]] = anchor[p[f]]
    return folded, anchor


def fold_library_spans(sa: SpanArrays, hop_attr: np.ndarray) -> SpanArrays:
    """`sa` without its library spans; parents and links that named one name its anchor."""
    folded, anchor = library_spans(sa.parent, hop_attr)
    per_trace = np.bincount(sa.trace[folded], minlength=sa.n_traces)
    counts = {**sa.counts, "folded_library_spans": per_trace}
    if not folded.any():
        return dataclasses.replace(sa, counts=counts)
    keep = ~folded
    new_index = np.cumsum(keep) - 1

    def remap(ix: np.ndarray) -> np.ndarray:
        return np.where(ix >= 0, new_index[anchor[np.maximum(ix, 0)]], -1)

    kept = np.flatnonzero(keep)
    parent = remap(sa.parent)[kept]
    link_parent = remap(sa.link_parent)[kept]
    link_parent[link_parent == np.arange(len(kept))] = -1  # a link to its own library span
    sizes = np.bincount(sa.trace[kept], minlength=sa.n_traces)
    trace_hi = np.cumsum(sizes).astype(np.int64)
    col, key = sa.span_id_source
    per_span = {name: getattr(sa, name)[kept] for name in PER_SPAN_VALUES}
    return dataclasses.replace(
        sa,
        **per_span,
        trace_lo=trace_hi - sizes,
        trace_hi=trace_hi,
        span_id_source=(col, key[kept]),
        parent=parent,
        link_parent=link_parent,
        counts=counts,
    )
