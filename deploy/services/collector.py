"""Our OpenTelemetry Collector distribution, built from the Go module proxy.

(Service class to be written; the config section is fixed here.)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CollectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    otlp_grpc_port: int = 24317
    otlp_http_port: int = 24318
    prometheus_port: int = 28889
    health_port: int = 23133
    #: e.g. "http://collector.example:4317" — then no local collector is started.
    external_otlp_endpoint: str | None = None

    @property
    def otlp_grpc_endpoint(self) -> str:
        return self.external_otlp_endpoint or f"http://127.0.0.1:{self.otlp_grpc_port}"
