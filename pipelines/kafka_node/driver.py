"""`KafkaNodeDriver`: the Kafka stack with its glue services in Node.js (the study's language
control, issue #17): the same services, topics, connector, producer, subscribers and tuning as
`KafkaDriver`; only the glue process it spawns differs (`glue/`, run by `node`).

Runs the workloads that have a Node.js glue (write_notify: the notifier; fanout: the router;
ingest: the ingest consumer). aggregate has none: its processing is the Kafka Streams app (Java)
on either stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ..driver import PreflightError
from ..kafka.driver import PIPELINES, KafkaDriver
from ..kafka.pipeline import Pipeline
from ..kafka.readback import read_services
from ..kafka.tuning import KafkaOptions
from ..workload import Workload
from .node_glue import NodeGlueError, command, ensure_installed

# what stack.yaml names beside the driver: the Kafka stack's own options model and read-back
__all__ = ["GLUE_WORKLOADS", "KafkaNodeDriver", "KafkaOptions", "read_services"]

#: the workloads whose glue exists in Node.js
GLUE_WORKLOADS = ("write_notify", "fanout", "ingest")
#: record codecs the Node.js consumer reads (kafkajs has gzip; lz4 comes from lz4-napi)
READABLE_COMPRESSION = ("none", "gzip", "lz4")


class KafkaNodeDriver(KafkaDriver):
    stack: ClassVar[str] = "kafka-node"
    pipelines: ClassVar[dict[str, type[Pipeline]]] = {w: PIPELINES[w] for w in GLUE_WORKLOADS}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._installed: Path | None = None

    def preflight(self, workload: Workload) -> None:
        if workload.name not in self.pipelines:
            raise PreflightError(
                self.stack,
                "driver",
                f"workload {workload.name!r} has no Node.js glue: the {self.stack} stack runs "
                f"{', '.join(GLUE_WORKLOADS)} (run {workload.name!r} on the kafka stack)",
            )
        compression = self.tuning.producer.compression
        if compression not in READABLE_COMPRESSION:
            raise PreflightError(
                self.stack,
                "tuning",
                f"producer compression {compression!r}: the Node.js glue reads only {', '.join(READABLE_COMPRESSION)}",
            )
        self._installed = self._ensure_glue()
        super().preflight(workload)

    def _ensure_glue(self) -> Path:
        try:
            return ensure_installed(self.ctx.cache_dir)
        except NodeGlueError as exc:
            raise PreflightError(f"{self.stack}.glue", str(self.ctx.cache_dir), str(exc)) from exc

    def glue_command(self, role: str) -> tuple[list[str], Path | None]:
        installed = self._installed or self._ensure_glue()
        return command(installed, role), installed

    def glue_config(self, role: str, **cfg: Any) -> dict[str, Any]:
        # the Node.js exporter speaks OTLP/HTTP to the same collector
        return {
            **super().glue_config(role, **cfg),
            "stack": self.stack,
            "otlp_traces_url": f"{self.otlp_http.rstrip('/')}/v1/traces",
        }
