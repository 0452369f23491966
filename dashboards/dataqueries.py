"""Query models the SDK lacks: PostgreSQL (raw SQL) and Jaeger search.

Both are cog `Dataquery` variants, so panels take them like the SDK's own
Prometheus and Tempo queries and the JSON encoder serialises them.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants

from .datasources import JAEGER, POSTGRES


class SQLQuery(cogvariants.Dataquery):
    def __init__(self, ref_id: str, raw_sql: str, fmt: str) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.fmt = fmt

    def to_json(self) -> dict[str, Any]:
        return {
            "datasource": POSTGRES.ref_json(),
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class SQL(cogbuilder.Builder[SQLQuery]):
    """`SQL("SELECT …")`: a PostgreSQL target in table (or time_series) format."""

    def __init__(self, raw_sql: str, ref_id: str = "A", fmt: str = "table") -> None:
        self._internal = SQLQuery(ref_id, raw_sql, fmt)

    def build(self) -> SQLQuery:
        return self._internal


class JaegerSearchQuery(cogvariants.Dataquery):
    def __init__(self, ref_id: str, service: str, tags: str, min_duration: str, limit: int) -> None:
        self.ref_id = ref_id
        self.service = service
        self.tags = tags
        self.min_duration = min_duration
        self.limit = limit

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "datasource": JAEGER.ref_json(),
            "limit": self.limit,
            "queryType": "search",
            "refId": self.ref_id,
            "service": self.service,
            "tags": self.tags,
        }
        if self.min_duration:
            out["minDuration"] = self.min_duration
        return out


class JaegerSearch(cogbuilder.Builder[JaegerSearchQuery]):
    """Grafana's Jaeger "search" query: service, logfmt tags, minimum span duration."""

    def __init__(
        self, service: str, tags: str, min_duration: str = "", limit: int = 20, ref_id: str = "A"
    ) -> None:
        self._internal = JaegerSearchQuery(ref_id, service, tags, min_duration, limit)

    def build(self) -> JaegerSearchQuery:
        return self._internal
