"""Build (once per source version) and run the Kafka Streams aggregation app for a run.

The jar is built with Maven from `streams/` and copied to
`<hopscope cache>/kafka-streams-app/<source hash>/hopscope-streams.jar`; a
change to any source file or the POM gives a new hash and one rebuild.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .common import STREAMS_SERVICE
from .tuning import KafkaTuning, properties_text

SOURCE_DIR = Path(__file__).resolve().parent / "streams"
JAR_NAME = "hopscope-streams.jar"
#: The app's tuned properties (`KafkaTuning.streams_properties`, `key=value` lines); the app
#: refuses to start without it, so it never runs on Kafka's defaults (Streams' producer: linger 100 ms)
TUNING_ENV = "HOPSCOPE_STREAMS_TUNING"


class StreamsAppError(RuntimeError):
    """The Streams app could not be built or did not become ready; the message names the log."""


def source_hash(source_dir: Path = SOURCE_DIR) -> str:
    h = hashlib.sha256()
    files = [source_dir / "pom.xml", *sorted((source_dir / "src").rglob("*"))]
    for path in files:
        if path.is_file():
            h.update(str(path.relative_to(source_dir)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def ensure_jar(cache_dir: Path, source_dir: Path = SOURCE_DIR) -> Path:
    """The built jar for the current sources, building it with Maven if it is not cached."""
    out = cache_dir / "kafka-streams-app" / source_hash(source_dir) / JAR_NAME
    if out.is_file():
        return out
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise StreamsAppError("building the Kafka Streams app needs 'mvn' and 'java' on PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / "build.log"
    with log.open("w") as fh:
        proc = subprocess.run(
            ["mvn", "-q", "-B", "package", "-DskipTests"],
            cwd=source_dir,
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
        )
    built = source_dir / "target" / JAR_NAME
    if proc.returncode != 0 or not built.is_file():
        raise StreamsAppError(f"Maven build of {source_dir} failed (exit {proc.returncode}); log: {log}")
    tmp = out.with_suffix(".partial")
    shutil.copy2(built, tmp)
    tmp.rename(out)
    return out


@dataclass
class StreamsSettings:
    bootstrap: str
    application_id: str
    input_topic: str
    output_topic: str
    query_port: int
    state_dir: Path
    run_id: str
    otlp_http: str  # "" = tracing off
    heap: str = "256m"
    tuning: KafkaTuning = field(default_factory=KafkaTuning)


#: Settings the manifest reports, per config block the app logs at start.
REPORTED = {
    "StreamsConfig": (
        "commit.interval.ms",
        "statestore.cache.max.bytes",
        "processing.guarantee",
        "replication.factor",
        "num.stream.threads",
        "max.task.idle.ms",
    ),
    "ProducerConfig": ("acks", "enable.idempotence", "compression.type", "linger.ms", "batch.size"),
    "ConsumerConfig": ("fetch.min.bytes", "fetch.max.wait.ms", "auto.offset.reset"),
}


def logged_configs(log: Path) -> dict[str, dict[str, str]]:
    """The effective client configs the Kafka clients logged at start (read back, not our intent).

    Producer and consumer: the stream thread's own clients (not admin or restore clients).
    """
    blocks: list[tuple[str, dict[str, str]]] = []
    for line in log.read_text(errors="replace").splitlines():
        if line.rstrip().endswith("Config values:"):
            blocks.append((line.rstrip().rsplit(" ", 2)[-2], {}))
        elif blocks and line.startswith("\t") and " = " in line:
            key, _, value = line.strip().partition(" = ")
            blocks[-1][1][key] = value
    out: dict[str, dict[str, str]] = {}
    for name, values in blocks:
        client = values.get("client.id", "")
        if name in out or name not in REPORTED:
            continue
        if name != "StreamsConfig" and "StreamThread-1-" not in client:
            continue
        out[name] = {k: values.get(k, "?") for k in REPORTED[name]}
    return out


class StreamsApp:
    """One running Streams app process (a JVM); `start` returns once it is RUNNING and queryable."""

    def __init__(self, jar: Path, settings: StreamsSettings, log: Path) -> None:
        self.jar = jar
        self.settings = settings
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.query_port}"

    def environment(self) -> dict[str, str]:
        """The app's environment: where to run, and its tuned properties."""
        s = self.settings
        return {
            **os.environ,
            "HOPSCOPE_BOOTSTRAP": s.bootstrap,
            "HOPSCOPE_APP_ID": s.application_id,
            "HOPSCOPE_IN_TOPIC": s.input_topic,
            "HOPSCOPE_OUT_TOPIC": s.output_topic,
            "HOPSCOPE_IQ_PORT": str(s.query_port),
            "HOPSCOPE_STREAMS_STATE_DIR": str(s.state_dir),
            "HOPSCOPE_OTLP_HTTP": s.otlp_http,
            "HOPSCOPE_RUN_ID": s.run_id,
            "OTEL_SERVICE_NAME": STREAMS_SERVICE,
            TUNING_ENV: properties_text(s.tuning.streams_properties()),
        }

    def start(self, timeout: float = 90.0) -> None:
        s = self.settings
        env = self.environment()
        s.state_dir.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            "java",
            f"-Xms{s.heap}",
            f"-Xmx{s.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-jar",
            str(self.jar),
        ]
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StreamsAppError(f"the Streams app exited with {self.proc.returncode}; log: {self.log}")
            try:
                r = httpx.get(f"{self.url}/health", timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.3)
        self.stop()
        raise StreamsAppError(
            f"the Streams app was not RUNNING within {timeout:.0f} s ({last}); log: {self.log}"
        )

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
