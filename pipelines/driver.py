"""What a stack implements to be driven by the load generator (one driver per system).

OpenMessaging Benchmark style: the generator owns the schedule, the ledger and
the root span; a driver only knows how to send an event into its system and
how its subscribers report receipts. A stack folder (`pipelines/<stack>/`, or one
named by `HOPSCOPE_STACK_PATH`) names its driver in `stack.yaml`; the driver is
imported on first use (`hopscope.pipelines.stack`). `register_driver` adds one at
run time (tests, the loopback simulation).

`LoopbackDriver` is a **simulation**: an in-process fake of this interface for
the generator's own tests and benchmark. It is never a stack and its runs are
labelled `simulation: true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from hopscope.instrumentation.edges import Edge

from .stack import UnknownStackError, find_stack, stack_names
from .workload import Workload

AckStatus = Literal["ok", "error", "timeout"]


class PreflightError(RuntimeError):
    """A service the stack needs is unreachable or misconfigured (raised before any load)."""

    def __init__(self, service: str, endpoint: str, problem: str) -> None:
        super().__init__(f"preflight failed: {service} at {endpoint}: {problem}")
        self.service = service
        self.endpoint = endpoint
        self.problem = problem


@dataclass(slots=True)
class Event:
    """One event handed to a driver. `carrier` holds the W3C `traceparent` (if tracing)."""

    seq: int
    event_id: str
    workload: str  # the workload name, or `point_read`
    key: str
    fields: dict[str, str]
    payload: bytes
    intended_ns: int  # Unix ns the event should have been sent at
    expected_subscribers: tuple[str, ...]
    carrier: dict[str, str] = field(default_factory=dict)

    @property
    def traceparent(self) -> str | None:
        return self.carrier.get("traceparent")


@dataclass(frozen=True, slots=True)
class Ack:
    status: AckStatus = "ok"
    #: Unix ns the system confirmed the send; None = stamp when the generator sees it.
    acked_ns: int | None = None
    message: str | None = None


#: Subscribers call this for every delivery: (event_id, subscriber, received Unix ns).
ReceiptCallback = Callable[[str, str, int], None]


@dataclass(frozen=True)
class RunContext:
    run_id: str
    stack: str
    run_dir: Path | None
    receipt: ReceiptCallback
    now_ns: Callable[[], int]
    tracer_provider: Any = None


class Driver(ABC):
    """A stack as the load generator sees it.

    Lifecycle: preflight → setup → backlog* (until clean) → send* → drain → teardown."""

    #: Stack name under which the driver is registered.
    stack: ClassVar[str]
    #: True only for simulations; written into the manifest and printed.
    simulation: ClassVar[bool] = False

    @abstractmethod
    def preflight(self, workload: Workload) -> None:
        """Check every service is reachable and configured; raise PreflightError. Sends no load."""

    @abstractmethod
    async def setup(self, workload: Workload, run: RunContext) -> None:
        """Create topics/tables, start subscribers (they report through `run.receipt`)."""

    async def backlog(self) -> dict[str, float]:
        """Work an earlier run left in the stack that this run's events would queue behind:
        name → amount still pending (0 = none; `hopscope.pipelines.clean_start`). Called after
        `setup`, before the first event, until all are 0. The default reports nothing."""
        return {}

    def root_edge(self, workload: str) -> Edge | None:
        """The service-map edge the load generator's root span crosses into the stack, when no
        span on the receiving side names it (instrumentation/edges.py); None: the receiver does,
        or the stack has no map. `workload` may be `point_read`."""
        return None

    @abstractmethod
    def send(self, event: Event) -> Awaitable[Ack]:
        """Start sending one event; must not block. Returns a future/coroutine of the ack."""

    @abstractmethod
    async def drain(self, timeout_s: float) -> None:
        """Wait (at most timeout_s) for in-flight deliveries to reach the subscribers."""

    @abstractmethod
    async def teardown(self) -> None:
        """Stop subscribers, close clients."""

    @abstractmethod
    def manifest(self) -> dict[str, Any]:
        """Settings that matter for fairness, read back from the services where possible."""


# --- registry ------------------------------------------------------------------------------

DriverFactory = Callable[..., Driver]

#: Drivers registered at run time (simulations, tests); discovered stacks are not listed here.
_DRIVERS: dict[str, DriverFactory] = {}


def register_driver(stack: str, factory: DriverFactory) -> None:
    _DRIVERS[stack] = factory


def known_stacks() -> list[str]:
    """Discovered stacks (in their declared order), then the registered drivers."""
    discovered = stack_names()
    return discovered + sorted(set(_DRIVERS) - set(discovered))


def get_driver_factory(stack: str) -> DriverFactory:
    if stack in _DRIVERS:
        return _DRIVERS[stack]
    found = find_stack(stack)
    if found is None:
        raise UnknownStackError(f"unknown stack {stack!r}; known stacks: {', '.join(known_stacks())}")
    return found.driver_factory()


def create_driver(
    stack: str, *, tracing: bool = True, otlp_endpoint: str | None = None, **options: Any
) -> Driver:
    """Every driver takes `tracing` (False: the tracing-off half of the overhead A/B — no
    spans anywhere, services included) and `otlp_endpoint` (where its services send spans;
    None = the deployed collector), plus its own options."""
    return get_driver_factory(stack)(tracing=tracing, otlp_endpoint=otlp_endpoint, **options)


# --- the loopback simulation ---------------------------------------------------------------


@dataclass
class LoopbackConfig:
    """Delays and injected faults of the loopback simulation (rates are probabilities per event)."""

    ack_delay_s: float = 0.0005
    deliver_delay_s: float = 0.001
    jitter_s: float = 0.0  # exponential extra delay (mean), per event
    loss_rate: float = 0.0  # one expected subscriber misses the event
    duplicate_rate: float = 0.0  # one expected subscriber gets it twice
    misdeliver_rate: float = 0.0  # one non-matching subscriber gets it
    error_rate: float = 0.0  # the ack is an error (the event is still delivered)
    lose_seqs: frozenset[int] = frozenset()  # exact faults for tests, by event seq
    duplicate_seqs: frozenset[int] = frozenset()
    misdeliver_seqs: frozenset[int] = frozenset()
    stall: tuple[float, float] | None = (
        None  # (start s, length s) from the first event: nothing completes meanwhile
    )
    seed: int = 7


class LoopbackDriver(Driver):
    """SIMULATION — an in-process fake of the driver interface, not a stack.

    Acks each event after `ack_delay_s` and delivers it to its expected
    subscribers after `deliver_delay_s` (+ jitter) on the event loop, with
    injectable loss, duplication, misdelivery, errors and a stall window.
    One timer per ack and one per delivery batch keeps it cheap at 10k events/s.
    """

    stack = "loopback"
    simulation = True

    def __init__(
        self,
        config: LoopbackConfig | None = None,
        tracing: bool = True,
        otlp_endpoint: str | None = None,
        **options: Any,
    ) -> None:
        # nothing of its own is traced: the generator's root spans are the only spans
        self.config = config or LoopbackConfig(**options)
        self._rng = random.Random(self.config.seed)
        self._pending = 0
        self._idle: asyncio.Event | None = None
        self._run: RunContext | None = None
        self._subscribers: list[str] = []
        self._stall_ns: tuple[int, int] | None = None
        self.sent = 0

    def preflight(self, workload: Workload) -> None:
        if not workload.subscribers:
            raise PreflightError("loopback", "in-process", "workload has no subscribers")

    async def setup(self, workload: Workload, run: RunContext) -> None:
        self._run = run
        self._subscribers = workload.subscriber_names
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()

    def _delay(self, base_s: float) -> float:
        delay = base_s + (self._rng.expovariate(1 / self.config.jitter_s) if self.config.jitter_s else 0.0)
        if self._stall_ns is not None:
            assert self._run is not None
            now = self._run.now_ns()
            start, end = self._stall_ns
            due = now + delay * 1e9
            if start <= due < end:
                delay = (end - now) / 1e9
        return delay

    def send(self, event: Event) -> Awaitable[Ack]:
        cfg = self.config
        if cfg.stall is not None and self._stall_ns is None:
            # The stall window is timed from the first event's intended time (the run start).
            start = event.intended_ns + round(cfg.stall[0] * 1e9)
            self._stall_ns = (start, start + round(cfg.stall[1] * 1e9))
        fut: asyncio.Future[Ack] = self._loop.create_future()
        error = cfg.error_rate and self._rng.random() < cfg.error_rate
        ack = Ack("error", None, "loopback: injected error") if error else Ack("ok")
        self._loop.call_later(self._delay(cfg.ack_delay_s), _resolve, fut, ack)
        targets = list(event.expected_subscribers)
        if targets and (event.seq in cfg.lose_seqs or (cfg.loss_rate and self._rng.random() < cfg.loss_rate)):
            targets.pop(self._rng.randrange(len(targets)))
        if event.expected_subscribers and (
            event.seq in cfg.duplicate_seqs
            or (cfg.duplicate_rate and self._rng.random() < cfg.duplicate_rate)
        ):
            targets.append(self._rng.choice(event.expected_subscribers))
        if event.seq in cfg.misdeliver_seqs or (
            cfg.misdeliver_rate and self._rng.random() < cfg.misdeliver_rate
        ):
            others = [s for s in self._subscribers if s not in event.expected_subscribers]
            if others:
                targets.append(self._rng.choice(others))
        if targets:
            self._pending += 1
            assert self._idle is not None
            self._idle.clear()
            self._loop.call_later(self._delay(cfg.deliver_delay_s), self._deliver, event.event_id, targets)
        self.sent += 1
        return fut

    def _deliver(self, event_id: str, targets: Iterable[str]) -> None:
        assert self._run is not None
        now = self._run.now_ns()
        for subscriber in targets:
            self._run.receipt(event_id, subscriber, now)
        self._pending -= 1
        if self._pending == 0:
            assert self._idle is not None
            self._idle.set()

    async def drain(self, timeout_s: float) -> None:
        assert self._idle is not None
        # Undelivered events are not waited for: they show up as lost in the ledger.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    async def teardown(self) -> None:
        self._run = None

    def manifest(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "stack": self.stack,
            "simulation": True,
            "note": "in-process loopback simulation of the driver interface; not a real system",
            "ack_delay_s": cfg.ack_delay_s,
            "deliver_delay_s": cfg.deliver_delay_s,
            "jitter_s": cfg.jitter_s,
            "loss_rate": cfg.loss_rate,
            "duplicate_rate": cfg.duplicate_rate,
            "misdeliver_rate": cfg.misdeliver_rate,
            "error_rate": cfg.error_rate,
            "stall": list(cfg.stall) if cfg.stall else None,
        }


def _resolve(fut: asyncio.Future[Ack], ack: Ack) -> None:
    if not fut.done():
        fut.set_result(ack)


register_driver("loopback", LoopbackDriver)
