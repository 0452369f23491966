"""Prometheus from Debian: scrapes the collector's span metrics."""

from __future__ import annotations

import shutil
from typing import Any

import httpx
import yaml

from hopscope.deploy import apt
from hopscope.deploy.base import Service
from hopscope.deploy.settings import PrometheusConfig

# The collector's edge series (span_metrics/edges, collector/config) filed under the names the
# servicegraph connector would give them, so Tempo's service map and the Hops dashboard read
# them unchanged: calls -> request_total, duration -> request_server_seconds, the edge's ends
# -> client/server/connection_type. Series of spans that name no edge are dropped.
EDGE_FAMILY = "traces_service_graph_(calls_total|duration_seconds_(bucket|sum|count))"
EDGE_RELABEL: list[dict[str, Any]] = [
    {"source_labels": ["__name__", "hopscope_edge_client"], "regex": f"{EDGE_FAMILY};", "action": "drop"},
    {"source_labels": ["__name__", "hopscope_edge_server"], "regex": f"{EDGE_FAMILY};", "action": "drop"},
    {
        "source_labels": ["__name__"],
        "regex": "traces_service_graph_calls_total",
        "target_label": "__name__",
        "replacement": "traces_service_graph_request_total",
    },
    {
        "source_labels": ["__name__"],
        "regex": "traces_service_graph_duration_seconds_(bucket|sum|count)",
        "target_label": "__name__",
        "replacement": "traces_service_graph_request_server_seconds_$1",
    },
    *(
        {
            "source_labels": [f"hopscope_edge_{end}"],
            "regex": "(.+)",
            "target_label": label,
            "replacement": "$1",
        }
        for end, label in (("client", "client"), ("server", "server"), ("type", "connection_type"))
    ),
    {"regex": "hopscope_edge_(client|server|type)", "action": "labeldrop"},
]
# servicegraph counts failed calls in a series of their own; here they are the calls whose
# span ended in error.
EDGE_RULES = {
    "groups": [
        {
            "name": "hopscope-service-graph",
            "rules": [
                {
                    "record": "traces_service_graph_request_failed_total",
                    "expr": 'traces_service_graph_request_total{status_code="STATUS_CODE_ERROR"}',
                }
            ],
        }
    ]
}


class Prometheus(Service):
    name = "prometheus"
    depends_on = ("collector",)
    # Prometheus answers 503 until it has replayed its WAL: 34 s here after days of runs'
    # series, so 30 s failed an `up` on a healthy store.
    start_timeout = 180.0

    @property
    def cfg(self) -> PrometheusConfig:
        return self.ctx.config.prometheus

    def is_external(self) -> bool:
        return self.cfg.external_url is not None

    def ports(self) -> list[int]:
        return [self.cfg.port]

    def endpoint(self) -> str:
        return self.cfg.external_url or f"http://127.0.0.1:{self.cfg.port}"

    def is_installed(self) -> bool:
        return shutil.which("prometheus") is not None

    def install(self) -> None:
        apt.ensure(self.name, ["prometheus"])

    def scrape_targets(self) -> dict[str, str]:
        collector = self.ctx.config.collector
        return {"otel-collector": f"127.0.0.1:{collector.prometheus_port}"}

    def config(self, rules_file: str) -> dict[str, Any]:
        """prometheus.yml: the collector's endpoint scraped, its edge series relabelled."""
        return {
            "global": {
                "scrape_interval": self.cfg.scrape_interval,
                "evaluation_interval": self.cfg.scrape_interval,
            },
            "storage": {"exemplars": {"max_exemplars": self.cfg.max_exemplars}},
            "rule_files": [rules_file],
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [{"targets": [target]}],
                    "metric_relabel_configs": EDGE_RELABEL,
                }
                for job, target in self.scrape_targets().items()
            ],
        }

    def start(self) -> None:
        svc_dir = self.ctx.service_dir(self.name)
        rules = svc_dir / "service-graph.rules.yml"
        rules.write_text(yaml.safe_dump(EDGE_RULES, sort_keys=False))
        conf = svc_dir / "prometheus.yml"
        conf.write_text(yaml.safe_dump(self.config(str(rules)), sort_keys=False))
        (svc_dir / "data").mkdir(exist_ok=True)
        self.spawn(
            "prometheus",
            [
                "prometheus",
                f"--config.file={conf}",
                f"--storage.tsdb.path={svc_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.cfg.port}",
                "--storage.tsdb.retention.time=7d",
                # the collector's exemplars (trace ids on latency buckets) are kept, so a
                # dashboard's latency point opens its trace
                "--enable-feature=exemplar-storage",
            ],
        )

    def query(self, promql: str) -> list[dict]:
        """Run an instant query; returns the result vector (raises on API errors)."""
        resp = httpx.get(f"{self.endpoint()}/api/v1/query", params={"query": promql}, timeout=5)
        resp.raise_for_status()
        body = resp.json()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus query {promql!r}: {body}")
        return body["data"]["result"]

    def exemplars(self, promql: str, start: float, end: float) -> list[dict]:
        """The exemplars of the series `promql` selects between `start` and `end` (Unix s):
        `[{"seriesLabels": {...}, "exemplars": [{"labels": {"trace_id": ...}, "value", "timestamp"}]}]`."""
        resp = httpx.get(
            f"{self.endpoint()}/api/v1/query_exemplars",
            params={"query": promql, "start": start, "end": end},
            timeout=10,
        )
        resp.raise_for_status()
        body = resp.json()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus exemplars {promql!r}: {body}")
        return body["data"] or []

    def health(self) -> None:
        try:
            result = self.query("vector(1)")
        except (httpx.HTTPError, RuntimeError) as exc:
            raise self.fail("health", f"query round trip on {self.endpoint()}: {exc}") from exc
        if not result or result[0]["value"][1] != "1":
            raise self.fail("health", f"query vector(1) on {self.endpoint()} returned {result!r}")
