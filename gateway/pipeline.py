"""The gateway's pipeline: its own stages, then the core's, one pipeline per route.

Every proxied request runs, outermost first (the order is data,
:data:`gateway.stages.ORDER`, printed per route by ``python -m gateway.routing``):

1. authenticate, then the operation's scope (:mod:`gateway.dispatch`, the one way in for
   every proxied operation, before it calls :meth:`Pipeline.handle`)
2. rate limit per API key and route        -> 429 + Retry-After + RateLimit fields
   then the request itself: path parameters against the operation's declared pattern,
   and whether HTTP/1.1 can carry it upstream at all -> 400, the client's fault: no
   attempt, nothing charged to the upstream (:mod:`servoscope.resilience.blame`)
3. overall deadline                         -> 504 once it has passed
4. bulkhead per upstream                    -> 503 at once when full
5. retry, inside the upstream's budget      -> idempotent requests only
6. circuit breaker per upstream instance    -> 503 + Retry-After while open (or a fallback)
   (the load balancer skips instances whose breaker is open)
7. attempt timeout (connect, read; capped by the deadline)
8. the HTTP call on a pooled keep-alive connection (:mod:`servoscope.outbound`)

Stages 3-8 are the core's (:mod:`servoscope.resilience.pipeline`, which says why they
sit in this order), built here with each route's and upstream's options; the rate limit
and the request check are the gateway's own, with the same interface,
``stage(call, rest)``. What stays here is what only a gateway does: the balancer as the
breaker stage's choice of instance, the shared-state round trip that reads the
breakers with the rate limit, and turning refusals into answers (problem+json, or the
last known answer while the breaker refuses). Each stage is switchable (``enabled:
false`` in routes.yaml) for control experiments.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from flask import Request

from gateway import metrics
from gateway.balancer import Balancer, Member
from gateway.contracts import Contracts
from gateway.fallback import LastKnown
from gateway.proxy import Answer, outbound_headers, returned_headers
from gateway.routing import Operation, Route, RouteTable
from gateway.sharedtrip import SharedTrip
from gateway.stages import ORDER
from servoscope.outbound import Reply, RequestUnsendable, check_sendable
from servoscope.problems import MEDIA_TYPE as PROBLEM_TYPE
from servoscope.problems import Problem
from servoscope.resilience import pipeline as core
from servoscope.resilience.attempt import (
    AttemptFailed,
    AttemptTimeoutStage,
    BreakerStage,
    TransportStage,
)
from servoscope.resilience.breaker import CLOSED, BreakerOpen, BreakerView
from servoscope.resilience.budget import RetryBudget
from servoscope.resilience.bulkhead import Bulkhead, BulkheadFull, BulkheadStage
from servoscope.resilience.clock import SYSTEM_CLOCK, Clock
from servoscope.resilience.deadline import DEADLINE_HEADER, DeadlineExceeded, DeadlineStage
from servoscope.resilience.retry import RetryPolicy, RetryStage
from servoscope.resilience.sharedstate import SharedState

# RFC 3986 pchar (minus '%', which is encoded so a decoded '%' survives) and '/'.
PATH_SAFE = "/!$&'()*+,;=:@-._~"
PREFIX = "gateway"  # of the stages' span attributes and events


@dataclass(kw_only=True)
class Call(core.Call):
    """One proxied request as it moves through the stages."""

    route: Route
    operation: Operation
    request: Request  # duck-typed: method, headers, path, query_string, content_length, stream
    key_name: str
    request_id: str
    params: dict[str, str] = field(default_factory=dict)  # path parameters, decoded
    headers: dict[str, str] = field(default_factory=dict)  # added to the answer
    # Each breaker of the upstream as read with the rate limit (shared state only), by
    # its Redis key: the first attempt is admitted and counted on these views.
    views: dict[str, BreakerView] = field(default_factory=dict)

    def caller(self) -> str:
        return self.key_name

    def inbound_deadline_ms(self) -> str | None:
        return self.request.headers.get(DEADLINE_HEADER)

    def may_retry(self) -> bool:
        return core.retryable(self.request.method, self.request.headers)

    def attempt_attributes(self) -> dict[str, Any]:
        assert isinstance(self.target, Member)
        return {
            "gateway.upstream.instance": self.target.instance.id,
            "gateway.retry.attempt": self.attempt,
            "gateway.breaker.state": self.breaker_state,
        }


class Pipeline:
    """Per-process state of every stage (limiter, bulkheads, budgets, balancers), and
    each route's pipeline of stages built on it."""

    def __init__(
        self,
        table: RouteTable,
        shared: SharedState,
        contracts: Contracts | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.table = table
        self.contracts = contracts or {}
        self.shared = shared
        self.clock = clock  # the deadline's, the retries' and budgets', the breakers'
        self.trip = SharedTrip(shared)  # the rate limiter and the shared reads with it
        self.bulkheads = {
            n: Bulkhead(n, u.bulkhead, metrics.BULKHEAD) for n, u in table.upstreams.items()
        }
        self.budgets = {
            n: RetryBudget(n, u.retry_budget, shared, clock) for n, u in table.upstreams.items()
        }
        self.balancers = {n: Balancer(u, shared, clock) for n, u in table.upstreams.items()}
        self.last_known = LastKnown()
        self.routes = {route.name: self._assemble(route) for route in table.routes}
        for balancer in self.balancers.values():
            balancer.start_health_checks()

    def _assemble(self, route: Route) -> core.Pipeline:
        """``route``'s stages, in :data:`gateway.stages.ORDER`: the gateway's own and the
        core's, each with the route's or its upstream's options."""
        upstream = route.upstream
        retry = RetryPolicy(
            route.retry,
            upstream,
            self.budgets[upstream],
            self.clock,
            metrics.RETRY,
            PREFIX,
        )
        built: tuple[core.Stage, ...] = (
            core.Named("rate limit", self._rate_limit_stage),
            core.Named("request check", self._request_stage),
            DeadlineStage(route.deadline, self.clock),
            BulkheadStage(self.bulkheads[upstream], PREFIX),
            RetryStage(retry),
            BreakerStage(self),
            AttemptTimeoutStage(route.attempt_timeout),
            TransportStage(upstream),
        )
        stages = {stage.name: stage for stage in built}  # put in ORDER's order below
        if sorted(stages) != sorted(spec.name for spec in ORDER):
            raise RuntimeError(f"the pipeline's stages {list(stages)} are not gateway.stages.ORDER")
        return core.Pipeline([stages[spec.name] for spec in ORDER])

    # -- the pipeline, top to bottom ------------------------------------------

    def handle(self, call: Call) -> Answer:
        """Run ``call`` through every stage, in :data:`gateway.stages.ORDER`, and answer."""
        try:
            reply = self.routes[call.route.name](call)
        except DeadlineExceeded as exc:
            raise self._problem(
                call, 504, "Deadline Exceeded", str(exc), slug="deadline-exceeded"
            ) from None
        except BreakerOpen as exc:
            return self._breaker_open(call, exc)
        except BulkheadFull as exc:
            raise self._problem(
                call,
                503,
                "Bulkhead Full",
                f"{exc}; retry shortly",
                slug="bulkhead-full",
                headers={"Retry-After": "1"},
            ) from None
        except RequestUnsendable as exc:  # checked before, so not expected: never charged
            raise self._unsendable(call, exc) from None
        except AttemptFailed as exc:
            title = "Upstream Timeout" if exc.status == 504 else "Upstream Unreachable"
            slug = "upstream-timeout" if exc.status == 504 else "upstream-unreachable"
            raise self._problem(call, exc.status, title, exc.detail, slug=slug) from None
        return self._answer(call, reply)

    # -- the gateway's own stages: each takes the call and the rest of the pipeline --

    def _rate_limit_stage(self, call: Call, rest: core.Next) -> Reply:
        counted = self._rate_limit(call)  # before the body is even read
        try:
            return rest(call)
        finally:
            if call.target is None:  # no attempt was made: not a request sent upstream
                self.budgets[call.route.upstream].forget_request(counted)

    def _request_stage(self, call: Call, rest: core.Next) -> Reply:
        self._check_request(call)
        self._read_body(call)
        return rest(call)

    def _check_request(self, call: Call) -> None:
        """What the client sent must be sendable upstream as it is: a bad path parameter
        or a request HTTP/1.1 cannot carry is the client's 400, before any attempt."""
        request = call.request
        contract = self.contracts.get((call.route.name, call.operation.method, call.operation.path))
        for name, raw in call.params.items():
            param = contract.path_param(name) if contract else None
            problem = param.problem(raw) if param else None
            if problem is not None:
                problem.headers.update(call.headers)
                raise problem
        # Werkzeug decoded the path: encode it again, so an escaped '?', '#' or space in
        # a parameter stays part of it instead of changing what the upstream is asked.
        tail = quote(request.path[len(call.route.prefix) :], safe=PATH_SAFE)
        query = request.query_string.decode("latin-1")
        call.method = request.method
        call.path = tail + (f"?{query}" if query else "")
        call.outbound = outbound_headers(request, call.request_id)
        try:
            check_sendable(call.path, call.outbound)
        except RequestUnsendable as exc:
            raise self._unsendable(call, exc) from None
        call.checked = True  # what the stages add later (the deadline field) is ours

    def _unsendable(self, call: Call, exc: RequestUnsendable) -> Problem:
        call.span.add_event("gateway.request_unsendable", {"gateway.reason": str(exc)})
        return Problem(
            400,
            "Unsendable Request",
            f"{exc}; percent-encode it (RFC 3986) or leave it out",
            slug="unsendable-request",
            headers=call.headers,
        )

    def _read_body(self, call: Call) -> None:
        request, limit = call.request, call.route.max_body_bytes
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if not request.content_length and not chunked:
            return  # no body, whatever the method
        if (request.content_length or 0) > limit:
            raise Problem(
                413,
                "Content Too Large",
                f"the body is {request.content_length} bytes; this route accepts at most {limit}",
                slug="content-too-large",
            )
        # Buffered (bounded by the limit) so that a retried command can be resent.
        body = request.stream.read(limit + 1)
        if len(body) > limit:
            raise Problem(
                413,
                "Content Too Large",
                f"the body is over {limit} bytes; send at most {limit}",
                slug="content-too-large",
            )
        call.body = body

    def _rate_limit(self, call: Call) -> int:
        """Take the request from its key's allowance, or refuse it with a 429; count it
        in its upstream's retry budget, and return the second it was counted in."""
        options, upstream = call.route.rate_limit, call.route.upstream
        breakers = (
            [m.breaker.storage.key for m in self.balancers[upstream].members]
            if self.table.upstreams[upstream].breaker.enabled and self.shared.enabled
            else []
        )
        budget = self.budgets[upstream]
        second = budget.second()
        counter = budget.request_key(second) if self.shared.enabled else None
        trip = self.trip.take(options, call.route.name, call.key_name, breakers, counter)
        call.views, decision = trip.views, trip.decision
        if decision is not None:
            call.span.set_attribute("gateway.rate_limit.remaining", decision.remaining)
            call.headers.update(decision.headers)
        if decision is not None and not decision.allowed:
            metrics.RATE_LIMITED.labels(call.route.name).inc()
            call.span.set_attribute("gateway.rate_limit.decision", "rejected")
            raise Problem(
                429,
                "Too Many Requests",
                f"this API key may send {options.requests} requests per {options.per_s}s to "
                f"{call.route.prefix}; retry after {decision.headers['Retry-After']}s",
                slug="rate-limited",
                headers=decision.headers,
            )
        if not trip.counted:  # local state (by config, or Redis away): count it here
            budget.record_request(second)
        return second

    # -- the breaker stage's targets: the balancer chooses, the breaker counts -------

    def admit(self, call: Call) -> tuple[Member, str]:
        """The load balancer's first candidate whose breaker lets the call through, and
        the breaker state it was let through in."""
        balancer = self.balancers[call.route.upstream]
        if not balancer.upstream.breaker.enabled:
            healthy = balancer.candidates(skip_open=False)
            if healthy:
                return healthy[0], CLOSED
            raise BreakerOpen(1.0, "unhealthy")
        refused: BreakerOpen | None = None
        views = call.views if call.attempt == 1 else {}  # read before the first attempt
        for member in balancer.candidates(views=views):
            try:
                return member, member.breaker.admit(views.get(member.breaker.storage.key))
            except BreakerOpen as exc:
                refused = exc
        if refused is None:  # every instance ejected or unhealthy
            waits = [m.breaker.open_for() for m in balancer.members]
            refused = BreakerOpen(max(1.0, min(waits)), "open")
        metrics.BREAKER_REJECTIONS.labels(call.route.upstream).inc()
        raise refused

    def record(self, call: Call, member: Member, outcome: Reply | AttemptFailed) -> None:
        """Count the attempt in its breaker; the first on the view read with the rate
        limit, where a success after no failure writes nothing."""
        if member.breaker.options.enabled:
            view = call.views.get(member.breaker.storage.key) if call.attempt == 1 else None
            member.breaker.record_outcome(outcome, view)

    # -- answers ----------------------------------------------------------------

    def _answer(self, call: Call, reply: Reply) -> Answer:
        if call.operation.fallback and reply.status == 200:
            self.last_known.remember(call.operation.path, call.path, reply.body)
        body = reply.body
        if reply.status >= 400 and PROBLEM_TYPE in reply.headers.get("Content-Type", ""):
            body = _as_instance(body, call.request.path)
        headers = returned_headers(reply)
        location = reply.headers.get("Location", "")
        if location.startswith("/"):  # the upstream's own path: say it as the client calls it
            headers = [(k, v) for k, v in headers if k.lower() != "location"]
            headers.append(("Location", call.route.prefix + location))
        return Answer.of(reply.status, headers, body, call.headers)

    def _breaker_open(self, call: Call, exc: BreakerOpen) -> Answer:
        call.span.set_attribute("gateway.breaker.state", exc.state)
        call.span.add_event("gateway.breaker_rejected", {"gateway.breaker.state": exc.state})
        if call.operation.fallback == "last_known":
            stale = self.last_known.stale(call.operation.path, call.path)
            if stale is not None:
                body, headers = stale
                metrics.FALLBACKS.labels(call.route.name).inc()
                call.span.set_attribute("gateway.fallback", "last_known")
                call.span.add_event("gateway.fallback_served")
                json_type = [("Content-Type", "application/json")]
                return Answer.of(200, json_type, body, {**call.headers, **headers})
        retry_after = str(max(1, math.ceil(exc.retry_after)))
        raise self._problem(
            call,
            503,
            "Upstream Unavailable",
            f"the circuit breaker of {call.route.upstream} is {exc.state} after repeated "
            f"failures; retry after {retry_after}s",
            slug="breaker-open",
            headers={"Retry-After": retry_after},
        )

    def _problem(
        self,
        call: Call,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Problem:
        return Problem(
            status,
            title,
            detail,
            slug=slug,
            headers={**call.headers, **(headers or {})},
            upstream=call.route.upstream,
        )


def _as_instance(body: bytes, path: str) -> bytes:
    """An upstream's problem with ``instance`` set to the path the client called."""
    try:
        problem = json.loads(body)
    except ValueError:
        return body
    if not isinstance(problem, dict):
        return body
    problem["instance"] = path
    return json.dumps(problem).encode()
