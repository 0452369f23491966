"""Synthetic runs with known ground truth: spans (OTLP JSON lines + SPAN_SCHEMA Arrow), ledger, truth.

A stack × workload is a chain of steps after the load generator's root span:
`span` / `derived` (one span whose duration is the hop), `rpc` (a CLIENT span
with a SERVER child on another service: two hops, the client's own overhead and
the server time), `wait` (a gap before the next span, the hop `wait:<next hop>`),
and an optional `fanout` (per subscriber, a branch of steps ending in the
subscriber's receive span). Every hop value is drawn first (vectorised over
events), then the timeline is laid out from the values, so truth.json is
computed from the generated values, not from the spans.

Generation is vectorised over events: the only Python loops run over steps,
subscribers and pairs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from hopscope.core.schema import SPAN_PARQUET_OPTIONS, SPAN_SCHEMA

from .stats import QUANTILES, shares

KIND_INT = {"UNSPECIFIED": 0, "INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
ROOT_HOP = "loadgen.send"
NS = 1_000_000  # ns per ms


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass
class Dist:
    """A latency distribution in ms: lognormal (median, sigma), exponential (mean), constant
    (value), or mixture (a base distribution with probability `spike_p` of a spike instead)."""

    kind: str = "lognormal"
    median_ms: float = 1.0
    sigma: float = 0.5
    mean_ms: float = 1.0
    value_ms: float = 1.0
    base: Dist | None = None
    spike: Dist | None = None
    spike_p: float = 0.0

    @classmethod
    def parse(cls, d: dict | Dist | None) -> Dist | None:
        if d is None or isinstance(d, Dist):
            return d
        d = dict(d)
        for k in ("base", "spike"):
            if k in d:
                d[k] = cls.parse(d[k])
        return cls(**d)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "lognormal":
            return self.median_ms * np.exp(self.sigma * rng.standard_normal(n))
        if self.kind == "exponential":
            return rng.exponential(self.mean_ms, n)
        if self.kind == "constant":
            return np.full(n, self.value_ms)
        if self.kind == "mixture":
            if self.base is None or self.spike is None:
                raise ValueError("mixture distribution needs `base` and `spike`")
            base = self.base.sample(rng, n)
            spike = self.spike.sample(rng, n)
            return np.where(rng.random(n) < self.spike_p, spike, base)
        raise ValueError(f"unknown distribution kind {self.kind!r}")


@dataclass
class Step:
    type: str  # span | derived | rpc | wait
    hop: str = ""
    service: str = ""
    kind: str = "INTERNAL"
    dist: Dist = field(default_factory=Dist)
    load: float = 0.0  # sensitivity to the event's shared load factor (correlates hops)
    server_hop: str = ""
    server_service: str = ""
    server_dist: Dist | None = None

    @classmethod
    def parse(cls, d: dict) -> Step:
        d = dict(d)
        d["dist"] = Dist.parse(d.get("dist", {}))
        if "server_dist" in d:
            d["server_dist"] = Dist.parse(d["server_dist"])
        return cls(**d)


@dataclass
class Fanout:
    subscribers: int = 1
    match_p: float = 1.0  # probability that a subscriber's filter matches an event
    steps: list[Step] = field(default_factory=list)


@dataclass
class PairSpec:
    stack: str
    workload: str
    steps: list[Step]
    fanout: Fanout | None = None
    rate_per_s: float = 500.0
    send_lag: Dist = field(default_factory=lambda: Dist("lognormal", median_ms=0.05, sigma=0.5))
    loadgen_service: str = "loadgen"


@dataclass
class Breakage:
    orphan_rate: float = 0.002
    missing_hop_rate: float = 0.003
    duplicate_rate: float = 0.002
    skew_rate: float = 0.01
    skew_ms: tuple[float, float] = (0.5, 2.0)
    malformed_lines: int = 2


@dataclass
class SynthConfig:
    events: int = 2000  # per stack × workload
    seed: int = 7
    start_ns: int = 1_790_000_000_000_000_000
    run_id: str = "synth"
    spans_per_line: int = 1000
    lines_per_file: int = 40
    unattributed: Dist = field(default_factory=lambda: Dist("exponential", mean_ms=0.03))
    unattributed_floor_ms: float = 0.02
    breakage: Breakage = field(default_factory=Breakage)
    pairs: list[PairSpec] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> SynthConfig:
        d = dict(d)
        pairs = []
        for p in d.pop("pairs", []):
            p = dict(p)
            p["steps"] = [Step.parse(s) for s in p.get("steps", [])]
            if p.get("fanout"):
                f = dict(p["fanout"])
                f["steps"] = [Step.parse(s) for s in f.get("steps", [])]
                p["fanout"] = Fanout(**f)
            if "send_lag" in p:
                p["send_lag"] = Dist.parse(p["send_lag"])
            pairs.append(PairSpec(**p))
        if "breakage" in d:
            b = dict(d["breakage"])
            if "skew_ms" in b:
                b["skew_ms"] = tuple(b["skew_ms"])
            d["breakage"] = Breakage(**b)
        if "unattributed" in d:
            d["unattributed"] = Dist.parse(d["unattributed"])
        cfg = cls(**d)
        cfg.pairs = pairs or default_pairs()
        return cfg

    @classmethod
    def load(cls, path: str | Path | None) -> SynthConfig:
        if path is None:
            return cls(pairs=default_pairs())
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{p}: not valid YAML ({exc})") from exc
        try:
            return cls.from_dict(data)
        except TypeError as exc:
            raise ValueError(f"{p}: {exc}") from exc


def _ln(median: float, sigma: float) -> Dist:
    return Dist("lognormal", median_ms=median, sigma=sigma)


def _spiky(base: Dist, p: float, spike: Dist) -> Dist:
    return Dist("mixture", base=base, spike=spike, spike_p=p)


def default_pairs() -> list[PairSpec]:
    """A realistic mimic of the four workloads on both stacks (Kafka: more hops, heavier tail)."""
    S, W, D, R = "span", "wait", "derived", "rpc"

    def st(
        type_: str,
        hop: str = "",
        service: str = "",
        kind: str = "INTERNAL",
        dist: Dist | None = None,
        **kw: object,
    ) -> Step:
        return Step(type=type_, hop=hop, service=service, kind=kind, dist=dist or Dist(), **kw)  # type: ignore[arg-type]

    def sub_branch(hop: str, svc: str, wait: Dist) -> list[Step]:
        return [st(W, dist=wait), st(S, hop, svc, "CONSUMER", _ln(0.08, 0.3))]

    kafka_fetch = _spiky(_ln(1.5, 0.6), 0.01, _ln(40.0, 0.4))  # consumer fetch / poll
    # the client's REST write and, inside it, the node's commit
    harper_put = st(
        R,
        "http.put",
        "harper.client",
        "CLIENT",
        _ln(0.4, 0.3),
        server_hop="harper.commit",
        server_service="harper.node1",
        server_dist=_ln(1.2, 0.4),
        load=0.2,
    )
    debezium_poll = _spiky(Dist("exponential", mean_ms=4.0), 0.02, _ln(80.0, 0.3))
    pairs = [
        PairSpec(
            "kafka",
            "write_notify",
            [
                st(
                    R,
                    "pg.insert",
                    "kafka.writer",
                    "CLIENT",
                    _ln(0.3, 0.3),
                    server_hop="pg.commit",
                    server_service="postgres",
                    server_dist=_ln(1.5, 0.4),
                    load=0.2,
                ),
                st(W, dist=debezium_poll),
                st(D, "debezium.capture", "debezium", "INTERNAL", Dist("constant", value_ms=0.5)),
                st(S, "kafka.produce", "debezium", "PRODUCER", _ln(2.0, 0.5), load=0.3),
                st(W, dist=kafka_fetch),
                st(S, "notifier.consume", "kafka.notifier", "CONSUMER", _ln(0.4, 0.3)),
                st(S, "redis.publish", "kafka.notifier", "PRODUCER", _ln(0.3, 0.3)),
            ],
            Fanout(
                1, 1.0, sub_branch("subscriber.receive", "kafka.subscriber", Dist("exponential", mean_ms=0.2))
            ),
        ),
        PairSpec(
            "harper",
            "write_notify",
            [
                harper_put,
                st(W, dist=Dist("exponential", mean_ms=0.3)),
                st(S, "harper.publish", "harper.node1", "PRODUCER", _ln(0.2, 0.3)),
            ],
            Fanout(
                1,
                1.0,
                sub_branch(
                    "subscriber.receive", "harper.subscriber", _spiky(_ln(0.5, 0.5), 0.005, _ln(10.0, 0.3))
                ),
            ),
        ),
        PairSpec(
            "kafka",
            "fanout",
            [
                st(S, "kafka.produce", "loadgen", "PRODUCER", _ln(2.0, 0.5), load=0.3),
                st(W, dist=kafka_fetch),
                st(S, "router.consume", "kafka.router", "CONSUMER", _ln(0.3, 0.3)),
                st(S, "router.filter", "kafka.router", "INTERNAL", _ln(0.4, 0.4)),
            ],
            Fanout(
                4,
                0.5,
                [
                    st(S, "redis.publish", "kafka.router", "PRODUCER", _ln(0.2, 0.3)),
                    *sub_branch("subscriber.receive", "kafka.subscriber", Dist("exponential", mean_ms=0.25)),
                ],
            ),
        ),
        PairSpec(
            "harper",
            "fanout",
            [
                st(S, "mqtt.publish", "loadgen", "PRODUCER", _ln(0.5, 0.4), load=0.3),
                st(W, dist=Dist("exponential", mean_ms=0.2)),
                st(S, "harper.route", "harper.node1", "INTERNAL", _ln(0.6, 0.4)),
            ],
            Fanout(4, 0.5, sub_branch("subscriber.receive", "harper.subscriber", _ln(0.4, 0.5))),
        ),
        PairSpec(
            "kafka",
            "aggregate",
            [
                st(S, "kafka.produce", "loadgen", "PRODUCER", _ln(2.0, 0.5), load=0.3),
                st(W, dist=_ln(5.0, 0.7)),
                st(S, "streams.aggregate", "kafka.streams", "CONSUMER", _ln(0.5, 0.4)),
                st(S, "streams.changelog", "kafka.streams", "PRODUCER", _ln(2.0, 0.5), load=0.3),
            ],
            Fanout(
                1,
                1.0,
                [
                    st(W, dist=Dist("exponential", mean_ms=10.0)),
                    st(S, "dashboard.read", "dashboard", "CONSUMER", _ln(0.8, 0.4)),
                ],
            ),
        ),
        PairSpec(
            "harper",
            "aggregate",
            [
                harper_put,
                st(S, "component.aggregate", "harper.node1", "INTERNAL", _ln(0.5, 0.4)),
            ],
            Fanout(
                1,
                1.0,
                [
                    st(W, dist=_ln(0.6, 0.5)),
                    st(S, "dashboard.read", "dashboard", "CONSUMER", _ln(0.3, 0.4)),
                ],
            ),
        ),
        PairSpec(
            "kafka",
            "ingest",
            [
                st(S, "kafka.produce", "loadgen", "PRODUCER", _ln(2.0, 0.5), load=0.3),
                st(W, dist=kafka_fetch),
                st(S, "ingest.consume", "kafka.ingest", "CONSUMER", _ln(0.3, 0.3)),
                st(
                    R,
                    "pg.write",
                    "kafka.ingest",
                    "CLIENT",
                    _ln(0.3, 0.3),
                    server_hop="pg.commit",
                    server_service="postgres",
                    server_dist=_ln(1.5, 0.4),
                    load=0.2,
                ),
            ],
        ),
        PairSpec(
            "harper",
            "ingest",
            [
                st(
                    R,
                    "http.post",
                    "harper.client",
                    "CLIENT",
                    _ln(0.4, 0.3),
                    server_hop="harper.write",
                    server_service="harper.node1",
                    server_dist=_ln(1.3, 0.4),
                    load=0.2,
                ),
            ],
        ),
    ]
    return pairs


# ---------------------------------------------------------------------------------------------
# generation


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
                out.append(f"wait:{nxt.hop}")
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
    broken, missing_truth = _break(spans, cfg.breakage, rng, n, chain, rpc_servers, pair)
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


def _break(
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


# ---------------------------------------------------------------------------------------------
# ids and output


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_ids(words: list[np.ndarray]) -> pa.Array:
    """Lower-case hex strings of 64-bit words, concatenated per row, built without a Python loop."""
    n = len(words[0])
    chars = np.empty((n, 16 * len(words)), dtype=np.uint8)
    for w, arr in enumerate(words):
        u = arr.astype(np.uint64)
        for i in range(16):
            chars[:, 16 * w + i] = _HEX[((u >> np.uint64(60 - 4 * i)) & np.uint64(15)).astype(np.intp)]
    width = 16 * len(words)
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * width).tobytes())
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(chars.tobytes()))


@dataclass
class SynthRun:
    table: pa.Table  # SPAN_SCHEMA (broken spans included exactly as written to the OTLP files)
    ledger: pa.Table
    manifest: dict
    truth: dict


def _strmap(keys: list[str], cols: list[np.ndarray], n: int) -> pa.Array:
    """map<string,string> per row from parallel value columns (None values are left out)."""
    present = (
        np.column_stack([np.array([v is not None for v in c], dtype=bool) for c in cols])
        if cols
        else np.zeros((n, 0), bool)
    )
    counts = present.sum(1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    kk, vv = [], []
    for j, (k, c) in enumerate(zip(keys, cols, strict=True)):
        del j
        kk.append(np.full(len(c), k, dtype=object))
        vv.append(c)
    if not cols:
        return pa.MapArray.from_arrays(
            pa.array(offsets), pa.array([], pa.string()), pa.array([], pa.string())
        )
    karr = np.column_stack(kk)[present]
    varr = np.column_stack(vv)[present]
    return pa.MapArray.from_arrays(
        pa.array(offsets),
        pa.array(karr.tolist(), pa.string()),
        pa.array([str(v) for v in varr.tolist()], pa.string()),
    )


def generate(cfg: SynthConfig) -> SynthRun:
    rng = np.random.default_rng(cfg.seed)
    pairs = cfg.pairs or default_pairs()
    tables, ledgers = [], []
    truth: dict = {"pairs": {}, "config_seed": cfg.seed, "events_per_pair": cfg.events}
    expected: dict[str, dict[str, list[str]]] = {}
    for pi, pair in enumerate(pairs):
        res = generate_pair(pair, cfg, rng, cfg.start_ns + pi * 3_600 * 10**9)
        expected.setdefault(pair.stack, {})[pair.workload] = res.hops
        s = res.spans
        keep_rows = np.flatnonzero(~s["drop"])
        rows = np.concatenate([keep_rows, np.flatnonzero(s["dup"] & ~s["drop"])])
        m = len(rows)
        ev = s["event"][rows]
        tid_hi = rng.integers(0, 2**63, cfg.events, dtype=np.int64)
        tid_lo = rng.integers(0, 2**63, cfg.events, dtype=np.int64)
        sid = rng.integers(1, 2**63, len(s["id"]), dtype=np.int64)
        trace_ids = hex_ids([tid_hi[ev], tid_lo[ev]])
        span_ids = hex_ids([sid[rows]])
        par = s["parent"][rows]
        parent_ids = _null_where_false(par >= 0, hex_ids([sid[np.maximum(par, 0)]]))
        link = s["link"][rows].astype(np.int64)
        lt = trace_ids.to_numpy(zero_copy_only=False)
        ls = hex_ids([sid[np.maximum(link, 0)]]).to_numpy(zero_copy_only=False)
        links = pa.array(
            [
                [{"trace_id": t, "span_id": x}] if li >= 0 else []
                for t, x, li in zip(lt, ls, link.tolist(), strict=True)
            ],
            pa.list_(pa.struct([("trace_id", pa.string()), ("span_id", pa.string())])),
        )
        event_ids = np.char.add(f"{pair.stack}-{pair.workload}-", ev.astype(str)).astype(object)
        sub = s["subscriber"][rows]
        attrs = _strmap(["hopscope.subscriber"], [sub], m)
        res_map = _strmap(["hopscope.run_id"], [np.full(m, cfg.run_id, dtype=object)], m)
        tables.append(
            pa.table(
                {
                    "trace_id": trace_ids,
                    "span_id": span_ids,
                    "parent_span_id": parent_ids,
                    "links": links,
                    "name": pa.array(s["hop"][rows].tolist(), pa.string()),
                    "kind": pa.array(s["kind"][rows].tolist(), pa.string()),
                    "start_ns": pa.array(s["start"][rows].astype(np.int64)),
                    "end_ns": pa.array(s["end"][rows].astype(np.int64)),
                    "status": pa.array(["UNSET"] * m, pa.string()),
                    "service": pa.array(s["service"][rows].tolist(), pa.string()),
                    "stack": pa.array([pair.stack] * m, pa.string()),
                    "workload": pa.array([pair.workload] * m, pa.string()),
                    "event_id": pa.array(event_ids.tolist(), pa.string()),
                    "hop": pa.array(s["hop"][rows].tolist(), pa.string()),
                    "derived": pa.array(s["derived"][rows].astype(bool)),
                    "attributes": attrs,
                    "resource": res_map,
                    "source": pa.array(["synth"] * m, pa.string()),
                },
                schema=SPAN_SCHEMA,
            )
        )
        # ledger: one row per event; receipts = leaf end + a small known unattributed gap
        gap = np.rint(
            (cfg.unattributed_floor_ms + cfg.unattributed.sample(rng, len(res.deliveries_event))) * NS
        ).astype(np.int64)
        received = res.leaf_end + gap
        order = np.argsort(res.deliveries_event, kind="stable")
        de = res.deliveries_event[order]
        counts = np.bincount(de, minlength=cfg.events)
        offs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        rec_struct = pa.StructArray.from_arrays(
            [pa.array(res.deliveries_sub[order].tolist(), pa.string()), pa.array(received[order])],
            names=["subscriber", "received_ns"],
        )
        receipts = pa.ListArray.from_arrays(pa.array(offs), rec_struct)
        if pair.fanout:
            exp_subs = [[f"sub-{j}" for j, mm in enumerate(res.matched) if mm[e]] for e in range(cfg.events)]
        else:
            exp_subs = [[] for _ in range(cfg.events)]
        ledgers.append(
            pa.table(
                {
                    "stack": [pair.stack] * cfg.events,
                    "workload": [pair.workload] * cfg.events,
                    "event_id": np.char.add(
                        f"{pair.stack}-{pair.workload}-", np.arange(cfg.events).astype(str)
                    ).tolist(),
                    "trace_id": hex_ids([tid_hi, tid_lo]),
                    "intended_ns": res.intended,
                    "sent_ns": res.sent,
                    "acked_ns": res.acked,
                    "ack_status": ["ok"] * cfg.events,
                    "expected_subscribers": pa.array(exp_subs, pa.list_(pa.string())),
                    "receipts": receipts,
                    "outcome": ["delivered"] * cfg.events,
                }
            )
        )
        truth["pairs"][f"{pair.stack}/{pair.workload}"] = _truth(pair, res, gap)
    table = pa.concat_tables(tables)
    manifest = {
        "run_id": cfg.run_id,
        "synthetic": True,
        "seed": cfg.seed,
        "expected_hops": expected,
        "stacks": sorted({p.stack for p in pairs}),
        "workloads": sorted({p.workload for p in pairs}),
    }
    truth["malformed_lines"] = cfg.breakage.malformed_lines
    truth["spans_written"] = table.num_rows
    return SynthRun(table=table, ledger=pa.concat_tables(ledgers), manifest=manifest, truth=truth)


def _null_where_false(mask: np.ndarray, values: pa.Array) -> pa.Array:
    import pyarrow.compute as pc

    return pc.if_else(pa.array(mask), values, pa.scalar(None, pa.string()))


def _truth(pair: PairSpec, res: PairResult, gap: np.ndarray) -> dict:
    mat = res.hop_matrix.astype(np.float64)
    e2e = mat.sum(1)
    sh = shares(mat)
    hops = {}
    for j, h in enumerate(res.hops):
        v = mat[:, j] / NS
        row = {
            "count": len(v),
            "mean_ms": float(v.mean()),
            "std_ms": float(v.std()),
            "max_ms": float(v.max()),
        }
        row.update({k: float(np.quantile(v, q)) for k, q in QUANTILES.items()})
        row.update({k: float(a[j]) for k, a in sh.items()})
        hops[h] = row
    top = res.hops[int(np.nanargmax(sh["tail_share_p99"]))]
    return {
        "hops": hops,
        "hop_order": res.hops,
        "deliveries": len(e2e),
        "e2e_ms": {k: float(np.quantile(e2e / NS, q)) for k, q in QUANTILES.items()}
        | {"mean_ms": float(e2e.mean() / NS)},
        "top_tail_hop_p99": top,
        "top_tail_hop_p999": res.hops[int(np.nanargmax(sh["tail_share_p999"]))],
        "unattributed_mean_ms": float(gap.mean() / NS),
        "breakage": res.broken,
        "missing_expected_hops": res.missing_hops_truth,
    }


def _otlp_lines(table: pa.Table, spans_per_line: int) -> list[bytes]:
    """OTLP JSON `TracesData` lines grouped by resource, as the collector's file exporter writes them."""
    d = table.to_pydict()
    n = table.num_rows
    lines: list[bytes] = []
    for lo in range(0, n, spans_per_line):
        groups: dict[tuple[str, str], list[dict]] = {}
        for i in range(lo, min(n, lo + spans_per_line)):
            attrs = [
                {"key": "hopscope.workload", "value": {"stringValue": d["workload"][i]}},
                {"key": "hopscope.event_id", "value": {"stringValue": d["event_id"][i]}},
                {"key": "hopscope.hop", "value": {"stringValue": d["hop"][i]}},
            ]
            if d["derived"][i]:
                attrs.append({"key": "hopscope.derived", "value": {"boolValue": True}})
            for k, v in d["attributes"][i]:
                attrs.append({"key": k, "value": {"stringValue": v}})
            span = {
                "traceId": d["trace_id"][i],
                "spanId": d["span_id"][i],
                "name": d["name"][i],
                "kind": KIND_INT[d["kind"][i]],
                "startTimeUnixNano": str(d["start_ns"][i]),
                "endTimeUnixNano": str(d["end_ns"][i]),
                "attributes": attrs,
                "status": {},
            }
            if d["parent_span_id"][i]:
                span["parentSpanId"] = d["parent_span_id"][i]
            if d["links"][i]:
                span["links"] = [{"traceId": x["trace_id"], "spanId": x["span_id"]} for x in d["links"][i]]
            groups.setdefault((d["service"][i], d["stack"][i]), []).append(span)
        rs = []
        for (svc, stack), spans in groups.items():
            rs.append(
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": svc}},
                            {"key": "hopscope.stack", "value": {"stringValue": stack}},
                            {
                                "key": "hopscope.run_id",
                                "value": {"stringValue": dict(d["resource"][lo])["hopscope.run_id"]},
                            },
                        ]
                    },
                    "scopeSpans": [{"scope": {"name": "hopscope.synth"}, "spans": spans}],
                }
            )
        lines.append(orjson.dumps({"resourceSpans": rs}))
    return lines


def write_run(
    run: SynthRun,
    out: Path,
    cfg: SynthConfig,
    *,
    parquet: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Write spans/ (rotated OTLP JSON lines), spans.parquet, ledger.parquet, manifest.json, truth.json."""
    out.mkdir(parents=True, exist_ok=True)
    spans_dir = out / "spans"
    spans_dir.mkdir(exist_ok=True)
    for old in spans_dir.glob("spans*.jsonl"):
        old.unlink()
    lines = _otlp_lines(run.table, cfg.spans_per_line)
    files = [lines[i : i + cfg.lines_per_file] for i in range(0, len(lines), cfg.lines_per_file)] or [[]]
    written = {}
    for k, chunk in enumerate(files):
        last = k == len(files) - 1
        name = (
            "spans.jsonl" if last else f"spans-2026-11-28T00-00-{k:02d}.000.jsonl"
        )  # exporter's rotation names
        body = b"\n".join(chunk) + (b"\n" if chunk else b"")
        if last and cfg.breakage.malformed_lines:
            body += b"".join(
                b'{"resourceSpans": [ {"broken line ' + str(i).encode() + b"\n"
                for i in range(cfg.breakage.malformed_lines)
            )
        (spans_dir / name).write_bytes(body)
        if progress:
            progress(k + 1, len(files))
    written["spans"] = spans_dir
    if parquet:
        pq.write_table(run.table, out / "spans.parquet", **SPAN_PARQUET_OPTIONS)
        written["spans.parquet"] = out / "spans.parquet"
    pq.write_table(run.ledger, out / "ledger.parquet")
    (out / "manifest.json").write_text(json.dumps(run.manifest, indent=2))
    (out / "truth.json").write_text(json.dumps(run.truth, indent=2))
    written.update(
        {"ledger": out / "ledger.parquet", "manifest": out / "manifest.json", "truth": out / "truth.json"}
    )
    return written


def config_dict(cfg: SynthConfig) -> dict:
    """The configuration as plain data (what a synth.yaml holds)."""
    return asdict(cfg)
