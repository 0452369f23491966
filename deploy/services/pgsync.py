"""The `postgres` stack's own PostgreSQL pair: a primary and a synchronous streaming replica.

Both run the Debian binaries `postgres.py` installs, on their own ports and data directories
under `<state>/pgsync/`. They are apart from the shared `postgres` service on purpose
(docs/decisions.md D23): `synchronous_standby_names` on that server would make every Kafka-stack
commit wait for a replica too and change that stack's figures.

Start order: the primary (on first start `initdb`, then its database and the replication role),
then the replica (on first start `pg_basebackup` from the primary), then
`synchronous_standby_names` is set on the primary: from then on every commit with
`synchronous_commit = on` returns, and its NOTIFYs are delivered, only once the replica has
flushed its WAL. The health check writes through that path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from hopscope.deploy import apt
from hopscope.deploy.base import (
    DeployError,
    Service,
    pid_alive,
    read_pid,
    run_checked,
    wait_until,
    write_private,
)
from hopscope.deploy.services.postgres import PG_BIN, PG_VERSION
from hopscope.deploy.settings import PgSyncConfig

USER = "hopscope"
DATABASE = "hopscope"
#: the replica's streaming connection (REPLICATION, nothing else); password `pgsync_replication_password`
REPLICATION = "hopscope_repl"
#: the data path (the bench's INSERTs, SELECTs and LISTEN sessions): privileges granted per table
#: by the stack's setup (`grant_pipeline`); password `pgsync_pipeline_password`
PIPELINE = "hopscope_pipeline"
#: the replica's `application_name`, the one name in `synchronous_standby_names`
REPLICA_NAME = "hopscope_replica"
SYNC_STANDBY_NAMES = f"FIRST 1 ({REPLICA_NAME})"

# The settings the study's fairness rules depend on (read back by `fairness`).
PRIMARY_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "replica",
    "synchronous_commit": "on",
    "fsync": "on",
    # the commit record's time per transaction: the `pg.commit` / `pg.replica.confirm` boundary
    "track_commit_timestamp": "on",
    "max_wal_senders": "5",
    "max_connections": "100",
    "shared_buffers": "128MB",
}


class PgSync(Service):
    name = "pgsync"
    start_timeout = 90.0

    @property
    def cfg(self) -> PgSyncConfig:
        return self.ctx.config.pgsync

    @property
    def primary_dir(self) -> Path:
        return self.ctx.service_dir(self.name) / "primary"

    @property
    def replica_dir(self) -> Path:
        return self.ctx.service_dir(self.name) / "replica"

    def is_external(self) -> bool:
        return False

    def ports(self) -> list[int]:
        return [self.cfg.primary_port, self.cfg.replica_port]

    def endpoint(self) -> str:
        return (
            f"postgresql://{USER}@127.0.0.1:{self.cfg.primary_port}/{DATABASE} "
            f"(sync replica :{self.cfg.replica_port})"
        )

    def _dsn(self, user: str, secret: str, port: int, database: str = DATABASE) -> str:
        return f"postgresql://{user}:{self.ctx.secret(secret)}@127.0.0.1:{port}/{database}"

    def dsn(self) -> str:
        """The bootstrap superuser on the primary (setup and read-backs; never print it)."""
        return self._dsn(USER, "pgsync_password", self.cfg.primary_port)

    def replica_dsn(self) -> str:
        """The bootstrap superuser on the replica (read-only: it is in recovery)."""
        return self._dsn(USER, "pgsync_password", self.cfg.replica_port)

    def pipeline_dsn(self) -> str:
        """The data path's role on the primary (NOTIFY reaches only sessions on the primary)."""
        return self._dsn(PIPELINE, "pgsync_pipeline_password", self.cfg.primary_port)

    def grant_pipeline(
        self, conn: psycopg.Connection, table: str, privileges: str = "SELECT, INSERT"
    ) -> None:
        """Create (or re-key) the pipeline role, and grant it `privileges` on `table` and its sequences."""
        password = sql.Literal(self.ctx.secret("pgsync_pipeline_password"))
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PIPELINE,)).fetchone()
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}").format(
                sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(PIPELINE), password
            )
        )
        conn.execute(
            sql.SQL("GRANT {} ON {} TO {}").format(
                sql.SQL(privileges), sql.Identifier(table), sql.Identifier(PIPELINE)
            )
        )
        for (seq,) in conn.execute(
            "SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
            "WHERE d.refobjid = %s::regclass AND d.deptype IN ('a', 'i')",
            (table,),
        ).fetchall():
            conn.execute(
                sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                    sql.Identifier(seq), sql.Identifier(PIPELINE)
                )
            )

    def is_installed(self) -> bool:
        return (PG_BIN / "postgres").exists() and (PG_BIN / "pg_basebackup").exists()

    def install(self) -> None:
        apt.ensure(self.name, [f"postgresql-{PG_VERSION}"])

    # --- start ----------------------------------------------------------------------

    def _as_postgres(self, *argv: str) -> list[str]:
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]

    def _socket_dir(self) -> Path:
        path = self.ctx.service_dir(self.name) / "run"
        path.mkdir(exist_ok=True)
        shutil.chown(path, "postgres", "postgres")
        return path

    def _initdb_primary(self) -> None:
        svc_dir = self.ctx.service_dir(self.name)
        shutil.chown(svc_dir, "postgres", "postgres")
        pwfile = svc_dir / "pwfile"
        write_private(pwfile, self.ctx.secret("pgsync_password") + "\n", owner="postgres")
        try:
            run_checked(
                self.name,
                "initdb",
                self._as_postgres(
                    str(PG_BIN / "initdb"), "-D", str(self.primary_dir), "-U", USER,
                    "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8",
                ),
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        conf = "\n".join(f"{k} = {v}" for k, v in PRIMARY_SETTINGS.items())
        # synchronous_standby_names comes once the replica exists: before, every commit
        # (CREATE DATABASE included) would wait for a standby that is not there yet
        (self.primary_dir / "postgresql.auto.conf").write_text(
            f"# written by hopscope deploy\n{conf}\nunix_socket_directories = '{self._socket_dir()}'\n"
        )
        with (self.primary_dir / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 scram-sha-256\n")

    def _spawn_primary(self) -> None:
        (self.primary_dir / "postmaster.pid").unlink(missing_ok=True)
        self.spawn(
            "primary",
            [str(PG_BIN / "postgres"), "-D", str(self.primary_dir), "-p", str(self.cfg.primary_port)],
            user="postgres",
        )

    def _bootstrap_primary(self) -> None:
        """Our database and the replication role (idempotent, on the running primary)."""

        def prepare() -> None:
            admin = self._dsn(USER, "pgsync_password", self.cfg.primary_port, "postgres")
            with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
                # On a restart synchronous_standby_names is already set and the replica is not up
                # yet: a synchronous commit here would wait for it forever (`up` hung in SyncRep).
                conn.execute("SET synchronous_commit = local")
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATION,)).fetchone()
                conn.execute(
                    sql.SQL("{} ROLE {} LOGIN REPLICATION NOSUPERUSER PASSWORD {}").format(
                        sql.SQL("ALTER" if exists else "CREATE"),
                        sql.Identifier(REPLICATION),
                        sql.Literal(self.ctx.secret("pgsync_replication_password")),
                    )
                )

        wait_until(prepare, timeout=self.start_timeout, alive=self.running)

    def _basebackup_replica(self) -> None:
        svc_dir = self.ctx.service_dir(self.name)
        password = self.ctx.secret("pgsync_replication_password")
        passfile = svc_dir / "replica.pgpass"
        write_private(
            passfile, f"127.0.0.1:{self.cfg.primary_port}:*:{REPLICATION}:{password}\n", owner="postgres"
        )
        conninfo = (
            f"host=127.0.0.1 port={self.cfg.primary_port} user={REPLICATION} "
            f"application_name={REPLICA_NAME} passfile={passfile}"
        )
        shutil.rmtree(self.replica_dir, ignore_errors=True)
        run_checked(
            self.name,
            "pg_basebackup",
            self._as_postgres(
                str(PG_BIN / "pg_basebackup"), "-D", str(self.replica_dir), "-d", conninfo,
                "-X", "stream", "-c", "fast", "-R",
            ),
        )  # fmt: skip
        # -R wrote standby.signal and primary_conninfo (with the application_name the primary's
        # synchronous_standby_names names; the password stays in the 0600 passfile)
        with (self.replica_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write("hot_standby = on\n")

    def _spawn_replica(self) -> None:
        (self.replica_dir / "postmaster.pid").unlink(missing_ok=True)
        self.spawn(
            "replica",
            [str(PG_BIN / "postgres"), "-D", str(self.replica_dir), "-p", str(self.cfg.replica_port)],
            user="postgres",
        )

    def _require_sync_replica(self) -> None:
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=3) as conn:
            current = conn.execute("SHOW synchronous_standby_names").fetchone()[0]
            if current != SYNC_STANDBY_NAMES:
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(
                        sql.Literal(SYNC_STANDBY_NAMES)
                    )
                )
                conn.execute("SELECT pg_reload_conf()")

    def start(self) -> None:
        if not (self.primary_dir / "PG_VERSION").exists():
            shutil.rmtree(self.replica_dir, ignore_errors=True)  # a replica of another primary
            self._initdb_primary()
        self._spawn_primary()
        self._bootstrap_primary()
        if not (self.replica_dir / "PG_VERSION").exists():
            self._basebackup_replica()
        self._spawn_replica()
        self._require_sync_replica()

    # --- checks ---------------------------------------------------------------------

    def replicas(self, conn: psycopg.Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY application_name"
        ).fetchall()
        return [{"application_name": a, "state": s, "sync_state": y} for a, s, y in rows]

    def health(self) -> None:
        where = f"127.0.0.1:{self.cfg.primary_port}"
        try:
            with psycopg.connect(self.replica_dsn(), autocommit=True, connect_timeout=3) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    raise self.fail("health", f"the replica on :{self.cfg.replica_port} is not in recovery")
            with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=3) as conn:
                sync = [r for r in self.replicas(conn) if r["sync_state"] == "sync"]
                if not sync or sync[0]["state"] != "streaming":
                    raise self.fail(
                        "health", f"no streaming synchronous replica on {where}: {self.replicas(conn)}"
                    )
                # a write through the synchronous path (it returns once the replica flushed it)
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS hopscope_health (id bigserial PRIMARY KEY, note text)"
                )
                row = conn.execute(
                    "INSERT INTO hopscope_health (note) VALUES ('ping') RETURNING id"
                ).fetchone()
                conn.execute("DELETE FROM hopscope_health WHERE id = %s", (row[0],))
        except psycopg.Error as exc:
            raise self.fail("health", f"round trip on {where} / :{self.cfg.replica_port}: {exc}") from exc

    def fairness(self) -> dict[str, Any]:
        """The durability settings as the primary reports them, and its replicas' states."""
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=3) as conn:
            settings = {
                name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
                for name in (
                    "synchronous_commit",
                    "synchronous_standby_names",
                    "fsync",
                    "track_commit_timestamp",
                )
            }
            return {"postgres": settings, "replicas": self.replicas(conn)}

    # --- stop -----------------------------------------------------------------------

    def stop(self) -> None:
        # The replica first: the primary's fast shutdown waits for its walsenders to send
        # what is left, and a stopped primary would leave the replica retrying.
        for proc, data in (("replica", self.replica_dir), ("primary", self.primary_dir)):
            pid = read_pid(self.ctx.service_dir(self.name) / f"{proc}.pid")
            if pid is None or not pid_alive(pid):
                continue
            pg_ctl = self._as_postgres(str(PG_BIN / "pg_ctl"), "stop", "-D", str(data), "-w")
            try:
                run_checked(self.name, "stop", [*pg_ctl, "-m", "fast", "-t", "15"])
            except DeployError:
                run_checked(self.name, "stop", [*pg_ctl, "-m", "immediate", "-t", "15"])
        super().stop()
