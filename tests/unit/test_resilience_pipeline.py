"""Each stage of the resilience core, and a whole core pipeline, on a manual clock and a
scripted client: no socket, no sleep."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from gateway.metrics import BREAKER, BULKHEAD, RETRY
from servoscope.outbound import Reply, RequestUnsendable, Timeout, UpstreamError, UpstreamTimeout
from servoscope.resilience.attempt import (
    AttemptFailed,
    AttemptTimeoutStage,
    BreakerStage,
    OneTarget,
    TransportStage,
)
from servoscope.resilience.breaker import Breaker, BreakerOpen, BreakerOptions
from servoscope.resilience.budget import RetryBudget
from servoscope.resilience.bulkhead import Bulkhead, BulkheadFull, BulkheadStage
from servoscope.resilience.clock import ManualClock
from servoscope.resilience.deadline import DeadlineExceeded, DeadlineStage
from servoscope.resilience.options import (
    AttemptTimeoutOptions,
    BulkheadOptions,
    DeadlineOptions,
    PolicyError,
    RetryBudgetOptions,
    RetryOptions,
    parse,
)
from servoscope.resilience.pipeline import Call, Named, Pipeline
from servoscope.resilience.retry import RetryPolicy, RetryStage
from servoscope.resilience.sharedstate import SharedState
from tests.unit.scripted import ScriptedClient, reply


def the_reply(call: Call) -> Reply:
    return reply()


def breaker(clock: ManualClock, name: str, **options: object) -> Breaker:
    return Breaker(
        "core", name, BreakerOptions(**options), SharedState.local(), BREAKER, clock=clock
    )


def whole(
    clock: ManualClock, client: ScriptedClient, name: str, *, total_s: float = 3.0
) -> tuple[Pipeline, Breaker, RetryBudget]:
    """Every core stage, in the core's order, on one upstream."""
    guard = breaker(clock, name, failures=2, reset_s=5.0)
    budget = RetryBudget(name, RetryBudgetOptions(), SharedState.local(), clock)
    pipeline = Pipeline(
        [
            DeadlineStage(DeadlineOptions(total_s=total_s), clock),
            BulkheadStage(Bulkhead(name, BulkheadOptions(max_concurrent=2), BULKHEAD), "core"),
            RetryStage(
                RetryPolicy(RetryOptions(backoff_max_s=0.2), name, budget, clock, RETRY, "core")
            ),
            BreakerStage(OneTarget(client, guard)),
            AttemptTimeoutStage(AttemptTimeoutOptions(connect_s=0.25, read_s=1.0)),
            TransportStage(name),
        ]
    )
    return pipeline, guard, budget


# -- the pipeline -------------------------------------------------------------


def test_core_stages_out_of_their_order_are_refused_and_own_stages_go_anywhere() -> None:
    clock = ManualClock()
    timeout = AttemptTimeoutStage(AttemptTimeoutOptions())
    deadline = DeadlineStage(DeadlineOptions(), clock)
    with pytest.raises(ValueError, match="out of their order"):
        Pipeline([timeout, deadline])
    own = Named("check", lambda call, rest: rest(call))
    assert Pipeline([own, deadline, own, timeout]).names == (
        "check",
        "deadline",
        "check",
        "attempt timeout",
    )


def test_a_call_goes_through_every_stage_to_the_wire_once() -> None:
    clock = ManualClock()
    client = ScriptedClient(reply())
    pipeline, guard, _ = whole(clock, client, "once")
    answer = pipeline(Call(method="GET", path="/x?y=1", outbound={"X-Request-ID": "r"}))
    assert answer.status == 200
    [sent] = client.attempts
    assert (sent["method"], sent["path"], sent["attempt"]) == ("GET", "/x?y=1", 1)
    assert sent["headers"] == {"X-Request-ID": "r", "X-Request-Deadline-Ms": "3000"}
    assert sent["timeout"] == Timeout(connect=0.25, read=1.0, total=3.0)
    assert guard.state == "closed" and clock.slept == []


def test_failures_are_retried_then_open_the_breaker_which_ends_the_retries() -> None:
    clock = ManualClock()
    client = ScriptedClient(UpstreamError("refused"), UpstreamError("refused"))
    pipeline, guard, budget = whole(clock, client, "opens")
    with pytest.raises(BreakerOpen):
        pipeline(Call(method="GET", path="/x"))  # attempt 3 is refused by the open breaker
    assert len(client.attempts) == 2 and len(clock.slept) == 2
    assert guard.state == "open"
    assert budget.totals() == (0, 2)  # two retries spent (requests are the caller's to count)
    with pytest.raises(BreakerOpen):
        pipeline(Call(method="GET", path="/x"))
    assert len(client.attempts) == 2  # nothing more reached the wire
    clock.advance(5.0)
    client.script.append(reply())
    assert pipeline(Call(method="GET", path="/x")).status == 200  # the half-open probe
    assert guard.state == "closed"


def test_a_command_without_idempotency_key_gets_one_attempt() -> None:
    clock = ManualClock()
    client = ScriptedClient(reply(503), reply(503), reply(200))
    pipeline, guard, _ = whole(clock, client, "command")
    assert pipeline(Call(method="POST", path="/x", body=b"{}")).status == 503
    guard.force("close")  # forget that 503
    keyed = Call(method="POST", path="/x", body=b"{}", outbound={"Idempotency-Key": "k"})
    assert pipeline(keyed).status == 200
    assert len(client.attempts) == 3


# -- each stage ---------------------------------------------------------------


def test_the_deadline_stage_starts_the_deadline_and_a_caller_may_shorten_it() -> None:
    clock = ManualClock()

    class Shorter(Call):
        def inbound_deadline_ms(self) -> str | None:
            return "400"

    seen: list[float] = []

    def look(call: Call) -> Reply:
        assert call.deadline is not None
        seen.append(call.deadline.remaining())
        return reply()

    stage = DeadlineStage(DeadlineOptions(total_s=3.0), clock)
    stage(Call(), look)
    stage(Shorter(), look)
    assert seen == [pytest.approx(3.0), pytest.approx(0.4)]


def test_the_retry_stage_starts_no_attempt_past_the_deadline() -> None:
    clock = ManualClock()
    client = ScriptedClient(reply(503), reply(200))
    pipeline, _, _ = whole(clock, client, "late", total_s=0.2)

    def slow(call: Call, rest) -> Reply:  # type: ignore[no-untyped-def]
        clock.advance(0.199)  # the first attempt uses up the deadline
        return rest(call)

    stages = list(pipeline.stages)
    stages.insert(3, Named("slow", slow))
    assert Pipeline(stages)(Call(method="GET", path="/x")).status == 503
    assert len(client.attempts) == 1  # a retry would have started past the deadline
    stages.insert(2, Named("slow", slow))  # the deadline passes before the first attempt
    with pytest.raises(DeadlineExceeded):
        Pipeline(stages)(Call(method="GET", path="/x"))
    assert len(client.attempts) == 1


def test_the_bulkhead_stage_refuses_when_full_and_always_gives_its_slot_back() -> None:
    bulkhead = Bulkhead("bh", BulkheadOptions(max_concurrent=1), BULKHEAD)
    stage = BulkheadStage(bulkhead, "core")
    rejected = REGISTRY.get_sample_value("gateway_bulkhead_rejections_total", {"upstream": "bh"})

    def inner(call: Call) -> Reply:
        with pytest.raises(BulkheadFull):
            stage(Call(), the_reply)  # the one slot is held by the outer call
        raise UpstreamError("boom")

    with pytest.raises(UpstreamError):
        stage(Call(), inner)
    after = REGISTRY.get_sample_value("gateway_bulkhead_rejections_total", {"upstream": "bh"})
    assert after == (rejected or 0) + 1
    assert stage(Call(), the_reply).status == 200  # released despite the error


def test_the_breaker_stage_counts_only_the_upstreams_faults() -> None:
    clock = ManualClock()
    guard = breaker(clock, "faults", failures=2)
    client = ScriptedClient(
        *[reply(404)] * 3, RequestUnsendable("space"), RequestUnsendable("space"), reply(500)
    )
    pipeline = Pipeline(
        [
            BreakerStage(OneTarget(client, guard)),
            AttemptTimeoutStage(AttemptTimeoutOptions()),
            TransportStage("faults"),
        ]
    )
    for _ in range(3):
        assert pipeline(Call()).status == 404  # an answer: the upstream works
    for _ in range(2):
        with pytest.raises(RequestUnsendable):
            pipeline(Call())  # nothing was sent: not counted
    assert guard.state == "closed" and guard.storage.counter == 0
    assert pipeline(Call()).status == 500
    assert guard.storage.counter == 1


def test_the_attempt_timeout_is_cut_to_the_deadline_or_stands_alone_without_one() -> None:
    clock = ManualClock()
    seen: list[Timeout | None] = []

    def look(call: Call) -> Reply:
        seen.append(call.timeout)
        return reply()

    options = AttemptTimeoutOptions(connect_s=0.25, read_s=1.0)
    stage = AttemptTimeoutStage(options)
    last = Named("look", lambda call, rest: look(call))
    deadline = DeadlineStage(DeadlineOptions(total_s=0.5), clock)
    off = AttemptTimeoutStage(AttemptTimeoutOptions(enabled=False))
    Pipeline([stage, last])(Call())  # no deadline stage before it
    Pipeline([deadline, stage, last])(Call())
    Pipeline([deadline, off, last])(Call())
    assert seen == [
        Timeout(connect=0.25, read=1.0),
        Timeout(connect=0.25, read=0.5, total=0.5),
        Timeout(connect=0.5, read=0.5, total=0.5),
    ]


def test_the_transport_turns_no_answer_into_attempt_failed_with_its_cause() -> None:
    timeout, lost = UpstreamTimeout("no answer within 1s"), UpstreamError("could not connect")
    client = ScriptedClient(timeout, lost)
    stages = [
        BreakerStage(OneTarget(client, breaker(ManualClock(), "transport"))),
        AttemptTimeoutStage(AttemptTimeoutOptions(read_s=1.0)),
        TransportStage("up"),
    ]
    pipeline = Pipeline(stages)
    with pytest.raises(AttemptFailed) as timed_out:
        pipeline(Call())
    assert (timed_out.value.status, timed_out.value.cause) == (504, timeout)
    assert "up did not answer within 1s" in str(timed_out.value)
    with pytest.raises(AttemptFailed) as unreachable:
        pipeline(Call())
    assert (unreachable.value.status, unreachable.value.cause) == (502, lost)


# -- options ------------------------------------------------------------------


def test_options_are_checked_where_they_are_built() -> None:
    with pytest.raises(PolicyError, match="max_attempts: must be greater than 0"):
        RetryOptions(max_attempts=0)
    with pytest.raises(PolicyError, match="max_share"):
        BulkheadOptions(max_share=1.5)
    with pytest.raises(PolicyError, match="failures"):
        BreakerOptions(failures=0)
    with pytest.raises(PolicyError, match=r"^routes.yaml: retry.max_attempts: must be greater"):
        parse(RetryOptions, {"max_attempts": 0}, "routes.yaml: retry")
    assert parse(RetryOptions, {"enabled": False}, "r") == RetryOptions(enabled=False)
