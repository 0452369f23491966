"""A small client for a Harper cluster: node addresses, credentials, the operations API, deployment.

The pipelines use it to find each node's REST / operations / MQTT / WebSocket
endpoints, to send operations, to ask for replica confirmation on writes and to
deploy an application component to every node. It needs only httpx.
"""

from __future__ import annotations

import base64
import io
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

#: REST header that makes a write wait for replicas: `<targets>;confirm=<n>`.
CONFIRM_HEADER = "X-Replicate-To"
#: Folders never shipped with a component: node_modules is rebuilt by each node's npm install.
_SKIPPED_DIRS = {".git", "node_modules", "__pycache__"}


class HarperError(RuntimeError):
    """An operation or request to one Harper node failed; names the node and the operation."""


@dataclass(frozen=True)
class HarperNode:
    """One node of the cluster and where to reach it."""

    index: int  #: 1-based
    name: str  #: the node name in the cluster (= replication hostname)
    rest_url: str  #: REST, WebSocket and SSE (`http.port`)
    operations_url: str  #: operations API (`operationsApi.network.port`)
    mqtt_host: str
    mqtt_port: int
    replication_url: str | None = None  #: wss:// URL other nodes use to join it

    @property
    def ws_url(self) -> str:
        """WebSocket base URL: subscribe to `<ws_url>/<Table>/<id>`."""
        scheme, rest = self.rest_url.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.mqtt_host}:{self.mqtt_port}"


def confirm_value(replicas: int = 1) -> str:
    """Header value for 'wait until `replicas` other nodes have the write'."""
    return f"*;confirm={replicas}"


class HarperClient:
    """Talks to every node of one cluster with one set of admin credentials."""

    def __init__(
        self, nodes: Sequence[HarperNode], username: str, password: str, *, timeout: float = 10.0
    ) -> None:
        if not nodes:
            raise ValueError("a Harper cluster needs at least one node")
        self.nodes = list(nodes)
        self.username = username
        self._password = password
        self.timeout = timeout

    # --- addresses and headers ---------------------------------------------------
    def node(self, which: int | HarperNode) -> HarperNode:
        if isinstance(which, HarperNode):
            return which
        if not 1 <= which <= len(self.nodes):
            raise IndexError(f"Harper node {which} does not exist (the cluster has {len(self.nodes)})")
        return self.nodes[which - 1]

    def auth(self) -> tuple[str, str]:
        """(username, password) for MQTT / WebSocket clients; never print it."""
        return self.username, self._password

    def auth_headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.username}:{self._password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def confirm_headers(self, replicas: int = 1) -> dict[str, str]:
        """Headers for a REST write that returns only after `replicas` replicas confirmed it."""
        return {CONFIRM_HEADER: confirm_value(replicas)}

    def http(self, timeout: float | None = None) -> httpx.Client:
        """An authenticated keep-alive client; the caller closes it."""
        return httpx.Client(headers=self.auth_headers(), timeout=timeout or self.timeout)

    # --- operations API ----------------------------------------------------------
    def operation(
        self, which: int | HarperNode, body: dict[str, Any], *, timeout: float | None = None
    ) -> Any:
        """POST one operation to a node's operations API and return the decoded answer.

        Raises HarperError naming the node and operation on an error status, a
        timeout (a confirmed write waits forever while every replica is down, so
        the timeout is ours) or a refused connection.
        """
        node = self.node(which)
        op = body.get("operation", "?")
        try:
            resp = httpx.post(
                node.operations_url,
                json=body,
                headers=self.auth_headers(),
                timeout=timeout or self.timeout,
            )
        except httpx.TimeoutException as exc:
            raise HarperError(
                f"node {node.name}: operation {op!r} got no answer within {timeout or self.timeout:.1f}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise HarperError(f"node {node.name}: operation {op!r} on {node.operations_url}: {exc}") from exc
        if resp.status_code >= 400:
            raise HarperError(
                f"node {node.name}: operation {op!r} returned {resp.status_code}: {resp.text[:500]}"
            )
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def operation_on_all(self, body: dict[str, Any], *, timeout: float | None = None) -> list[Any]:
        return [self.operation(node, body, timeout=timeout) for node in self.nodes]

    # --- application components --------------------------------------------------
    def deploy_component(
        self,
        path: Path | str,
        *,
        project: str | None = None,
        ready_path: str | None = None,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Deploy a component folder to every node and restart their HTTP workers.

        The folder travels as a tar payload (node_modules left out; a node runs
        npm install itself when the folder has a package.json), so this works
        for local and external clusters alike and later edits of the folder do
        not leak into a running cluster. With `ready_path` (e.g. "MyTable/"),
        waits until every node has restarted its HTTP worker and that REST path
        answers below 404.
        """
        folder = Path(path)
        if not (folder / "config.yaml").is_file():
            raise HarperError(f"component folder {folder} has no config.yaml")
        project = project or folder.name
        answer = self.operation(
            1,
            {
                "operation": "deploy_component",
                "project": project,
                "payload": _pack(folder),
                "replicated": len(self.nodes) > 1,
                # "rolling" runs as a job on node 1 that stayed IN_PROGRESS once node 1 restarted itself
                "restart": True,
            },
            timeout=timeout,
        )
        if ready_path is not None:
            # The component answers at once (the deploying thread loads it), then goes away while
            # the worker restarts: wait for that gap first, or a ready check would pass too early.
            self._wait_restart_gap(timeout=min(30.0, timeout))
            self.wait_rest_ready(ready_path, timeout=timeout)
            # restarted workers reconnect replication afterwards; a confirmed write sent before
            # that waits for a confirmation that does not come (seen as a 15 s timeout in CI)
            self.wait_replicating(timeout=timeout)
        return answer if isinstance(answer, dict) else {"message": answer}

    def _wait_restart_gap(self, *, timeout: float) -> None:
        """Wait (bounded) until every node's REST port has refused a connection once."""
        pending = {node.index: node for node in self.nodes}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for index, node in list(pending.items()):
                try:
                    httpx.get(f"{node.rest_url}/", timeout=1)
                except httpx.HTTPError:
                    del pending[index]
            time.sleep(0.1)

    def wait_rest_ready(self, path: str, *, timeout: float = 60.0) -> None:
        """Wait until GET <rest>/<path> answers with a status below 404 on every node."""
        deadline = time.monotonic() + timeout
        with self.http(timeout=5) as http:
            for node in self.nodes:
                url = f"{node.rest_url}/{path.lstrip('/')}"
                last = "no answer"
                while True:
                    try:
                        resp = http.get(url)
                        if resp.status_code < 404:
                            break
                        last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                    except httpx.HTTPError as exc:
                        last = str(exc)
                    if time.monotonic() >= deadline:
                        raise HarperError(f"node {node.name}: {url} not ready after {timeout:.0f}s ({last})")
                    time.sleep(0.5)

    def wait_replicating(self, *, timeout: float = 60.0) -> None:
        """Wait until every node reports every peer's replication sockets connected."""
        if len(self.nodes) < 2:
            return
        deadline = time.monotonic() + timeout
        while True:
            down: dict[str, list[str]] = {}
            for node in self.nodes:
                try:
                    peers = self.peers(node)
                except (HarperError, httpx.HTTPError) as exc:
                    down[node.name] = [f"cluster_status failed: {exc}"]
                    continue
                missing = [p for p, ok in peers.items() if not ok]
                if len(peers) < len(self.nodes) - 1:
                    missing.append(f"{len(self.nodes) - 1 - len(peers)} peer(s) not listed")
                if missing:
                    down[node.name] = missing
            if not down:
                return
            if time.monotonic() >= deadline:
                raise HarperError(f"replication not connected after {timeout:.0f}s: {down}")
            time.sleep(0.5)

    # --- cluster state -----------------------------------------------------------
    def peers(self, which: int | HarperNode) -> dict[str, bool]:
        """Peer node name -> every replication socket connected, as `cluster_status` reports it."""
        status = self.operation(which, {"operation": "cluster_status"})
        out: dict[str, bool] = {}
        for conn in status.get("connections", []) if isinstance(status, dict) else []:
            name = conn.get("name") or urlsplit(conn.get("url", "")).hostname or "?"
            sockets = conn.get("database_sockets") or []
            out[name] = bool(sockets) and all(s.get("connected") for s in sockets)
        return out


def _pack(folder: Path) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for item in sorted(folder.rglob("*")):
            rel = item.relative_to(folder)
            if any(part in _SKIPPED_DIRS for part in rel.parts) or not item.is_file():
                continue
            tar.add(item, arcname=str(rel))
    return base64.b64encode(buf.getvalue()).decode()
