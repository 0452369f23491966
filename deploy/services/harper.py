"""Harper (npm harperdb 4.7.29): a 3-node replicated cluster on one host.

(Service class to be written; the config section is fixed here.)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

HARPER_VERSION = "4.7.29"


class HarperConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nodes: int = 3
    #: node N (1-based) listens on 127.0.0.N (Harper needs one hostname per node).
    http_port: int = 29926
    operations_port: int = 29925
    replication_port: int = 29933
    mqtt_port: int = 29883
    #: e.g. ["https://harper1.example:9926", ...] — then no local nodes are started.
    external_urls: list[str] | None = None
