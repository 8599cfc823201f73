"""Idempotency-Key bookkeeping: replay within the window, refuse reuse and overlap."""

from __future__ import annotations

import pytest

from services.servo.idempotency import IdempotencyCache, StoredResponse, check_key, fingerprint
from servoscope.problems import Problem

OK = StoredResponse(200, b'{"channel": 0}', "application/json")


def cache(now: list[float], **kwargs) -> IdempotencyCache:
    return IdempotencyCache(window_s=10, clock=lambda: now[0], **kwargs)


def test_the_first_request_runs_and_a_retry_replays_its_response() -> None:
    now = [0.0]
    keys = cache(now)
    assert keys.begin("k", "f") is None
    keys.complete("k", OK)
    now[0] = 9.9
    assert keys.begin("k", "f") == OK


def test_after_the_window_the_key_runs_again() -> None:
    now = [0.0]
    keys = cache(now)
    keys.begin("k", "f")
    keys.complete("k", OK)
    now[0] = 10.0
    assert keys.begin("k", "f") is None


def test_a_key_reused_for_another_request_is_422_and_an_overlap_is_409() -> None:
    keys = cache([0.0])
    keys.begin("k", "f")
    with pytest.raises(Problem) as overlap:
        keys.begin("k", "f")
    assert overlap.value.status == 409 and overlap.value.headers["Retry-After"] == "1"
    keys.complete("k", OK)
    with pytest.raises(Problem) as reused:
        keys.begin("k", "other")
    assert reused.value.status == 422 and reused.value.extensions["field"] == "Idempotency-Key"


def test_an_abandoned_request_can_be_retried() -> None:
    keys = cache([0.0])
    keys.begin("k", "f")
    keys.abandon("k")
    assert keys.begin("k", "f") is None


def test_the_oldest_keys_go_first_when_full() -> None:
    keys = cache([0.0], max_entries=2)
    for key in ("a", "b", "c"):
        keys.begin(key, "f")
        keys.complete(key, OK)
    assert keys.begin("a", "f") is None  # forgotten
    assert keys.begin("c", "f") == OK


def test_fingerprints_compare_json_by_value() -> None:
    assert fingerprint("POST", "/x", b'{"a": 1, "b": 2.0}') == fingerprint(
        "POST", "/x", b'{"b":2,"a":1.0}'
    )
    assert fingerprint("POST", "/x", b'{"a": 1}') != fingerprint("POST", "/x", b'{"a": 2}')
    assert fingerprint("POST", "/x", b"{") != fingerprint("POST", "/y", b"{")


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_bad_key_is_a_400_naming_the_header(key: str) -> None:
    with pytest.raises(Problem) as raised:
        check_key(key)
    assert raised.value.status == 400 and raised.value.extensions["field"] == "Idempotency-Key"
