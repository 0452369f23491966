"""The 3-node Harper cluster: replication, confirmed writes, component deployment, restart.

Runs against the real cluster `hopscope up` starts (the `deployed` fixture).
The last test stops and restarts the cluster, so it stays last in the file.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psutil
import pytest
from rich.console import Console

from hopscope.deploy.base import Context, port_owner, read_pid
from hopscope.deploy.config import load_config
from hopscope.deploy.harper_client import HarperError, HarperNode
from hopscope.deploy.lifecycle import down, up
from hopscope.deploy.registry import service_class
from hopscope.deploy.services.harper import HEALTH_DATABASE, HEALTH_TABLE, Harper

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def harper(deployed: Context) -> Harper:
    svc = service_class("harper")(deployed)
    assert isinstance(svc, Harper)
    if svc.is_external():
        pytest.skip("harper points at an external cluster; these tests drive local nodes")
    return svc


def _upsert(
    harper: Harper, node: int, record: dict, *, confirm: int = 0, timeout: float | None = None
) -> None:
    body = {"operation": "upsert", "database": HEALTH_DATABASE, "table": HEALTH_TABLE, "records": [record]}
    if confirm:
        body["replicatedConfirmation"] = confirm
    harper.client().operation(node, body, timeout=timeout)


def _read(harper: Harper, node: int, record_id: str, timeout: float = 15.0) -> dict | None:
    client = harper.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = client.operation(
            node,
            {
                "operation": "search_by_id",
                "database": HEALTH_DATABASE,
                "table": HEALTH_TABLE,
                "ids": [record_id],
                "get_attributes": ["*"],
            },
        )
        if rows:
            return rows[0]
        time.sleep(0.2)
    return None


def test_every_node_sees_the_other_two_connected(harper: Harper) -> None:
    client = harper.client()
    names = {node.name for node in client.nodes}
    assert names == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
    for node in client.nodes:
        peers = client.peers(node)
        assert set(peers) == names - {node.name}, f"node {node.name} peers {peers}"
        assert all(peers.values()), f"node {node.name} has a disconnected peer: {peers}"


def test_write_on_node1_is_read_back_on_nodes_2_and_3(harper: Harper) -> None:
    record_id = f"t-{uuid.uuid4().hex}"
    _upsert(harper, 1, {"id": record_id, "note": "replicated", "n": 42})
    for node in (2, 3):
        row = _read(harper, node, record_id)
        assert row is not None, f"record {record_id} never reached node {node}"
        assert row["note"] == "replicated" and row["n"] == 42


def test_second_up_starts_nothing_and_joins_nobody(harper: Harper) -> None:
    pids = {p.name: p.pid for p in harper.processes()}
    timings = up(harper.ctx, "harper", Console(stderr=True))
    assert [t.state for t in timings] == ["already-running"]
    assert {p.name: p.pid for p in harper.processes()} == pids
    assert harper.join_cluster() == []
    assert harper._known_nodes(harper.client()) == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}


def test_credentials_are_generated_and_checked(harper: Harper) -> None:
    client = harper.client()
    user, password = client.auth()
    assert user == harper.cfg.admin_user and len(password) >= 20
    assert password == harper.ctx.secret("harper_admin_password")
    for node in client.nodes:
        op = {"operation": "describe_all"}
        assert httpx.post(node.operations_url, json=op, auth=(user, "wrong")).status_code == 401
        if not harper.cfg.authorize_local:
            # no loopback bypass: a local client without credentials is refused too, on the
            # operations API and on MQTT
            assert httpx.post(node.operations_url, json=op).status_code == 401
            assert _mqtt_connect_code(node, None) != 0
            assert _mqtt_connect_code(node, (user, password)) == 0


def _mqtt_connect_code(node: HarperNode, auth: tuple[str, str] | None) -> int:
    """The CONNACK reason code Harper gives this client (0: accepted)."""
    codes: queue.Queue[int] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    if auth is not None:
        client.username_pw_set(*auth)
    client.on_connect = lambda c, u, flags, reason, props: codes.put(reason.value)
    client.connect(node.mqtt_host, node.mqtt_port)
    client.loop_start()
    try:
        return codes.get(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_confirmed_write_waits_for_a_replica_and_our_timeout_ends_it(harper: Harper) -> None:
    """With both replicas frozen an unconfirmed write returns, a confirmed one does not."""
    replica_pids = [read_pid(harper.ctx.service_dir("harper") / f"node{n}.pid") for n in (2, 3)]
    assert all(replica_pids)
    frozen_id, after_id = f"t-{uuid.uuid4().hex}", f"t-{uuid.uuid4().hex}"
    try:
        for pid in replica_pids:
            os.kill(pid, signal.SIGSTOP)
        _upsert(harper, 1, {"id": f"t-{uuid.uuid4().hex}", "note": "unconfirmed"}, timeout=10)
        started = time.monotonic()
        with pytest.raises(HarperError, match="no answer within"):
            _upsert(harper, 1, {"id": frozen_id, "note": "confirmed"}, confirm=1, timeout=3)
        assert time.monotonic() - started < 8
    finally:
        for pid in replica_pids:
            os.kill(pid, signal.SIGCONT)
    # Once the replicas run again, the frozen write reaches them and confirmed writes return.
    _upsert(harper, 1, {"id": after_id, "note": "confirmed"}, confirm=1, timeout=30)
    for node in (2, 3):
        assert _read(harper, node, frozen_id) is not None
        assert _read(harper, node, after_id) is not None


COMPONENT_CONFIG = """rest: true
graphqlSchema:
  files: 'schema.graphql'
jsResource:
  files: 'resources.js'
"""

COMPONENT_RESOURCE = """export class WhoAmI extends Resource {
  static loadAsInstance = false;
  get() {
    const ctx = this.getContext();
    return { node: server.hostname, confirm: ctx?.replicatedConfirmation ?? null };
  }
}
"""


class _MqttSubscriber:
    """MQTT 5 subscriber that skips the retained replay of existing records (retainHandling=2)."""

    def __init__(self, node: HarperNode, auth: tuple[str, str], topic: str) -> None:
        self.messages: queue.Queue[tuple[str, dict]] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(*auth)
        self.client.on_connect = lambda c, *_: c.subscribe(
            topic, options=mqtt.SubscribeOptions(qos=1, retainHandling=2)
        )
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, json.loads(msg.payload)))
        self.client.connect(node.mqtt_host, node.mqtt_port)
        self.client.loop_start()
        assert subscribed.wait(15), f"no SUBACK from {node.mqtt_url}"

    def wait(self, timeout: float) -> tuple[str, dict]:
        try:
            return self.messages.get(timeout=timeout)
        finally:
            self.client.loop_stop()
            self.client.disconnect()


def test_component_deploys_to_every_node_and_rest_writes_replicate(harper: Harper, tmp_path: Path) -> None:
    table = f"Probe{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "probe_component"
    folder.mkdir()
    (folder / "config.yaml").write_text(COMPONENT_CONFIG)
    (folder / "schema.graphql").write_text(
        f"type {table} @table @export {{\n  id: ID @primaryKey\n  value: Float\n  note: String\n}}\n"
    )
    (folder / "resources.js").write_text(COMPONENT_RESOURCE)
    client = harper.client()
    project = f"probe{table[5:]}"
    answer = client.deploy_component(folder, project=project, ready_path=f"{table}/")
    assert {r["node"] for r in answer.get("replicated", [])} == {"127.0.0.2", "127.0.0.3"}

    subscriber = _MqttSubscriber(client.nodes[1], client.auth(), f"{table}/#")
    with client.http(timeout=15) as http:
        for node in client.nodes:
            who = http.get(f"{node.rest_url}/WhoAmI", headers=client.confirm_headers()).json()
            # the component runs on that node, and the confirmation header reached its context
            assert who == {"node": node.name, "confirm": 1}
        put = http.put(
            f"{client.nodes[0].rest_url}/{table}/r1",
            json={"value": 1.5, "note": "rest"},
            headers=client.confirm_headers(),
        )
        assert put.status_code in (200, 204), put.text
        # the write on node 1 is announced to an MQTT subscriber on node 2
        message = subscriber.wait(timeout=15)
        assert message[0] == f"{table}/r1" and message[1]["value"] == 1.5
        for node in client.nodes[1:]:
            # confirm=1 waits for one replica only: the other receives the write a little later
            deadline = time.monotonic() + 15
            while (got := http.get(f"{node.rest_url}/{table}/r1")).status_code == 404:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert got.status_code == 200, f"{node.name}: {got.status_code} {got.text}"
            assert got.json()["value"] == 1.5 and got.json()["note"] == "rest"
    # throwaway: remove it from every node again (its resources go at the next restart)
    client.operation(1, {"operation": "drop_component", "project": project, "replicated": True})
    for node in client.nodes:
        listed = client.operation(node, {"operation": "get_components"})
        assert project not in {entry.get("name") for entry in listed.get("entries", [])}


def test_fairness_reads_back_replication_and_confirmation(harper: Harper) -> None:
    # The component test before restarts HTTP workers, and a busy host makes a node miss a
    # replication ping (it reconnects within a second): read back once every socket is up.
    deadline = time.monotonic() + 60
    while True:
        harper.client().wait_replicating(timeout=60)
        fair = harper.fairness()
        if all(all(n["peers"].values()) for n in fair["nodes"]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert fair["harper_version"] == "4.7.29" and fair["node_count"] == 3
    assert fair["write_confirmation"]["replicas"] == 1
    assert fair["write_confirmation"]["rest_header"] == {"X-Replicate-To": "*;confirm=1"}
    for node in fair["nodes"]:
        assert node["replication"]["hostname"] == node["name"]
        assert node["replication"]["databases"] == "*"
        assert node["threads"] == harper.cfg.threads
        assert len(node["peers"]) == 2 and all(node["peers"].values())


def test_external_config_starts_nothing() -> None:
    cfg = load_config(
        environ={
            "HOPSCOPE_STATE_DIR": "/tmp/hopscope-harper-external-test",
            "HOPSCOPE_HARPER__EXTERNAL_URLS": "https://h1.example:9926,https://h2.example:9926",
            "HOPSCOPE_HARPER__EXTERNAL_PASSWORD": "pw",
        }
    )
    svc = Harper(Context(cfg))
    assert svc.is_external() and svc.ports() == []
    nodes = svc.client().nodes
    assert [n.operations_url for n in nodes] == ["https://h1.example:9925", "https://h2.example:9925"]
    assert [n.ws_url for n in nodes] == ["wss://h1.example:9926", "wss://h2.example:9926"]
    assert nodes[1].mqtt_url == "mqtt://h2.example:1883"


def _harper_processes(harper: Harper) -> list[psutil.Process]:
    root = str(harper.ctx.service_dir("harper"))
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        cwd = proc.info.get("cwd") or ""
        if cwd.startswith(root) or any(root in part for part in proc.info.get("cmdline") or []):
            found.append(proc)
    return found


def test_down_leaves_no_process_and_a_restart_keeps_the_data(harper: Harper) -> None:
    record_id = f"t-{uuid.uuid4().hex}"
    _upsert(harper, 1, {"id": record_id, "note": "kept"}, confirm=1, timeout=15)
    rss = harper.status().rss_bytes
    print(f"\nharper: RSS of {harper.cfg.nodes} nodes {rss / 2**20:.0f} MiB")
    assert rss > 0

    assert "harper" in down(harper.ctx, "harper")
    assert _harper_processes(harper) == []
    assert harper.pidfiles() == []
    for index in range(1, harper.cfg.nodes + 1):
        for port in harper.node_ports(index).values():
            # node N listens on 127.0.0.N only: a check on 127.0.0.1 would not see it
            assert port_owner(port, f"127.0.0.{index}") is None, f"port {port} still taken after down"

    started = time.monotonic()
    timings = up(harper.ctx, "harper", Console(stderr=True))
    print(f"harper: warm start {time.monotonic() - started:.1f}s (3 nodes + cluster check)")
    assert [t.state for t in timings] == ["started"]
    assert harper.join_cluster() == []
    for node in (2, 3):
        # a node that was reconnecting when the write was confirmed by the other catches up now
        row = _read(harper, node, record_id, timeout=45)
        peers = {n.name: harper.client().peers(n) for n in harper.client().nodes}
        assert row is not None and row["note"] == "kept", f"node {node} lacks the row; peers {peers}"
