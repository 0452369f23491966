"""Harper (npm harperdb 4.7.29): a 3-node replicated cluster on one host.

Node N runs from its own ROOTPATH and HOME under `<state>/harper/node<N>/`
with the cluster name 127.0.0.N (Harper keeps a boot file in $HOME and names
a node by its replication hostname, so neither may be shared). Node 1 joins
the others with `add_node` once; membership lives in each node's system
database, so later starts find the mesh already there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from hopscope.deploy.base import Service, wait_until
from hopscope.deploy.harper_client import CONFIRM_HEADER, HarperClient, HarperError, HarperNode, confirm_value
from hopscope.deploy.settings import HarperConfig

HARPER_VERSION = "4.7.29"
HEALTH_DATABASE = "hopscope"
HEALTH_TABLE = "health"
_INSTALLED_MARKER = ".hopscope-installed"
_NODE_SETTINGS = "hopscope-node.json"

_console = Console(stderr=True)


class Harper(Service):
    name = "harper"
    start_timeout = 120.0
    #: seconds the last health check's confirmed write took (None before one ran)
    last_confirmed_write_s: float | None = None
    #: the health table exists (checked once per service object: `describe_all` is not cheap)
    _health_table_known: bool = False

    @property
    def cfg(self) -> HarperConfig:
        return self.ctx.config.harper

    # --- where things are -----------------------------------------------------------
    @property
    def install_dir(self) -> Path:
        return self.ctx.install_dir(self.name, HARPER_VERSION)

    @property
    def harperdb_bin(self) -> Path:
        return self.install_dir / "node_modules" / ".bin" / "harperdb"

    @property
    def install_log(self) -> Path:
        return self.ctx.cache_dir / self.name / f"install-{HARPER_VERSION}.log"

    def node_dir(self, index: int) -> Path:
        return self.ctx.service_dir(self.name) / f"node{index}"

    def node_env(self, index: int) -> dict[str, str]:
        return {"HOME": str(self.node_dir(index) / "home"), "ROOTPATH": str(self.node_dir(index) / "root")}

    def node_ports(self, index: int) -> dict[str, int]:
        shift = (index - 1) * self.cfg.port_step
        return {
            "operations": self.cfg.operations_port + shift,
            "http": self.cfg.http_port + shift,
            "replication": self.cfg.replication_port + shift,
            "mqtt": self.cfg.mqtt_port + shift,
            "mqtt_secure": self.cfg.mqtt_secure_port + shift,
        }

    def nodes(self) -> list[HarperNode]:
        if self.cfg.external_urls is not None:
            return self._external_nodes()
        out = []
        for index in range(1, self.cfg.nodes + 1):
            host, ports = f"127.0.0.{index}", self.node_ports(index)
            out.append(
                HarperNode(
                    index=index,
                    name=host,
                    rest_url=f"http://{host}:{ports['http']}",
                    operations_url=f"http://{host}:{ports['operations']}",
                    mqtt_host=host,
                    mqtt_port=ports["mqtt"],
                    replication_url=f"wss://{host}:{ports['replication']}",
                )
            )
        return out

    def _external_nodes(self) -> list[HarperNode]:
        urls = self.cfg.external_urls or []
        ops = self.cfg.external_operations_urls
        mqtt = self.cfg.external_mqtt
        for label, values in (("external_operations_urls", ops), ("external_mqtt", mqtt)):
            if values is not None and len(values) != len(urls):
                raise self.fail(
                    "config", f"[harper] {label} has {len(values)} entries, external_urls {len(urls)}"
                )
        out = []
        for i, url in enumerate(urls):
            parts = httpx.URL(url)
            host = parts.host
            mqtt_host, _, mqtt_port = (mqtt[i] if mqtt else f"{host}:1883").rpartition(":")
            out.append(
                HarperNode(
                    index=i + 1,
                    name=host,
                    rest_url=url.rstrip("/"),
                    operations_url=(ops[i] if ops else f"{parts.scheme}://{host}:9925").rstrip("/"),
                    mqtt_host=mqtt_host,
                    mqtt_port=int(mqtt_port),
                )
            )
        return out

    def client(self, timeout: float | None = None) -> HarperClient:
        if self.is_external():
            if self.cfg.external_password is None:
                raise self.fail("config", "[harper] external_urls is set but external_password is not")
            user, password = self.cfg.external_username, self.cfg.external_password
        else:
            user, password = self.cfg.admin_user, self.ctx.secret("harper_admin_password")
        return HarperClient(self.nodes(), user, password, timeout=timeout or self.cfg.request_timeout)

    # --- Service interface --------------------------------------------------------
    def is_external(self) -> bool:
        return self.cfg.external_urls is not None

    def endpoint(self) -> str:
        return ", ".join(node.rest_url for node in self.nodes())

    def ports(self) -> list[int]:
        if self.is_external():
            return []
        return [port for index in range(1, self.cfg.nodes + 1) for port in self.node_ports(index).values()]

    def is_installed(self) -> bool:
        return (self.install_dir / _INSTALLED_MARKER).is_file() and self.harperdb_bin.exists()

    def install(self) -> None:
        if self.is_installed():
            return
        if shutil.which("npm") is None:
            raise self.fail("install", "npm is not on PATH (install Node.js 20 and npm)")
        if self.install_dir.exists():  # a half install: start over
            shutil.rmtree(self.install_dir)
        self.install_dir.mkdir(parents=True)
        (self.install_dir / "package.json").write_text(
            json.dumps({"name": "hopscope-harper-runtime", "version": "0.0.0", "private": True}, indent=2)
        )
        self.install_log.parent.mkdir(parents=True, exist_ok=True)
        _console.print(f"  harper: npm install harperdb@{HARPER_VERSION} (log: {self.install_log})")
        argv = ["npm", "install", "--no-audit", "--no-fund", "--save-exact", f"harperdb@{HARPER_VERSION}"]
        with self.install_log.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.run(
                argv, cwd=self.install_dir, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        if proc.returncode != 0 or not self.harperdb_bin.exists():
            tail = " | ".join(self.install_log.read_text(errors="replace").strip().splitlines()[-8:])
            raise self.fail(
                "install", f"npm install harperdb@{HARPER_VERSION} exited {proc.returncode}: {tail}"
            )
        self._print_licence()
        (self.install_dir / _INSTALLED_MARKER).write_text(f"harperdb@{HARPER_VERSION}\n")

    def _print_licence(self) -> None:
        licence = self.install_dir / "node_modules" / "harperdb" / "LICENSE"
        text = (
            licence.read_text(errors="replace") if licence.is_file() else "(no LICENSE file in the package)"
        )
        _console.rule(f"harperdb {HARPER_VERSION} licence terms ({licence})")
        _console.print(text, markup=False, highlight=False)
        _console.rule(
            "Harper is installed under these terms (TC_AGREEMENT=yes is passed to each node's install)"
        )

    def start(self) -> None:
        for index in range(1, self.cfg.nodes + 1):
            self._init_node(index)
        for index in range(1, self.cfg.nodes + 1):
            self._link_harper_log(index)
            self.spawn(
                f"node{index}",
                [str(self.harperdb_bin), "run"],
                env={**self.node_env(index), "HARPER_SET_CONFIG": json.dumps(self.run_config(index))},
                cwd=self.node_dir(index),
            )
        client = self.client()
        for node in client.nodes:
            wait_until(lambda node=node: self._ping(node), timeout=self.start_timeout, alive=self.running)
        self.join_cluster(client)

    def run_config(self, index: int) -> dict[str, Any]:
        """Where node `index` listens and whom it lets in without credentials, as Harper config
        (passed in HARPER_SET_CONFIG at every start, so a changed setting needs no reinstall).

        Harper has no host key, but each of its port settings takes "host:port" (it splits at
        the last colon: getHostFromListeningPort/getPortFromListeningPort in 4.7.29, and its
        own replication URL takes the port part). HARPER_SET_CONFIG is applied on every
        `harperdb run`, so nodes installed with bare ports are moved to loopback without a
        reinstall, and setting `listen_all_interfaces` moves them back.
        """
        ports = self.node_ports(index)
        host = "" if self.cfg.listen_all_interfaces else f"127.0.0.{index}:"

        def at(port: int) -> str | int:
            return f"{host}{port}" if host else port

        return {
            "authentication": {"authorizeLocal": self.cfg.authorize_local},
            "http": {"port": at(ports["http"])},
            "operationsApi": {"network": {"port": at(ports["operations"])}},
            "mqtt": {"network": {"port": at(ports["mqtt"]), "securePort": at(ports["mqtt_secure"])}},
            "replication": {"securePort": at(ports["replication"])},
        }

    def _link_harper_log(self, index: int) -> None:
        # Harper writes its own log inside ROOTPATH; a link puts it where `hopscope logs` looks.
        link = self.ctx.service_dir(self.name) / f"node{index}-hdb.log"
        if not link.is_symlink():
            link.symlink_to(self.node_dir(index) / "root" / "log" / "hdb.log")

    def main_log(self) -> Path:
        hdb_log = self.ctx.service_dir(self.name) / "node1-hdb.log"
        return hdb_log if hdb_log.exists() else super().main_log()

    def _init_node(self, index: int) -> None:
        """Run `harperdb install` for a node once; refuse a node set up with other settings."""
        settings = self._node_settings(index)
        marker = self.node_dir(index) / _NODE_SETTINGS
        if marker.is_file():
            old = json.loads(marker.read_text())
            # authorize_local was an install setting once; it is applied at every start now
            old.pop("authorize_local", None)
            if old != settings:
                changed = sorted(k for k in settings if old.get(k) != settings[k])
                raise self.fail(
                    "start",
                    f"node{index} was set up with other settings ({', '.join(changed)}); "
                    f"remove {self.node_dir(index)} to re-create it (its data goes with it)",
                )
            return
        node_dir = self.node_dir(index)
        if node_dir.exists():  # a half-done setup
            shutil.rmtree(node_dir)
        (node_dir / "home").mkdir(parents=True)
        ports = self.node_ports(index)
        env = {
            **self.node_env(index),
            "TC_AGREEMENT": "yes",
            "HDB_ADMIN_USERNAME": self.cfg.admin_user,
            "HDB_ADMIN_PASSWORD": self.ctx.secret("harper_admin_password"),
            "DEFAULTS_MODE": "dev",
            "REPLICATION_HOSTNAME": f"127.0.0.{index}",
            "OPERATIONSAPI_NETWORK_PORT": str(ports["operations"]),
            "HTTP_PORT": str(ports["http"]),
            "MQTT_NETWORK_PORT": str(ports["mqtt"]),
            "MQTT_NETWORK_SECUREPORT": str(ports["mqtt_secure"]),
            "REPLICATION_SECUREPORT": str(ports["replication"]),
            "THREADS_COUNT": str(self.cfg.threads),
            # dev mode would open the Node inspector on 9229 in every node
            "THREADS_DEBUG": "false",
            "LOGGING_STDSTREAMS": "false",
            "LOGGING_LEVEL": self.cfg.log_level,
            "AUTHENTICATION_AUTHORIZELOCAL": "true" if self.cfg.authorize_local else "false",
        }
        log = self.ctx.log_path(self.name, f"install-node{index}")
        with log.open("ab") as out:
            out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} harperdb install (node{index})\n".encode())
            out.flush()
            proc = subprocess.run(
                [str(self.harperdb_bin), "install"],
                env={**os.environ, **env},
                cwd=node_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=180,
            )
        if proc.returncode != 0:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-6:])
            raise self.fail(
                "install", f"`harperdb install` for node{index} exited {proc.returncode}: {tail} ({log})"
            )
        marker.write_text(json.dumps(settings, indent=2))

    def _node_settings(self, index: int) -> dict[str, Any]:
        return {
            "version": HARPER_VERSION,
            "hostname": f"127.0.0.{index}",
            "ports": self.node_ports(index),
            "threads": self.cfg.threads,
            "log_level": self.cfg.log_level,
            "admin_user": self.cfg.admin_user,
        }

    def _ping(self, node: HarperNode) -> None:
        try:
            resp = httpx.get(f"{node.operations_url}/health", timeout=3)
        except httpx.HTTPError as exc:
            raise self.fail("start", f"node {node.name}: {node.operations_url}/health: {exc}") from exc
        if resp.status_code != 200:
            raise self.fail("start", f"node {node.name}: /health answered {resp.status_code}")

    def join_cluster(self, client: HarperClient | None = None) -> list[str]:
        """Have node 1 add every node it does not know yet; returns the nodes added (none on a re-run)."""
        client = client or self.client()
        if len(client.nodes) < 2:
            return []
        added = []
        known = self._known_nodes(client)
        for node in client.nodes[1:]:
            if node.name in known:
                continue
            body = {
                "operation": "add_node",
                "url": node.replication_url,
                # each node signs with its own self-made CA; add_node exchanges them
                "verify_tls": False,
                "authorization": {"username": client.username, "password": client.auth()[1]},
            }
            try:
                client.operation(1, body, timeout=30)
            except HarperError as exc:
                raise self.fail("cluster", f"add_node {node.replication_url} on node 1: {exc}") from exc
            added.append(node.name)
        return added

    def _known_nodes(self, client: HarperClient) -> set[str]:
        rows = client.operation(
            1,
            {
                "operation": "search_by_value",
                "database": "system",
                "table": "hdb_nodes",
                "search_attribute": "name",
                "search_value": "*",
                "get_attributes": ["name", "url"],
            },
        )
        return {row.get("name") for row in rows if isinstance(row, dict)}

    def health(self) -> None:
        """Write on node 1 with replica confirmation, read it back on every other node."""
        try:
            client = self.client()
            # a node whose HTTP workers restart (a component deploy, a ping timeout on a busy
            # host) drops its replication sockets for a moment: "healthy" means all reconnected
            client.wait_replicating(timeout=60)
            self._ensure_health_table(client)
            record_id = f"health-{time.time_ns()}"
            record = {"id": record_id, "note": "ping", "written_at": time.time()}
            started = time.monotonic()
            client.operation(
                1,
                {
                    "operation": "upsert",
                    "database": HEALTH_DATABASE,
                    "table": HEALTH_TABLE,
                    "records": [record],
                    "replicatedConfirmation": min(self.cfg.confirm_replicas, len(client.nodes) - 1),
                },
            )
            self.last_confirmed_write_s = time.monotonic() - started
            for node in client.nodes[1:]:
                self._read_back(client, node, record_id)
            client.operation(
                1,
                {
                    "operation": "delete",
                    "database": HEALTH_DATABASE,
                    "table": HEALTH_TABLE,
                    "ids": [record_id],
                },
            )
        except HarperError as exc:
            raise self.fail("health", f"replicated write/read round trip: {exc}") from exc

    def component_install_dirs(self, project: str) -> list[Path]:
        """The `node_modules` folder of component `project` on every local node (none when the
        cluster is external). Harper's redeploy sometimes half-removes it (ENOTEMPTY) and its npm
        install then fails on the remains: a deployer may clear them first for a clean install."""
        if self.is_external():
            return []
        return [
            self.node_dir(i) / "root" / "components" / project / "node_modules"
            for i in range(1, self.cfg.nodes + 1)
        ]

    def _ensure_health_table(self, client: HarperClient) -> None:
        if self._health_table_known:
            return
        schema = client.operation(1, {"operation": "describe_all"})
        if HEALTH_TABLE in (schema.get(HEALTH_DATABASE) or {}):
            self._health_table_known = True
            return
        client.operation(
            1,
            {
                "operation": "create_table",
                "database": HEALTH_DATABASE,
                "table": HEALTH_TABLE,
                "primary_key": "id",
            },
        )

    def replication_lag_s(self, timeout: float = 10.0) -> float:
        """Seconds until an unconfirmed marker write on node 1 is readable on every other node.
        Writes replicate in order, so a queue of earlier writes delays the marker: on an idle
        cluster here it is 80-110 ms: Harper batches unconfirmed writes before sending them)."""
        client = self.client()
        if len(client.nodes) < 2:
            return 0.0
        self._ensure_health_table(client)
        record_id = f"marker-{time.time_ns()}"
        started = time.monotonic()
        client.operation(
            1,
            {"operation": "upsert", "database": HEALTH_DATABASE, "table": HEALTH_TABLE,
             "records": [{"id": record_id, "note": "ping"}]},
        )  # fmt: skip
        for node in client.nodes[1:]:
            self._read_back(client, node, record_id, timeout=timeout, interval=0.01)
        lag = time.monotonic() - started
        client.operation(
            1, {"operation": "delete", "database": HEALTH_DATABASE, "table": HEALTH_TABLE, "ids": [record_id]}
        )
        return lag

    def _read_back(
        self,
        client: HarperClient,
        node: HarperNode,
        record_id: str,
        timeout: float = 10.0,
        interval: float = 0.2,
    ) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = client.operation(
                    node,
                    {
                        "operation": "search_by_id",
                        "database": HEALTH_DATABASE,
                        "table": HEALTH_TABLE,
                        "ids": [record_id],
                        "get_attributes": ["id", "note"],
                    },
                )
                if isinstance(last, list) and last and last[0].get("note") == "ping":
                    return
            except HarperError as exc:  # the table itself may still be replicating
                last = str(exc)
            time.sleep(interval)
        raise HarperError(
            f"node {node.name}: record {record_id} written on node 1 not readable after {timeout:.0f}s ({last})"
        )

    def stop(self) -> None:
        super().stop()
        # Harper leaves its own PID file; a stale one would confuse `harperdb stop` run by hand.
        for index in range(1, self.cfg.nodes + 1):
            (self.node_dir(index) / "root" / "hdb.pid").unlink(missing_ok=True)

    # --- what the study records ---------------------------------------------------
    def fairness(self) -> dict[str, Any]:
        """The settings that make the comparison fair, read back from the running nodes."""
        client = self.client()
        nodes = []
        for node in client.nodes:
            conf = client.operation(node, {"operation": "get_configuration"})
            repl = conf.get("replication", {}) if isinstance(conf, dict) else {}
            nodes.append(
                {
                    "name": node.name,
                    "replication": {
                        k: repl.get(k) for k in ("hostname", "databases", "routes", "securePort", "port")
                    },
                    "threads": (conf.get("threads") or {}).get("count"),
                    "peers": client.peers(node),
                }
            )
        replicas = min(self.cfg.confirm_replicas, len(client.nodes) - 1)
        return {
            "harper_version": HARPER_VERSION,
            "node_count": len(client.nodes),
            "external": self.is_external(),
            "write_confirmation": {
                "replicas": replicas,
                "rest_header": {CONFIRM_HEADER: confirm_value(replicas)},
                "operations_api_field": {"replicatedConfirmation": replicas},
                "last_health_write_s": self.last_confirmed_write_s,
            },
            "nodes": nodes,
        }
