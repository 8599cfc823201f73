"""One API key holds at most its share of an upstream's bulkhead slots."""

from __future__ import annotations

import contextlib

import pytest

from gateway.metrics import BULKHEAD
from servoscope.resilience.bulkhead import Bulkhead, BulkheadFull
from servoscope.resilience.options import BulkheadOptions


def test_a_key_at_its_share_is_refused_while_another_key_still_gets_a_slot() -> None:
    bulkhead = Bulkhead("state", BulkheadOptions(max_concurrent=4, max_share=0.5), BULKHEAD)
    with contextlib.ExitStack() as held:
        for _ in range(2):
            held.enter_context(bulkhead.slot(0.0, "burst"))
        with pytest.raises(BulkheadFull, match="its share"), bulkhead.slot(0.0, "burst"):
            pass
        with bulkhead.slot(0.0, "steady") as waited:
            assert waited == 0.0
    # Released: the bursting key gets its share again.
    with bulkhead.slot(0.0, "burst"), bulkhead.slot(0.0, "burst"):
        pass


def test_the_upstream_limit_still_holds_across_keys() -> None:
    bulkhead = Bulkhead("servo", BulkheadOptions(max_concurrent=2, max_share=1.0), BULKHEAD)
    with (
        bulkhead.slot(0.0, "a"),
        bulkhead.slot(0.0, "b"),
        pytest.raises(BulkheadFull, match="2 calls in flight"),
        bulkhead.slot(0.0, "c"),
    ):
        pass


def test_a_call_refused_for_a_full_upstream_gives_back_its_keys_share() -> None:
    # max_share 0.5 of 2 slots: one each. "a" is refused because the upstream is full,
    # not because of its share; once "b" leaves, "a" must find its share free again.
    bulkhead = Bulkhead("servo", BulkheadOptions(max_concurrent=2, max_share=0.5), BULKHEAD)
    bulkhead.acquire(0.0, "b")
    bulkhead.acquire(0.0, "c")
    with pytest.raises(BulkheadFull, match="2 calls in flight"):
        bulkhead.acquire(0.0, "a")
    bulkhead.release("b")
    assert bulkhead.acquire(0.0, "a") == 0.0
