"""Fetch traces from a running Jaeger v2 (api_v3) or Tempo, and parse them with the file readers.

The bodies are the same documents the file readers take (`{"result": TracesData}`,
possibly one per line for FindTraces; Tempo's `{"trace": …}` / `{"batches": …}`),
so a fetched trace and a saved response give identical tables. `source` is the URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pyarrow as pa

from hopscope.collector.errors import IngestError, Problems
from hopscope.core.schema import SPAN_SCHEMA

from .formats import JAEGER_V3, TEMPO, read_bytes


class FetchError(IngestError):
    """The trace store answered with an error (or not at all)."""


@dataclass
class Fetched:
    table: pa.Table
    urls: list[str]


@contextmanager
def _client(client: httpx.Client | None, timeout: float) -> Iterator[httpx.Client]:
    """Use the caller's client as is (it stays open); otherwise open and close one."""
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=timeout) as own:
        yield own


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _get(client: httpx.Client, url: str, params: dict | None = None) -> httpx.Response:
    try:
        resp = client.get(url, params=params, headers={"Accept": "application/json"})
    except httpx.HTTPError as e:
        raise FetchError(f"{url}: {e}") from None
    return resp


def _checked(resp: httpx.Response) -> bytes:
    if resp.status_code >= 400:
        raise FetchError(f"{resp.request.url}: HTTP {resp.status_code}: {resp.text[:300]}")
    return resp.content


def _concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else SPAN_SCHEMA.empty_table()


def jaeger_get_trace(
    base_url: str, trace_id: str, problems: Problems, *, client: httpx.Client | None = None
) -> Fetched:
    """api_v3 GetTrace: GET {base}/api/v3/traces/{trace_id}."""
    with _client(client, 30) as c:
        url = f"{base_url.rstrip('/')}/api/v3/traces/{trace_id}"
        body = _checked(_get(c, url))
        return Fetched(read_bytes(body, url, problems, JAEGER_V3), [url])


def jaeger_find_traces(
    base_url: str,
    service: str,
    problems: Problems,
    *,
    lookback: timedelta = timedelta(hours=1),
    end: datetime | None = None,
    operation: str | None = None,
    search_depth: int = 100,
    client: httpx.Client | None = None,
) -> Fetched:
    """api_v3 FindTraces over [end - lookback, end]. Both time bounds are required by Jaeger.

    Parameter names are the proto (snake_case) ones: every Jaeger v2 release parses
    them (newer ones also take lowerCamel and keep these as aliases).
    """
    end = end or datetime.now(UTC)
    params = {
        "query.service_name": service,
        "query.start_time_min": _rfc3339(end - lookback),
        "query.start_time_max": _rfc3339(end),
        "query.search_depth": str(search_depth),
    }
    if operation:
        params["query.operation_name"] = operation
    with _client(client, 60) as c:
        url = f"{base_url.rstrip('/')}/api/v3/traces"
        resp = _get(c, url, params)
        if resp.status_code == 404:  # api_v3 answers 404 when nothing matched
            return Fetched(SPAN_SCHEMA.empty_table(), [str(resp.request.url)])
        body = _checked(resp)
        return Fetched(read_bytes(body, str(resp.request.url), problems, JAEGER_V3), [str(resp.request.url)])


def jaeger_services(base_url: str, *, client: httpx.Client | None = None) -> list[str]:
    with _client(client, 30) as c:
        body = _checked(_get(c, f"{base_url.rstrip('/')}/api/v3/services"))
    return list(orjson.loads(body).get("services") or [])


def tempo_get_trace(
    base_url: str, trace_id: str, problems: Problems, *, client: httpx.Client | None = None
) -> Fetched:
    """Tempo trace by id: /api/v2/traces/{id}, falling back to the v1 /api/traces/{id} on 404."""
    with _client(client, 30) as c:
        base = base_url.rstrip("/")
        url = f"{base}/api/v2/traces/{trace_id}"
        resp = _get(c, url)
        if resp.status_code == 404:
            url = f"{base}/api/traces/{trace_id}"
            resp = _get(c, url)
        body = _checked(resp)
        return Fetched(read_bytes(body, url, problems, TEMPO), [url])


def tempo_search(
    base_url: str,
    problems: Problems,
    *,
    q: str | None = None,
    tags: str | None = None,
    lookback: timedelta = timedelta(hours=1),
    end: datetime | None = None,
    limit: int = 20,
    client: httpx.Client | None = None,
) -> Fetched:
    """Tempo /api/search (TraceQL `q` or logfmt `tags`), then one trace-by-id call per hit (Tempo has no bulk export)."""
    end = end or datetime.now(UTC)
    params: dict[str, str] = {
        "start": str(int((end - lookback).timestamp())),
        "end": str(int(end.timestamp())),
        "limit": str(limit),
    }
    if q:
        params["q"] = q
    if tags:
        params["tags"] = tags
    with _client(client, 60) as c:
        base = base_url.rstrip("/")
        body = _checked(_get(c, f"{base}/api/search", params))
        hits = orjson.loads(body).get("traces") or []
        tables, urls = [], []
        for hit in hits:
            got = tempo_get_trace(base, hit["traceID"], problems, client=c)
            tables.append(got.table)
            urls.extend(got.urls)
    return Fetched(_concat(tables), urls)
