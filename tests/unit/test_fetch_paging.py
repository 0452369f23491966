"""Paged trace searches: a window with more traces than one search returns is read page by
page until covered, each trace once, capped by max_traces (a fake Jaeger api_v3 in process)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from hopscope.collector.errors import Problems
from hopscope.collector.readers import live

END = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
N_TRACES = 23


def _trace(i: int) -> dict:
    start = int((END - timedelta(seconds=10 * (i + 1))).timestamp() * 1e9)
    span = {
        "traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": "op", "kind": 2,
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 1_000_000),
    }  # fmt: skip
    rs = {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
          "scopeSpans": [{"spans": [span]}]}  # fmt: skip
    return {"start": start, "doc": {"result": {"resourceSpans": [rs]}}}


TRACES = [_trace(i) for i in range(N_TRACES)]


def _ts(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp() * 1e9)


def _fake_jaeger(calls: list[dict]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        q = dict(request.url.params)
        calls.append(q)
        lo, hi = _ts(q["query.start_time_min"]), _ts(q["query.start_time_max"])
        hits = sorted((t for t in TRACES if lo <= t["start"] <= hi), key=lambda t: -t["start"])
        hits = hits[: int(q["query.search_depth"])]
        if not hits:
            return httpx.Response(404, json={"error": {"httpCode": 404, "message": "not found"}})
        return httpx.Response(200, content="\n".join(json.dumps(t["doc"]) for t in hits).encode())

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_pages_until_the_window_is_covered() -> None:
    calls: list[dict] = []
    progress: list[tuple[int, int]] = []
    got = live.jaeger_find_traces_paged(
        "http://jaeger", "svc", Problems(strict=True), lookback=timedelta(hours=1), end=END,
        page_size=5, client=_fake_jaeger(calls), on_page=lambda p, n, _until: progress.append((p, n)),
    )  # fmt: skip
    ids = got.fetched.table.column("trace_id").to_pylist()
    assert sorted(ids) == sorted(f"{i + 1:032x}" for i in range(N_TRACES))  # each once
    assert got.traces == N_TRACES and not got.capped
    assert got.pages == len(calls) >= N_TRACES // 5
    assert progress[-1] == (got.pages, N_TRACES)
    # every page after the first ends where the one before it reached
    maxes = [_ts(c["query.start_time_max"]) for c in calls]
    assert maxes == sorted(maxes, reverse=True) and len(set(maxes)) == len(maxes)


def test_one_page_when_the_window_holds_fewer_than_a_page() -> None:
    calls: list[dict] = []
    got = live.jaeger_find_traces_paged(
        "http://jaeger", "svc", Problems(strict=True), lookback=timedelta(seconds=35), end=END,
        page_size=5, client=_fake_jaeger(calls),
    )  # fmt: skip
    assert got.traces == 3 and got.pages == 1 and not got.capped


@pytest.mark.parametrize("cap", [7, 10])
def test_capped(cap: int) -> None:
    got = live.jaeger_find_traces_paged(
        "http://jaeger", "svc", Problems(strict=True), lookback=timedelta(hours=1), end=END,
        page_size=5, max_traces=cap, client=_fake_jaeger([]),
    )  # fmt: skip
    assert got.traces == cap and got.capped
    # the most recent traces are the ones kept
    assert sorted(got.fetched.table.column("trace_id").to_pylist()) == [f"{i + 1:032x}" for i in range(cap)]


def _fake_tempo(calls: list[dict]) -> httpx.Client:
    by_id = {
        t["doc"]["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]: t for t in TRACES
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/search":
            q = dict(request.url.params)
            calls.append(q)
            lo, hi = int(q["start"]) * 10**9, int(q["end"]) * 10**9
            hits = sorted((t for t in TRACES if lo <= t["start"] <= hi), key=lambda t: -t["start"])
            hits = hits[: int(q["limit"])]
            return httpx.Response(
                200,
                json={"traces": [{"traceID": f"{TRACES.index(t) + 1:032x}", "startTimeUnixNano": str(t["start"])}
                                 for t in hits]},
            )  # fmt: skip
        tid = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json={"trace": by_id[tid]["doc"]["result"]})

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_tempo_pages_until_the_window_is_covered() -> None:
    calls: list[dict] = []
    got = live.tempo_search_paged(
        "http://tempo", Problems(strict=True), q="{}", lookback=timedelta(hours=1), end=END, page_size=4,
        client=_fake_tempo(calls),
    )  # fmt: skip
    assert sorted(got.fetched.table.column("trace_id").to_pylist()) == sorted(
        f"{i + 1:032x}" for i in range(N_TRACES)
    )
    assert got.traces == N_TRACES and not got.capped and len(calls) == got.pages > N_TRACES // 4
