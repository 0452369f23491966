"""The hop mapping file for foreign traces (`hopscope analyze RUN --mapping FILE`).

YAML, one list of rules; the first rule (in file order) whose `match` holds for a span and that
sets `hop` names the span's hop; `workload` and `stack` are set per trace by the first rule
that sets them and matches any span of the trace::

    rules:
      - match:
          service: "^checkout$"          # regexes, re.search (anchor them yourself)
          name: "^orders (publish|send)$"
          kind: PRODUCER                 # span kind, exact (one of core.schema.KINDS)
          attributes: {messaging.destination.name: "^orders$"}
          resource: {deployment.environment: "^prod$"}
        hop: checkout publish            # every field optional, at least one of the three
        workload: checkout
        stack: shop

Every part of `match` must hold (an attribute that is absent does not match). Checked with
pydantic: an invalid file is one `MappingError` line naming the file, rule and field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hopscope.core.schema import KINDS

#: keys a span offers to `match` besides its attributes and resource
SPAN_FIELDS = ("service", "name", "kind")


class MappingError(Exception):
    """The mapping file cannot be used: one line naming the file, the rule and the field."""


def _compiled(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"bad regex {value!r}: {exc}") from None


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str | None = None
    name: str | None = None
    kind: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    resource: dict[str, str] = Field(default_factory=dict)

    @field_validator("service", "name")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            _compiled(value)
        return value

    @field_validator("attributes", "resource")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for key, pattern in value.items():
            if not key:
                raise ValueError("an empty attribute key")
            _compiled(pattern)
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in KINDS:
            raise ValueError(f"{value!r}: choose one of {', '.join(KINDS)}")
        return value.upper() if value is not None else None

    @model_validator(mode="after")
    def _not_empty(self) -> Match:
        if not (self.service or self.name or self.kind or self.attributes or self.resource):
            raise ValueError("matches every span: give service, name, kind, attributes or resource")
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: Match
    hop: str | None = None
    workload: str | None = None
    stack: str | None = None

    @model_validator(mode="after")
    def _sets_something(self) -> Rule:
        for field in ("hop", "workload", "stack"):
            value = getattr(self, field)
            if value is not None and not value.strip():
                raise ValueError(f"{field}: an empty name")
        if self.hop is None and self.workload is None and self.stack is None:
            raise ValueError("sets nothing: give hop, workload or stack")
        return self

    def describe(self) -> str:
        """One line: what the rule matches → what it sets (the report's method section)."""
        m = self.match
        parts = [f"{k}~/{getattr(m, k)}/" for k in SPAN_FIELDS[:2] if getattr(m, k) is not None]
        if m.kind:
            parts.append(f"kind={m.kind}")
        parts += [f"{k}~/{v}/" for k, v in m.attributes.items()]
        parts += [f"resource.{k}~/{v}/" for k, v in m.resource.items()]
        sets = [f"{k}={getattr(self, k)!r}" for k in ("hop", "workload", "stack") if getattr(self, k)]
        return f"{' '.join(parts)} → {', '.join(sets)}"

    def matches(self, span: dict[str, Any]) -> bool:
        """`span`: service, name, kind, attributes (dict), resource (dict)."""
        m = self.match
        for key in ("service", "name"):
            pattern = getattr(m, key)
            if pattern is not None and not re.search(pattern, span.get(key) or ""):
                return False
        if m.kind is not None and (span.get("kind") or "").upper() != m.kind:
            return False
        for group in ("attributes", "resource"):
            have = span.get(group) or {}
            for key, pattern in getattr(m, group).items():
                value = have.get(key)
                if value is None or not re.search(pattern, value):
                    return False
        return True


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(default_factory=list)
    #: where it was read from (None: built in code)
    source: str | None = None

    def attribute_keys(self) -> set[str]:
        return {k for r in self.rules for k in r.match.attributes}

    def resource_keys(self) -> set[str]:
        return {k for r in self.rules for k in r.match.resource}


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_mapping(path: str | Path) -> Mapping:
    """The mapping file at `path`, validated; a `MappingError` (one line) when it cannot be used."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{p}: cannot read the mapping file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise MappingError(f"{p}: not YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MappingError(f"{p}: expected a mapping with `rules:`, found {type(data).__name__}")
    try:
        return Mapping.model_validate({**data, "source": str(p)})
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise MappingError(f"{p}: {_where(tuple(err['loc'])) or 'file'}: {msg}") from None
