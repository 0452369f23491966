"""Nothing hopscope starts is reachable from another host (issue #22, "Exposure closed").

Reads the listening sockets of every started service's processes (psutil, by the PIDs
`up` recorded, children included) and fails on any address outside loopback. The one
exception Harper 4.7.29 leaves open is named and checked below, not skipped.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import httpx
import psutil
import pytest

from hopscope.deploy.base import Context, read_pid
from hopscope.deploy.registry import available, service_class
from hopscope.deploy.services.harper import Harper

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Listener:
    service: str
    pid: int
    process: str
    kind: str  # tcp | udp
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.service} pid {self.pid} ({self.process}) {self.kind} {self.ip}:{self.port}"


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # Java's sockets show 127.0.0.1 as ::ffff:127.0.0.1
    return addr.is_loopback


def _listeners(ctx: Context) -> list[Listener]:
    found = []
    for name in available():
        svc = service_class(name)(ctx)
        if svc.is_external():
            continue
        for pidfile in svc.pidfiles():
            pid = read_pid(pidfile)
            if pid is None:
                continue
            root = psutil.Process(pid)
            for proc in (root, *root.children(recursive=True)):
                for conn in proc.net_connections(kind="inet"):
                    kind = "tcp" if conn.type == 1 else "udp"  # socket.SOCK_STREAM == 1
                    if kind == "tcp" and conn.status != psutil.CONN_LISTEN:
                        continue
                    if kind == "udp" and conn.raddr:
                        continue  # a connected UDP client socket receives from its peer only
                    found.append(Listener(name, proc.pid, proc.name(), kind, conn.laddr.ip, conn.laddr.port))
    return found


def _harper_decoy(harper: Harper, listener: Listener) -> bool:
    """Harper's one unconfigurable listener (see deploy/README.md, Security).

    Each node's operations server calls fastify's `listen({port: 0, host: "::"})` (hard-coded in
    harperdb 4.7.29's threadServer.js) only to finish fastify's start-up; real requests reach
    the app through Harper's own sockets. It is on a random port, not one of the node's
    configured ports, and must serve nothing: an authenticated operation and /health get 404.
    If a later Harper serves anything there, this fails and the exception must be revisited.
    """
    if listener.service != "harper" or listener.port in harper.ports():
        return False
    user, password = harper.client().auth()
    base = f"http://127.0.0.1:{listener.port}"
    op = httpx.post(base, json={"operation": "describe_all"}, auth=(user, password), timeout=5)
    health = httpx.get(f"{base}/health", timeout=5)
    return (op.status_code, health.status_code) == (404, 404)


def test_every_service_listens_on_loopback_only(deployed: Context) -> None:
    listeners = _listeners(deployed)
    print("\n" + "\n".join(str(item) for item in sorted(listeners, key=lambda x: (x.service, x.port))))
    services = {item.service for item in listeners}
    started = {n for n in available() if not service_class(n)(deployed).is_external()}
    # a service without a single listener here would mean its PIDs were not found, not that it is safe
    assert services == started, f"no listening socket found for {started - services}"

    harper = service_class("harper")(deployed)
    assert isinstance(harper, Harper)
    exposed = [item for item in listeners if not _is_loopback(item.ip)]
    decoys = [item for item in exposed if _harper_decoy(harper, item)]
    print("accepted exception (Harper's fastify start-up listener, serves 404):")
    print("\n".join(f"  {item}" for item in decoys) or "  none")
    assert [item for item in exposed if item not in decoys] == []
    # at most the one start-up listener per node, never more
    assert len(decoys) <= harper.cfg.nodes


def test_the_pipeline_role_may_write_its_tables_and_nothing_else(deployed: Context) -> None:
    """The pipelines' data path connects as `hopscope_pipeline`: SELECT and INSERT on the tables
    a pipeline's setup grants, no DDL, no other table, no superuser (issue #22 item 5)."""
    import psycopg
    from psycopg import errors

    from hopscope.deploy.services.postgres import PIPELINE, Postgres

    postgres = Postgres(deployed)
    if postgres.is_external():
        pytest.skip("an external Postgres: its DSN is used as given")
    table = "hopscope_exposure_pipeline_check"
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, note text)")
        postgres.grant_pipeline(admin, table)
        admin.execute("CREATE TABLE IF NOT EXISTS hopscope_health (id bigserial PRIMARY KEY, note text)")
    try:
        with psycopg.connect(postgres.pipeline_dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == PIPELINE
            row = conn.execute(f"INSERT INTO {table} (note) VALUES ('x') RETURNING id").fetchone()
            assert conn.execute(f"SELECT note FROM {table} WHERE id = %s", row).fetchone() == ("x",)
            flags = conn.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication FROM pg_roles WHERE rolname = %s",
                (PIPELINE,),
            ).fetchone()
            assert flags == (False, False, False, False)
            refused = {
                "delete its rows": f"DELETE FROM {table}",
                "create a table": "CREATE TABLE hopscope_pipeline_owned (x int)",
                "create a function": "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                "read another table": "SELECT count(*) FROM hopscope_health",
            }
            for what, statement in refused.items():
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(statement)
                    pytest.fail(f"the pipeline role could {what}")
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
            admin.execute(f"DROP TABLE IF EXISTS {table}")
