"""``Idempotency-Key`` for commands: a retried command is applied once.

Following the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header):

* the first request with a key runs; its 2xx response is kept for ``window_s``
  and replayed (with ``Idempotent-Replayed: true``) to every later request with
  the same key and the same body, which writes nothing to the serial port;
* the same key with a different body is a 422 problem (the key was reused);
* the same key while the first request still runs is a 409 problem + Retry-After;
* a failure after the command was written to the serial line (the device timed
  out, garbled its reply or reported errors: 502/504) is kept and replayed too:
  the command may have been applied, and a retry must not apply it a second time
  (the client reads ``/current-angle`` to learn where the servo went);
* other 4xx and 5xx answers are not kept: nothing was written (bad input, device
  unplugged, line busy), so the client's retry runs again.

Keys live in this process's memory; the servo controller runs one worker
process (it owns the serial port), so that is every request it serves.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from servoscope.problems import Problem

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    content_type: str


@dataclass
class _Entry:
    fingerprint: str
    created: float
    response: StoredResponse | None = None  # None while the first request runs


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Identify a request by what it asks for: JSON is compared by value, not spelling
    (key order, spacing, and 60 vs 60.0, since JSON has one number type)."""
    try:
        value = json.loads(body or b"null", parse_int=float)
        canonical = json.dumps(value, sort_keys=True).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(f"{method} {path}\n".encode() + canonical).hexdigest()


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise Problem(
            400,
            "Invalid Idempotency-Key",
            f"the {HEADER} header must be 1..{MAX_KEY_LENGTH} printable ASCII characters, "
            "e.g. a UUID",
            slug="invalid-idempotency-key",
            field=HEADER,
        )
    return key


class IdempotencyCache:
    """Responses by key for ``window_s`` seconds, at most ``max_entries`` (oldest go first)."""

    def __init__(
        self,
        window_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def begin(self, key: str, request_fingerprint: str) -> StoredResponse | None:
        """The response to replay, or None if this request should run (it is now in flight)."""
        with self._lock:
            self._expire()
            entry = self._entries.get(key)
            if entry is None:
                self._entries[key] = _Entry(request_fingerprint, self._clock())
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                return None
            if entry.fingerprint != request_fingerprint:
                raise Problem(
                    422,
                    "Idempotency-Key Reused",
                    f"this {HEADER} was used for a different request in the last "
                    f"{self.window_s:g}s; use a new key for a new command",
                    slug="idempotency-key-reused",
                    field=HEADER,
                )
            if entry.response is None:
                raise Problem(
                    409,
                    "Request In Progress",
                    f"a request with this {HEADER} is still running; retry shortly",
                    slug="idempotency-request-in-progress",
                    headers={"Retry-After": "1"},
                    field=HEADER,
                )
            return entry.response

    def complete(self, key: str, response: StoredResponse) -> None:
        """Keep a successful response for replay."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.response = response

    def abandon(self, key: str) -> None:
        """Forget an in-flight key whose request failed, so a retry runs again."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.response is None:
                del self._entries[key]

    def _expire(self) -> None:
        horizon = self._clock() - self.window_s
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.created > horizon:
                break
            del self._entries[key]
