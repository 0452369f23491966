"""Clock-skew detection and correction on the event tree, the way Jaeger's adjuster does it.

Jaeger (jaeger `adjuster/clockskew.go`): spans are keyed by host; when a child's
host differs from its parent's, a child that does not fit inside its parent is
shifted so it is centred in the parent (latency split equally between request
and response); a child longer than its parent is only moved to the parent's
start. The shift applies to the child's whole same-host subtree.

hopscope applies that rule to synchronous edges only. An async edge (a CONSUMER
of a PRODUCER, a span attached by a link, or a child that starts after its
parent ended) is never centred: a consumer that starts before its producer
started is moved to the producer's start (the smallest shift that restores
causality) and counted. Host key: resource host.id / host.ip / host.name, else
the service name. Vectorised by depth level (or, when built, the native kernel of
kernels.py: the same rules in one pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .span_arrays import CONSUMER, PRODUCER, SpanArrays


@dataclass
class SkewResult:
    start: np.ndarray
    end: np.ndarray
    corrected: np.ndarray  # bool per span: this span's own clock was corrected


def correct(sa: SpanArrays) -> SkewResult:
    if kernels.AVAILABLE:
        delta, corrected = kernels.skew_shifts(sa)
    else:
        delta, corrected = _shifts_by_level(sa)
    if not delta.any():
        # one clock (as in a run on one machine): the span arrays' own times, not copies of them
        return SkewResult(start=sa.start, end=sa.end, corrected=corrected)
    return SkewResult(start=sa.start + delta, end=sa.end + delta, corrected=corrected)


def _shifts_by_level(sa: SpanArrays) -> tuple[np.ndarray, np.ndarray]:
    """(shift per span, own clock corrected) computed one depth level at a time."""
    parent = sa.event_parent
    delta = np.zeros(sa.n, np.int64)
    corrected = np.zeros(sa.n, bool)
    for d, c in enumerate(sa.event_levels):
        if d == 0:
            continue
        p = parent[c]
        inherit = sa.host[c] == sa.host[p]
        ps = sa.start[p] + delta[p]
        pe = sa.end[p] + delta[p]
        s, e = sa.start[c], sa.end[c]
        async_edge = ((sa.kind[p] == PRODUCER) & (sa.kind[c] == CONSUMER)) | (sa.parent[c] != p) | (s >= pe)
        cdur, pdur = e - s, pe - ps
        fits = (s >= ps) & (e <= pe)
        centred = ps + (pdur - cdur) // 2 - s
        to_start = np.where(s < ps, ps - s, 0)
        sync_delta = np.where(fits, 0, np.where(cdur > pdur, to_start, centred))
        own = np.where(async_edge, to_start, sync_delta)
        delta[c] = np.where(inherit, delta[p], own)
        corrected[c] = ~inherit & (own != 0)
    return delta, corrected
