"""Contrib instrumentations on the clients of the Kafka stack's Python services.

Each client object is instrumented on its own (psycopg connection, redis client,
httpx client) rather than by patching the library for the whole process: the
load-generator process also holds other stacks' clients and the services' health
checks, which must stay untraced.

The library spans (`INSERT`, `PUBLISH`, `GET` …) become children of the hop span
that is current when the call is made; the analysis folds them into that hop
(`analysis/fold.py`). Outside any hop they are dropped by `HopRoots`.

The confluent-kafka instrumentation is used on the producer only (`instrument_producer`
proxy): its `<topic> send` span nests under the event's root and its inject puts the
send span's context into the record headers (the caller then passes no `traceparent`
of its own, so a record never carries two). Its consumer side is not used: it starts
a new trace per record (`recv`, joined to the producer by a link only), which
`HopRoots` would drop anyway; hopscope's consumer hop spans are children of the
extracted context and link to it (`hops.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .tracing import tracing_enabled

C = TypeVar("C")

_W3C = TraceContextTextMapPropagator()


def trace_client(client: C, provider: trace.TracerProvider) -> C:
    """`client` with its library's contrib instrumentation bound to `provider` (as is with tracing off)."""
    if not tracing_enabled(provider):
        return client
    module = type(client).__module__.split(".")[0]
    if module in ("confluent_kafka", "cimpl"):  # cimpl: the C module behind confluent_kafka.Producer
        from confluent_kafka import Producer
        from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor

        if not isinstance(client, Producer):
            raise TypeError(f"only the Kafka producer is instrumented, not {type(client).__name__}")
        return ConfluentKafkaInstrumentor.instrument_producer(client, tracer_provider=provider)  # type: ignore[return-value]
    if module == "psycopg":
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        return PsycopgInstrumentor.instrument_connection(client, tracer_provider=provider)  # type: ignore[type-var]
    if module == "redis":
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor.instrument_client(client, tracer_provider=provider)  # type: ignore[arg-type]
        return client
    if module == "httpx":
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)  # type: ignore[arg-type]
        return client
    raise TypeError(f"no contrib instrumentation for {type(client).__module__}.{type(client).__name__}")


@contextmanager
def within_traceparent(traceparent: str, enabled: bool = True) -> Iterator[None]:
    """Makes an event's carried context current, so library spans nest under its hop.

    With `enabled` false (tracing off) it does nothing: the untraced side of the overhead
    A/B pays no parse or attach per event.
    """
    if not enabled:
        yield
        return
    token = context.attach(_W3C.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)
