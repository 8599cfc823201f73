"""An upstream's instances and how one is picked for each attempt.

``round_robin`` takes turns; ``least_outstanding`` is the power of two choices: pick
two instances at random and send to the one with fewer requests in flight (near-best
spread, no global scan). Either way an instance whose breaker is open (passive outlier
ejection) or whose ``/readyz`` fails (optional active health checks) is skipped.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry import context, trace

from gateway import metrics
from gateway.routing import Instance, Upstream
from servoscope.outbound import UpstreamClient, UpstreamError
from servoscope.resilience.breaker import Breaker, BreakerView
from servoscope.resilience.clock import SYSTEM_CLOCK, Clock
from servoscope.resilience.sharedstate import SharedState

log = logging.getLogger("gateway.balancer")

# Health probes are not traced: one every interval per instance would bury the traces of
# real requests. Under a parent that is not sampled, the parent-based sampler drops them.
UNTRACED = trace.set_span_in_context(
    trace.NonRecordingSpan(
        trace.SpanContext(trace_id=1, span_id=1, is_remote=False, trace_flags=trace.TraceFlags(0))
    )
)


@dataclass
class Member:
    instance: Instance
    client: UpstreamClient
    breaker: Breaker
    healthy: bool = True
    outstanding: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self) -> None:
        with self._lock:
            self.outstanding += 1

    def end(self) -> None:
        with self._lock:
            self.outstanding -= 1


class Balancer:
    def __init__(
        self, upstream: Upstream, shared: SharedState, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.upstream = upstream
        # The bulkhead bounds the calls in flight to this upstream: keep as many connections.
        pooled = upstream.bulkhead.max_concurrent
        self.members = [
            Member(
                instance,
                UpstreamClient(upstream.name, instance.url, max_connections=pooled),
                Breaker(
                    upstream.name,
                    instance.id,
                    upstream.breaker,
                    shared,
                    metrics.BREAKER,
                    key_prefix="gw:breaker",
                    clock=clock,
                ),
            )
            for instance in upstream.instances
        ]
        self._turn = itertools.count()
        self._checker: threading.Thread | None = None
        self._stop = threading.Event()

    def candidates(
        self, *, skip_open: bool = True, views: Mapping[str, BreakerView] | None = None
    ) -> list[Member]:
        """Members to try, best first: healthy ones (whose breaker is not open) in order;
        ``views`` are breakers as the request already read them, by Redis key."""
        members = self.members
        if len(members) == 1:
            # Nothing to choose between: the breaker's admit() is the check.
            return members if members[0].healthy else []
        if self.upstream.balance == "least_outstanding":
            a, b = random.sample(members, 2)
            first = a if a.outstanding <= b.outstanding else b
            rest = sorted((m for m in members if m is not first), key=lambda m: m.outstanding)
            ordered = [first, *rest]
        else:
            start = next(self._turn) % len(members)
            ordered = members[start:] + members[:start]
        views = views or {}
        return [
            m
            for m in ordered
            if m.healthy
            and (not skip_open or m.breaker.available(views.get(m.breaker.storage.key)))
        ]

    def start_health_checks(self) -> None:
        options = self.upstream.health_check
        if not options.enabled or self._checker is not None:
            return
        self._checker = threading.Thread(
            target=self._check_forever, name=f"health-{self.upstream.name}", daemon=True
        )
        self._checker.start()

    def _check_forever(self) -> None:
        options = self.upstream.health_check
        probes = {
            m.instance.id: UpstreamClient(self.upstream.name, m.instance.url, max_connections=1)
            for m in self.members
        }
        context.attach(UNTRACED)  # this thread's context: it only ever probes
        while not self._stop.wait(options.interval_s):
            for member in self.members:
                probe = probes[member.instance.id]
                try:
                    ok = probe.request("GET", options.path, timeout=options.timeout_s).status == 200
                except UpstreamError:
                    ok = False
                if ok != member.healthy:
                    log.warning(
                        "instance %s of %s is now %s",
                        member.instance.id,
                        self.upstream.name,
                        "healthy" if ok else "unhealthy",
                        extra={"upstream": self.upstream.name, "instance": member.instance.id},
                    )
                member.healthy = ok

    def stop(self) -> None:
        self._stop.set()
