"""`SynthConfig`: what a synth.yaml holds (events, seed, breakage, pairs), loaded and dumped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .model import Breakage, Dist, Fanout, PairSpec, Step
from .shapes import default_pairs


class SynthConfigError(ValueError):
    """A synth configuration that cannot be generated: names the file (if any), the field and why."""


#: fields that must be at least 1 (events, repeats, …) and at least 0
_AT_LEAST_ONE = ("events", "repeats", "spans_per_line", "lines_per_file")
_AT_LEAST_ZERO = ("warmup_events", "warmup_extra_ms", "unattributed_floor_ms")


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

    def validate(self, where: str = "synth config") -> SynthConfig:
        """This configuration, or a SynthConfigError naming the first field that cannot work."""
        for name in (*_AT_LEAST_ONE, *_AT_LEAST_ZERO):
            value = getattr(self, name)
            low = 1 if name in _AT_LEAST_ONE else 0
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SynthConfigError(f"{where}: field {name}: expected a number, found {value!r}")
            if value < low:
                raise SynthConfigError(f"{where}: field {name}: {value!r} is below {low}")
        if not self.pairs:
            raise SynthConfigError(f"{where}: field pairs: no stack × workload pair")
        return self

    @classmethod
    def load(cls, path: str | Path | None) -> SynthConfig:
        if path is None:
            return cls(pairs=default_pairs())
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SynthConfigError(f"{p}: not valid YAML ({exc})") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise SynthConfigError(f"{p}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
        if not isinstance(data, dict):
            raise SynthConfigError(f"{p}: expected a mapping of settings, found {type(data).__name__}")
        try:
            return cls.from_dict(data).validate(str(p))
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, SynthConfigError):
                raise
            raise SynthConfigError(f"{p}: {exc}") from exc


def config_dict(cfg: SynthConfig) -> dict:
    """The configuration as plain data (what a synth.yaml holds)."""
    return asdict(cfg)
