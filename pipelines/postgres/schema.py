"""The `postgres` stack's tables and triggers (created idempotently by each run's setup).

Every table outlives runs and says which run a row belongs to (`run_id`); the channel a trigger
notifies on travels in the row (`chan`, plus `route`: the field names whose values complete it),
so one trigger serves every run and workload. The trigger stamps `clock_timestamp()` into the
row and the notification inside the writing transaction: the derived hop's end (Unix µs).
The notification is queued at commit and delivered only once the commit is durable on the
synchronous replica (`synchronous_commit = on`, D23).
"""

from __future__ import annotations

EVENTS = "hopscope_pg_events"  # write_notify and fanout
READINGS = "hopscope_pg_readings"  # aggregate: the input rows
AGGREGATES = "hopscope_pg_aggregates"  # aggregate: one row per key (point reads by primary key)
INGEST = "hopscope_pg_ingest"

_NOW_US = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"

EVENTS_DDL = [
    f"""CREATE TABLE IF NOT EXISTS {EVENTS} (
        id bigserial PRIMARY KEY, run_id text NOT NULL, event_id text NOT NULL, key text NOT NULL,
        fields jsonb NOT NULL, chan text NOT NULL, route text[] NOT NULL, traceparent text NOT NULL,
        payload text NOT NULL, sent_ns bigint NOT NULL, trig_us bigint)""",
    f"CREATE INDEX IF NOT EXISTS {EVENTS}_run ON {EVENTS} (run_id)",
    f"""CREATE OR REPLACE FUNCTION hopscope_pg_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        ch text := NEW.chan;
        f text;
    BEGIN
        FOREACH f IN ARRAY NEW.route LOOP
            ch := ch || '_' || (NEW.fields ->> f);
        END LOOP;
        NEW.trig_us := {_NOW_US};
        PERFORM pg_notify(ch, json_build_object(
            'e', NEW.event_id, 'tp', NEW.traceparent, 'k', NEW.key, 'tr', NEW.trig_us,
            'f', NEW.fields, 'p', NEW.payload)::text);
        RETURN NEW;
    END $$""",
    f"""CREATE OR REPLACE TRIGGER hopscope_pg_notify BEFORE INSERT ON {EVENTS}
        FOR EACH ROW EXECUTE FUNCTION hopscope_pg_notify()""",
]

AGGREGATE_DDL = [
    f"""CREATE TABLE IF NOT EXISTS {AGGREGATES} (
        key text PRIMARY KEY, count bigint NOT NULL, total double precision NOT NULL,
        last_event_id text NOT NULL, updated_us bigint NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {READINGS} (
        id bigserial PRIMARY KEY, run_id text NOT NULL, event_id text NOT NULL, key text NOT NULL,
        value double precision NOT NULL, chan text NOT NULL, traceparent text NOT NULL,
        payload text NOT NULL, sent_ns bigint NOT NULL, trig_us bigint)""",
    f"CREATE INDEX IF NOT EXISTS {READINGS}_run ON {READINGS} (run_id)",
    # the running aggregate is kept in the reading's own transaction (an upsert in its trigger):
    # the new state is committed, replicated and notified together with the reading
    f"""CREATE OR REPLACE FUNCTION hopscope_pg_aggregate() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        n bigint;
        s double precision;
    BEGIN
        INSERT INTO {AGGREGATES} AS a (key, count, total, last_event_id, updated_us)
            VALUES (NEW.key, 1, NEW.value, NEW.event_id, {_NOW_US})
            ON CONFLICT (key) DO UPDATE SET count = a.count + 1, total = a.total + EXCLUDED.total,
                last_event_id = EXCLUDED.last_event_id, updated_us = EXCLUDED.updated_us
            RETURNING a.count, a.total INTO n, s;
        NEW.trig_us := {_NOW_US};
        PERFORM pg_notify(NEW.chan, json_build_object(
            'e', NEW.event_id, 'tp', NEW.traceparent, 'k', NEW.key, 'tr', NEW.trig_us,
            'n', n, 's', s)::text);
        RETURN NEW;
    END $$""",
    f"""CREATE OR REPLACE TRIGGER hopscope_pg_aggregate BEFORE INSERT ON {READINGS}
        FOR EACH ROW EXECUTE FUNCTION hopscope_pg_aggregate()""",
]

INGEST_DDL = [
    f"""CREATE TABLE IF NOT EXISTS {INGEST} (
        id bigserial PRIMARY KEY, run_id text NOT NULL, event_id text NOT NULL, key text NOT NULL,
        traceparent text NOT NULL, payload text NOT NULL, sent_ns bigint NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {INGEST}_run ON {INGEST} (run_id)",
]


def commit_times_sql(table: str) -> str:
    """Per row of a run: event id, the trigger's stamp and the commit record's time (Unix µs;
    `track_commit_timestamp = on`). Read once after the run, off the measured path."""
    return (
        f"SELECT event_id, trig_us, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint "
        f"FROM {table} WHERE run_id = %s"
    )
