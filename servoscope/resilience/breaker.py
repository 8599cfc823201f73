"""Circuit breakers per upstream instance, on pybreaker's public API, never locked over I/O.

pybreaker's ``CircuitBreaker.call`` holds the breaker's lock while the guarded call
runs (danielfm/pybreaker#55): every call through one breaker is serialized, which caps
an upstream at one in-flight request. So the guarded I/O never runs inside ``call``::

    state = breaker.admit()         # raises BreakerOpen (with retry_after) when open
    reply = call_upstream()         # no lock held: N calls run side by side
    breaker.record_outcome(reply)   # machine.call(report): pybreaker counts it

:meth:`Breaker.admit` reads the state (``current_state``) and, once the reset timeout has
passed, half-opens the breaker (``half_open()``). :meth:`Breaker.record` hands pybreaker
a function that only reports the outcome (returns, or raises :class:`UpstreamFailure`),
so ``call`` holds pybreaker's lock for its own bookkeeping only: its states count the
outcome, open and close, and tell the listeners.

Everything goes through pybreaker's public interface: a storage subclass
(:class:`FailoverStorage`: Redis while it is up, so all workers share one breaker, this
process's memory otherwise), listeners for the metrics, ``current_state``, ``call``,
``open()``, ``close()`` and ``half_open()``. Half-open admits at most
``half_open_probes`` calls per reset period of an opening, counted in the same storage, so
the bound holds across workers too, and a probe that never reports back (its worker or pod
died mid-call) holds the breaker half-open for one period at most.

In shared state a caller may pass the view of the breaker's Redis hash it already read
(the gateway reads it with the rate limit, in one script: :mod:`gateway.sharedtrip`):
:meth:`Breaker.admit` admits on a view that shows it closed, and
:meth:`Breaker.record_outcome` counts a success on it, pybreaker's writes queued and sent
in one pipeline, and none at all when they would change nothing (the failure count set
back to the 0 it already is). Failures, and breakers the view shows open or half-open,
read Redis afresh.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import pybreaker
import redis
from prometheus_client import Counter, Gauge

from servoscope.outbound import Reply
from servoscope.resilience.blame import Blame, blame
from servoscope.resilience.clock import SYSTEM_CLOCK, Clock
from servoscope.resilience.options import positive
from servoscope.resilience.sharedstate import SharedState

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
REDIS_TTL_S = 3600  # idle breakers fade out of Redis


T = TypeVar("T")

STATE_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}


@dataclass(frozen=True)
class BreakerOptions:
    """Per upstream instance: open after ``failures`` in a row; probe after ``reset_s``."""

    enabled: bool = True
    failures: int = 5
    reset_s: float = 5.0
    half_open_probes: int = 1

    def __post_init__(self) -> None:
        positive(self.failures, "failures")
        positive(self.reset_s, "reset_s")
        positive(self.half_open_probes, "half_open_probes")


@dataclass(frozen=True)
class BreakerMetrics:
    """The families a breaker reports to, labelled ``(upstream, instance)``: its state
    (0 closed, 1 open, 2 half-open) and transitions (plus ``from_state``, ``to_state``)."""

    state: Gauge
    transitions: Counter


class BreakerOpen(Exception):
    """The breaker refused the call; ``retry_after`` is when it will let a probe through."""

    def __init__(self, retry_after: float, state: str) -> None:
        super().__init__(f"circuit breaker {state}; retry after {retry_after:.1f}s")
        self.retry_after = retry_after
        self.state = state


class UpstreamFailure(Exception):
    """What a failed attempt (5xx, timeout, connection error) is reported to pybreaker as."""


# What one request read of a breaker's hash (state, fail, success, opened_at), in the
# same round trip as its other shared state (gateway.sharedtrip); absent fields are None.
BreakerView = dict[str, str | None]
BREAKER_FIELDS = ("state", "fail", "success", "opened_at")
# What an absent field means: a breaker Redis has never seen (or forgot) is closed at 0.
UNSET = {"state": CLOSED, "fail": "0", "success": "0"}


def _count(raw: str | None) -> int:
    return int(raw or 0)


def _instant(raw: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(raw), UTC) if raw else None


class FailoverStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker storage in a Redis hash while Redis is up, else in this process.

    pybreaker's own ``CircuitRedisStorage`` swallows Redis errors (and keeps
    ``opened_at`` in whole seconds), so it cannot tell us to fall back; this one lets
    :class:`SharedState` see the error and switch to the local copy. ``opened_at`` is
    stamped with the breaker's clock (the wall clock outside tests), so the reset
    timeout is measured on the one clock :meth:`Breaker.open_for` reads.

    Inside :meth:`seeing`, this thread's reads are answered from a view of the hash the
    request already fetched, and its writes are queued and sent in one pipeline at the
    end, leaving out those that set a field to what the view already holds: that is how
    a success costs no round trip of its own.
    """

    def __init__(self, key: str, shared: SharedState, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__("failover")
        self.key = key
        self.shared = shared
        self.clock = clock
        self.local = pybreaker.CircuitMemoryStorage(CLOSED)
        self.local_probes: dict[tuple[float, int], int] = {}
        self.probe_lock = threading.Lock()
        self.seen = threading.local()  # .view (BreakerView) and .queued, inside seeing()

    @contextmanager
    def seeing(self, view: BreakerView | None) -> Iterator[None]:
        """Serve this thread's reads from ``view`` and queue its writes; then send the
        queued writes in one pipeline (none: no round trip). With no view, reads and
        writes go to Redis one by one as usual."""
        self.seen.view, self.seen.queued = view, [] if view is not None else None
        try:
            yield
        finally:
            queued: list[Callable[[redis.client.Pipeline], object]] = self.seen.queued or []
            self.seen.view = self.seen.queued = None
            self.shared.write(queued)

    def _view(self, field: str) -> tuple[bool, str | None]:
        view = getattr(self.seen, "view", None)
        return (False, None) if view is None else (True, view.get(field))

    def _write(self, field: str, value: str | float | int, *, add: bool = False) -> None:
        def queue(pipe: redis.client.Pipeline) -> None:
            if add:
                pipe.hincrby(self.key, field, int(value))
            else:
                pipe.hset(self.key, field, value)
            pipe.expire(self.key, REDIS_TTL_S)

        queued = getattr(self.seen, "queued", None)
        if queued is not None:
            view = self.seen.view
            before = view.get(field) or UNSET.get(field)
            after = str(int(before or 0) + int(value)) if add else str(value)
            if after != before:  # a write that changes nothing is left out
                view[field] = after
                queued.append(queue)
        else:
            self.shared.write([queue], [])

    def _read(self, field: str, decode: Callable[[str | None], T], local: Callable[[], T]) -> T:
        """A field from this thread's view, else from Redis, else (Redis away) ``local``."""
        viewed, value = self._view(field)
        if viewed and self.shared.up:
            return decode(value)

        def shared(r: redis.Redis) -> T:
            raw = r.hget(self.key, field)
            return decode(raw.decode() if raw else None)

        return self.shared.choose(shared, local)

    @property
    def state(self) -> str:
        return self._read("state", lambda v: v or CLOSED, lambda: self.local.state)

    @state.setter
    def state(self, state: str) -> None:
        self.local.state = state
        self._write("state", state)

    def increment_counter(self) -> None:
        self.local.increment_counter()
        self._write("fail", 1, add=True)

    def reset_counter(self) -> None:
        self.local.reset_counter()
        self._write("fail", 0)

    def increment_success_counter(self) -> None:
        self.local.increment_success_counter()
        self._write("success", 1, add=True)

    def reset_success_counter(self) -> None:
        self.local.reset_success_counter()
        self._write("success", 0)

    @property
    def counter(self) -> int:
        return self._read("fail", _count, lambda: self.local.counter)

    @property
    def success_counter(self) -> int:
        return self._read("success", _count, lambda: self.local.success_counter)

    @property
    def opened_at(self) -> datetime | None:
        return self._read("opened_at", _instant, lambda: self.local.opened_at)

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        # pybreaker passes its own datetime.now(); the breaker's clock is the same wall
        # clock in production and a manual one in tests.
        stamp = self.clock.time()
        self.local.opened_at = datetime.fromtimestamp(stamp, UTC)
        self._write("opened_at", stamp)

    def acquire_probe(self, limit: int, period_s: float) -> bool:
        """Take one of the ``limit`` half-open probes of the current opening's current
        period. Each ``period_s`` (the reset time) brings ``limit`` more: a probe whose
        outcome never comes back (its worker or pod died mid-call, or the call was not
        counted) must not hold the breaker half-open, refusing everything, for good."""
        opened = self.opened_at
        stamp = opened.timestamp() if opened else 0.0
        period = int(max(0.0, self.clock.time() - stamp) // period_s) if opened else 0

        def shared(r: redis.Redis) -> bool:
            key = f"{self.key}:probes:{stamp}:{period}"
            pipe = r.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, REDIS_TTL_S)
            return int(pipe.execute()[0]) <= limit

        def local() -> bool:
            with self.probe_lock:
                taken = self.local_probes.get((stamp, period), 0)
                self.local_probes = {(stamp, period): taken + 1}  # older periods are done with
                return taken < limit

        return self.shared.choose(shared, local)


class StateMachine(pybreaker.CircuitBreaker):
    """pybreaker's breaker, which tells its listeners whether a transition was made here.

    With shared storage another worker may open or close the breaker; pybreaker notices
    on its next call and notifies the listeners of that change too. Only the process that
    made a transition counts it, and every transition this process makes goes through
    ``open()``, ``close()`` or ``half_open()``, which mark the thread while they run.
    """

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.transitioning = threading.local()

    def made_here(self) -> bool:
        return getattr(self.transitioning, "active", False)

    @contextmanager
    def making(self) -> Iterator[None]:
        before = self.made_here()
        self.transitioning.active = True
        try:
            yield
        finally:
            self.transitioning.active = before

    def open(self) -> bool:
        with self.making():
            return super().open()

    def half_open(self) -> None:
        with self.making():
            super().half_open()

    def close(self) -> None:
        with self.making():
            super().close()


class Transitions(pybreaker.CircuitBreakerListener):
    """The breaker's metrics: its state gauge, and each transition this process made."""

    def __init__(self, metrics: BreakerMetrics, upstream: str, instance: str) -> None:
        self.metrics = metrics
        self.labels = (upstream, instance)

    def state_change(self, cb, old_state, new_state) -> None:  # type: ignore[no-untyped-def]
        made_here = isinstance(cb, StateMachine) and cb.made_here()
        if made_here and old_state is not None and old_state.name != new_state.name:
            self.metrics.transitions.labels(*self.labels, old_state.name, new_state.name).inc()
        self.metrics.state.labels(*self.labels).set(STATE_VALUES[new_state.name])


def _succeeded() -> None:
    return None


def _failed() -> None:
    raise UpstreamFailure()


class Breaker:
    """One upstream instance's breaker: :meth:`admit` before the call, :meth:`record` after."""

    def __init__(
        self,
        upstream: str,
        instance: str,
        options: BreakerOptions,
        shared: SharedState,
        metrics: BreakerMetrics,
        *,
        key_prefix: str = "breaker",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.upstream = upstream
        self.instance = instance
        self.options = options
        self.clock = clock
        # Breakers of one upstream instance share this Redis key across workers/replicas.
        self.storage = FailoverStorage(f"{key_prefix}:{upstream}:{instance}", shared, clock)
        self.machine = StateMachine(
            fail_max=options.failures,
            reset_timeout=options.reset_s,
            state_storage=self.storage,
            listeners=[Transitions(metrics, upstream, instance)],
            name=f"{upstream}/{instance}",
            throw_new_error_on_trip=False,
        )
        # Serializes the open -> half-open decision in this process (not the I/O).
        self.half_opening = threading.Lock()
        self.gauge = metrics.state.labels(upstream, instance)
        self.gauge.set(0)

    @property
    def state(self) -> str:
        return self.machine.current_state

    def open_for(self) -> float:
        """Seconds the open breaker still refuses calls (0 when a probe may go)."""
        opened = self.storage.opened_at
        if opened is None:
            return 0.0
        return max(0.0, opened.timestamp() + self.options.reset_s - self.clock.time())

    def available(self, view: BreakerView | None = None) -> bool:
        """Whether :meth:`admit` may let a call through (for load balancers to skip)."""
        with self.storage.seeing(view):
            return self.state != OPEN or self.open_for() <= 0

    def admit(self, view: BreakerView | None = None) -> str:
        """Let one call through, or raise :class:`BreakerOpen`.

        Returns the state the call was admitted in: ``closed``, or ``half-open`` for one
        of the bounded probes. ``view``, the hash as this request already read it, saves
        the read when it shows the breaker closed; any other state is read afresh."""
        if view is not None and (view.get("state") or CLOSED) == CLOSED:
            self.gauge.set(STATE_VALUES[CLOSED])
            return CLOSED
        state = self.machine.current_state
        if state == OPEN:
            with self.half_opening:
                state = self.machine.current_state
                if state == OPEN:
                    wait = self.open_for()
                    if wait > 0:
                        self.gauge.set(STATE_VALUES[OPEN])
                        raise BreakerOpen(wait, OPEN)
                    self.machine.half_open()
                    state = HALF_OPEN
        self.gauge.set(STATE_VALUES[state])
        if state == HALF_OPEN and not self.storage.acquire_probe(
            self.options.half_open_probes, self.options.reset_s
        ):
            raise BreakerOpen(max(1.0, self.options.reset_s / 2), HALF_OPEN)
        return state

    def record(self, ok: bool) -> None:
        """Count the outcome of an admitted call, after it ended.

        pybreaker's ``call`` runs a function that only reports the outcome, so its lock
        covers its bookkeeping and never the I/O. A failure that trips the breaker is
        raised back as :class:`UpstreamFailure`; an outcome that arrives while the
        breaker is open (the call was admitted before it opened) is refused with
        ``CircuitBreakerError``: both are expected here, and only counted."""
        report: Callable[[], None] = _succeeded if ok else _failed
        with suppress(UpstreamFailure, pybreaker.CircuitBreakerError):
            self.machine.call(report)

    def record_outcome(
        self, outcome: Reply | int | BaseException, view: BreakerView | None = None
    ) -> None:
        """Count an admitted call by :func:`~servoscope.resilience.blame.blame`: the
        upstream's failures fail it, its answers succeed it, and a request that never
        went out (the caller's fault) is not counted at all.

        A success in a breaker ``view`` showed closed is counted on that view: pybreaker
        reads the state from it and its write (the failure count back to 0) is sent in
        one pipeline, or not at all when the view showed no failure. A concurrent
        failure another worker counts after the view was read then stands, as if this
        success had come first (it did, as far as the view goes). A failure reads and
        writes Redis as it goes, because whether it trips the breaker depends on the
        count other workers added since the view was read."""
        fault = blame(outcome)
        seen = None
        if view is not None and (view.get("state") or CLOSED) == CLOSED and fault is Blame.NONE:
            seen = dict(view)
        with self.storage.seeing(seen):
            if fault is not Blame.CALLER:
                self.record(fault is Blame.NONE)

    def force(self, action: str) -> None:
        """Admin: ``open`` it, or ``close`` it (which also forgets the failures counted)."""
        if action == "open":
            self.machine.open()
        elif action == "close":
            self.machine.close()
        else:
            raise ValueError(f"a breaker can be forced open or close; got {action!r}")

    def snapshot(self) -> dict[str, object]:
        state = self.state
        return {
            "upstream": self.upstream,
            "instance": self.instance,
            "state": state,
            "failures": self.storage.counter,
            "retry_after_s": math.ceil(self.open_for()) if state == OPEN else 0,
        }
