"""Workload definitions: declarative YAML files validated into pydantic models.

One file per workload in `pipelines/workloads/` (OpenMessaging Benchmark
style), holding only what is common to every stack. Each stack declares its own
hops per workload in its folder's `stack.yaml` (`hopscope.pipelines.stack`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

WORKLOADS_DIR = Path(__file__).resolve().parent / "workloads"
#: The extra workload name that point reads of `aggregate` are recorded under.
POINT_READ = "point_read"


class WorkloadError(ValueError):
    """A workload file, name or override is not usable; the message says which and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubscriberSpec(_Strict):
    name: str = Field(min_length=1)
    #: field -> accepted values; every listed field must match; empty = all events.
    filter: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("filter", mode="before")
    @classmethod
    def _values_as_tuples(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: (v,) if isinstance(v, str) else tuple(v) for k, v in value.items()}
        return value

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(fields.get(f) in accepted for f, accepted in self.filter.items())


class Workload(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    rate: float = Field(gt=0, description="events/s")
    schedule: Literal["constant", "poisson"] = "poisson"
    duration_s: float = Field(gt=0)
    warmup_s: float = Field(default=0.0, ge=0)
    payload_bytes: int = Field(default=256, ge=0)
    key_count: int = Field(default=1000, ge=1)
    key_skew: float = Field(default=0.0, ge=0, description="zipf exponent; 0 = uniform")
    fields: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    subscribers: tuple[SubscriberSpec, ...]
    rate_sweep: tuple[float, ...] | None = None
    point_read_rate: float | None = Field(default=None, gt=0)
    seed: int = 1
    ack_timeout_s: float = Field(default=30.0, gt=0)
    drain_timeout_s: float = Field(default=30.0, gt=0)
    #: longest wait, before the first event, for an earlier run's work to drain (clean_start.py)
    clean_timeout_s: float = Field(default=120.0, gt=0)

    @field_validator("subscribers", mode="before")
    @classmethod
    def _count_to_list(cls, value: Any) -> Any:
        # `subscribers: 3` means three unfiltered subscribers sub-0..sub-2.
        if isinstance(value, bool):
            raise ValueError("must be a count or a list of {name, filter}")
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"subscriber count must be >= 1, got {value}")
            return [{"name": f"sub-{i}"} for i in range(value)]
        return value

    @field_validator("rate_sweep")
    @classmethod
    def _sweep_positive(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("rate_sweep is empty")
            bad = [r for r in value if not r > 0]
            if bad:
                raise ValueError(f"rate_sweep rates must be > 0, got {bad}")
            if list(value) != sorted(set(value)):
                # the knee is the first step past it, so the steps must rise
                raise ValueError(f"rate_sweep rates must rise, each once, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _filters_and_reads(self) -> Workload:
        names = [s.name for s in self.subscribers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"subscriber name(s) used twice: {dupes}")
        for sub in self.subscribers:
            for field, accepted in sub.filter.items():
                if field not in self.fields:
                    raise ValueError(
                        f"subscriber {sub.name!r} filters on field {field!r}, which events do not have "
                        f"(declared fields: {sorted(self.fields)})"
                    )
                unknown = [v for v in accepted if v not in self.fields[field]]
                if unknown:
                    raise ValueError(
                        f"subscriber {sub.name!r} filter {field}={list(accepted)} matches nothing: "
                        f"{unknown} not among {list(self.fields[field])}"
                    )
        for field, values in self.fields.items():
            if not values:
                raise ValueError(f"field {field!r} has no values")
        return self

    # --- derived views -------------------------------------------------------------------

    @property
    def fanout_width(self) -> int:
        return len(self.subscribers)

    @property
    def subscriber_names(self) -> list[str]:
        return [s.name for s in self.subscribers]

    def phases(self) -> list[tuple[float, float]]:
        """(rate, seconds incl. warm-up) per step: one step, or one per sweep rate."""
        rates = self.rate_sweep or (self.rate,)
        return [(r, self.warmup_s + self.duration_s) for r in rates]

    @property
    def total_duration_s(self) -> float:
        return sum(seconds for _, seconds in self.phases())

    def field_combinations(self) -> list[dict[str, str]]:
        keys = sorted(self.fields)
        return [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(self.fields[k] for k in keys))
        ]

    def expected_subscribers(self, fields: Mapping[str, str]) -> list[str]:
        return [s.name for s in self.subscribers if s.matches(fields)]


# --- loading ---------------------------------------------------------------------------------


def known_workloads(workloads_dir: Path = WORKLOADS_DIR) -> list[str]:
    return sorted(p.stem for p in workloads_dir.glob("*.yaml"))


def _format_validation_error(path: Path, exc: ValidationError, overridden: set[str]) -> str:
    lines = [f"{path}: invalid workload ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<file>"
        origin = " (from command-line override)" if err["loc"] and str(err["loc"][0]) in overridden else ""
        value = (
            f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict | list) else ""
        )
        lines.append(f"  - {loc}{origin}: {err['msg']}{value}")
    return "\n".join(lines)


def resolve_workload_path(name_or_path: str | Path, workloads_dir: Path = WORKLOADS_DIR) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise WorkloadError(f"workload file {candidate} does not exist")
        return candidate
    path = workloads_dir / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(known_workloads(workloads_dir)) or "(none)"
        raise WorkloadError(
            f"unknown workload {str(name_or_path)!r}; known workloads in {workloads_dir}: {known}"
        )
    return path


def load_workload(
    name_or_path: str | Path,
    overrides: Mapping[str, Any] | None = None,
    workloads_dir: Path = WORKLOADS_DIR,
) -> Workload:
    """Read, apply overrides (None values ignored), validate. Errors name the file and field."""
    path = resolve_workload_path(name_or_path, workloads_dir)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise WorkloadError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise WorkloadError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    applied = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(applied) - set(Workload.model_fields))
    if unknown:
        raise WorkloadError(f"unknown override(s) {unknown}; overridable: {sorted(Workload.model_fields)}")
    if "rate" in applied and raw.get("rate_sweep"):
        applied.setdefault("rate_sweep", None)  # an explicit --rate replaces the sweep
    raw.update(applied)
    try:
        workload = Workload.model_validate(raw)
    except ValidationError as exc:
        raise WorkloadError(_format_validation_error(path, exc, set(applied))) from exc
    if path.parent == workloads_dir and workload.name != path.stem:
        raise WorkloadError(f"{path}: field 'name' is {workload.name!r} but the file is named {path.stem!r}")
    return workload


def expected_event_count(workload: Workload) -> int:
    return sum(math.floor(rate * seconds) for rate, seconds in workload.phases())
