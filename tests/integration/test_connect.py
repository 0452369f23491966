"""Kafka Connect + Debezium 3.6.1 Postgres: plugin, fairness overrides, and a real CDC round trip."""

from __future__ import annotations

import re
import time

import httpx
import psycopg
import pytest

from hopscope.deploy.base import Context
from hopscope.deploy.registry import service_class
from hopscope.deploy.services.kafka import CDC_HEALTH_CONNECTOR, CDC_HEALTH_TOPIC, DEBEZIUM_PG_CLASS, Connect

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def connect(deployed: Context) -> Connect:
    svc = service_class("connect")(deployed)
    assert isinstance(svc, Connect)
    return svc


def test_debezium_postgres_plugin_is_loaded(connect: Connect) -> None:
    plugins = connect.rest_get("/connector-plugins", timeout=10).json()
    versions = {p["class"]: p["version"] for p in plugins}
    assert versions.get(DEBEZIUM_PG_CLASS) == "3.6.1.Final"


def test_internal_topics_are_replicated_three_times(connect: Connect) -> None:
    for topic in ("hopscope-connect-configs", "hopscope-connect-offsets", "hopscope-connect-status"):
        assert connect.kafka.topic_facts(topic)["replication_factor"] == 3


def test_cdc_round_trip_carries_the_traceparent(connect: Connect) -> None:
    before_us = time.time_ns() // 1000
    event = connect.cdc_round_trip()
    after_us = time.time_ns() // 1000
    assert event["op"] == "c"
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", event["after"]["traceparent"])
    source = event["source"]
    assert (source["connector"], source["db"], source["table"]) == (
        "postgresql",
        "hopscope",
        "hopscope_cdc_health",
    )
    # The commit time Postgres reports must fall inside the round trip (same host clock, 1 s slack).
    assert before_us - 1_000_000 <= source["ts_us"] <= after_us
    facts = connect.kafka.topic_facts(CDC_HEALTH_TOPIC)
    assert (facts["replication_factor"], facts["min.insync.replicas"]) == (3, 2)


def test_connector_config_is_idempotent_and_fair(connect: Connect) -> None:
    connect.cdc_round_trip()  # registers the health connector if this is a fresh worker
    config = connect.rest_get(f"/connectors/{CDC_HEALTH_CONNECTOR}/config", timeout=10).json()
    assert connect.put_connector_config(CDC_HEALTH_CONNECTOR, config) == "unchanged"
    assert config["plugin.name"] == "pgoutput"
    assert int(config["poll.interval.ms"]) <= 10
    assert config["producer.override.enable.idempotence"] == "true"
    assert config["producer.override.acks"] == "all"
    assert config["producer.override.compression.type"] == "lz4"
    # The password is a config-provider reference, never the secret itself.
    assert config["database.password"].startswith("${file:")


def test_rest_api_refuses_requests_without_the_credentials(connect: Connect) -> None:
    if connect.is_external():
        pytest.skip("an external worker's REST auth is not ours to check")
    url = connect.cfg.url
    for path in ("/", "/connector-plugins", f"/connectors/{CDC_HEALTH_CONNECTOR}/config"):
        assert httpx.get(f"{url}{path}", timeout=10).status_code == 401, path
        wrong = httpx.get(f"{url}{path}", auth=(connect.cfg.rest_user, "not-the-password"), timeout=10)
        assert wrong.status_code == 401, path
    # writes too: nobody without the password can point a connector at another file or host
    put = httpx.put(
        f"{url}/connectors/intruder/config", json={"connector.class": DEBEZIUM_PG_CLASS}, timeout=10
    )
    assert put.status_code == 401
    assert connect.rest_get("/").status_code == 200


def _validate(connect: Connect, extra: dict[str, str]) -> dict[str, list[str]]:
    """The worker's verdict on a Debezium config (no connector is created): errors by key."""
    with connect._http() as http:
        resp = http.put(
            "/connector-plugins/PostgresConnector/config/validate",
            json={"connector.class": DEBEZIUM_PG_CLASS, "name": "probe", "topic.prefix": "probe", **extra},
        )
    assert resp.status_code == 200, resp.text[:300]
    return {
        c["value"]["name"]: c["value"]["errors"]
        for c in resp.json()["configs"]
        if c.get("value") and c["value"]["errors"]
    }


def test_connectors_override_only_the_producer_settings_the_study_sets(connect: Connect) -> None:
    if connect.is_external():
        pytest.skip("an external worker's policy is not ours to check")
    for key in ("bootstrap.servers", "sasl.jaas.config", "interceptor.classes"):
        errors = _validate(connect, {f"producer.override.{key}": "x"})
        assert f"producer.override.{key}" in errors, errors
    allowed = {f"producer.override.{k}": v for k, v in {"linger.ms": "1", "acks": "all"}.items()}
    assert not [k for k in _validate(connect, allowed) if "override" in k]


def test_file_config_provider_reads_only_the_secrets_file(connect: Connect) -> None:
    if connect.is_external():
        pytest.skip("an external worker's config provider is not ours to check")
    # Resolving a reference is logged, not reported by validate: read the worker's own log.
    log = connect.ctx.log_path("connect", "worker")
    secrets_json = connect.ctx.state_dir / "secrets.json"
    for path, refused in ((secrets_json, True), (connect.secrets_file, False)):
        start = log.stat().st_size
        _validate(connect, {"database.password": "${file:" + str(path) + ":postgres_password}"})
        with log.open("rb") as fh:
            fh.seek(start)
            new = fh.read().decode(errors="replace")
        assert (f"The path {path} is not allowed to be accessed" in new) is refused, path


def test_debezium_streams_as_its_own_replication_role(connect: Connect) -> None:
    """#22: Debezium's role may stream WAL and read the captured tables, nothing else."""
    from hopscope.deploy.services.postgres import CDC, Postgres

    postgres = Postgres(connect.ctx)
    if postgres.is_external():
        pytest.skip("the replication role is made on hopscope's own Postgres")
    connect.cdc_round_trip()  # streams as the role; the change event must still arrive
    config = connect.rest_get(f"/connectors/{CDC_HEALTH_CONNECTOR}/config").json()
    assert (config["database.user"], config["publication.autocreate.mode"]) == (CDC, "disabled")
    with psycopg.connect(postgres.dsn()) as conn:
        assert conn.execute(
            "SELECT rolsuper, rolreplication, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s",
            (CDC,),
        ).fetchone() == (False, True, False, False)
    with psycopg.connect(postgres.cdc_dsn(), autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM hopscope_cdc_health")  # the captured table: readable
        refused = {
            "read a table it does not capture": "SELECT count(*) FROM hopscope_health",
            "write the captured table": "DELETE FROM hopscope_cdc_health",
            "create a table": "CREATE TABLE public.cdc_probe (x int)",
            "create a temporary function": "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        }
        for what, statement in refused.items():
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                continue
            pytest.fail(f"Debezium's role could {what}")
