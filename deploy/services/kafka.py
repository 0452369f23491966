"""Apache Kafka 4.4 (3 KRaft brokers) and Kafka Connect + Debezium, run from Maven Central jars.

There is no Kafka tarball here: Maven fetches the jars a tarball's `libs/` holds
(`deploy/kafka/libs/pom.xml`) and the Debezium Postgres connector as a Connect
plugin directory (`deploy/kafka/debezium-postgres/pom.xml`) into the cache. The
brokers are three combined broker+controller JVMs on 127.0.0.1 (dynamic KRaft
quorum, storage formatted once, cluster id kept in `<state>/kafka/cluster.json`);
Connect is one distributed worker whose internal topics are replicated 3x.

Besides the services, this module is the Kafka helper API the pipelines use:
`Kafka.ensure_topic`, `Kafka.topic_facts` (the fairness table), `Kafka.tool_argv`
(Kafka's own tools such as EndToEndLatency), `Connect.put_connector_config` and
`debezium_postgres_config`.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from hopscope.deploy import apt
from hopscope.deploy.base import DeployError, Service, terminate_pidfile, wait_until, write_private
from hopscope.deploy.settings import ConnectConfig, KafkaConfig

KAFKA_VERSION = "4.4.0"
DEBEZIUM_VERSION = "3.6.1.Final"
#: The Connect worker's Kafka version: the one Debezium 3.6.1 is built against (see connect-libs/pom.xml).
CONNECT_KAFKA_VERSION = "4.3.1"

#: Templates and Maven POMs (no jars) live next to the deploy code.
ASSETS = Path(__file__).resolve().parent.parent / "kafka"
DEBEZIUM_PG_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
LICENCES = (
    f"Apache Kafka {KAFKA_VERSION} and Debezium {DEBEZIUM_VERSION}: Apache License 2.0; "
    "Log4j 2: Apache License 2.0; SLF4J: MIT; PostgreSQL JDBC: BSD-2-Clause. "
    "Fetched from Maven Central by name and version."
)
# What the worker's libs/ already holds: a second copy inside the plugin dir would shadow it.
_PLUGIN_EXCLUDED_GROUPS = "org.apache.kafka,org.slf4j,org.apache.logging.log4j"
_PLUGIN_EXCLUDED_ARTIFACTS = (
    "jackson-core,jackson-databind,jackson-annotations,jackson-datatype-jsr310,"
    "lz4-java,snappy-java,zstd-jni,jakarta.ws.rs-api"
)

#: Kafka's own REST extension for HTTP basic auth (its jar: connect-basic-auth-extension).
BASIC_AUTH_JAR = f"connect-basic-auth-extension-{CONNECT_KAFKA_VERSION}.jar"
_JAAS_LOGIN_MODULE = "org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule"

HEALTH_TOPIC = "hopscope.health"
CDC_HEALTH_TABLE = "hopscope_cdc_health"
CDC_HEALTH_CONNECTOR = "hopscope-cdc-health"
CDC_HEALTH_PREFIX = "hopscope_health"
CDC_HEALTH_TOPIC = f"{CDC_HEALTH_PREFIX}.public.{CDC_HEALTH_TABLE}"
#: librdkafka logs every refused connection while brokers start; health checks report failures themselves.
QUIET_CLIENT: dict[str, Any] = {"log_level": 2, "socket.timeout.ms": 5000}


# --- installing jars with Maven --------------------------------------------------------


def _ensure_java_and_maven(service: str) -> None:
    missing = [
        pkg for tool, pkg in (("java", "openjdk-17-jre-headless"), ("mvn", "maven")) if not shutil.which(tool)
    ]
    if missing:
        apt.ensure(service, missing)


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _maven_copy(
    service: str, pom: Path, out_dir: Path, log: Path, repo: Path, extra: Sequence[str] = ()
) -> None:
    """Copy a POM's runtime dependencies into `out_dir` (fresh), logging Maven's output.

    `repo` is Maven's local repository, shared by Kafka and Connect so a jar is downloaded once.
    """
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    argv = [
        "mvn", "-B", "--no-transfer-progress",
        f"-Dmaven.repo.local={repo}",
        "-f", str(pom),
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
        *extra,
    ]  # fmt: skip
    with log.open("a") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0 or not any(tmp.glob("*.jar")):
        raise DeployError(service, "install", f"Maven could not fetch the jars of {pom}", log)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def _kafka_uuid() -> str:
    """A Kafka Uuid string (base64url of 16 random bytes); never starting with '-', which CLIs misread."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _render(template: str, values: Mapping[str, object]) -> str:
    return string.Template((ASSETS / template).read_text()).substitute({k: str(v) for k, v in values.items()})


def _java_argv(
    libs: Path, heap: str, main: str, *args: str, log_level: str = "INFO", jvm: Sequence[str] = ()
) -> list[str]:
    return [
        "java", f"-Xms{heap}", f"-Xmx{heap}",
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true", *jvm,
        f"-Dlog4j2.configurationFile={ASSETS / 'log4j2.properties'}", f"-Dhopscope.log.level={log_level}",
        "-cp", f"{libs}/*", main, *args,
    ]  # fmt: skip


# --- Kafka ---------------------------------------------------------------------------


class Kafka(Service):
    name = "kafka"
    start_timeout = 120.0
    _admin: Any = None

    @property
    def cfg(self) -> KafkaConfig:
        return self.ctx.config.kafka

    @property
    def home(self) -> Path:
        return self.ctx.install_dir("kafka", KAFKA_VERSION)

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    def is_external(self) -> bool:
        return self.cfg.external_bootstrap is not None

    def endpoint(self) -> str:
        return self.cfg.bootstrap

    def bootstrap(self) -> str:
        return self.cfg.bootstrap

    def ports(self) -> list[int]:
        return [*self.cfg.broker_ports, *self.cfg.controller_ports]

    # install ---------------------------------------------------------------------
    def is_installed(self) -> bool:
        return (self.home / ".installed").exists()

    def install(self) -> None:
        if self.is_installed():
            return
        _ensure_java_and_maven(self.name)
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.home.parent / "install.log"
        _say(LICENCES)
        _say(f"kafka: fetching Kafka {KAFKA_VERSION} jars from Maven Central (log: {log})")
        t0 = time.monotonic()
        _maven_copy(self.name, ASSETS / "libs" / "pom.xml", self.libs, log, self.ctx.cache_dir / "maven-repo")
        (self.home / ".installed").write_text(f"{time.monotonic() - t0:.1f}s\n")
        _say(f"kafka: {len(list(self.libs.glob('*.jar')))} jars in {time.monotonic() - t0:.1f}s")

    # start -----------------------------------------------------------------------
    def node_dir(self, node_id: int) -> Path:
        return self.ctx.service_dir(self.name) / f"node-{node_id}"

    def _cluster(self) -> dict[str, Any]:
        """Cluster id and controller directory ids, made once and kept with the data."""
        path = self.ctx.service_dir(self.name) / "cluster.json"
        if path.exists():
            return json.loads(path.read_text())
        cluster = {
            "cluster_id": _kafka_uuid(),
            "directory_ids": [_kafka_uuid() for _ in self.cfg.broker_ports],
            "kafka_version": KAFKA_VERSION,
        }
        path.write_text(json.dumps(cluster, indent=2) + "\n")
        return cluster

    def _write_node_configs(self) -> list[Path]:
        quorum = ",".join(f"127.0.0.1:{p}" for p in self.cfg.controller_ports)
        files = []
        for node_id, (bport, cport) in enumerate(
            zip(self.cfg.broker_ports, self.cfg.controller_ports, strict=True), 1
        ):
            node = self.node_dir(node_id)
            (node / "data").mkdir(parents=True, exist_ok=True)
            props = node / "server.properties"
            props.write_text(
                _render(
                    "server.properties",
                    {
                        "node_id": node_id,
                        "broker_port": bport,
                        "controller_port": cport,
                        "quorum_bootstrap": quorum,
                        "data_dir": node / "data",
                    },
                )
            )
            files.append(props)
        return files

    def _format(self, props: list[Path]) -> None:
        """Format each node's storage once (the same --initial-controllers on every node)."""
        todo = [
            (i, p) for i, p in enumerate(props, 1) if not (p.parent / "data" / "meta.properties").exists()
        ]
        if not todo:
            return
        cluster = self._cluster()
        initial = ",".join(
            f"{i}@127.0.0.1:{port}:{dir_id}"
            for i, (port, dir_id) in enumerate(
                zip(self.cfg.controller_ports, cluster["directory_ids"], strict=True), 1
            )
        )

        def fmt(item: tuple[int, Path]) -> subprocess.CompletedProcess[str]:
            _, path = item
            argv = _java_argv(
                self.libs, "256m", "kafka.tools.StorageTool", "format",
                "--cluster-id", cluster["cluster_id"], "--initial-controllers", initial,
                "--config", str(path), log_level="WARN",
            )  # fmt: skip
            return subprocess.run(argv, capture_output=True, text=True, check=False)

        with ThreadPoolExecutor(len(todo)) as pool:
            results = list(pool.map(fmt, todo))
        for (node_id, _), res in zip(todo, results, strict=True):
            log = self.ctx.log_path(self.name, f"broker-{node_id}")
            with log.open("a") as out:
                out.write(f"\n--- format node {node_id}\n{res.stdout}{res.stderr}")
            if res.returncode != 0:
                tail = " | ".join((res.stdout + res.stderr).strip().splitlines()[-5:])
                raise DeployError(self.name, "format", f"node {node_id}: {tail}", log)

    def start(self) -> None:
        props = self._write_node_configs()
        self._format(props)
        for node_id, path in enumerate(props, 1):
            self.spawn(f"broker-{node_id}", _java_argv(self.libs, self.cfg.heap, "kafka.Kafka", str(path)))

    def stop(self) -> None:
        # All nodes at once: stopped one by one, the last ones wait for a quorum that is gone.
        files = self.pidfiles()
        if files:
            with ThreadPoolExecutor(len(files)) as pool:
                list(pool.map(terminate_pidfile, files))

    # clients ---------------------------------------------------------------------
    def admin(self) -> Any:
        """One admin client per service object: a client dropped early cancels its pending futures."""
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap(), **QUIET_CLIENT})
        return self._admin

    def producer_config(self) -> dict[str, Any]:
        """The study's producer settings (fairness: the same for every Kafka producer)."""
        return {
            "bootstrap.servers": self.bootstrap(),
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 1,
        }

    def ensure_topic(
        self,
        name: str,
        partitions: int,
        rf: int = 3,
        configs: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> str:
        """Create the topic, or bring an existing one to these configs. Returns created|unchanged|altered.

        An existing topic with another replication factor, or more partitions, is an error:
        neither can be changed in place without moving data.
        """
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewPartitions, NewTopic

        configs = {k: str(v) for k, v in (configs or {}).items()}
        admin = self.admin()
        # list_topics() without a topic name: naming one can auto-create it on brokers that allow that.
        meta = admin.list_topics(timeout=10)
        if name not in meta.topics:
            try:
                admin.create_topics([NewTopic(name, partitions, rf, config=configs)])[name].result(timeout)
                self._wait_for_leaders(admin, name, partitions, timeout)
                return "created"
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                meta = admin.list_topics(timeout=10)
        topic = meta.topics[name]
        have_rf = len(next(iter(topic.partitions.values())).replicas)
        if have_rf != rf:
            raise ValueError(f"topic {name!r} exists with replication factor {have_rf}, wanted {rf}")
        changed = False
        if len(topic.partitions) > partitions:
            raise ValueError(
                f"topic {name!r} exists with {len(topic.partitions)} partitions, wanted {partitions}"
            )
        if len(topic.partitions) < partitions:
            admin.create_partitions([NewPartitions(name, partitions)])[name].result(timeout)
            changed = True
        current = self.topic_configs(name)
        differing = {k: v for k, v in configs.items() if current.get(k) != v}
        if differing:
            self._alter_topic(admin, name, differing, timeout)

            # A broker applies an altered topic config when the controller's metadata reaches
            # it: until then it still appends (and describes) with the old one. Wait for it, so
            # the first record produced after this call gets the new config (CI once read the
            # old value back right after the alter on a busy host).
            def applied() -> None:
                seen = self.topic_configs(name)
                pending = {k: seen.get(k) for k, v in differing.items() if seen.get(k) != v}
                if pending:
                    raise DeployError(
                        self.name, f"altering topic {name!r}", f"it still has {pending}, wanted {differing}"
                    )

            wait_until(applied, timeout=timeout, interval=0.2)
            changed = True
        return "altered" if changed else "unchanged"

    @staticmethod
    def _alter_topic(admin: Any, name: str, configs: Mapping[str, str], timeout: float) -> None:
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        for fut in admin.incremental_alter_configs([resource]).values():
            fut.result(timeout)

    @staticmethod
    def _wait_for_leaders(admin: Any, name: str, partitions: int, timeout: float) -> None:
        def ready() -> None:
            topic = admin.list_topics(timeout=5).topics.get(name)
            if topic is None or len(topic.partitions) < partitions:
                raise RuntimeError(f"topic {name} not in metadata yet")
            if any(p.leader < 0 for p in topic.partitions.values()):
                raise RuntimeError(f"topic {name} has partitions without a leader")

        wait_until(ready, timeout=timeout, interval=0.2)

    def _describe(self, resource_type: Any, name: str) -> dict[str, str]:
        from confluent_kafka.admin import ConfigResource

        futures = self.admin().describe_configs([ConfigResource(resource_type, name)])
        entries = next(iter(futures.values())).result(15)
        return {key: entry.value for key, entry in entries.items()}

    def topic_configs(self, name: str) -> dict[str, str]:
        """A topic's effective configs (its own overrides merged over the broker defaults)."""
        from confluent_kafka.admin import ResourceType

        return self._describe(ResourceType.TOPIC, name)

    def broker_configs(self, broker_id: int | None = None) -> dict[str, str]:
        """A broker's effective configs (the first broker in the metadata when not named)."""
        from confluent_kafka.admin import ResourceType

        if broker_id is None:
            broker_id = min(self.admin().list_topics(timeout=10).brokers)
        return self._describe(ResourceType.BROKER, str(broker_id))

    def topic_facts(self, name: str) -> dict[str, Any]:
        """What the fairness table shows for a topic: RF, partitions, min ISR, timestamp type, ISR now."""
        meta = self.admin().list_topics(timeout=10)
        if name not in meta.topics:
            raise KeyError(f"topic {name!r} does not exist on {self.bootstrap()}")
        parts = meta.topics[name].partitions.values()
        configs = self.topic_configs(name)
        return {
            "topic": name,
            "partitions": len(parts),
            "replication_factor": min(len(p.replicas) for p in parts),
            "min_isr_now": min(len(p.isrs) for p in parts),
            "min.insync.replicas": int(configs["min.insync.replicas"]),
            "message.timestamp.type": configs["message.timestamp.type"],
            "compression.type": configs["compression.type"],
        }

    def tool_argv(self, main_class: str, *args: str, heap: str = "256m") -> list[str]:
        """A command line for one of Kafka's own tools, e.g. `org.apache.kafka.tools.EndToEndLatency`."""
        return _java_argv(self.libs, heap, main_class, *args, log_level="WARN")

    # health ----------------------------------------------------------------------
    def health(self) -> None:
        from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

        try:
            brokers = self.admin().list_topics(timeout=5).brokers
        except KafkaException as exc:
            raise self.fail("health", f"metadata request to {self.bootstrap()}: {exc}") from exc
        want = 1 if self.is_external() else len(self.cfg.broker_ports)
        if len(brokers) < want:
            raise self.fail("health", f"{len(brokers)} of {want} brokers registered at {self.bootstrap()}")
        try:
            self.ensure_topic(HEALTH_TOPIC, 1, rf=min(3, len(brokers)), configs={"min.insync.replicas": "2"})
        except (KafkaException, ValueError, RuntimeError) as exc:
            raise self.fail("health", f"create topic {HEALTH_TOPIC} (RF 3, min ISR 2): {exc}") from exc

        payload = secrets.token_hex(8).encode()
        delivered: list[Any] = []
        producer = Producer(
            {**self.producer_config(), **QUIET_CLIENT, "linger.ms": 0, "message.timeout.ms": 10000}
        )
        producer.produce(
            HEALTH_TOPIC, payload, partition=0, on_delivery=lambda err, msg: delivered.append((err, msg))
        )
        producer.flush(12)
        if not delivered or delivered[0][0] is not None:
            problem = delivered[0][0] if delivered else "no delivery report within 12 s"
            raise self.fail("health", f"produce (acks=all, idempotent) to {HEALTH_TOPIC}: {problem}")
        offset = delivered[0][1].offset()

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap(),
                "group.id": "hopscope-health",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.assign([TopicPartition(HEALTH_TOPIC, 0, offset)])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                if msg.value() == payload:
                    return
                raise self.fail("health", f"read offset {offset} of {HEALTH_TOPIC}: got {msg.value()!r}")
        finally:
            consumer.close()
        raise self.fail(
            "health", f"produced offset {offset} to {HEALTH_TOPIC} but could not consume it in 10 s"
        )


# --- Kafka Connect -------------------------------------------------------------------


def debezium_postgres_config(
    dsn: str,
    *,
    tables: Sequence[str],
    topic_prefix: str,
    slot_name: str,
    publication_name: str,
    secret: Callable[[str, str], str] | None = None,
    poll_interval_ms: int = 1,
    max_batch_size: int = 256,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A Debezium Postgres connector config tuned for latency (pgoutput, own slot and publication).

    `secret(key, value)` returns what to put in the config instead of the password (a
    config-provider reference); without it the password goes in as it is.
    """
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    password = str(info.get("password") or "")
    config = {
        "connector.class": DEBEZIUM_PG_CLASS,
        "tasks.max": "1",
        "database.hostname": str(info.get("host") or "127.0.0.1"),
        "database.port": str(info.get("port") or 5432),
        "database.user": str(info.get("user") or ""),
        "database.password": secret(f"{slot_name}.password", password) if secret else password,
        "database.dbname": str(info.get("dbname") or ""),
        "topic.prefix": topic_prefix,
        "plugin.name": "pgoutput",
        "slot.name": slot_name,
        "publication.name": publication_name,
        # made by the tables' owner in Connect.cdc_dsn: creating one needs to own the tables,
        # and Debezium's role owns nothing
        "publication.autocreate.mode": "disabled",
        "table.include.list": ",".join(tables),
        "snapshot.mode": "no_data",
        # Both waits in Debezium's path (queue batch timeout, idle-stream back-off) use this value.
        "poll.interval.ms": str(poll_interval_ms),
        "max.batch.size": str(max_batch_size),
        "max.queue.size": str(max(8192, 4 * max_batch_size)),
        "heartbeat.interval.ms": "10000",
        "topic.creation.default.replication.factor": "3",
        "topic.creation.default.partitions": "1",
        "topic.creation.default.min.insync.replicas": "2",
        "producer.override.linger.ms": "1",
        "producer.override.acks": "all",
        "producer.override.enable.idempotence": "true",
        "producer.override.compression.type": "lz4",
    }
    config.update(extra or {})
    return config


class Connect(Service):
    name = "connect"
    depends_on = ("postgres", "kafka")
    start_timeout = 180.0

    @property
    def cfg(self) -> ConnectConfig:
        return self.ctx.config.connect

    @cached_property
    def kafka(self) -> Kafka:
        return Kafka(self.ctx)

    @property
    def home(self) -> Path:
        return self.ctx.install_dir("connect", f"kafka-{CONNECT_KAFKA_VERSION}-debezium-{DEBEZIUM_VERSION}")

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    def is_external(self) -> bool:
        return self.cfg.external_url is not None

    def endpoint(self) -> str:
        return self.cfg.url

    def ports(self) -> list[int]:
        return [self.cfg.port]

    def is_installed(self) -> bool:
        # an install from before the REST API had basic auth lacks the extension's jar: redo it
        return (self.home / ".installed").exists() and (self.libs / BASIC_AUTH_JAR).exists()

    def install(self) -> None:
        if self.is_installed():
            return
        _ensure_java_and_maven(self.name)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "plugins").mkdir(exist_ok=True)
        log = self.home.parent / "install.log"
        _say(LICENCES)
        t0 = time.monotonic()
        _say(f"connect: fetching the Kafka Connect {CONNECT_KAFKA_VERSION} worker jars (log: {log})")
        _maven_copy(
            self.name, ASSETS / "connect-libs" / "pom.xml", self.libs, log, self.ctx.cache_dir / "maven-repo"
        )
        _say(f"connect: fetching the Debezium {DEBEZIUM_VERSION} Postgres connector (log: {log})")
        _maven_copy(
            self.name,
            ASSETS / "debezium-postgres" / "pom.xml",
            self.home / "plugins" / "debezium-connector-postgres",
            log,
            self.ctx.cache_dir / "maven-repo",
            [
                f"-DexcludeGroupIds={_PLUGIN_EXCLUDED_GROUPS}",
                f"-DexcludeArtifactIds={_PLUGIN_EXCLUDED_ARTIFACTS}",
            ],
        )
        (self.home / ".installed").write_text(f"{time.monotonic() - t0:.1f}s\n")
        _say(f"connect: worker and plugin in {time.monotonic() - t0:.1f}s")

    @property
    def secrets_file(self) -> Path:
        """The only file the worker's file config provider may read."""
        return self.ctx.service_dir(self.name) / "secrets.properties"

    def start(self) -> None:
        svc_dir = self.ctx.service_dir(self.name)
        # allowed.paths refuses a path that does not exist at worker start
        if not self.secrets_file.exists():
            write_private(self.secrets_file, "")
        props = svc_dir / "connect-distributed.properties"
        props.write_text(
            _render(
                "connect-distributed.properties",
                {
                    "bootstrap": self.kafka.bootstrap(),
                    "port": self.cfg.port,
                    "plugin_path": self.home / "plugins",
                    "producer_linger_ms": self.cfg.producer_linger_ms,
                    "secrets_file": self.secrets_file,
                },
            )
        )
        users = svc_dir / "rest-users.properties"
        user, password = self.cfg.rest_user, self.ctx.secret("connect_rest_password")
        write_private(users, f"{user}={password}\n")
        jaas = svc_dir / "rest-jaas.conf"
        write_private(jaas, f'KafkaConnect {{\n  {_JAAS_LOGIN_MODULE} required\n  file="{users}";\n}};\n')
        argv = _java_argv(
            self.libs,
            self.cfg.heap,
            "org.apache.kafka.connect.cli.ConnectDistributed",
            str(props),
            jvm=[f"-Djava.security.auth.login.config={jaas}"],
        )
        self.spawn("worker", argv)

    # REST helpers ----------------------------------------------------------------
    def rest_auth(self) -> tuple[str, str] | None:
        """Basic-auth credentials for the REST API (never print them); None: an external
        worker configured without any."""
        if self.is_external():
            if self.cfg.external_username is None:
                return None
            return self.cfg.external_username, self.cfg.external_password or ""
        return self.cfg.rest_user, self.ctx.secret("connect_rest_password")

    def _http(self, timeout: float = 15) -> httpx.Client:
        return httpx.Client(base_url=self.cfg.url, timeout=timeout, auth=self.rest_auth())

    def rest_get(self, path: str, timeout: float = 15) -> httpx.Response:
        """GET a REST path with the worker's credentials (e.g. `/connector-plugins`)."""
        with self._http(timeout) as http:
            return http.get(path)

    def secret_ref(self, key: str, value: str) -> str:
        """Keep a secret in a 0600 file the worker reads, and return the config-provider reference."""
        path = self.secrets_file
        lines = dict(
            line.split("=", 1)
            for line in (path.read_text().splitlines() if path.exists() else [])
            if "=" in line
        )
        if lines.get(key) != value:
            lines[key] = value
            write_private(path, "".join(f"{k}={v}\n" for k, v in lines.items()))
        return "${file:" + str(path) + ":" + key + "}"

    def cdc_dsn(self, tables: Sequence[str], publication: str) -> str:
        """Make `publication` for exactly `tables` (schema-qualified) and return the DSN Debezium
        connects with: on hopscope's own Postgres the replication role, granted SELECT on these
        tables only; on an external server its DSN as it is."""
        from hopscope.deploy.services.postgres import CDC, Postgres

        postgres = Postgres(self.ctx)
        names = [sql.Identifier(*table.split(".", 1)) for table in tables]
        with psycopg.connect(postgres.dsn(), autocommit=True, connect_timeout=5) as conn:
            if not postgres.is_external():
                postgres.ensure_cdc_role(conn)
                conn.execute(
                    sql.SQL("GRANT SELECT ON {} TO {}").format(sql.SQL(", ").join(names), sql.Identifier(CDC))
                )
            exists = conn.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)
            ).fetchone()
            verb = "ALTER PUBLICATION {} SET TABLE {}" if exists else "CREATE PUBLICATION {} FOR TABLE {}"
            conn.execute(sql.SQL(verb).format(sql.Identifier(publication), sql.SQL(", ").join(names)))
        return postgres.cdc_dsn()

    def put_connector_config(self, name: str, config: Mapping[str, str]) -> str:
        """Create or replace a connector's config (idempotent). Returns created|updated|unchanged."""
        # The worker echoes "name" in every config it returns; it is the URL's, not part of the config.
        wanted = {k: str(v) for k, v in config.items() if k != "name"}
        with self._http() as http:
            current = http.get(f"/connectors/{name}/config")
            if current.status_code == 200:
                have = {k: v for k, v in current.json().items() if k != "name"}
                if have == wanted:
                    return "unchanged"
            resp = http.put(f"/connectors/{name}/config", json=wanted)
        if resp.status_code not in (200, 201):
            raise self.fail(
                "connector", f"PUT /connectors/{name}/config: HTTP {resp.status_code} {resp.text[:500]}"
            )
        return "created" if resp.status_code == 201 else "updated"

    def connector_status(self, name: str) -> dict[str, Any]:
        with self._http() as http:
            resp = http.get(f"/connectors/{name}/status")
        resp.raise_for_status()
        return resp.json()

    def delete_connector(self, name: str) -> None:
        with self._http() as http:
            resp = http.delete(f"/connectors/{name}")
        if resp.status_code not in (204, 404):
            raise self.fail(
                "connector", f"DELETE /connectors/{name}: HTTP {resp.status_code} {resp.text[:300]}"
            )

    def pause_connector(self, name: str) -> None:
        self._state_change(name, "pause")

    def resume_connector(self, name: str) -> None:
        self._state_change(name, "resume")

    def restart_connector(self, name: str) -> None:
        """Restart the connector and its failed tasks."""
        with self._http() as http:
            resp = http.post(
                f"/connectors/{name}/restart", params={"includeTasks": "true", "onlyFailed": "true"}
            )
        if resp.status_code not in (200, 202, 204):
            raise self.fail(
                "connector", f"POST /connectors/{name}/restart: HTTP {resp.status_code} {resp.text[:300]}"
            )

    def revive_connector(self, name: str) -> None:
        """Resume a PAUSED connector, or restart one with a FAILED task (e.g. Postgres was
        restarted under it; a restart is what an operator would do first)."""
        status = self.connector_status(name)
        if status["connector"]["state"] == "PAUSED":
            self.resume_connector(name)
        elif any(t["state"] == "FAILED" for t in status.get("tasks", [])):
            self.restart_connector(name)

    def _state_change(self, name: str, action: str) -> None:
        with self._http() as http:
            resp = http.put(f"/connectors/{name}/{action}")
        if resp.status_code != 202:
            raise self.fail(
                "connector", f"PUT /connectors/{name}/{action}: HTTP {resp.status_code} {resp.text[:300]}"
            )

    def wait_connector_running(self, name: str, timeout: float = 60.0) -> None:
        """Wait until the connector and all its tasks run; a FAILED task is reported at once."""

        def running() -> None:
            status = self.connector_status(name)
            states = [status["connector"]["state"], *(t["state"] for t in status.get("tasks", []))]
            for task in status.get("tasks", []):
                if task["state"] == "FAILED":
                    trace = (task.get("trace") or "").strip().splitlines()[:3]
                    raise DeployError(self.name, "connector", f"{name} task failed: {' | '.join(trace)}")
            if not status.get("tasks") or any(s != "RUNNING" for s in states):
                raise RuntimeError(f"{name}: {states}")

        deadline = time.monotonic() + timeout
        while True:
            try:
                running()
                return
            except DeployError:
                raise
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise self.fail("connector", f"{name} not RUNNING after {timeout:.0f}s: {exc}") from exc
            time.sleep(0.5)

    # health ----------------------------------------------------------------------
    def health(self) -> None:
        try:
            with self._http() as http:
                root = http.get("/")
                plugins = http.get("/connector-plugins")
            root.raise_for_status()
            plugins.raise_for_status()
        except httpx.HTTPError as exc:
            raise self.fail("health", f"REST {self.cfg.url}: {exc}") from exc
        if DEBEZIUM_PG_CLASS not in {p["class"] for p in plugins.json()}:
            raise self.fail("health", f"{DEBEZIUM_PG_CLASS} is not on the worker's plugin path")
        self.cdc_round_trip()

    def cdc_round_trip(self, timeout: float = 20.0) -> dict[str, Any]:
        """Insert a row into the health table and read its Debezium change event from Kafka."""
        from hopscope.deploy.services.postgres import Postgres

        dsn = Postgres(self.ctx).dsn()
        slot = "hopscope_cdc_health_slot"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {CDC_HEALTH_TABLE} "
                "(id bigserial PRIMARY KEY, note text NOT NULL, traceparent text NOT NULL)"
            )
        self.kafka.ensure_topic(CDC_HEALTH_TOPIC, 1, rf=3, configs={"min.insync.replicas": "2"})
        tables, publication = [f"public.{CDC_HEALTH_TABLE}"], "hopscope_cdc_health_pub"
        config = debezium_postgres_config(
            self.cdc_dsn(tables, publication),
            tables=tables,
            topic_prefix=CDC_HEALTH_PREFIX,
            slot_name=slot,
            publication_name=publication,
            secret=self.secret_ref,
        )
        self.put_connector_config(CDC_HEALTH_CONNECTOR, config)
        # Paused between checks: with poll.interval.ms=1 an idle task costs ~0.3 core on this box.
        self.revive_connector(CDC_HEALTH_CONNECTOR)
        self.wait_connector_running(CDC_HEALTH_CONNECTOR)
        try:
            return self._insert_and_read_back(dsn, slot, timeout)
        finally:
            self.pause_connector(CDC_HEALTH_CONNECTOR)

    def _insert_and_read_back(self, dsn: str, slot: str, timeout: float) -> dict[str, Any]:
        from confluent_kafka import Consumer, TopicPartition

        # RUNNING comes before the replication stream is open; a row written earlier is never seen.
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:

            def slot_active() -> None:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
                ).fetchone()
                if not row or not row[0]:
                    raise RuntimeError(f"replication slot {slot} is not streaming")

            try:
                wait_until(slot_active, timeout=30, interval=0.2)
            except RuntimeError as exc:
                raise self.fail("health", str(exc)) from exc

            consumer = Consumer(
                {
                    "bootstrap.servers": self.kafka.bootstrap(),
                    "group.id": "hopscope-health",
                    "enable.auto.commit": False,
                    **QUIET_CLIENT,
                }
            )
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(CDC_HEALTH_TOPIC, 0), timeout=10)
                consumer.assign([TopicPartition(CDC_HEALTH_TOPIC, 0, high)])
                note = secrets.token_hex(6)
                traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
                row_id = conn.execute(
                    f"INSERT INTO {CDC_HEALTH_TABLE} (note, traceparent) VALUES (%s, %s) RETURNING id",
                    (note, traceparent),
                ).fetchone()[0]
                event = self._await_change(consumer, row_id, timeout)
            finally:
                consumer.close()
            conn.execute(f"DELETE FROM {CDC_HEALTH_TABLE} WHERE id = %s", (row_id,))
        after = event.get("after") or {}
        if after.get("note") != note or after.get("traceparent") != traceparent or event.get("op") != "c":
            raise self.fail("health", f"change event for row {row_id} does not match the insert: {event}")
        if not isinstance((event.get("source") or {}).get("ts_us"), int):
            raise self.fail("health", f"change event for row {row_id} has no source.ts_us: {event}")
        return event

    def _await_change(self, consumer: Any, row_id: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.value() is None:
                continue
            event = json.loads(msg.value())
            if (event.get("after") or {}).get("id") == row_id:
                return event
        raise self.fail(
            "health", f"no change event for {CDC_HEALTH_TABLE} row {row_id} on {CDC_HEALTH_TOPIC}"
        )
