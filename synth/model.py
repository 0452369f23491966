"""The pieces a synthetic run is declared with: distributions, steps, fan-out, stack × workload
pairs, and the breakage to inject."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NS = 1_000_000  # ns per ms


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
