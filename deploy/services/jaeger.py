"""Jaeger v2 (v1.76.0, cmd/jaeger), built from the Go module proxy: the local trace store.

(Service class to be written; the config section is fixed here.)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

JAEGER_VERSION = "v1.76.0"


class JaegerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query_port: int = 26686
    otlp_grpc_port: int = 24417
    otlp_http_port: int = 24418
    #: e.g. "http://jaeger.example:16686" — then no local Jaeger is started.
    external_url: str | None = None

    @property
    def query_url(self) -> str:
        return self.external_url or f"http://127.0.0.1:{self.query_port}"
