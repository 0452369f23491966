"""Deploy the hopscope Harper component to every node, only when it changed.

The component folder (`component/`) is staged together with the JS trace
helper (`instrumentation/js/`, copied to `lib/`), hashed, and deployed with
Harper's `deploy_component` when some node does not serve that hash. The
`settings.json` shipped with it names the collector's OTLP/HTTP endpoint and
the hash, which the component reports back (`GET /HopscopeTelemetry/…`): a
deploy is done when every node's *restarted* worker serves the new hash, not
when the old worker still answers. Each node installs the pinned npm packages
itself (`npm install` from `package-lock.json`); node_modules is never shipped.

The Harper stack deploys it (`ensure_deployed`, from the driver's preflight): the Harper
service knows nothing of it. When every node already serves the digest this costs one
staging copy, one hash and one GET per node.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from hopscope.deploy.harper_client import HarperClient, HarperError
from hopscope.deploy.services.harper import Harper

PROJECT = "hopscope"
COMPONENT_DIR = Path(__file__).resolve().parent / "component"
JS_HELPER_DIR = Path(__file__).resolve().parents[2] / "instrumentation" / "js"
#: REST path every node must answer once the component is loaded.
READY_PATH = "Notify/"
#: the component's own account, which names the digest it was deployed with
DIGEST_PATH = "HopscopeTelemetry/deploy-check"
_SKIP = {"node_modules", ".git", "__pycache__"}


def stage(dest: Path, otlp_traces_url: str) -> str:
    """Write the deployable folder into `dest`; returns its digest (also in settings.json)."""
    for item in sorted(COMPONENT_DIR.iterdir()):
        if item.name in _SKIP or item.name.endswith(".md"):
            continue
        if item.is_dir():
            shutil.copytree(item, dest / item.name, ignore=shutil.ignore_patterns(*_SKIP))
        else:
            shutil.copy2(item, dest / item.name)
    (dest / "lib").mkdir(exist_ok=True)
    for js in sorted(JS_HELPER_DIR.glob("*.js")):
        shutil.copy2(js, dest / "lib" / js.name)
    digest = folder_hash(dest, extra=otlp_traces_url.encode())
    settings = {"otlp_traces_url": otlp_traces_url, "digest": digest}
    (dest / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    return digest


def folder_hash(folder: Path, extra: bytes = b"") -> str:
    digest = hashlib.sha256(extra)
    for item in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(folder)).encode() + b"\0" + item.read_bytes() + b"\0")
    return digest.hexdigest()


def served_digests(client: HarperClient) -> dict[str, str | None]:
    """Node name -> digest of the component its worker serves (None: no component, or no answer)."""
    out: dict[str, str | None] = {}
    with client.http(timeout=5) as http:
        for node in client.nodes:
            try:
                resp = http.get(f"{node.rest_url}/{DIGEST_PATH}")
                out[node.name] = resp.json().get("component_digest") if resp.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                out[node.name] = None
    return out


def wait_serving(client: HarperClient, digest: str, timeout: float) -> None:
    """Wait until every node's worker serves `digest`; HarperError naming the nodes that do not."""
    deadline = time.monotonic() + timeout
    while True:
        served = served_digests(client)
        behind = {name: d for name, d in served.items() if d != digest}
        if not behind:
            return
        if time.monotonic() >= deadline:
            raise HarperError(
                f"after {timeout:.0f}s these nodes still do not serve component {digest[:12]}: "
                + ", ".join(f"{name} serves {(d or 'nothing')[:12]}" for name, d in behind.items())
            )
        time.sleep(0.5)


def ensure_component(
    client: HarperClient,
    state_file: Path,
    otlp_traces_url: str,
    *,
    force: bool = False,
    before_deploy: Callable[[], object] | None = None,
) -> str:
    """Deploy when changed; returns 'deployed' or 'unchanged'. Raises HarperError on failure.

    "Changed" is decided by the digest every node's worker serves, not by `state_file`:
    that file only records the digest last seen deployed (for people and `hopscope logs`).

    Holds a file lock next to `state_file`: two `up`s deploying at once made Harper's
    npm installs trip over each other.
    """
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with state_file.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_locked(client, state_file, otlp_traces_url, force, before_deploy)


def _ensure_locked(
    client: HarperClient,
    state_file: Path,
    otlp_traces_url: str,
    force: bool,
    before_deploy: Callable[[], object] | None,
) -> str:
    with tempfile.TemporaryDirectory(prefix="hopscope-harper-component-") as tmp:
        folder = Path(tmp) / PROJECT
        folder.mkdir()
        digest = stage(folder, otlp_traces_url)
        if not force and set(served_digests(client).values()) == {digest}:
            state_file.write_text(digest + "\n")
            return "unchanged"
        if before_deploy is not None:
            before_deploy()
        try:
            client.deploy_component(folder, project=PROJECT, ready_path=READY_PATH, timeout=240.0)
            wait_serving(client, digest, timeout=120.0)
        except HarperError as exc:
            raise HarperError(f"deploying the hopscope component from {COMPONENT_DIR}: {exc}") from exc
    state_file.write_text(digest + "\n")
    return "deployed"


def ensure_deployed(harper: Harper) -> str:
    """Deploy the component to the cluster `harper` runs if some node does not serve it
    (idempotent); returns 'deployed' or 'unchanged'. Raises HarperError on failure."""
    otlp = f"http://127.0.0.1:{harper.ctx.config.collector.otlp_http_port}/v1/traces"
    stale = harper.component_install_dirs(PROJECT)
    return ensure_component(
        harper.client(),
        harper.ctx.service_dir(harper.name) / "component.sha256",
        otlp,
        before_deploy=lambda: [shutil.rmtree(path, ignore_errors=True) for path in stale],
    )
