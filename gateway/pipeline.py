"""The resilience pipeline, assembled in one place, outermost stage first.

Every proxied request runs, in DESIGN.md's order:

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

Why this order: the cheap refusals (rate limit) come before any resource is held; the
deadline wraps everything that can wait; the bulkhead is taken once per request, so
retries cannot multiply a sick upstream's share of threads; the breaker sits inside
retry so every attempt is counted and an open breaker stops retries at once; the attempt
timeout is innermost so it bounds exactly one call.

The order is data (:data:`gateway.stages.ORDER`, printed per route by ``python -m
gateway.routing``); stages 2-8 are methods with one interface, ``stage(call, rest)``:
each refuses by raising, or calls the rest of the pipeline and returns its reply (the
retry stage calls it again per attempt). Each stage is switchable (``enabled: false`` in
routes.yaml) for control experiments.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from flask import Request
from opentelemetry.trace import Span

from gateway import metrics
from gateway.balancer import Balancer, Member
from gateway.budget import RetryBudget
from gateway.bulkhead import Bulkhead, BulkheadFull
from gateway.contracts import Contracts
from gateway.deadline import DEADLINE_HEADER, Deadline, DeadlineExceeded
from gateway.fallback import LastKnown
from gateway.proxy import Answer, outbound_headers, returned_headers
from gateway.retry import AttemptFailed, RetryPolicy, retryable
from gateway.routing import Operation, Route, RouteTable
from gateway.sharedtrip import SharedTrip
from gateway.stages import ORDER
from servoscope.outbound import (
    Reply,
    RequestUnsendable,
    Timeout,
    UpstreamError,
    UpstreamTimeout,
    check_sendable,
)
from servoscope.problems import MEDIA_TYPE as PROBLEM_TYPE
from servoscope.problems import Problem
from servoscope.resilience.breaker import CLOSED, BreakerOpen, BreakerView
from servoscope.resilience.clock import SYSTEM_CLOCK, Clock
from servoscope.resilience.sharedstate import SharedState

# RFC 3986 pchar (minus '%', which is encoded so a decoded '%' survives) and '/'.
PATH_SAFE = "/!$&'()*+,;=:@-._~"


@dataclass
class Call:
    """One proxied request as it moves through the stages."""

    route: Route
    operation: Operation
    request: Request
    key_name: str
    request_id: str
    span: Span
    params: dict[str, str] = field(default_factory=dict)  # path parameters, decoded
    path: str = ""
    body: bytes | None = None
    outbound: dict[str, str] = field(default_factory=dict)  # headers sent on every attempt
    deadline: Deadline = field(default_factory=lambda: Deadline(0.0, 0.0))
    headers: dict[str, str] = field(default_factory=dict)  # added to the answer
    # The current attempt, as the retry, breaker and attempt-timeout stages set it.
    attempt: int = 0
    remaining: float = 0.0  # seconds of the deadline left when the attempt started
    member: Member | None = None  # the upstream instance the breaker let the call through to
    breaker_state: str = CLOSED
    timeout: Timeout | None = None
    # Each breaker of the upstream as read with the rate limit (shared state only), by
    # its Redis key: the first attempt is admitted and counted on these views.
    views: dict[str, BreakerView] = field(default_factory=dict)


Next = Callable[[Call], Reply]
# A stage: the call and the rest of the pipeline in, the upstream's reply out. It refuses
# by raising, or calls the rest (once; the retry stage again per attempt).
Stage = Callable[[Call, Next], Reply]


def _end(call: Call) -> Reply:
    raise AssertionError("the transport is the last stage: nothing comes after it")


_END: Next = _end


class Pipeline:
    """Per-process state of every stage (limiter, bulkheads, budgets, balancers)."""

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
        self.bulkheads = {n: Bulkhead(n, u.bulkhead) for n, u in table.upstreams.items()}
        self.budgets = {
            n: RetryBudget(n, u.retry_budget, shared, clock) for n, u in table.upstreams.items()
        }
        self.balancers = {n: Balancer(u, shared, clock) for n, u in table.upstreams.items()}
        self.last_known = LastKnown()
        runs: dict[str, Stage] = {
            "rate limit": self._rate_limit_stage,
            "request check": self._request_stage,
            "deadline": self._deadline_stage,
            "bulkhead": self._bulkhead_stage,
            "retry (budget)": self._retry_stage,
            "breaker": self._breaker_stage,
            "attempt timeout": self._attempt_timeout_stage,
            "transport": self._transport_stage,
        }
        if list(runs) != [spec.name for spec in ORDER]:
            raise RuntimeError(f"the pipeline's stages {list(runs)} are not gateway.stages.ORDER")
        self.stages = tuple(runs[spec.name] for spec in ORDER)
        self.run = self._next(0)  # the whole chain, built once
        for balancer in self.balancers.values():
            balancer.start_health_checks()

    # -- the pipeline, top to bottom ------------------------------------------

    def handle(self, call: Call) -> Answer:
        """Run ``call`` through every stage, in :data:`gateway.stages.ORDER`, and answer."""
        try:
            reply = self.run(call)
        except DeadlineExceeded as exc:
            raise self._problem(
                call, 504, "Deadline Exceeded", str(exc), slug="deadline-exceeded"
            ) from None
        except BreakerOpen as exc:
            return self._breaker_open(call, exc)
        except AttemptFailed as exc:
            title = "Upstream Timeout" if exc.status == 504 else "Upstream Unreachable"
            slug = "upstream-timeout" if exc.status == 504 else "upstream-unreachable"
            raise self._problem(call, exc.status, title, exc.detail, slug=slug) from None
        return self._answer(call, reply)

    def _next(self, index: int) -> Next:
        """The rest of the pipeline from stage ``index`` on, as one callable."""
        stage = self.stages[index]
        if index + 1 == len(self.stages):
            return lambda call: stage(call, _END)
        rest = self._next(index + 1)
        return lambda call: stage(call, rest)

    # -- the stages: each takes the call and the rest of the pipeline ------------

    def _rate_limit_stage(self, call: Call, rest: Next) -> Reply:
        counted = self._rate_limit(call)  # before the body is even read
        try:
            return rest(call)
        finally:
            if call.member is None:  # no attempt was made: not a request sent upstream
                self.budgets[call.route.upstream].forget_request(counted)

    def _request_stage(self, call: Call, rest: Next) -> Reply:
        self._check_request(call)
        self._read_body(call)
        return rest(call)

    def _deadline_stage(self, call: Call, rest: Next) -> Reply:
        inbound_ms = call.request.headers.get(DEADLINE_HEADER)
        call.deadline = Deadline.start(call.route.deadline, inbound_ms, self.clock)
        return rest(call)

    def _bulkhead_stage(self, call: Call, rest: Next) -> Reply:
        bulkhead = self.bulkheads[call.route.upstream]
        if not bulkhead.options.enabled:
            return rest(call)
        try:
            waited = bulkhead.acquire(call.deadline.remaining(), call.key_name)
        except BulkheadFull as exc:
            metrics.BULKHEAD_REJECTIONS.labels(bulkhead.upstream).inc()
            call.span.add_event("gateway.bulkhead_rejected")
            raise self._problem(
                call,
                503,
                "Bulkhead Full",
                f"{exc}; retry shortly",
                slug="bulkhead-full",
                headers={"Retry-After": "1"},
            ) from None
        if waited:
            call.span.set_attribute("gateway.bulkhead.wait_ms", round(waited * 1000, 3))
        try:
            return rest(call)
        finally:
            bulkhead.release(call.key_name)

    def _retry_stage(self, call: Call, rest: Next) -> Reply:
        budget = self.budgets[call.route.upstream]  # the request is counted with its first attempt

        def attempt(number: int) -> Reply:
            call.remaining = call.deadline.check()  # no attempt starts after the deadline
            call.attempt = number
            return rest(call)

        return RetryPolicy(call.route.retry, budget, self.clock).run(
            attempt,
            may_retry=retryable(call.request.method, call.request.headers),
            deadline=call.deadline,
        )

    def _breaker_stage(self, call: Call, rest: Next) -> Reply:
        member, call.breaker_state = self._admit(call)
        call.member = member
        member.begin()
        try:
            reply = rest(call)
        except AttemptFailed as failed:  # no answer: the upstream's failure
            self._record(call, member, failed)
            raise
        finally:
            member.end()
        self._record(call, member, reply)
        return reply

    def _attempt_timeout_stage(self, call: Call, rest: Next) -> Reply:
        options, remaining = call.route.attempt_timeout, call.remaining
        if options.enabled:
            call.timeout = Timeout(
                connect=min(options.connect_s, remaining),
                read=min(options.read_s, remaining),
                total=remaining,
            )
        else:
            call.timeout = Timeout(connect=remaining, read=remaining, total=remaining)
        return rest(call)

    def _transport_stage(self, call: Call, rest: Next) -> Reply:
        member, timeout, upstream = call.member, call.timeout, call.route.upstream
        assert member is not None and timeout is not None
        headers = dict(call.outbound)
        headers[DEADLINE_HEADER] = call.deadline.header_value()
        try:
            return member.client.request(
                call.request.method,
                call.path,
                body=call.body,
                headers=headers,
                timeout=timeout,
                attempt=call.attempt,
                attributes={
                    "gateway.upstream.instance": member.instance.id,
                    "gateway.retry.attempt": call.attempt,
                    "gateway.breaker.state": call.breaker_state,
                },
            )
        except RequestUnsendable as exc:  # checked before, so not expected: never charged
            raise self._unsendable(call, exc) from None
        except UpstreamTimeout:
            detail = f"{upstream} did not answer within {timeout.total or call.remaining:.3g}s"
            raise AttemptFailed(504, detail) from None
        except UpstreamError as exc:
            raise AttemptFailed(502, f"{upstream} could not be reached: {exc}") from None

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
        call.path = tail + (f"?{query}" if query else "")
        call.outbound = outbound_headers(request, call.request_id)
        try:
            check_sendable(call.path, call.outbound)
        except RequestUnsendable as exc:
            raise self._unsendable(call, exc) from None

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

    def _admit(self, call: Call) -> tuple[Member, str]:
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

    def _record(self, call: Call, member: Member, outcome: Reply | AttemptFailed) -> None:
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
