"""Retry-After in both forms, and which requests may be retried at all."""

from __future__ import annotations

import email.utils
import time

from gateway.retry import retry_after_s, retryable


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_s("3") == 3.0
    later = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.5 <= (retry_after_s(later) or 0) <= 5.0
    assert retry_after_s(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None


def test_only_idempotent_methods_or_keyed_commands_are_retried() -> None:
    assert retryable("GET", {}) and retryable("PUT", {}) and retryable("DELETE", {})
    assert not retryable("POST", {}) and not retryable("PATCH", {})
    assert retryable("POST", {"Idempotency-Key": "abc"})
