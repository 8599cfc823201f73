"""Circuit breakers per upstream instance, on pybreaker's state machine, never locked over I/O.

pybreaker's ``CircuitBreaker.call`` holds the breaker's lock while the guarded call
runs (danielfm/pybreaker#55): every call through one breaker is serialized, which caps
an upstream at one in-flight request. Here the I/O happens between two short critical
sections instead::

    ticket = breaker.admit()        # raises BreakerOpen (with retry_after) when open
    ok = call_upstream()            # no lock held: N calls run side by side
    breaker.record(ok)              # pybreaker's states count it and open/close

pybreaker still owns the states, counters, transitions and listeners. Its storage is
:class:`FailoverStorage`: Redis while it is up (all workers share one breaker), this
process's memory otherwise. Half-open admits at most ``half_open_probes`` calls per
opening, counted in the same storage, so the bound holds across workers too.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pybreaker
import redis
from prometheus_client import Counter, Gauge

from servoscope.outbound import Reply
from servoscope.resilience.blame import Blame, blame
from servoscope.resilience.sharedstate import SharedState

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
REDIS_TTL_S = 3600  # idle breakers fade out of Redis


STATE_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}


@dataclass(frozen=True)
class BreakerOptions:
    """Per upstream instance: open after ``failures`` in a row; probe after ``reset_s``."""

    enabled: bool = True
    failures: int = 5
    reset_s: float = 5.0
    half_open_probes: int = 1


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


class FailoverStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker storage in a Redis hash while Redis is up, else in this process.

    pybreaker's own ``CircuitRedisStorage`` swallows Redis errors (and keeps
    ``opened_at`` in whole seconds), so it cannot tell us to fall back; this one lets
    :class:`SharedState` see the error and switch to the local copy.
    """

    def __init__(self, key: str, shared: SharedState) -> None:
        super().__init__("failover")
        self.key = key
        self.shared = shared
        self.local = pybreaker.CircuitMemoryStorage(CLOSED)
        self._probes: dict[float, int] = {}
        self._lock = threading.Lock()

    def _hget(self, field: str) -> bytes | None:
        return self.shared.client.hget(self.key, field)  # type: ignore[union-attr]

    def _hset(self, field: str, value: str | float | int) -> None:
        client = self.shared.client
        assert client is not None
        pipe = client.pipeline(transaction=False)
        pipe.hset(self.key, field, value)
        pipe.expire(self.key, REDIS_TTL_S)
        pipe.execute()

    @property
    def state(self) -> str:
        return self.shared.choose(
            lambda r: (r.hget(self.key, "state") or CLOSED.encode()).decode(),
            lambda: self.local.state,
        )

    @state.setter
    def state(self, state: str) -> None:
        self.local.state = state
        self.shared.choose(lambda r: self._hset("state", state), lambda: None)

    def increment_counter(self) -> None:
        self.local.increment_counter()
        self.shared.choose(lambda r: r.hincrby(self.key, "fail", 1), lambda: None)

    def reset_counter(self) -> None:
        self.local.reset_counter()
        self.shared.choose(lambda r: r.hset(self.key, "fail", 0), lambda: None)

    def increment_success_counter(self) -> None:
        self.local.increment_success_counter()
        self.shared.choose(lambda r: r.hincrby(self.key, "success", 1), lambda: None)

    def reset_success_counter(self) -> None:
        self.local.reset_success_counter()
        self.shared.choose(lambda r: r.hset(self.key, "success", 0), lambda: None)

    @property
    def counter(self) -> int:
        return self.shared.choose(
            lambda r: int(r.hget(self.key, "fail") or 0), lambda: self.local.counter
        )

    @property
    def success_counter(self) -> int:
        return self.shared.choose(
            lambda r: int(r.hget(self.key, "success") or 0), lambda: self.local.success_counter
        )

    @property
    def opened_at(self) -> datetime | None:
        def shared(r: redis.Redis) -> datetime | None:
            raw = r.hget(self.key, "opened_at")
            return datetime.fromtimestamp(float(raw), UTC) if raw else None

        return self.shared.choose(shared, lambda: self.local.opened_at)

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        self.local.opened_at = when
        self.shared.choose(lambda r: self._hset("opened_at", when.timestamp()), lambda: None)

    def acquire_probe(self, limit: int) -> bool:
        """Take one of the ``limit`` half-open probes of the current opening."""
        opened = self.opened_at
        stamp = opened.timestamp() if opened else 0.0

        def shared(r: redis.Redis) -> bool:
            key = f"{self.key}:probes:{stamp}"
            pipe = r.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, REDIS_TTL_S)
            return int(pipe.execute()[0]) <= limit

        def local() -> bool:
            with self._lock:
                taken = self._probes.get(stamp, 0)
                self._probes = {stamp: taken + 1}  # older openings are done with
                return taken < limit

        return self.shared.choose(shared, local)


class _StateMachine(pybreaker.CircuitBreaker):
    """pybreaker's breaker, told not to count transitions another worker made."""

    @property  # type: ignore[override]
    def state(self) -> pybreaker.CircuitBreakerState:
        stored = self.current_state
        if stored != self._state.name:
            # Seen, not made, here: update the cached state without listeners or resets.
            self._state = self._create_new_state(stored, prev_state=self._state, notify=False)
        return self._state

    @state.setter
    def state(self, state_str: str) -> None:
        with self._lock:
            self._state = self._create_new_state(state_str, prev_state=self._state, notify=True)


class _Transitions(pybreaker.CircuitBreakerListener):
    def __init__(self, metrics: BreakerMetrics, upstream: str, instance: str) -> None:
        self.metrics = metrics
        self.labels = (upstream, instance)

    def state_change(self, cb, old_state, new_state) -> None:  # type: ignore[no-untyped-def]
        if old_state is not None and old_state.name != new_state.name:
            self.metrics.transitions.labels(*self.labels, old_state.name, new_state.name).inc()
        self.metrics.state.labels(*self.labels).set(STATE_VALUES[new_state.name])


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
    ) -> None:
        self.upstream = upstream
        self.instance = instance
        self.options = options
        # Breakers of one upstream instance share this Redis key across workers/replicas.
        self.storage = FailoverStorage(f"{key_prefix}:{upstream}:{instance}", shared)
        self.machine = _StateMachine(
            fail_max=options.failures,
            reset_timeout=options.reset_s,
            state_storage=self.storage,
            listeners=[_Transitions(metrics, upstream, instance)],
            name=f"{upstream}/{instance}",
            throw_new_error_on_trip=False,
        )
        self._gauge = metrics.state.labels(upstream, instance)
        self._gauge.set(0)

    @property
    def state(self) -> str:
        return self.machine.current_state

    def _open_for(self) -> float:
        """Seconds the open breaker still refuses calls (0 when a probe may go)."""
        opened = self.storage.opened_at
        if opened is None:
            return 0.0
        return max(0.0, opened.timestamp() + self.options.reset_s - time.time())

    def available(self) -> bool:
        """Whether :meth:`admit` may let a call through (for load balancers to skip)."""
        return self.state != OPEN or self._open_for() <= 0

    def admit(self) -> bool:
        """Let one call through, or raise :class:`BreakerOpen`; True when it is a probe."""
        with self.machine._lock:  # bookkeeping only: released before the call
            state = self.machine.state.name
            if state == OPEN:
                wait = self._open_for()
                if wait > 0:
                    self._gauge.set(1)
                    raise BreakerOpen(wait, OPEN)
                self.machine.half_open()
                state = HALF_OPEN
            self._gauge.set(STATE_VALUES[state])
            if state == HALF_OPEN:
                if not self.storage.acquire_probe(self.options.half_open_probes):
                    raise BreakerOpen(max(1.0, self.options.reset_s / 2), HALF_OPEN)
                return True
            return False

    def record(self, ok: bool) -> None:
        """Count the outcome of an admitted call: 5xx, timeouts, connection errors fail it."""
        with self.machine._lock:
            if ok and self.machine._state.name == CLOSED:
                # The common case, without re-reading the state: forget past failures.
                self.storage.reset_counter()
                return
            state = self.machine.state
            if ok:
                state._handle_success()
                return
            # pybreaker raises on the failure that trips it; here we only count.
            with contextlib.suppress(UpstreamFailure, pybreaker.CircuitBreakerError):
                state._handle_error(UpstreamFailure(), reraise=False)

    def record_outcome(self, outcome: Reply | int | BaseException) -> None:
        """Count an admitted call by :func:`~servoscope.resilience.blame.blame`: the
        upstream's failures fail it, its answers succeed it, and a request that never
        went out (the caller's fault) is not counted at all."""
        fault = blame(outcome)
        if fault is not Blame.CALLER:
            self.record(fault is Blame.NONE)

    def force(self, action: str) -> None:
        """Admin: ``open``, ``close`` or ``reset`` (close and forget the counters)."""
        with self.machine._lock:
            if action == "open":
                self.machine.open()
            else:
                self.machine.close()
                self.storage.reset_counter()

    def snapshot(self) -> dict[str, object]:
        state = self.state
        return {
            "upstream": self.upstream,
            "instance": self.instance,
            "state": state,
            "failures": self.storage.counter,
            "retry_after_s": math.ceil(self._open_for()) if state == OPEN else 0,
        }
