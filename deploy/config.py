"""One configuration for every service: ports, directories, and external endpoints.

Defaults avoid the usual system ports (5432, 6379, 9092, 9090, 4317, ...) so a
local Postgres or Redis never collides. Every service section has an
`external_*` field: set it and hopscope uses that service instead of starting
one (that is how a run goes past one machine).

Sources, later ones winning: built-in defaults, the TOML file named by
`HOPSCOPE_CONFIG` (or `./hopscope.toml` when present), then environment
variables `HOPSCOPE_<SECTION>__<FIELD>` (e.g. `HOPSCOPE_KAFKA__EXTERNAL_BOOTSTRAP`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hopscope.deploy.settings import (
    CollectorConfig,
    ConnectConfig,
    HarperConfig,
    JaegerConfig,
    KafkaConfig,
    PgSyncConfig,
    PostgresConfig,
    PrometheusConfig,
    RedisConfig,
    ReportConfig,
)


class ConfigError(ValueError):
    """A configuration file or variable that cannot be used."""


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hopscope"


def _default_state() -> Path:
    # Postgres runs as its own unprivileged user and must reach its data dir;
    # root's home is closed to it, so root keeps state under /var/lib.
    if os.geteuid() == 0:
        return Path("/var/lib/hopscope")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "hopscope"


class HopscopeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache_dir: Path = Field(default_factory=_default_cache, description="installs (jars, binaries, npm)")
    state_dir: Path = Field(default_factory=_default_state, description="data, logs, PID files, secrets")
    postgres: PostgresConfig = Field(default_factory=PostgresConfig)
    pgsync: PgSyncConfig = Field(default_factory=PgSyncConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    connect: ConnectConfig = Field(default_factory=ConnectConfig)
    harper: HarperConfig = Field(default_factory=HarperConfig)
    jaeger: JaegerConfig = Field(default_factory=JaegerConfig)
    collector: CollectorConfig = Field(default_factory=CollectorConfig)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    def trace_url_templates(self) -> tuple[tuple[str, str], ...]:
        """(UI name, URL template with {trace_id}) for the report's trace links: the Jaeger UI
        (local or external), then Tempo when configured."""
        jaeger = self.report.jaeger_url_template or f"{self.jaeger.query_url.rstrip('/')}/trace/{{trace_id}}"
        out = [("Jaeger", jaeger)]
        if self.report.tempo_url_template:
            out.append(("Tempo", self.report.tempo_url_template))
        return tuple(out)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith("HOPSCOPE_") or "__" not in key:
            continue
        section, _, field = key[len("HOPSCOPE_") :].lower().partition("__")
        out.setdefault(section, {})[field] = value
    for key in ("cache_dir", "state_dir"):
        env_key = f"HOPSCOPE_{key.upper()}"
        if env_key in environ:
            out[key] = environ[env_key]
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> HopscopeConfig:
    """Read the configuration; raises ConfigError naming the file and the field."""
    environ = dict(os.environ) if environ is None else environ
    if path is None and environ.get("HOPSCOPE_CONFIG"):
        path = Path(environ["HOPSCOPE_CONFIG"])
    if path is None and Path("hopscope.toml").is_file():
        path = Path("hopscope.toml")
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
    data = _merge(data, _env_overrides(environ))
    try:
        cfg = HopscopeConfig.model_validate(data)
    except ValidationError as exc:
        where = f"config file {path}" if path else "configuration"
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{where}: {problems}") from exc
    cfg.cache_dir = cfg.cache_dir.expanduser()
    cfg.state_dir = cfg.state_dir.expanduser()
    return cfg
