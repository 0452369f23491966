"""The open-loop load generator.

Every event has an intended send time from the schedule, fixed before the
run. A sender coroutine sleeps until the next intended time and dispatches
everything due (in bursts when late); a send never waits for an earlier
event's ack, so a stalled system cannot slow the schedule down and hide its
stall (coordinated omission). Latency is measured from the intended time; the
send lag (sent − intended) is kept as its own series.

Each event's root span (`loadgen.send`, `hopscope.hop` = the stack's first
hop) starts at the intended time and ends at the ack; its W3C traceparent is
put into `event.carrier` before the driver sees the event. With
`root_spans="deferred"` the hot path only draws the ids and formats the
traceparent; the SDK root spans (same ids, same times) are built after the
run. That takes the span cost (~10–50 µs/event) off the send path, at the
price of root spans reaching the collector only at the end of the run.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from random import getrandbits
from typing import Any, Literal

import numpy as np
import psutil
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hopscope.core.attributes import (
    ATTR_EVENT_ID,
    ATTR_HOP,
    ATTR_SEND_LAG_NS,
    ATTR_WORKLOAD,
    LOADGEN_SPAN_NAME,
    TRACEPARENT,
)
from hopscope.instrumentation.carriers import format_traceparent
from hopscope.instrumentation.deferred import PresetIds
from hopscope.instrumentation.tracing import tracing_enabled

from .clean_start import BacklogSource, CleanStart, combined, wait_clean
from .driver import Ack, Driver, Event, RunContext
from .ledger import Ledger, LedgerResult
from .schedule import NS_PER_S, Plan, phased_plan
from .stack import root_hops
from .workload import POINT_READ, Workload

#: Dispatch at most this many events before yielding to the loop, so acks and
#: receipts are time-stamped promptly even while the sender catches up.
MAX_BURST = 256


class Clock:
    """Unix-ns timestamps from a monotonic clock anchored once (no NTP steps mid-run)."""

    def __init__(self) -> None:
        self.mono0 = time.perf_counter_ns()
        self.wall0 = time.time_ns()

    def now_ns(self) -> int:
        return self.wall0 + (time.perf_counter_ns() - self.mono0)


@dataclass
class EventPlan:
    """Everything about the run's events that is known before the first send."""

    plan: Plan
    event_ids: list[str]
    workload_names: np.ndarray  # object: workload name or point_read
    key_index: np.ndarray
    combos: list[dict[str, str]]
    combo_index: np.ndarray
    expected_by_combo: list[tuple[str, ...]]
    expected_mask: np.ndarray  # (events, subscribers)
    warmup: np.ndarray
    target_rate: np.ndarray

    def __len__(self) -> int:
        return len(self.event_ids)


def plan_events(
    workload: Workload, run_id: str, schedule: str | None = None, seed: int | None = None
) -> EventPlan:
    seed = workload.seed if seed is None else seed
    plan = phased_plan(
        schedule or workload.schedule,  # type: ignore[arg-type]
        workload.phases(),
        seed=seed,
        point_read_rate=workload.point_read_rate,
    )
    n = len(plan)
    rng = np.random.default_rng(seed + 1)
    if workload.key_skew > 0:
        weights = 1.0 / np.arange(1, workload.key_count + 1, dtype=np.float64) ** workload.key_skew
        key_index = rng.choice(workload.key_count, size=n, p=weights / weights.sum())
    else:
        key_index = rng.integers(0, workload.key_count, size=n)
    combos = workload.field_combinations()
    combo_index = rng.integers(0, len(combos), size=n)
    expected_by_combo = [tuple(workload.expected_subscribers(c)) for c in combos]
    names = workload.subscriber_names
    combo_mask = np.array([[s in exp for s in names] for exp in expected_by_combo], dtype=bool)
    is_read = plan.stream == 1
    expected_mask = combo_mask[combo_index]
    expected_mask[is_read] = False  # a point read is answered by the ack, no subscriber gets it
    rates = np.array([r for r, _ in workload.phases()], dtype=np.float64)
    warmup_ns = round(workload.warmup_s * NS_PER_S)
    warmup = (plan.intended_ns - plan.phase_start_ns[plan.phase]) < warmup_ns
    target_rate = np.where(is_read, workload.point_read_rate or 0.0, rates[plan.phase])
    return EventPlan(
        plan=plan,
        event_ids=[f"{run_id}-{i}" for i in range(n)],
        workload_names=np.where(is_read, POINT_READ, workload.name).astype(object),
        key_index=key_index,
        combos=combos,
        combo_index=combo_index,
        expected_by_combo=expected_by_combo,
        expected_mask=expected_mask,
        warmup=warmup,
        target_rate=target_rate,
    )


@dataclass
class LoadResult:
    ledger: LedgerResult
    target_events: int
    sent_events: int
    not_sent_events: int
    target_rate: float  # events/s the workload asked for (all phases and streams)
    schedule_rate: float  # events/s of the drawn schedule (Poisson differs by sampling noise)
    achieved_rate: float  # events actually sent / elapsed sending time
    elapsed_s: float
    cpu_percent: float  # of one core, this process, during the sending phase
    send_lag_ns: np.ndarray = field(repr=False)
    #: the wait for an earlier run's work to drain before the first event (None: not run)
    clean_start: CleanStart | None = None

    def rate_error(self) -> float:
        return self.achieved_rate / self.schedule_rate - 1.0

    def summary(self) -> dict[str, Any]:
        lag = self.send_lag_ns
        return {
            "target_events": self.target_events,
            "sent_events": self.sent_events,
            "not_sent_events": self.not_sent_events,
            "target_rate": self.target_rate,
            "schedule_rate": round(self.schedule_rate, 3),
            "achieved_rate": round(self.achieved_rate, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "cpu_percent": round(self.cpu_percent, 1),
            "send_lag_us": {
                "p50": float(np.percentile(lag, 50) / 1e3) if lag.size else None,
                "p99": float(np.percentile(lag, 99) / 1e3) if lag.size else None,
                "max": float(lag.max() / 1e3) if lag.size else None,
            },
            "clean_start": self.clean_start.to_json() if self.clean_start is not None else None,
            **self.ledger.summary(),
        }


class LoadGenerator:
    def __init__(
        self,
        workload: Workload,
        driver: Driver,
        *,
        stack: str,
        run_id: str,
        run_dir: Any = None,
        tracer_provider: trace.TracerProvider | None = None,
        schedule: str | None = None,
        seed: int | None = None,
        max_inflight: int = 200_000,
        progress: bool = True,
        console: Console | None = None,
        root_spans: Literal["live", "deferred"] = "live",
        telemetry: BacklogSource | None = None,
    ) -> None:
        """`telemetry`: a backlog source the clean start waits on beside the driver's (the
        collector and the trace store still taking an earlier run's spans)."""
        self.workload = workload
        self.telemetry = telemetry
        self.driver = driver
        self.stack = stack
        self.run_id = run_id
        self.run_dir = run_dir
        self.max_inflight = max_inflight
        self.show_progress = progress
        self.console = console or Console(stderr=True)
        self.tracer = (
            tracer_provider.get_tracer("hopscope.loadgen")
            if tracer_provider is not None and tracing_enabled(tracer_provider)
            else None
        )
        self.events = plan_events(workload, run_id, schedule, seed)
        self.ledger = Ledger(
            stack=stack,
            workloads=self.events.workload_names.tolist(),
            event_ids=self.events.event_ids,
            intended_ns=np.zeros(len(self.events), dtype=np.int64),  # set to Unix ns at start
            expected=self.events.expected_mask,
            subscribers=workload.subscriber_names,
            warmup=self.events.warmup,
            target_rate=self.events.target_rate,
            keys=[f"k{k}" for k in self.events.key_index.tolist()],
        )
        if root_spans not in ("live", "deferred"):
            raise ValueError(f"root_spans must be 'live' or 'deferred', got {root_spans!r}")
        self.root_spans = root_spans
        self._preset_ids = PresetIds()
        self._deferred_tracer = None
        if self.tracer is not None and root_spans == "deferred":
            # Ids are drawn in the hot path; the SDK span is built after the run with them.
            assert tracer_provider is not None
            self._deferred_tracer = tracer_provider.get_tracer("hopscope.loadgen.deferred")
            self._deferred_tracer.id_generator = self._preset_ids  # type: ignore[attr-defined]
            self.tracer = None
        self._root_ids: dict[int, tuple[int, int]] = {}
        # A point read's root span is the read itself: the stack's first point-read hop.
        self.root_hop, self.point_read_root_hop = root_hops(stack, workload.name)
        # the edge into the stack each root span names (the same for every event: built once)
        edge_tracer = self.tracer or self._deferred_tracer
        self._root_edge_attrs = {
            name: edge.attributes_for(edge_tracer) if (edge and edge_tracer) else {}
            for name in (workload.name, POINT_READ)
            for edge in [driver.root_edge(name)]
        }
        self.clock = Clock()
        self._inflight: set[asyncio.Future[Ack]] = set()
        self._payload = (b"hopscope-payload-" * (workload.payload_bytes // 17 + 1))[: workload.payload_bytes]
        self._not_sent = 0
        self._sent = 0
        self.clean_start: CleanStart | None = None

    def run_context(self) -> RunContext:
        return RunContext(
            run_id=self.run_id,
            stack=self.stack,
            run_dir=self.run_dir,
            receipt=self.ledger.record_receipt,
            now_ns=self.clock.now_ns,
        )

    # --- per event ----------------------------------------------------------------------

    def _dispatch(self, k: int, intended_ns: int, now_ns: Callable[[], int]) -> None:
        ev = self.events
        combo = int(ev.combo_index[k])
        workload_name = ev.workload_names[k]
        event = Event(
            seq=k,
            event_id=ev.event_ids[k],
            workload=workload_name,
            key=self.ledger.keys[k] if self.ledger.keys else "",
            fields=ev.combos[combo],
            payload=self._payload,
            intended_ns=intended_ns,
            expected_subscribers=() if ev.plan.stream[k] else ev.expected_by_combo[combo],
        )
        if len(self._inflight) >= self.max_inflight:
            self._not_sent += 1
            self.ledger.record_ack(k, "error", 0, f"not sent: {self.max_inflight} sends already in flight")
            return
        span = None
        trace_id = None
        if self.tracer is not None:
            span = self.tracer.start_span(
                LOADGEN_SPAN_NAME,
                context=Context(),
                kind=SpanKind.PRODUCER,
                start_time=intended_ns,
                attributes={
                    ATTR_HOP: self.point_read_root_hop if workload_name == POINT_READ else self.root_hop,
                    ATTR_EVENT_ID: event.event_id,
                    ATTR_WORKLOAD: workload_name,
                    **self._root_edge_attrs.get(workload_name, {}),
                },
            )
            sc = span.get_span_context()
            event.carrier[TRACEPARENT] = format_traceparent(sc)
            trace_id = f"{sc.trace_id:032x}"
        elif self._deferred_tracer is not None:
            tid = getrandbits(128) or 1
            sid = getrandbits(64) or 1
            self._root_ids[k] = (tid, sid)
            trace_id = f"{tid:032x}"
            event.carrier[TRACEPARENT] = f"00-{trace_id}-{sid:016x}-03"
        sent = now_ns()
        self.ledger.record_sent(k, sent, trace_id)
        self._sent += 1
        if span is not None:
            span.set_attribute(ATTR_SEND_LAG_NS, sent - intended_ns)
        try:
            fut = asyncio.ensure_future(self.driver.send(event))
        except Exception as exc:  # a driver that raises synchronously: the event is recorded as failed
            self._finish(k, span, "error", now_ns(), f"send raised {type(exc).__name__}: {exc}")
            return
        self._inflight.add(fut)
        fut.add_done_callback(partial(self._on_ack, k, span))

    def _on_ack(self, k: int, span: trace.Span | None, fut: asyncio.Future[Ack]) -> None:
        self._inflight.discard(fut)
        now = self.clock.now_ns()
        if fut.cancelled():
            self._finish(
                k,
                span,
                "timeout",
                0,
                f"no ack within {self.workload.ack_timeout_s} s after the schedule ended",
            )
            return
        exc = fut.exception()
        if exc is not None:
            self._finish(k, span, "error", now, f"{type(exc).__name__}: {exc}")
            return
        ack = fut.result()
        if not isinstance(ack, Ack) or ack.status not in ("ok", "error", "timeout"):
            self._finish(k, span, "error", now, f"driver returned an invalid ack: {ack!r}")
            return
        self._finish(k, span, ack.status, ack.acked_ns or now, ack.message)

    def _finish(
        self, k: int, span: trace.Span | None, status: str, acked_ns: int, message: str | None
    ) -> None:
        self.ledger.record_ack(k, status, acked_ns, message)
        if span is not None:
            if status != "ok":
                span.set_status(Status(StatusCode.ERROR, message or status))
            span.end(end_time=acked_ns or self.clock.now_ns())

    # --- the run ------------------------------------------------------------------------

    async def run(self) -> LoadResult:
        await self.driver.setup(self.workload, self.run_context())
        try:
            self.clean_start = await wait_clean(
                combined(self.driver.backlog, self.telemetry),
                stack=self.stack,
                timeout_s=self.workload.clean_timeout_s,
            )
            if self.clean_start.found or self.clean_start.host_busy:
                self.console.print(
                    f"[yellow]clean start[/]: waited {self.clean_start.waited_s:.1f} s for "
                    f"{self.clean_start.found or 'nothing'}; host CPU "
                    f"{self.clean_start.host_cpu_percent:.0f}% busy at the first event"
                )
            return await self._run()
        finally:
            await self.driver.teardown()

    async def _run(self) -> LoadResult:
        # The plan and ledger are hundreds of thousands of long-lived objects: freeze them
        # out of the collector and collect young objects less often while sending, or the
        # cyclic GC's pauses show up as send lag.
        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(50_000, 50, 1000)
        try:
            return await self._send_all()
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()

    async def _send_all(self) -> LoadResult:
        plan = self.events.plan
        rel = plan.intended_ns
        n = len(plan)
        proc = psutil.Process()
        # Start a little in the future so the first events are not late by construction.
        start_wall = self.clock.now_ns() + 20_000_000
        self.ledger.intended_ns[:] = rel + start_wall
        intended_list = (rel + start_wall).tolist()
        mono0 = self.clock.mono0 + (start_wall - self.clock.wall0)  # perf_counter ns of t=0
        now_ns = self.clock.now_ns
        perf = time.perf_counter_ns
        cpu0 = proc.cpu_times()
        progress, task, progress_job = self._start_progress(n)
        i = 0
        try:
            while i < n:
                now_rel = perf() - mono0
                due = int(np.searchsorted(rel, now_rel, side="right"))
                if due <= i:
                    await asyncio.sleep((int(rel[i]) - now_rel) / NS_PER_S)
                    continue
                end = min(due, i + MAX_BURST)
                for k in range(i, end):
                    self._dispatch(k, intended_list[k], now_ns)
                i = end
                self._position = i
                await asyncio.sleep(0)
        finally:
            if progress_job is not None:
                progress_job.cancel()
        end_wall = now_ns()
        cpu1 = proc.cpu_times()
        elapsed = max(self.workload.total_duration_s, (end_wall - start_wall) / NS_PER_S)
        cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / elapsed * 100
        if progress is not None and task is not None:
            progress.update(task, completed=n, description=self._progress_text(n, start_wall))
            progress.stop()
        await self._await_acks()
        await self.driver.drain(self.workload.drain_timeout_s)
        self._emit_deferred_roots()
        result = self.ledger.finalize()
        sent_mask = self.ledger.sent_ns > 0
        target_rate = sum(r for r, _ in self.workload.phases()) / len(self.workload.phases()) + (
            self.workload.point_read_rate or 0.0
        )
        return LoadResult(
            ledger=result,
            target_events=n,
            sent_events=self._sent,
            not_sent_events=self._not_sent,
            target_rate=target_rate,
            schedule_rate=n / self.workload.total_duration_s,
            achieved_rate=self._sent / elapsed,
            elapsed_s=elapsed,
            cpu_percent=cpu,
            send_lag_ns=(self.ledger.sent_ns - self.ledger.intended_ns)[sent_mask],
            clean_start=self.clean_start,
        )

    def _emit_deferred_roots(self) -> None:
        """Build the root spans of `deferred` mode, with the ids their events carried."""
        tracer = self._deferred_tracer
        if tracer is None:
            return
        led = self.ledger
        for k, (tid, sid) in self._root_ids.items():
            self._preset_ids.trace_id, self._preset_ids.span_id = tid, sid
            intended = int(led.intended_ns[k])
            span = tracer.start_span(
                LOADGEN_SPAN_NAME,
                context=Context(),
                kind=SpanKind.PRODUCER,
                start_time=intended,
                attributes={
                    ATTR_HOP: self.point_read_root_hop if led.workloads[k] == POINT_READ else self.root_hop,
                    ATTR_EVENT_ID: led.event_ids[k],
                    ATTR_WORKLOAD: led.workloads[k],
                    ATTR_SEND_LAG_NS: int(led.sent_ns[k]) - intended,
                    **self._root_edge_attrs.get(led.workloads[k], {}),
                },
            )
            status = int(led.ack_status[k])
            if status != 1:
                span.set_status(Status(StatusCode.ERROR, led.ack_message.get(k, "no ok ack")))
            span.end(end_time=int(led.acked_ns[k]) or int(led.sent_ns[k]))
        self._root_ids.clear()

    async def _await_acks(self) -> None:
        if not self._inflight:
            return
        _done, pending = await asyncio.wait(set(self._inflight), timeout=self.workload.ack_timeout_s)
        for fut in pending:
            fut.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)  # let the cancellations run their callbacks

    # --- progress -----------------------------------------------------------------------

    _position = 0

    def _progress_text(self, i: int, start_wall: int) -> str:
        now = self.clock.now_ns()
        elapsed = max(1e-9, (now - start_wall) / NS_PER_S)
        lag_ms = 0.0
        if i > 0:
            lag_ms = max(0.0, (int(self.ledger.sent_ns[i - 1]) - int(self.ledger.intended_ns[i - 1])) / 1e6)
        return (
            f"[bold]{self.stack}/{self.workload.name}[/] {i / elapsed:,.0f} ev/s "
            f"lag {lag_ms:.1f} ms in-flight {len(self._inflight):,}"
        )

    def _start_progress(self, n: int) -> tuple[Progress | None, Any, asyncio.Task[None] | None]:
        if not self.show_progress:
            return None, None, None
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        progress.start()
        task = progress.add_task("starting", total=n)
        start_wall = int(self.ledger.intended_ns[0]) if n else self.clock.now_ns()

        async def refresh() -> None:
            while True:
                await asyncio.sleep(0.25)
                i = self._position
                progress.update(task, completed=i, description=self._progress_text(i, start_wall))

        return progress, task, asyncio.create_task(refresh())


async def run_load(workload: Workload, driver: Driver, **options: Any) -> LoadResult:
    """Convenience wrapper: build a LoadGenerator and run it."""
    return await LoadGenerator(workload, driver, **options).run()
