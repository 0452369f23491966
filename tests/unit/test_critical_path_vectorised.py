"""The vectorised walks give the same sections as the per-trace reference implementations."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow.compute as pc
import pytest

from hopscope.analysis.critical_path import (
    RefSpan,
    event_paths,
    event_reference,
    jaeger_paths,
    jaeger_reference,
)
from hopscope.analysis.hops import find_deliveries, pair_codes
from hopscope.analysis.spans import prepare
from hopscope.synth import Breakage, SynthConfig, generate


@pytest.fixture(scope="module")
def synthetic():
    cfg = SynthConfig.load(None)
    cfg.events, cfg.seed = 150, 21
    # plenty of breakage so orphans, re-parented spans and skewed servers all occur
    cfg.breakage = Breakage(
        orphan_rate=0.05, missing_hop_rate=0.05, duplicate_rate=0.05, skew_rate=0.1, malformed_lines=0
    )
    table = generate(cfg).table
    return table, prepare(table)


def _ref_spans(sa, trace: int) -> list[RefSpan]:
    out = []
    for i in range(sa.trace_lo[trace], sa.trace_hi[trace]):
        p = sa.parent[i]
        pid = str(sa.span_ids[p]) if p >= 0 else ("missing" if sa.has_parent_id[i] else None)
        lp = sa.link_parent[i]
        kind = ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"][sa.kind[i]]
        out.append(
            RefSpan(
                str(sa.span_ids[i]),
                pid,
                int(sa.start[i]),
                int(sa.end[i]),
                kind,
                str(sa.hop_names[sa.hop[i]]),
                (str(sa.span_ids[lp]),) if lp >= 0 else (),
            )
        )
    return out


def test_jaeger_vectorised_equals_reference(synthetic) -> None:
    _table, sa = synthetic
    sec, roots = jaeger_paths(sa)
    got = defaultdict(list)
    o = np.argsort(sec.walker, kind="stable")  # per root in emission order, roots in start order
    for w, s, a, b in zip(sec.walker[o], sec.span[o], sec.start[o], sec.end[o], strict=True):
        got[int(sa.trace[roots[w]])].append((str(sa.span_ids[s]), int(a), int(b)))
    assert len(got) == sa.n_traces
    for trace in range(sa.n_traces):
        assert got[trace] == jaeger_reference(_ref_spans(sa, trace)), sa.trace_ids[trace]


def test_event_vectorised_equals_reference(synthetic) -> None:
    _table, sa = synthetic
    pair_of_trace, pairs = pair_codes(sa)
    dl = find_deliveries(sa, pair_of_trace, len(pairs), sa.end)
    sec = event_paths(sa, dl.target)
    n_hops = len(sa.hop_names)
    got = defaultdict(list)
    for w, lab, a, b in zip(sec.walker, sec.label, sec.start, sec.end, strict=True):
        name = str(sa.hop_names[lab]) if lab < n_hops else "wait:" + str(sa.hop_names[lab - n_hops])
        got[int(w)].append((name, int(a), int(b)))
    checked = 0
    for w, target in enumerate(dl.target):
        ref = event_reference(_ref_spans(sa, int(sa.trace[target])), str(sa.span_ids[target]))
        assert got[w] == ref, sa.trace_ids[sa.trace[target]]
        checked += 1
    assert checked == len(dl.target) > 500


def test_event_path_is_contiguous_and_spans_root_to_delivery(synthetic) -> None:
    _table, sa = synthetic
    pair_of_trace, pairs = pair_codes(sa)
    dl = find_deliveries(sa, pair_of_trace, len(pairs), sa.end)
    valid = np.flatnonzero(dl.valid)
    sec = event_paths(sa, dl.target[valid])
    for w in range(len(valid)):
        m = sec.walker == w
        a, b = sec.start[m], sec.end[m]
        # emitted latest first: each section ends where the next emitted one starts
        assert np.all(b[1:] == a[:-1])
        assert b[0] == sa.end[dl.target[valid[w]]]
        assert a[-1] == sa.start[dl.root[valid[w]]]


def test_jaeger_mode_stops_at_the_producer(synthetic) -> None:
    """On a Kafka trace, Jaeger's path never enters the consumer side (PRODUCER→CONSUMER pruned)."""
    table, sa = synthetic
    sec, _ = jaeger_paths(sa)
    consumers = set(np.flatnonzero(sa.kind == 5).tolist())
    with_producer_parent = {c for c in consumers if sa.parent[c] >= 0 and sa.kind[sa.parent[c]] == 4}
    assert with_producer_parent
    assert not with_producer_parent & set(sec.span.tolist())
    assert pc.sum(pc.equal(table.column("kind"), "CONSUMER")).as_py() > 0
