"""PostgreSQL 15 from Debian: our own cluster in the state dir, ready for Debezium."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
from psycopg import sql

from hopscope.deploy import apt
from hopscope.deploy.base import DeployError, Service, run_checked, write_private
from hopscope.deploy.settings import PostgresConfig

PG_VERSION = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
USER = "hopscope"
DATABASE = "hopscope"
#: The read-only role of the results tables (the Grafana data source): it may SELECT what
#: `write_results` grants it and nothing else; password `postgres_reader_password`.
READER = "hopscope_reader"
#: Debezium's role: it may stream logical replication and SELECT the captured tables (granted
#: by `Connect.cdc_dsn`), nothing else; password `postgres_cdc_password`.
CDC = "hopscope_cdc"
#: The pipelines' data path (the bench process' INSERTs, the glue processes): SELECT and INSERT
#: on the tables each pipeline's setup grants (`grant_pipeline`), nothing else; password
#: `postgres_pipeline_password`. Setup itself (tables, publications, grants) stays with the
#: bootstrap user.
PIPELINE = "hopscope_pipeline"

# The settings the study's fairness rules depend on; `hopscope run` reads them back.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",  # Debezium's pgoutput needs it
    "synchronous_commit": "on",
    "fsync": "on",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "max_connections": "200",
    "shared_buffers": "256MB",
}


class Postgres(Service):
    name = "postgres"
    start_timeout = 60.0

    @property
    def cfg(self) -> PostgresConfig:
        return self.ctx.config.postgres

    @property
    def data_dir(self) -> Path:
        return self.ctx.service_dir(self.name) / "data"

    def is_external(self) -> bool:
        return self.cfg.external_dsn is not None

    def ports(self) -> list[int]:
        return [self.cfg.port]

    def endpoint(self) -> str:
        if self.cfg.external_dsn:
            return _redact(self.cfg.external_dsn)
        return f"postgresql://{USER}@127.0.0.1:{self.cfg.port}/{DATABASE}"

    def dsn(self) -> str:
        """Connection string with the generated password (for clients; never print it)."""
        if self.cfg.external_dsn:
            return self.cfg.external_dsn
        password = self.ctx.secret("postgres_password")
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.cfg.port}/{DATABASE}"

    def reader_dsn(self) -> str | None:
        """The read-only role's connection string (None for an external server: not ours)."""
        if self.cfg.external_dsn:
            return None
        password = self.ctx.secret("postgres_reader_password")
        return f"postgresql://{READER}:{password}@127.0.0.1:{self.cfg.port}/{DATABASE}"

    def cdc_dsn(self) -> str:
        """Debezium's connection string: the replication role, or an external server's DSN."""
        if self.cfg.external_dsn:
            return self.cfg.external_dsn
        password = self.ctx.secret("postgres_cdc_password")
        return f"postgresql://{CDC}:{password}@127.0.0.1:{self.cfg.port}/{DATABASE}"

    def pipeline_dsn(self) -> str:
        """The pipelines' connection string: the least-privilege role, or an external DSN."""
        if self.cfg.external_dsn:
            return self.cfg.external_dsn
        password = self.ctx.secret("postgres_pipeline_password")
        return f"postgresql://{PIPELINE}:{password}@127.0.0.1:{self.cfg.port}/{DATABASE}"

    def grant_pipeline(self, conn: psycopg.Connection, table: str) -> None:
        """Let the pipeline role SELECT and INSERT `table` (and take ids from its sequences);
        creates the role first. Nothing on an external server: its DSN is used as given."""
        if self.is_external():
            return
        self._ensure_role(conn, PIPELINE, "postgres_pipeline_password", "NOREPLICATION")
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(
                sql.Identifier(table), sql.Identifier(PIPELINE)
            )
        )
        sequences = conn.execute(
            "SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
            "WHERE d.refobjid = %s::regclass AND d.deptype IN ('a', 'i')",
            (table,),
        ).fetchall()
        for (seq,) in sequences:
            conn.execute(
                sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                    sql.Identifier(seq), sql.Identifier(PIPELINE)
                )
            )

    def _ensure_role(self, conn: psycopg.Connection, role: str, secret: str, replication: str) -> None:
        """Create (or re-key) a login role that is neither superuser nor creator of anything."""
        password = sql.Literal(self.ctx.secret(secret))
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {}").format(
                sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(role), sql.SQL(replication), password
            )
        )

    def ensure_cdc_role(self, conn: psycopg.Connection) -> None:
        """Create (or re-key) Debezium's replication role; idempotent."""
        self._ensure_role(conn, CDC, "postgres_cdc_password", "REPLICATION")

    def ensure_reader_role(self, conn: psycopg.Connection) -> None:
        """Create (or re-key) the read-only role; idempotent, runs with every health check so a
        cluster made before the role existed gets it without a restart."""
        self._ensure_role(conn, READER, "postgres_reader_password", "NOREPLICATION")
        conn.execute(
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(READER))
        )
        # PG 15 already keeps CREATE on schema public from PUBLIC; TEMPORARY it still grants,
        # and a temporary schema is enough to create functions (for every non-superuser role).
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(DATABASE)))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")

    def is_installed(self) -> bool:
        return (PG_BIN / "postgres").exists()

    def install(self) -> None:
        apt.ensure(self.name, [f"postgresql-{PG_VERSION}"])

    def _initdb(self) -> None:
        svc_dir = self.ctx.service_dir(self.name)
        shutil.chown(svc_dir, "postgres", "postgres")
        pwfile = svc_dir / "pwfile"
        # initdb runs as postgres and must read it; nobody else may, not even for a moment
        write_private(pwfile, self.ctx.secret("postgres_password") + "\n", owner="postgres")
        try:
            run_checked(
                self.name,
                "initdb",
                [
                    "setpriv",
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    USER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = "\n".join(f"{k} = {v}" for k, v in SERVER_SETTINGS.items())
        socket_dir = svc_dir / "run"
        socket_dir.mkdir(exist_ok=True)
        shutil.chown(socket_dir, "postgres", "postgres")
        (self.data_dir / "postgresql.auto.conf").write_text(
            f"# written by hopscope deploy\n{conf}\nunix_socket_directories = '{socket_dir}'\n"
        )
        # Debezium's replication connection authenticates like any other client.
        with (self.data_dir / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 scram-sha-256\n")

    def start(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        self.spawn(
            "postgres",
            [str(PG_BIN / "postgres"), "-D", str(self.data_dir), "-p", str(self.cfg.port)],
            user="postgres",
        )
        self._create_database()

    def _create_database(self) -> None:
        # initdb makes only the `postgres` database; ours is created on first start.
        from hopscope.deploy.base import wait_until

        def create() -> None:
            admin = self.dsn().rsplit("/", 1)[0] + "/postgres"
            with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{DATABASE}"')

        wait_until(create, timeout=self.start_timeout, alive=self.running)

    def health(self) -> None:
        try:
            with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=3) as conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS hopscope_health (id bigserial PRIMARY KEY, note text)"
                )
                row = conn.execute(
                    "INSERT INTO hopscope_health (note) VALUES ('ping') RETURNING id"
                ).fetchone()
                back = conn.execute("SELECT note FROM hopscope_health WHERE id = %s", (row[0],)).fetchone()
                conn.execute("DELETE FROM hopscope_health WHERE id = %s", (row[0],))
                if not self.is_external():
                    self.ensure_reader_role(conn)
        except psycopg.Error as exc:
            raise self.fail("health", f"write + read round trip on {self.endpoint()}: {exc}") from exc
        if back is None or back[0] != "ping":
            raise self.fail("health", f"wrote a row on {self.endpoint()} but read back {back!r}")

    def stop(self) -> None:
        # A fast shutdown: the default smart mode waits for Debezium's replication connection
        # forever. Fast mode can still hang while a walsender waits for a paused logical
        # replication client to confirm the WAL, so fall back to an immediate stop (crash
        # recovery on next start; nothing acknowledged is lost with synchronous_commit=on).
        if self.running() and not self.is_external():
            pg_ctl = [
                "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.data_dir), "-w",
            ]  # fmt: skip
            try:
                run_checked(self.name, "stop", [*pg_ctl, "-m", "fast", "-t", "15"])
            except DeployError:
                run_checked(self.name, "stop", [*pg_ctl, "-m", "immediate", "-t", "15"])
        super().stop()


def _redact(dsn: str) -> str:
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
