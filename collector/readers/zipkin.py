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

from hopscope.collector.errors import BadRecord, Problems, short
from hopscope.core import ids
from hopscope.core.attributes import ATTR_SERVICE

from .rows import INT64_MAX, SpanRows, format_double, micros

_KINDS = {"CLIENT": "CLIENT", "SERVER": "SERVER", "PRODUCER": "PRODUCER", "CONSUMER": "CONSUMER"}


def _derived_id(trace_id: str, span_id: str, k: int) -> str:
    return ids.hashed(f"{trace_id}|{span_id}|server|{k}", ids.SPAN_HEX)


def _endpoint(v: object, field: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise BadRecord(field, f"is not an object: {short(v)}")
    for key in ("serviceName", "ipv4", "ipv6"):
        if v.get(key) is not None and not isinstance(v[key], str):
            raise BadRecord(f"{field}.{key}", f"is not a string: {short(v[key])}")
    return v


def _tag_text(v: object, key: str) -> str | None:
    """Zipkin v2 tag values are strings; numbers and booleans some producers write are spelled out."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_double(v)
    raise BadRecord(f"tags[{short(key, 60)}]", f"tag value is not a string: {short(v)}")


def _parse(sp: object, i: int) -> dict:
    """One Zipkin span checked and converted (BadRecord names what is wrong)."""
    if not isinstance(sp, dict):
        raise BadRecord("", f"span is not an object: {short(sp)}", "malformed_record")
    trace_id = ids.pad_hex(sp.get("traceId"), ids.TRACE_HEX)
    span_id = ids.pad_hex(sp.get("id"), ids.SPAN_HEX)
    for field, value, raw in (("traceId", trace_id, sp.get("traceId")), ("id", span_id, sp.get("id"))):
        if value is None:
            kind = "missing_id" if raw is None or raw == "" else "bad_id"
            digits = 32 if field == "traceId" else 16
            raise BadRecord(field, f"id {short(raw)} is not 1-{digits} hex digits", kind)
    parent_raw = sp.get("parentId")
    parent = ids.pad_hex(parent_raw, ids.SPAN_HEX) if parent_raw else None
    if parent_raw and parent is None and not (isinstance(parent_raw, str) and not parent_raw.strip("0")):
        raise BadRecord("parentId", f"id {short(parent_raw)} is not hex", "bad_id")
    ts = micros(sp.get("timestamp"), "timestamp")
    flags = []
    dur = sp.get("duration")
    if dur is None:
        flags.append("missing_duration")
        dur = 0
    else:
        dur = micros(dur, "duration")
    if (ts + dur) * 1000 > INT64_MAX:
        raise BadRecord(
            "duration", "timestamp + duration is past the int64 nanosecond range", "bad_timestamp"
        )
    kind_raw = sp.get("kind")
    if kind_raw is not None and not (isinstance(kind_raw, str) and kind_raw in _KINDS):
        raise BadRecord("kind", f"unknown kind {short(kind_raw)}", "bad_field")
    name = sp.get("name")
    if name is not None and not isinstance(name, str):
        raise BadRecord("name", f"is not a string: {short(name)}")
    shared = sp.get("shared")
    if shared is not None and not isinstance(shared, bool):
        raise BadRecord("shared", f"is not a boolean: {short(shared)}")
    tags = sp.get("tags")
    if tags is None:
        tags = {}
    if not isinstance(tags, dict):
        raise BadRecord("tags", f"is not an object: {short(tags)}")
    attrs = {k: _tag_text(v, k) for k, v in tags.items()}
    local = _endpoint(sp.get("localEndpoint"), "localEndpoint")
    remote = _endpoint(sp.get("remoteEndpoint"), "remoteEndpoint")
    if remote.get("serviceName"):
        attrs.setdefault("peer.service", remote["serviceName"])
    resource = {}
    if local.get("serviceName") is not None:
        resource[ATTR_SERVICE] = local["serviceName"]
    if local.get("ipv4") or local.get("ipv6"):
        resource["host.ip"] = local.get("ipv4") or local.get("ipv6")
    return {
        "i": i,
        "trace_id": trace_id,
        "span_id": span_id,
        "orig_id": span_id,
        "parent": parent,
        "kind": _KINDS.get(kind_raw, "INTERNAL"),
        "shared": bool(shared),
        "start": ts * 1000,
        "end": (ts + dur) * 1000,
        "flags": flags,
        "name": name or "",
        "attrs": attrs,
        "resource": resource,
        "service": local.get("serviceName"),
    }


def read_spans(doc: object, rows: SpanRows, problems: Problems, where: str | None = None) -> None:
    """Add the spans of one Zipkin v2 span list to `rows`; bad spans are skipped and counted.

    `where` names the record the list came from (a line of a JSON-lines file), if any.
    """
    source = rows.source
    prefix = f"{where}, " if where else ""
    if not isinstance(doc, list):
        problems.skip(
            source, where, None, "a Zipkin v2 document must be a JSON list of spans", "malformed_record"
        )
        return
    parsed: list[dict] = []
    for i, sp in enumerate(doc):
        try:
            parsed.append(_parse(sp, i))
        except BadRecord as e:
            problems.skip(source, f"{prefix}span {i}", e.field or None, e.message, e.kind)
        except Exception as e:  # a reader bug: counted, never fatal
            problems.unexpected(source, f"{prefix}span {i}", None, e)
    _split_shared_ids(parsed)
    for p in parsed:
        attrs = p["attrs"]
        if p["span_id"] != p["orig_id"]:
            attrs["zipkin.shared_span_id"] = p["orig_id"]
            p["flags"].append("zipkin_shared_id")
        try:
            rows.add(
                trace_id=p["trace_id"],
                span_id=p["span_id"],
                parent_span_id=p["parent"],
                links=[],
                name=p["name"],
                kind=p["kind"],
                start_ns=p["start"],
                end_ns=p["end"],
                status="ERROR" if "error" in attrs else "UNSET",
                attributes=attrs,
                resource=p["resource"],
                flags=p["flags"],
            )
        except BadRecord as e:
            problems.skip(source, f"{prefix}span {p['i']}", e.field or None, e.message, e.kind)
        except Exception as e:  # a reader bug: counted, never fatal
            problems.unexpected(source, f"{prefix}span {p['i']}", None, e)


def _split_shared_ids(parsed: list[dict]) -> None:
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
