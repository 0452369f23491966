"""Zipkin v2 JSON span lists (µs timestamps, `localEndpoint.serviceName`, shared client/server ids).

Shared span ids. Zipkin (B3) lets the server half of an RPC reuse the client's
span id (`"shared": true`). SPAN_SCHEMA needs one row per id, so: within a
trace, when several spans carry one id, the CLIENT half (else the first
non-shared one, else the first in the file) keeps it, and every other half
gets a derived id `blake2b(trace_id|span_id|server|k)` (k = its ordinal among
the halves, in file order) and becomes a **child of the kept half**. A span
whose `parentId` is the shared id and whose service equals a server half's
service is re-parented to that server half (the server, not the client, made
it); with several such halves, the one whose interval holds the span's start
wins, else the first. The original id stays in attribute `zipkin.shared_span_id`.

Spans without `duration` (Zipkin leaves it out when the span was never
finished or only one side reported) are kept as zero-length, flagged with
`hopscope.ingest.flag=missing_duration` and counted under `missing_duration`.
A span without `timestamp` cannot be placed in time: skipped (`bad_timestamp`).
"""

from __future__ import annotations

from collections import defaultdict

from hopscope.collector.errors import Problems
from hopscope.core import ids
from hopscope.core.attributes import ATTR_SERVICE

from .rows import ATTR_INGEST_FLAG, SpanRows

_KINDS = {"CLIENT": "CLIENT", "SERVER": "SERVER", "PRODUCER": "PRODUCER", "CONSUMER": "CONSUMER"}


def _derived_id(trace_id: str, span_id: str, k: int) -> str:
    return ids.hashed(f"{trace_id}|{span_id}|server|{k}", ids.SPAN_HEX)


def read_spans(doc: object, source: str, problems: Problems) -> SpanRows:
    rows = SpanRows(source)
    if not isinstance(doc, list):
        problems.skip(
            source, None, None, "a Zipkin v2 document must be a JSON list of spans", "malformed_record"
        )
        return rows
    parsed: list[dict] = []
    for i, sp in enumerate(doc):
        where = f"span {i}"
        if not isinstance(sp, dict):
            problems.skip(source, where, None, "span is not an object", "malformed_record")
            continue
        trace_id = ids.pad_hex(sp.get("traceId"), ids.TRACE_HEX)
        span_id = ids.pad_hex(sp.get("id"), ids.SPAN_HEX)
        for field, value, raw in (("traceId", trace_id, sp.get("traceId")), ("id", span_id, sp.get("id"))):
            if value is None:
                kind = "missing_id" if not raw else "bad_id"
                problems.skip(
                    source,
                    where,
                    field,
                    f"id {raw!r} is not 1-{32 if field == 'traceId' else 16} hex digits",
                    kind,
                )
                break
        else:
            parent_raw = sp.get("parentId")
            parent = ids.pad_hex(parent_raw, ids.SPAN_HEX) if parent_raw else None
            if parent_raw and parent is None and str(parent_raw).strip("0"):
                problems.skip(source, where, "parentId", f"id {parent_raw!r} is not hex", "bad_id")
                continue
            ts, dur = sp.get("timestamp"), sp.get("duration")
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                problems.skip(
                    source, where, "timestamp", f"missing or unparseable timestamp {ts!r}", "bad_timestamp"
                )
                continue
            flags = []
            if dur is None:
                flags.append("missing_duration")
                dur = 0
            elif not isinstance(dur, int) or isinstance(dur, bool) or dur < 0:
                problems.skip(source, where, "duration", f"unparseable duration {dur!r}", "bad_timestamp")
                continue
            kind_raw = sp.get("kind")
            if kind_raw is not None and kind_raw not in _KINDS:
                problems.skip(source, where, "kind", f"unknown kind {kind_raw!r}", "bad_field")
                continue
            parsed.append(
                {
                    "i": i,
                    "trace_id": trace_id,
                    "span_id": span_id,
                    "orig_id": span_id,
                    "parent": parent,
                    "kind": _KINDS.get(kind_raw, "INTERNAL"),
                    "shared": bool(sp.get("shared")),
                    "start": ts * 1000,
                    "end": (ts + dur) * 1000,
                    "flags": flags,
                    "raw": sp,
                    "service": (sp.get("localEndpoint") or {}).get("serviceName"),
                }
            )
    _split_shared_ids(parsed, problems)
    for p in parsed:
        sp = p["raw"]
        attrs = {str(k): str(v) for k, v in (sp.get("tags") or {}).items()}
        remote = sp.get("remoteEndpoint") or {}
        if remote.get("serviceName"):
            attrs.setdefault("peer.service", remote["serviceName"])
        if p["span_id"] != p["orig_id"]:
            attrs["zipkin.shared_span_id"] = p["orig_id"]
            p["flags"].append("zipkin_shared_id")
        if p["flags"]:
            attrs[ATTR_INGEST_FLAG] = ",".join(p["flags"])
            for flag in p["flags"]:
                problems.adjust(flag)
        local = sp.get("localEndpoint") or {}
        resource = {}
        if p["service"] is not None:
            resource[ATTR_SERVICE] = p["service"]
        if local.get("ipv4") or local.get("ipv6"):
            resource["host.ip"] = local.get("ipv4") or local.get("ipv6")
        rows.add(
            trace_id=p["trace_id"],
            span_id=p["span_id"],
            parent_span_id=p["parent"],
            links=[],
            name=str(sp.get("name") or ""),
            kind=p["kind"],
            start_ns=p["start"],
            end_ns=p["end"],
            status="ERROR" if "error" in attrs else "UNSET",
            attributes=attrs,
            resource=resource,
        )
    return rows


def _split_shared_ids(parsed: list[dict], problems: Problems) -> None:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for p in parsed:
        groups[(p["trace_id"], p["span_id"])].append(p)
    moved: dict[tuple[str, str], list[dict]] = {}
    for key, halves in groups.items():
        if len(halves) < 2:
            continue
        keeper = next(
            (h for h in halves if h["kind"] == "CLIENT"),
            next((h for h in halves if not h["shared"]), halves[0]),
        )
        others = [h for h in halves if h is not keeper]
        for k, h in enumerate(others):
            h["span_id"] = _derived_id(key[0], key[1], k)
            h["parent"] = key[1]
        moved[key] = others
    if not moved:
        return
    for p in parsed:
        key = (p["trace_id"], p["parent"])
        halves = moved.get(key)
        if not halves or any(p is h for h in halves):
            continue
        same_service = [h for h in halves if h["service"] == p["service"]]
        if not same_service:
            continue
        inside = [h for h in same_service if h["start"] <= p["start"] <= h["end"]]
        p["parent"] = (inside or same_service)[0]["span_id"]
