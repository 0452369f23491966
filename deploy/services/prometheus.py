"""Prometheus from Debian: scrapes the collector's span metrics."""

from __future__ import annotations

import shutil

import httpx

from hopscope.deploy import apt
from hopscope.deploy.base import Service
from hopscope.deploy.settings import PrometheusConfig


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

    def start(self) -> None:
        svc_dir = self.ctx.service_dir(self.name)
        jobs = "\n".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']"
            for job, target in self.scrape_targets().items()
        )
        conf = svc_dir / "prometheus.yml"
        conf.write_text(
            f"global:\n  scrape_interval: {self.cfg.scrape_interval}\n"
            f"  evaluation_interval: {self.cfg.scrape_interval}\n"
            f"storage:\n  exemplars:\n    max_exemplars: {self.cfg.max_exemplars}\n"
            f"scrape_configs:\n{jobs}\n"
        )
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
