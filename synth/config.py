"""`SynthConfig`: what a synth.yaml holds (events, seed, breakage, pairs), loaded and dumped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .model import Breakage, Dist, Fanout, PairSpec, Step
from .shapes import default_pairs


@dataclass
class SynthConfig:
    events: int = 2000  # per stack × workload
    #: the first `warmup_events` events of each pair are warm-up (the ledger's `warmup`); each
    #: is `warmup_extra_ms` later everywhere past its root span (a cold start made obvious), and
    #: the truth leaves them out, as every figure must
    warmup_events: int = 0
    warmup_extra_ms: float = 0.0
    #: the measured events split into this many consecutive repeats (the ledger's `repeat`)
    repeats: int = 1
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


def config_dict(cfg: SynthConfig) -> dict:
    """The configuration as plain data (what a synth.yaml holds)."""
    return asdict(cfg)
