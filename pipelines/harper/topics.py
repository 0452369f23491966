"""Where each workload's events go in Harper, and which MQTT filters a subscriber holds.

Fan-out filtering must be done with topic paths: Harper ignores query-string
filters on subscriptions. An event of `fanout` is the record
`Fanout/<field values in workload order>/<event id>`; a subscriber's filter
becomes one MQTT filter per combination of accepted values, `+` for a field
it does not filter on, ending in `/#`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from hopscope.pipelines.workload import SubscriberSpec, Workload

NOTIFY = "Notify"
FANOUT = "Fanout"
READING = "Reading"
AGGREGATE = "Aggregate"
INGEST = "Ingest"


def fanout_topic(workload: Workload, fields: Mapping[str, str], event_id: str) -> str:
    missing = [f for f in workload.fields if f not in fields]
    if missing:
        raise ValueError(f"fanout event {event_id} has no value for field(s) {missing}")
    bad = [fields[f] for f in workload.fields if "/" in fields[f] or fields[f] in ("+", "#", "")]
    if bad:
        raise ValueError(f"fanout event {event_id}: field values {bad} cannot be MQTT topic levels")
    return "/".join([FANOUT, *(fields[f] for f in workload.fields), event_id])


def fanout_filters(workload: Workload, subscriber: SubscriberSpec) -> list[str]:
    unknown = sorted(set(subscriber.filter) - set(workload.fields))
    if unknown:
        raise ValueError(f"subscriber {subscriber.name!r} filters on unknown field(s) {unknown}")
    levels = [subscriber.filter.get(f, ("+",)) for f in workload.fields]
    filters = ["/".join([FANOUT, *combo, "#"]) for combo in itertools.product(*levels)]
    # "+/+/#" over every field is the same as "#": one filter is enough and cheaper for Harper
    return [f"{FANOUT}/#"] if not subscriber.filter else filters


def destination_template(topic: str) -> str:
    """The topic with its last level (the event id) as `{id}`: OTel's low-cardinality
    `messaging.destination.template`, used for metrics where the topic itself is per event."""
    head, sep, _ = str(topic).rpartition("/")
    return f"{head}/{{id}}" if sep else str(topic)
