"""LISTEN/NOTIFY as the `postgres` stack uses it — pure parts: channel routing, the notification
payload, and PostgreSQL's limits checked before any load.

Routing mirrors the trigger (`schema.py`): a row's channel is the run's prefix followed by the
row's field values in the workload's field order (`<prefix>_eu_alerts`). A subscriber LISTENs
on exactly the channels whose field values its filter accepts, so no notification can reach a
subscriber whose filter does not match (no misdelivery by construction).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from ..workload import SubscriberSpec, Workload

#: PostgreSQL's NOTIFY payload must be shorter than 8000 bytes (in the default configuration).
MAX_PAYLOAD_BYTES = 7999
#: Channel names are identifiers: NAMEDATALEN - 1 bytes.
MAX_CHANNEL_BYTES = 63
#: The notification queue holds 8 GB (fixed in PostgreSQL 15; `max_notify_queue_pages` from 17 on);
#: a listener that stops reading fills it, and then every NOTIFY fails. The clean start reports
#: its use (`pg_notification_queue_usage()`).
QUEUE_BYTES = 8 * 1024**3
#: Field values become part of a channel name: kept to lower-case identifier characters.
_SAFE = re.compile(r"^[a-z0-9_]+$")
#: What the JSON envelope adds to the pad: keys, event id, traceparent, key, fields, timestamps.
ENVELOPE_OVERHEAD_BYTES = 512


class LimitError(ValueError):
    """A workload that LISTEN/NOTIFY cannot carry as configured (a clear message, no load sent)."""


def channel_prefix(run_tag: str, workload: str) -> str:
    """The run's channel prefix (one run never hears another's notifications)."""
    short = {"write_notify": "wn", "fanout": "fo", "aggregate": "ag", "ingest": "in"}.get(workload, "x")
    return f"hs_{short}_{run_tag}"[:40]


def channel_for(prefix: str, field_order: Sequence[str], fields: Mapping[str, str]) -> str:
    """The channel a row with `fields` is notified on (what the trigger computes)."""
    return "_".join([prefix, *(fields[f] for f in field_order)])


def subscriber_channels(prefix: str, workload: Workload, sub: SubscriberSpec) -> list[str]:
    """The channels `sub` LISTENs on: one per field combination its filter accepts."""
    order = field_order(workload)
    if not order:
        return [prefix]
    return [channel_for(prefix, order, c) for c in workload.field_combinations() if sub.matches(c)]


def field_order(workload: Workload) -> list[str]:
    return sorted(workload.fields)


def check_limits(workload: Workload, prefix: str) -> None:
    """Refuse a workload LISTEN/NOTIFY cannot carry: a payload at or over 8000 bytes, a channel
    name over 63 bytes, field values that cannot be part of an identifier."""
    need = workload.payload_bytes + ENVELOPE_OVERHEAD_BYTES
    if need > MAX_PAYLOAD_BYTES:
        raise LimitError(
            f"workload {workload.name!r}: payload_bytes {workload.payload_bytes} makes a NOTIFY payload of "
            f"up to {need} bytes; PostgreSQL's limit is {MAX_PAYLOAD_BYTES} "
            f"(at most {MAX_PAYLOAD_BYTES - ENVELOPE_OVERHEAD_BYTES} payload bytes on this stack)"
        )
    for name, values in workload.fields.items():
        for value in (name, *values):
            if not _SAFE.match(value):
                raise LimitError(
                    f"workload {workload.name!r}: field {name!r} value {value!r} cannot be part of a "
                    "channel name (lower-case letters, digits and _ only)"
                )
    order = field_order(workload)
    for combo in workload.field_combinations() if order else [{}]:
        channel = channel_for(prefix, order, combo)
        if len(channel.encode()) > MAX_CHANNEL_BYTES:
            raise LimitError(
                f"workload {workload.name!r}: channel {channel!r} is over {MAX_CHANNEL_BYTES} bytes"
            )


@dataclass(frozen=True, slots=True)
class Notification:
    """What a subscriber gets: built by the trigger inside the writing transaction."""

    event_id: str
    traceparent: str
    key: str
    #: clock_timestamp() in the trigger, Unix µs (the derived hop's end)
    trigger_us: int
    count: int | None = None  # aggregate: the key's new state
    total: float | None = None

    @classmethod
    def parse(cls, raw: str, channel: str) -> Notification:
        try:
            doc = orjson.loads(raw)
            return cls(
                event_id=str(doc["e"]),
                traceparent=str(doc["tp"]),
                key=str(doc["k"]),
                trigger_us=int(doc["tr"]),
                count=None if doc.get("n") is None else int(doc["n"]),
                total=None if doc.get("s") is None else float(doc["s"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"channel {channel}: notification is not the stack's envelope ({exc}): {raw[:80]!r}"
            ) from exc
