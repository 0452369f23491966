"""ingest on the Kafka stack: produce to the run's events topic → the ingest consumer (glue
process) → Postgres, one transaction per fetched batch; it reports a receipt per committed row."""

from __future__ import annotations

from typing import ClassVar

import psycopg

from .pipeline import Pipeline

INGEST_TABLE = "hopscope_ingest_events"


class Ingest(Pipeline):
    workload: ClassVar[str] = "ingest"

    def setup(self) -> None:
        with psycopg.connect(self.host.dsn(), autocommit=True) as conn:
            # No primary key on purpose: a redelivered record becomes a second row and a
            # second receipt, so the ledger counts it as a duplicate instead of hiding it.
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {INGEST_TABLE} (run_id text NOT NULL, event_id text NOT NULL, "
                "key text NOT NULL, payload text NOT NULL, sent_ns bigint NOT NULL, "
                "inserted_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            )
            self.host.grant_pipeline(conn, INGEST_TABLE)
        self.host.spawn(
            "ingest", topic=self.host.topics.events, dsn=self.host.pipeline_dsn(), table=INGEST_TABLE
        )
