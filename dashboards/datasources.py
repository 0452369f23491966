"""The four datasources every dashboard refers to, by fixed uid.

One definition feeds both the Grafana provisioning file and `publish`, so a
panel can only name a datasource that both of them create.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

FOLDER_UID = "hopscope"
FOLDER_TITLE = "hopscope"


@dataclass(frozen=True)
class Datasource:
    name: str
    uid: str
    type: str
    url: str
    json_data: dict[str, Any] = field(default_factory=dict)
    #: Secure fields as provisioning env references (values never live in the repo).
    secure_env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    database: str | None = None

    def ref(self) -> dm.DataSourceRef:
        return dm.DataSourceRef(type_val=self.type, uid=self.uid)

    def ref_json(self) -> dict[str, str]:
        return {"type": self.type, "uid": self.uid}

    def api_body(self, url: str | None = None, secure: dict[str, str] | None = None) -> dict[str, Any]:
        """The body of Grafana's POST/PUT /api/datasources for this datasource."""
        body: dict[str, Any] = {
            "name": self.name,
            "uid": self.uid,
            "type": self.type,
            "access": "proxy",
            "url": url or self.url,
            "isDefault": False,  # never take the default from a datasource the user already has
            "jsonData": dict(self.json_data),
        }
        if self.user is not None:
            body["user"] = self.user
        if self.database is not None:
            body["database"] = self.database
        if secure:
            body["secureJsonData"] = dict(secure)
        return body


PROMETHEUS = Datasource(
    name="hopscope Prometheus",
    uid="hopscope-prometheus",
    type="prometheus",
    url="http://127.0.0.1:29090",
    json_data={
        "httpMethod": "POST",
        "timeInterval": "5s",
        # Exemplars carry the trace id: a click on one opens the trace in Tempo (production)
        # or in the local Jaeger (the trace store `hopscope up` starts).
        "exemplarTraceIdDestinations": [
            {"name": "trace_id", "datasourceUid": "hopscope-tempo"},
            {"name": "trace_id", "datasourceUid": "hopscope-jaeger"},
        ],
    },
)
TEMPO = Datasource(
    name="hopscope Tempo",
    uid="hopscope-tempo",
    type="tempo",
    url="http://127.0.0.1:3200",
    json_data={
        # The service graph panel reads the edge series (servicegraph names) from Prometheus.
        "serviceMap": {"datasourceUid": PROMETHEUS.uid},
        "nodeGraph": {"enabled": True},
        "search": {"hide": False},
        "tracesToMetrics": {"datasourceUid": PROMETHEUS.uid},
    },
)
JAEGER = Datasource(
    name="hopscope Jaeger",
    uid="hopscope-jaeger",
    type="jaeger",
    url="http://127.0.0.1:26686",
    json_data={"nodeGraph": {"enabled": True}},
)
POSTGRES = Datasource(
    name="hopscope Postgres",
    uid="hopscope-postgres",
    type="grafana-postgresql-datasource",
    url="127.0.0.1:25432",
    # the read-only role (SELECT on the results tables only), not the bootstrap superuser
    user="hopscope_reader",
    database="hopscope",
    json_data={"database": "hopscope", "sslmode": "disable", "postgresVersion": 1500, "timescaledb": False},
    secure_env={"password": "HOPSCOPE_PG_PASSWORD"},
)

ALL: tuple[Datasource, ...] = (PROMETHEUS, TEMPO, JAEGER, POSTGRES)
BY_UID: dict[str, Datasource] = {d.uid: d for d in ALL}
