"""Fetch traces from a running Jaeger v2 (api_v3) or Tempo, and parse them with the file readers.

The bodies are the same documents the file readers take (`{"result": TracesData}`,
possibly one per line for FindTraces; Tempo's `{"trace": …}` / `{"batches": …}`),
so a fetched trace and a saved response give identical tables. `source` is the URL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
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


@dataclass
class Paged:
    """What a paged search read: the spans of every distinct trace, and how it ended."""

    fetched: Fetched
    pages: int
    traces: int
    #: stopped at `max_traces` before the window was covered (older traces left unread)
    capped: bool


#: one page of a search ending at the given time: (spans, the URLs read, traces the page held)
PageFetcher = Callable[[datetime], tuple[pa.Table, list[str], int]]


def paginate(
    fetch_page: PageFetcher,
    start: datetime,
    end: datetime,
    *,
    page_size: int,
    max_traces: int,
    on_page: Callable[[int, int, datetime], None] | None = None,
) -> Paged:
    """Search [start, end] a page at a time until the window is covered: trace stores answer a
    search with the most recent `page_size` traces, so each next page ends where the earliest
    trace of the last one started. Traces seen on an earlier page are not kept again; a page
    with nothing new, or one smaller than `page_size`, ends it; `max_traces` caps it."""
    seen: set[str] = set()
    tables: list[pa.Table] = []
    urls: list[str] = []
    pages, until, capped = 0, end, False
    while True:
        table, page_urls, held = fetch_page(until)
        pages += 1
        urls += page_urls
        ids = table.column("trace_id").to_pylist()
        starts: dict[str, int] = {}
        for tid, t in zip(ids, table.column("start_ns").to_pylist(), strict=True):
            starts[tid] = min(t, starts.get(tid, t))
        new = [tid for tid in sorted(starts, key=lambda k: -starts[k]) if tid not in seen]
        room = max_traces - len(seen)
        if len(new) > room:
            new, capped = new[:room], True
        if new:
            wanted = set(new)
            keep = pa.array([tid in wanted for tid in ids], pa.bool_())
            tables.append(table.filter(keep))
            seen.update(new)
        if on_page is not None:
            on_page(pages, len(seen), until)
        if capped or len(seen) >= max_traces:
            capped = capped or held >= page_size
            break
        if held < page_size or not new:
            break
        earliest = datetime.fromtimestamp(min(starts.values()) / 1e9, UTC)
        if earliest >= until or earliest <= start:
            break
        until = earliest
    return Paged(Fetched(_concat(tables), urls), pages, len(seen), capped)


def jaeger_find_traces_paged(
    base_url: str,
    service: str,
    problems: Problems,
    *,
    lookback: timedelta = timedelta(hours=1),
    end: datetime | None = None,
    operation: str | None = None,
    page_size: int = 100,
    max_traces: int = 10_000,
    on_page: Callable[[int, int, datetime], None] | None = None,
    client: httpx.Client | None = None,
) -> Paged:
    """FindTraces over the whole window, a page of `page_size` traces at a time (`paginate`)."""
    end = end or datetime.now(UTC)
    start = end - lookback
    with _client(client, 60) as c:

        def page(until: datetime) -> tuple[pa.Table, list[str], int]:
            got = jaeger_find_traces(
                base_url, service, problems, lookback=until - start, end=until, operation=operation,
                search_depth=page_size, client=c,
            )  # fmt: skip
            return got.table, got.urls, len(set(got.table.column("trace_id").to_pylist()))

        return paginate(page, start, end, page_size=page_size, max_traces=max_traces, on_page=on_page)


def tempo_search_paged(
    base_url: str,
    problems: Problems,
    *,
    q: str | None = None,
    lookback: timedelta = timedelta(hours=1),
    end: datetime | None = None,
    page_size: int = 20,
    max_traces: int = 10_000,
    on_page: Callable[[int, int, datetime], None] | None = None,
    client: httpx.Client | None = None,
) -> Paged:
    """Tempo search over the whole window, a page of `page_size` hits at a time (`paginate`).
    Tempo takes whole seconds: more than a page of traces starting within one second ends the
    paging there (a page with nothing new)."""
    end = end or datetime.now(UTC)
    start = end - lookback
    with _client(client, 60) as c:

        def page(until: datetime) -> tuple[pa.Table, list[str], int]:
            # the end second rounded up, so a trace starting within it is still in the window
            until_s = datetime.fromtimestamp(math.ceil(until.timestamp()), UTC)
            got = tempo_search(
                base_url, problems, q=q, lookback=until_s - start, end=until_s, limit=page_size, client=c
            )
            return got.table, got.urls, len(got.urls)

        return paginate(page, start, end, page_size=page_size, max_traces=max_traces, on_page=on_page)
