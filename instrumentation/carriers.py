"""W3C `traceparent` through every carrier the pipelines use.

Parsing is strict (lower-case hex, exact field widths, no all-zero ids, version
`ff` rejected) and raises `TraceparentError` naming the carrier and the problem:
the OTel propagator would silently start a new trace instead, which is exactly
the failure hopscope must be able to see. Trace flags are kept as sent (the
Python SDK emits `03`: sampled + random).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from hopscope.core.attributes import TRACEPARENT

_TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


class TraceparentError(ValueError):
    """A traceparent is missing or malformed; the message names where it came from."""


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: str  # 32 lower-case hex
    span_id: str  # 16 lower-case hex
    flags: int
    version: int = 0

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 0x01)

    def format(self) -> str:
        return f"{self.version:02x}-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def span_context(self) -> SpanContext:
        return SpanContext(
            trace_id=int(self.trace_id, 16),
            span_id=int(self.span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(self.flags),
        )

    def context(self) -> Context:
        """An OTel Context whose current span is this (remote) parent."""
        return trace.set_span_in_context(NonRecordingSpan(self.span_context()))


def parse_traceparent(value: str | bytes, where: str = "traceparent") -> TraceParent:
    """Parse a W3C traceparent strictly; `where` names the carrier in the error."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError as exc:
            raise TraceparentError(f"{where}: traceparent is not ASCII: {value!r}") from exc
    if not isinstance(value, str):
        raise TraceparentError(f"{where}: traceparent must be a string, got {type(value).__name__}")
    text = value.strip(" \t")
    match = _TRACEPARENT_RE.fullmatch(text)
    if match is None:
        raise TraceparentError(
            f"{where}: malformed traceparent {value!r}: expected "
            "'vv-<32 lower-case hex trace id>-<16 lower-case hex span id>-ff'"
        )
    version_hex, trace_id, span_id, flags_hex, rest = match.groups()
    version = int(version_hex, 16)
    if version == 0xFF:
        raise TraceparentError(f"{where}: traceparent version 'ff' is forbidden by W3C: {value!r}")
    if version == 0 and rest:
        raise TraceparentError(f"{where}: version 00 traceparent has extra fields: {value!r}")
    if trace_id == "0" * 32:
        raise TraceparentError(f"{where}: traceparent trace id is all zeros: {value!r}")
    if span_id == "0" * 16:
        raise TraceparentError(f"{where}: traceparent span (parent) id is all zeros: {value!r}")
    return TraceParent(trace_id=trace_id, span_id=span_id, flags=int(flags_hex, 16), version=version)


def format_traceparent(span_context: SpanContext) -> str:
    """The W3C header value for a span context (flags as the SDK set them)."""
    if not span_context.is_valid:
        raise TraceparentError("cannot format a traceparent from an invalid (no-op) span context")
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def _span_context_of(source: SpanContext | trace.Span | Context) -> SpanContext:
    if isinstance(source, SpanContext):
        return source
    if isinstance(source, trace.Span):
        return source.get_span_context()
    return trace.get_current_span(source).get_span_context()


# --- plain dicts and HTTP headers ----------------------------------------------------------


def inject_dict(carrier: MutableMapping[str, Any], source: SpanContext | trace.Span | Context) -> None:
    carrier[TRACEPARENT] = format_traceparent(_span_context_of(source))


def extract_dict(carrier: Mapping[str, Any], where: str = "dict") -> TraceParent:
    if TRACEPARENT not in carrier:
        raise TraceparentError(f"{where}: no '{TRACEPARENT}' key (keys: {sorted(carrier)})")
    return parse_traceparent(carrier[TRACEPARENT], f"{where}['{TRACEPARENT}']")


def inject_http_headers(
    headers: MutableMapping[str, str], source: SpanContext | trace.Span | Context
) -> None:
    # Drop any differently-cased copy first: two traceparent headers would be ambiguous.
    for key in [k for k in headers if k.lower() == TRACEPARENT]:
        del headers[key]
    headers[TRACEPARENT] = format_traceparent(_span_context_of(source))


def extract_http_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], where: str = "HTTP headers"
) -> TraceParent:
    items = headers.items() if isinstance(headers, Mapping) else headers
    values = [v for k, v in items if k.lower() == TRACEPARENT]
    return _single(values, where)


# --- Kafka header lists: [(key, bytes), ...] -------------------------------------------------


def inject_kafka_headers(
    headers: list[tuple[str, bytes]], source: SpanContext | trace.Span | Context
) -> None:
    headers[:] = [(k, v) for k, v in headers if k != TRACEPARENT]
    headers.append((TRACEPARENT, format_traceparent(_span_context_of(source)).encode("ascii")))


def extract_kafka_headers(
    headers: Iterable[tuple[str, bytes | str | None]] | None, where: str = "Kafka headers"
) -> TraceParent:
    values = [v for k, v in (headers or ()) if k == TRACEPARENT]
    return _single(values, where)


def _single(values: list[Any], where: str) -> TraceParent:
    if not values:
        raise TraceparentError(f"{where}: no '{TRACEPARENT}' header")
    distinct = {v.decode("ascii", "replace") if isinstance(v, bytes) else v for v in values}
    if len(distinct) > 1:
        raise TraceparentError(
            f"{where}: {len(values)} different '{TRACEPARENT}' headers: {sorted(distinct)}"
        )
    if values[0] is None:
        raise TraceparentError(f"{where}: '{TRACEPARENT}' header has no value")
    return parse_traceparent(values[0], f"{where}[{TRACEPARENT}]")


# --- Redis message envelope and JSON payload fields (MQTT, Harper records) -----------------


def make_envelope(event_id: str, payload: Any, source: SpanContext | trace.Span | Context) -> bytes:
    """The Redis pub/sub message: `{"traceparent", "event_id", "payload"}` as JSON bytes."""
    return orjson.dumps(
        {TRACEPARENT: format_traceparent(_span_context_of(source)), "event_id": event_id, "payload": payload}
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    payload: Any
    parent: TraceParent


def parse_envelope(message: bytes | str, where: str = "Redis envelope") -> Envelope:
    try:
        doc = orjson.loads(message)
    except orjson.JSONDecodeError as exc:
        raise TraceparentError(f"{where}: not JSON ({exc}): {message[:80]!r}") from exc
    if not isinstance(doc, dict):
        raise TraceparentError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    missing = [k for k in (TRACEPARENT, "event_id", "payload") if k not in doc]
    if missing:
        raise TraceparentError(f"{where}: missing field(s) {missing}")
    if not isinstance(doc["event_id"], str) or not doc["event_id"]:
        raise TraceparentError(
            f"{where}: field 'event_id' must be a non-empty string, got {doc['event_id']!r}"
        )
    parent = parse_traceparent(doc[TRACEPARENT], f"{where} (event {doc['event_id']}).{TRACEPARENT}")
    return Envelope(event_id=doc["event_id"], payload=doc["payload"], parent=parent)


def inject_payload(
    payload: MutableMapping[str, Any], source: SpanContext | trace.Span | Context, field: str = TRACEPARENT
) -> None:
    """Put the trace context into a JSON payload (MQTT 5 user properties are dropped by Harper)."""
    payload[field] = format_traceparent(_span_context_of(source))


def extract_payload(
    payload: Mapping[str, Any], field: str = TRACEPARENT, where: str = "payload"
) -> TraceParent:
    if field not in payload:
        raise TraceparentError(f"{where}: no '{field}' field")
    return parse_traceparent(payload[field], f"{where}.{field}")
