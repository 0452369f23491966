"""Our OpenTelemetry Collector distribution, built from the Go module proxy.

The OCB-generated module in `collector/otelcol-hopscope/` (committed source)
is compiled once into `<cache>/collector/<release>-<module hash>/`; a changed
manifest or module means a new hash and one rebuild. The config rendered from
`collector/config/otelcol-hopscope.yaml.j2` writes each run's spans under
`<runs_root>/<run id>/spans/`, forwards them to Jaeger, and serves span metrics
for Prometheus.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from hopscope.deploy import otlp_auth
from hopscope.deploy.base import Service
from hopscope.deploy.services.jaeger import (
    MARKER,
    go_build,
    install_lock,
    module_hash,
    otlp_json_span,
    render,
)
from hopscope.deploy.settings import CollectorConfig

COLLECTOR_RELEASE = "0.161.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_MODULE = REPO_ROOT / "collector" / "otelcol-hopscope"
COLLECTOR_TEMPLATE = REPO_ROOT / "collector" / "config" / "otelcol-hopscope.yaml.j2"
HEALTH_SERVICE = "hopscope-health"


class Collector(Service):
    name = "collector"
    depends_on = ("jaeger",)
    start_timeout = 60.0

    @property
    def cfg(self) -> CollectorConfig:
        return self.ctx.config.collector

    def is_external(self) -> bool:
        return self.cfg.external_otlp_endpoint is not None

    def endpoint(self) -> str:
        return self.cfg.otlp_grpc_endpoint

    def ports(self) -> list[int]:
        c = self.cfg
        return [c.otlp_grpc_port, c.otlp_http_port, c.prometheus_port, c.health_port]

    def version(self) -> str:
        return f"{COLLECTOR_RELEASE}-{module_hash(COLLECTOR_MODULE)}"

    def binary(self) -> Path:
        return self.ctx.install_dir(self.name, self.version()) / "otelcol-hopscope"

    def install_log(self) -> Path:
        return self.ctx.cache_dir / self.name / "install.log"

    def is_installed(self) -> bool:
        return (self.binary().parent / MARKER).exists() and self.binary().exists()

    def install(self) -> None:
        with install_lock(self.ctx, self.name):
            if self.is_installed():
                return
            go_build(self.ctx, self.name, COLLECTOR_MODULE, ".", self.binary(), self.install_log())
            # Written last: a build interrupted before this point is redone by the next `up`.
            (self.binary().parent / MARKER).write_text(f"otelcol-hopscope {self.version()}\n")

    def runs_root(self) -> Path:
        return self.cfg.runs_root.resolve()

    def jaeger_otlp_grpc(self) -> str:
        if self.cfg.jaeger_otlp_endpoint is not None:
            return self.cfg.jaeger_otlp_endpoint  # "" = no Jaeger export
        jaeger = self.ctx.config.jaeger
        return "" if jaeger.external_url else f"127.0.0.1:{jaeger.otlp_grpc_port}"

    def render_config(self) -> str:
        c = self.cfg
        return render(
            COLLECTOR_TEMPLATE,
            health_port=c.health_port,
            otlp_grpc_port=c.otlp_grpc_port,
            otlp_http_port=c.otlp_http_port,
            prometheus_port=c.prometheus_port,
            memory_limit_mib=c.memory_limit_mib,
            unassigned_run_id=c.unassigned_run_id,
            metrics_flush_interval=c.metrics_flush_interval,
            exemplars_per_point=c.exemplars_per_point,
            runs_root=self.runs_root(),
            rotate_megabytes=c.rotate_megabytes,
            jaeger_otlp_grpc=self.jaeger_otlp_grpc(),
            otlp_listen=c.otlp_listen,
            token_file=otlp_auth.token_file(self.ctx),
        )

    def start(self) -> None:
        conf = self.ctx.service_dir(self.name) / "config.yaml"
        conf.write_text(self.render_config())
        self.runs_root().mkdir(parents=True, exist_ok=True)
        self.spawn("collector", [str(self.binary()), "--config", f"file:{conf}"])

    def send_span(
        self,
        resource: dict[str, str] | None = None,
        attributes: dict[str, str] | None = None,
        service_name: str = HEALTH_SERVICE,
    ) -> str:
        """Export one span over OTLP/HTTP JSON to the local collector; returns its trace id (hex)."""
        trace_id, body = otlp_json_span(service_name, resource, attributes)
        url = f"http://127.0.0.1:{self.cfg.otlp_http_port}/v1/traces"
        httpx.post(url, json=body, headers=otlp_auth.headers(self.ctx), timeout=5).raise_for_status()
        return trace_id

    def health(self) -> None:
        if self.is_external():
            self._external_health()
            return
        url = f"http://127.0.0.1:{self.cfg.health_port}/"
        try:
            httpx.get(url, timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            raise self.fail("health", f"health_check extension {url}: {exc}") from exc
        try:
            self.send_span()
        except httpx.HTTPError as exc:
            raise self.fail(
                "health", f"OTLP/HTTP export to 127.0.0.1:{self.cfg.otlp_http_port}: {exc}"
            ) from exc

    def _external_health(self) -> None:
        # An external collector is only known by its OTLP gRPC endpoint: export one span there.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

        results: list[SpanExportResult] = []

        class Recording(SpanExporter):
            def __init__(self, inner: OTLPSpanExporter) -> None:
                self.inner = inner

            def export(self, spans):  # type: ignore[no-untyped-def]
                results.append(self.inner.export(spans))
                return results[-1]

            def shutdown(self) -> None:
                self.inner.shutdown()

        endpoint = self.cfg.external_otlp_endpoint or ""
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"), timeout=5)
        provider = TracerProvider(resource=Resource.create({"service.name": HEALTH_SERVICE}))
        provider.add_span_processor(SimpleSpanProcessor(Recording(exporter)))
        with provider.get_tracer("hopscope.deploy").start_as_current_span("health-check"):
            pass
        provider.shutdown()
        if results != [SpanExportResult.SUCCESS]:
            raise self.fail("health", f"OTLP gRPC export to external collector {endpoint} failed")
