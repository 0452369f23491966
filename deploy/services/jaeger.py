"""Jaeger v2 (v1.76.0, cmd/jaeger), built from the Go module proxy: the local trace store.

The pinned module in `deploy/jaeger/module/` (go.mod + go.sum, a `tool`
directive on cmd/jaeger) is compiled once into the cache; memory storage, all
ports on 127.0.0.1. The Go helpers here are shared with the collector build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jinja2

from hopscope.deploy.base import Context, DeployError, Service
from hopscope.deploy.settings import JaegerConfig

JAEGER_VERSION = "v1.76.0"
JAEGER_PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"
DEPLOY_DIR = Path(__file__).resolve().parent.parent
JAEGER_MODULE = DEPLOY_DIR / "jaeger" / "module"
JAEGER_TEMPLATE = DEPLOY_DIR / "jaeger" / "config.yaml.j2"
MARKER = ".installed"


# --- Go builds into the cache (shared with the collector) ------------------------------


def go_env(ctx: Context) -> dict[str, str]:
    """Module and build caches inside the hopscope cache, so only a fresh machine's first build is slow."""
    go_root = ctx.cache_dir / "go"
    return {
        "GOMODCACHE": str(go_root / "mod"),
        "GOCACHE": str(go_root / "build"),
        # The module proxy is the only source; never fetch another toolchain.
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-buildvcs=false -mod=readonly",
    }


def module_hash(module_dir: Path) -> str:
    """Hash of the files that decide the binary; a change means a rebuild into a new dir."""
    digest = hashlib.sha256()
    for path in sorted(p for p in module_dir.iterdir() if p.suffix in (".go", ".mod", ".sum")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def go_build(ctx: Context, service: str, module_dir: Path, package: str, out: Path, log: Path) -> None:
    """`go build` one package of a pinned module into `out`; output goes to `log`."""
    go = shutil.which("go")
    if go is None:
        raise DeployError(service, "install", "the `go` tool (Go >= 1.26) is not on PATH", log)
    out.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), package]
    t0 = time.monotonic()
    with log.open("a") as fh:
        fh.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} in {module_dir}: {' '.join(argv)}\n")
        fh.flush()
        proc = subprocess.run(
            argv,
            cwd=module_dir,
            env={**os.environ, **go_env(ctx)},
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        fh.write(f"--- exit {proc.returncode} after {time.monotonic() - t0:.0f}s\n")
    if proc.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-8:])
        raise DeployError(service, "install", f"go build {package} exited {proc.returncode}: {tail}", log)


@contextlib.contextmanager
def install_lock(ctx: Context, service: str) -> Iterator[None]:
    """One build per service at a time: a second `up` (another shell, a test session) waits, then finds it done."""
    path = ctx.cache_dir / service / "install.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def render(template: Path, **values: object) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.from_string(template.read_text()).render(**values)


def otlp_json_span(
    service_name: str,
    resource: dict[str, str] | None = None,
    attributes: dict[str, str] | None = None,
    name: str = "health-check",
) -> tuple[str, dict]:
    """A one-span OTLP/JSON export request with a fresh trace id (hex), for round-trip checks."""
    trace_id = secrets.token_hex(16)
    now = time.time_ns()
    attrs = {"service.name": service_name, **(resource or {})}
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "hopscope.deploy"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": secrets.token_hex(8),
                                "name": name,
                                "kind": 1,
                                "attributes": [
                                    {"key": k, "value": {"stringValue": v}}
                                    for k, v in (attributes or {}).items()
                                ],
                                "startTimeUnixNano": str(now - 1_000_000),
                                "endTimeUnixNano": str(now),
                            }
                        ],
                    }
                ],
            }
        ]
    }
    return trace_id, body


def jaeger_trace_span_count(query_url: str, trace_id: str) -> int:
    """Spans Jaeger returns for a trace via api_v3 (0 when it does not know the trace yet)."""
    resp = httpx.get(f"{query_url}/api/v3/traces/{trace_id}", timeout=5)
    if resp.status_code == 404:
        return 0
    resp.raise_for_status()
    count = 0
    # The HTTP gateway streams one {"result": TracesData} object per chunk; usually one.
    for line in resp.text.splitlines() or [resp.text]:
        line = line.strip()
        if not line:
            continue
        result = json.loads(line).get("result", {})
        for rs in result.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                count += sum(1 for s in ss.get("spans", []) if s.get("traceId", "").lower() == trace_id)
    return count


class Jaeger(Service):
    name = "jaeger"
    start_timeout = 60.0

    @property
    def cfg(self) -> JaegerConfig:
        return self.ctx.config.jaeger

    def is_external(self) -> bool:
        return self.cfg.external_url is not None

    def endpoint(self) -> str:
        return self.cfg.query_url

    def ports(self) -> list[int]:
        c = self.cfg
        return [c.query_port, c.query_grpc_port, c.otlp_grpc_port, c.otlp_http_port]

    def version(self) -> str:
        return f"{JAEGER_VERSION}-{module_hash(JAEGER_MODULE)}"

    def binary(self) -> Path:
        return self.ctx.install_dir(self.name, self.version()) / "bin" / "jaeger"

    def install_log(self) -> Path:
        return self.ctx.cache_dir / self.name / "install.log"

    def is_installed(self) -> bool:
        return (self.binary().parent.parent / MARKER).exists() and self.binary().exists()

    def install(self) -> None:
        with install_lock(self.ctx, self.name):
            if self.is_installed():
                return
            go_build(self.ctx, self.name, JAEGER_MODULE, JAEGER_PACKAGE, self.binary(), self.install_log())
            # Written last: a build interrupted before this point is redone by the next `up`.
            (self.binary().parent.parent / MARKER).write_text(f"{JAEGER_PACKAGE}@{JAEGER_VERSION}\n")

    def start(self) -> None:
        conf = self.ctx.service_dir(self.name) / "config.yaml"
        c = self.cfg
        conf.write_text(
            render(
                JAEGER_TEMPLATE,
                query_port=c.query_port,
                query_grpc_port=c.query_grpc_port,
                otlp_grpc_port=c.otlp_grpc_port,
                otlp_http_port=c.otlp_http_port,
                max_traces=c.max_traces,
            )
        )
        self.spawn("jaeger", [str(self.binary()), "--config", str(conf)])

    def health(self) -> None:
        query = self.cfg.query_url
        otlp = self.cfg.otlp_http_url
        try:
            if otlp is None:
                httpx.get(f"{query}/api/v3/services", timeout=5).raise_for_status()
                return
            trace_id, body = otlp_json_span("hopscope-health")
            httpx.post(f"{otlp}/v1/traces", json=body, timeout=5).raise_for_status()
            # The batch processor holds spans up to 200 ms before they are queryable.
            deadline = time.monotonic() + 5
            while jaeger_trace_span_count(query, trace_id) == 0:
                if time.monotonic() > deadline:
                    raise self.fail(
                        "health", f"span of trace {trace_id} sent to {otlp} not found via {query}/api/v3"
                    )
                time.sleep(0.25)
        except httpx.HTTPError as exc:
            raise self.fail("health", f"OTLP → api_v3 round trip ({otlp} → {query}): {exc}") from exc
