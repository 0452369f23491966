"""The configuration models of every service (ports, directories, external endpoints).

Only models: `config.py` assembles and loads them, each service (`services/*.py`) reads its own.
They live apart from the services so that loading the configuration imports no service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class PostgresConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = 25432
    #: e.g. "postgresql://user:pass@db.example:5432/app" — then no local server is started.
    external_dsn: str | None = None


class PgSyncConfig(BaseModel):
    """The `postgres` stack's primary and its synchronous replica (always local: the stack
    measures this pair; `deploy/services/pgsync.py`)."""

    model_config = ConfigDict(extra="forbid")
    primary_port: int = 25442
    replica_port: int = 25443


class RedisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = 26379
    #: e.g. "redis://:pass@cache.example:6379/0" — then no local server is started.
    external_url: str | None = None


class KafkaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    broker_ports: list[int] = [29092, 29093, 29094]
    controller_ports: list[int] = [29192, 29193, 29194]
    heap: str = "512m"
    #: e.g. "kafka1.example:9092,kafka2.example:9092" — then no local brokers are started.
    external_bootstrap: str | None = None

    @property
    def bootstrap(self) -> str:
        return self.external_bootstrap or ",".join(f"127.0.0.1:{p}" for p in self.broker_ports)


class ConnectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = 28083
    heap: str = "512m"
    #: the REST API's basic-auth user (its password is generated: connect_rest_password in secrets.json)
    rest_user: str = "hopscope"
    #: e.g. "http://connect.example:8083" — then no local worker is started.
    external_url: str | None = None
    #: basic-auth credentials for an external worker's REST API (none: requests go without)
    external_username: str | None = None
    external_password: str | None = None
    #: Worker-wide producer linger (fairness: the same small linger as the other producers).
    producer_linger_ms: int = 1

    @property
    def url(self) -> str:
        return self.external_url or f"http://127.0.0.1:{self.port}"


class HarperConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nodes: int = Field(3, ge=1, le=9)
    #: node N (1-based) listens on 127.0.0.N (Harper needs one hostname per node).
    http_port: int = 29926
    operations_port: int = 29925
    replication_port: int = 29933
    mqtt_port: int = 29883
    mqtt_secure_port: int = 29887
    #: node N uses port + (N-1) * port_step (distinct ports also let `listen_all_interfaces` work).
    port_step: int = 10
    #: False: node N's five listeners bind 127.0.0.N only. True: Harper's own default, every
    #: listener on all addresses (for clients on other hosts; then put a firewall in front).
    listen_all_interfaces: bool = False
    #: HTTP worker threads per node (3 nodes share the host's cores).
    threads: int = 1
    log_level: str = "warn"
    admin_user: str = "hopscope"
    #: True is Harper's dev default: any loopback client (any local user) is a super user without
    #: credentials. False: every client sends the admin credentials; the nodes authenticate
    #: each other as before (see deploy/README.md, Security). Applied at every start.
    authorize_local: bool = False
    #: replicas a confirmed write waits for (the study's fairness setting: 2 durable copies).
    confirm_replicas: int = 1
    #: our own bound on any request: a confirmed write hangs while every replica is down.
    request_timeout: float = 10.0
    #: e.g. ["https://harper1.example:9926", ...] — then no local nodes are started.
    external_urls: list[str] | None = None
    #: operations API per external node; default: same host, port 9925 (Harper's default).
    external_operations_urls: list[str] | None = None
    #: MQTT "host:port" per external node; default: same host, port 1883.
    external_mqtt: list[str] | None = None
    external_username: str = "admin"
    external_password: str | None = None

    @field_validator("external_urls", "external_operations_urls", "external_mqtt", mode="before")
    @classmethod
    def _split_env_list(cls, value: object) -> object:
        # environment variables arrive as one string: accept "a,b,c" or a JSON list
        if isinstance(value, str):
            text = value.strip()
            return (
                json.loads(text)
                if text.startswith("[")
                else [v.strip() for v in text.split(",") if v.strip()]
            )
        return value


class JaegerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query_port: int = 26686
    otlp_grpc_port: int = 24417
    otlp_http_port: int = 24418
    #: Jaeger's gRPC query API (api_v2/api_v3); its default 16685 would clash with a system Jaeger.
    query_grpc_port: int = 26685
    #: Memory storage bound; older traces are evicted.
    max_traces: int = 100_000
    #: e.g. "http://jaeger.example:16686" — then no local Jaeger is started.
    external_url: str | None = None
    #: With `external_url`: its OTLP/HTTP endpoint (e.g. "http://jaeger.example:4318"), so the
    #: health check can write a span and read it back; without it only the query API is checked.
    external_otlp_http_endpoint: str | None = None

    @property
    def query_url(self) -> str:
        return self.external_url or f"http://127.0.0.1:{self.query_port}"

    @property
    def otlp_http_url(self) -> str | None:
        if self.external_url is not None:
            return self.external_otlp_http_endpoint
        return f"http://127.0.0.1:{self.otlp_http_port}"


#: where a trace id goes in a trace UI's URL (`[report]` templates)
TRACE_ID_PLACEHOLDER = "{trace_id}"


class ReportConfig(BaseModel):
    """Links from the report's waterfalls (and `hopscope trace`) to a trace UI."""

    model_config = ConfigDict(extra="forbid")
    #: the trace in the Jaeger UI; default: `[jaeger]`'s query URL + "/trace/{trace_id}"
    jaeger_url_template: str | None = None
    #: the trace in Tempo, e.g. a Grafana Explore URL with {trace_id}; none: no Tempo link
    tempo_url_template: str | None = None

    @field_validator("jaeger_url_template", "tempo_url_template")
    @classmethod
    def _trace_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if TRACE_ID_PLACEHOLDER not in value:
            raise ValueError(f"{value!r} has no {TRACE_ID_PLACEHOLDER} where the trace id goes")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


#: addresses that listen on this host only
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class CollectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    otlp_grpc_port: int = 24317
    otlp_http_port: int = 24318
    prometheus_port: int = 28889
    health_port: int = 23133
    #: e.g. "http://collector.example:4317" — then no local collector is started.
    external_otlp_endpoint: str | None = None
    #: Each run's spans go to `<runs_root>/<hopscope.run_id>/spans/spans.jsonl` (relative: to the cwd of `up`).
    runs_root: Path = Path("runs")
    #: Spans without `hopscope.run_id` land in `<runs_root>/<this>/spans/`.
    unassigned_run_id: str = "_unassigned"
    #: Where spans are forwarded over OTLP gRPC ("host:port"); default: the local Jaeger, if any.
    jaeger_otlp_endpoint: str | None = None
    rotate_megabytes: int = 100
    memory_limit_mib: int = 512
    metrics_flush_interval: str = "5s"
    #: Exemplars (trace ids) kept per histogram series and flush: a handful is enough to open
    #: a trace from a latency point; more only grows every scrape.
    exemplars_per_point: int = Field(default=5, ge=0)
    #: Where the OTLP receivers listen. Anything but loopback needs `otlp_auth = "bearer"`.
    otlp_listen: str = "127.0.0.1"
    #: "bearer": the OTLP receivers accept only requests carrying the shared token
    #: (`authorization: Bearer <token>`; the token from HOPSCOPE_OTLP_TOKEN, else generated into
    #: the collector's state dir, mode 0600); every exporter hopscope starts sends it.
    otlp_auth: Literal["none", "bearer"] = "none"

    @model_validator(mode="after")
    def _exposed_only_with_auth(self) -> CollectorConfig:
        if self.otlp_listen not in LOOPBACK and self.otlp_auth == "none":
            raise ValueError(
                f'otlp_listen = "{self.otlp_listen}" exposes the OTLP receivers beyond this host: '
                'set otlp_auth = "bearer" as well'
            )
        return self

    @property
    def otlp_grpc_endpoint(self) -> str:
        return self.external_otlp_endpoint or f"http://127.0.0.1:{self.otlp_grpc_port}"


class PrometheusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = 29090
    scrape_interval: str = "5s"
    #: Exemplars kept in memory (Prometheus' exemplar storage, a ring buffer over all series).
    max_exemplars: int = Field(default=100_000, ge=0)
    #: e.g. "http://prometheus.example:9090" — then no local server is started.
    external_url: str | None = None
