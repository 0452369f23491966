"""Lay out one stack × workload's spans from drawn hop values, vectorised over events.

Every hop value is drawn first, then the timeline is laid out from the values, so the truth is
computed from the generated values, not from the spans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hopscope.core.attributes import LOADGEN_SPAN_NAME, wait_hop

from .breakage import inject
from .config import SynthConfig
from .model import NS, PairSpec, Step

ROOT_HOP = LOADGEN_SPAN_NAME


@dataclass
class _Spans:
    """Column lists of generated spans for one pair (appended step by step)."""

    cols: dict[str, list[np.ndarray]] = field(default_factory=dict)
    next_id: int = 0

    def add(
        self, n_total: int, events: np.ndarray, **cols: np.ndarray | str | int | bool | None
    ) -> np.ndarray:
        cols.setdefault("subscriber", None)
        ids = np.arange(self.next_id, self.next_id + len(events))
        self.next_id += len(events)
        self.cols.setdefault("id", []).append(ids)
        self.cols.setdefault("event", []).append(events)
        for k, v in cols.items():
            arr = v if isinstance(v, np.ndarray) else np.full(len(events), v, dtype=object)
            self.cols.setdefault(k, []).append(arr)
        return ids

    def frame(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.cols.items()}


def _hops_of(pair: PairSpec) -> list[str]:
    """Ordered hop names of a pair (waits named after the hop that follows them)."""

    def names(steps: list[Step]) -> list[str]:
        out: list[str] = []
        for i, s in enumerate(steps):
            if s.type == "wait":
                nxt = steps[i + 1] if i + 1 < len(steps) else None
                if nxt is None or nxt.type == "wait":
                    raise ValueError(f"{pair.stack}/{pair.workload}: a wait must be followed by a span step")
                out.append(wait_hop(nxt.hop))
            elif s.type == "rpc":
                out += [s.hop, s.server_hop]
            else:
                out.append(s.hop)
        return out

    prefix = [ROOT_HOP, *names(pair.steps)]
    if pair.fanout:
        first = pair.fanout.steps[0] if pair.fanout.steps else None
        if first is not None and first.type == "wait" and not pair.steps:
            raise ValueError("fanout cannot start right after the root with a wait")
        prefix += names(pair.fanout.steps)
    return prefix


@dataclass
class PairResult:
    spans: dict[str, np.ndarray]
    hop_matrix: np.ndarray  # deliveries × hops, int64 ns
    hops: list[str]
    deliveries_event: np.ndarray
    deliveries_sub: np.ndarray  # object
    leaf_end: np.ndarray
    intended: np.ndarray
    sent: np.ndarray
    acked: np.ndarray
    matched: list[np.ndarray]
    broken: dict[str, int]
    missing_hops_truth: int


def _lay_steps(
    rng: np.random.Generator,
    sp: _Spans,
    steps: list[Step],
    events: np.ndarray,
    cursor: np.ndarray,
    current: np.ndarray,
    current_kind: np.ndarray,
    z: np.ndarray,
    values: dict[str, np.ndarray],
    rpc_servers: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    chain: list[np.ndarray],
    extra_attrs: Callable[[Step], dict[str, object]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lay out `steps` for `events` (arrays aligned with events); returns (cursor, current span, kind)."""
    n = len(events)
    for s in steps:
        v = s.dist.sample(rng, n) * np.exp(s.load * z)
        ns = np.maximum(np.rint(v * NS).astype(np.int64), 1)
        if s.type == "wait":
            cursor = cursor + ns
            values.setdefault("__wait__", []).append(ns)  # type: ignore[arg-type]
            continue
        if s.type in ("span", "derived"):
            link = np.where((current_kind == "PRODUCER") & (s.kind == "CONSUMER"), current, -1)
            attrs = extra_attrs(s) if extra_attrs else {}
            ids = sp.add(
                n,
                events,
                parent=current,
                start=cursor,
                end=cursor + ns,
                hop=s.hop,
                service=s.service,
                kind=s.kind,
                derived=s.type == "derived",
                link=link,
                **attrs,
            )
            values.setdefault(s.hop, []).append(ns)  # type: ignore[arg-type]
            chain.append(ids)
            cursor = cursor + ns
            current = ids
            current_kind = np.full(n, s.kind, dtype=object)
        elif s.type == "rpc":
            assert s.server_dist is not None
            sv = s.server_dist.sample(rng, n) * np.exp(s.load * z)
            sns = np.maximum(np.rint(sv * NS).astype(np.int64), 1)
            pre = np.floor(ns * rng.uniform(0.3, 0.7, n)).astype(np.int64)
            cid = sp.add(
                n,
                events,
                parent=current,
                start=cursor,
                end=cursor + ns + sns,
                hop=s.hop,
                service=s.service,
                kind="CLIENT",
                derived=False,
                link=np.full(n, -1),
            )
            sid = sp.add(
                n,
                events,
                parent=cid,
                start=cursor + pre,
                end=cursor + pre + sns,
                hop=s.server_hop,
                service=s.server_service,
                kind="SERVER",
                derived=False,
                link=np.full(n, -1),
            )
            rpc_servers.append((sid, pre, events))
            values.setdefault(s.hop, []).append(ns)  # type: ignore[arg-type]
            values.setdefault(s.server_hop, []).append(sns)  # type: ignore[arg-type]
            chain.append(cid)
            cursor = cursor + ns + sns
            current = cid
            current_kind = np.full(n, "CLIENT", dtype=object)
        else:
            raise ValueError(f"unknown step type {s.type!r}")
    return cursor, current, current_kind


def _ordered_values(steps: list[Step], values: dict[str, list[np.ndarray]]) -> list[np.ndarray]:
    """Per hop (in _hops_of order) the generated ns values, waits taken in order."""
    out: list[np.ndarray] = []
    waits = iter(values.get("__wait__", []))
    for s in steps:
        if s.type == "wait":
            out.append(next(waits))
        elif s.type == "rpc":
            out += [values[s.hop].pop(0), values[s.server_hop].pop(0)]
        else:
            out.append(values[s.hop].pop(0))
    return out


def generate_pair(pair: PairSpec, cfg: SynthConfig, rng: np.random.Generator, t0: int) -> PairResult:
    n = cfg.events
    events = np.arange(n)
    gaps = rng.exponential(1e9 / pair.rate_per_s, n)
    intended = t0 + np.cumsum(gaps).astype(np.int64)
    z = rng.standard_normal(n)
    sp = _Spans()
    lag = np.maximum(np.rint(pair.send_lag.sample(rng, n) * NS).astype(np.int64), 1)
    root = sp.add(
        n,
        events,
        parent=np.full(n, -1),
        start=intended,
        end=intended,
        hop=ROOT_HOP,
        service=pair.loadgen_service,
        kind="CLIENT",
        derived=False,
        link=np.full(n, -1),
    )
    values: dict[str, list[np.ndarray]] = {}
    rpc_servers: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    chain: list[np.ndarray] = []
    cursor, current, ckind = _lay_steps(
        rng,
        sp,
        pair.steps,
        events,
        intended + lag,
        root,
        np.full(n, "CLIENT", dtype=object),
        z,
        values,
        rpc_servers,
        chain,
    )
    prefix_vals = [lag, *_ordered_values(pair.steps, values)]
    # The root covers the load generator's send: it ends when the first step's span ends (the ack).
    frame = sp.frame()
    first_child_end = frame["end"][n : 2 * n] if len(frame["end"]) > n else intended + lag
    acked = first_child_end.copy()

    hops = _hops_of(pair)
    if pair.fanout:
        f = pair.fanout
        matched = [rng.random(n) < f.match_p for _ in range(f.subscribers)]
        branch_vals: list[list[np.ndarray]] = []
        d_event, d_sub, d_leaf = [], [], []
        for j, m in enumerate(matched):
            ev = events[m]
            bvals: dict[str, list[np.ndarray]] = {}
            sub = f"sub-{j}"
            last_step = f.steps[-1]

            def attrs(step: Step, _sub: str = sub, _last: Step = last_step) -> dict[str, object]:
                return {"subscriber": _sub} if step is _last else {}

            bcur, _, _ = _lay_steps(
                rng, sp, f.steps, ev, cursor[m], current[m], ckind[m], z[m], bvals, rpc_servers, [], attrs
            )
            branch_vals.append(_ordered_values(f.steps, bvals))
            d_event.append(ev)
            d_sub.append(np.full(len(ev), sub, dtype=object))
            d_leaf.append(bcur)
        de = np.concatenate(d_event)
        mat = (
            np.column_stack(
                [np.concatenate([pv[m] for m in matched]) for pv in prefix_vals]
                + [np.concatenate([bv[k] for bv in branch_vals]) for k in range(len(branch_vals[0]))]
            )
            if len(de)
            else np.zeros((0, len(hops)), np.int64)
        )
        dsub = np.concatenate(d_sub)
        leaf = np.concatenate(d_leaf)
    else:
        matched = []
        de = events
        mat = np.column_stack(prefix_vals)
        dsub = np.full(n, None, dtype=object)
        leaf = cursor
    spans = sp.frame()
    spans["end"][:n] = acked  # root span end
    spans.setdefault("subscriber", np.full(len(spans["id"]), None, dtype=object))
    broken, missing_truth = inject(spans, cfg.breakage, rng, n, chain, rpc_servers, pair)
    if pair.fanout:
        # an event no subscriber's filter matched has none of the branch's spans
        branch_span_hops = sum(
            2 if s.type == "rpc" else (0 if s.type == "wait" else 1) for s in pair.fanout.steps
        )
        unmatched = ~np.any(np.vstack(matched), axis=0)
        missing_truth += int(unmatched.sum()) * branch_span_hops
        broken["events_without_delivery"] = int(unmatched.sum())
    return PairResult(
        spans, mat, hops, de, dsub, leaf, intended, intended + lag, acked, matched, broken, missing_truth
    )
