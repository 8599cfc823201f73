"""``last_known``: while the upstream is unavailable, answer a GET with its last good body.

Every 200 JSON answer of a route that declares the fallback is remembered per query
string. When the breaker keeps the upstream away, the remembered body is served with
``"stale": true`` and its age (``age_s`` in the body, ``Age`` and a ``Warning: 110``
header), so a dashboard keeps a value and knows how old it is. Kept per worker: a
worker that never saw an answer has nothing to fall back on and says 503 as usual.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

MAX_ENTRIES = 1024


@dataclass(frozen=True)
class Remembered:
    body: dict
    at: float


class LastKnown:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Remembered] = {}
        self._lock = threading.Lock()

    def remember(self, operation: str, query: str, body: bytes) -> None:
        try:
            value = json.loads(body)
        except ValueError:
            return
        if not isinstance(value, dict):
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()  # bounded memory beats an LRU for a handful of keys
            self._entries[(operation, query)] = Remembered(value, time.monotonic())

    def stale(self, operation: str, query: str) -> tuple[bytes, dict[str, str]] | None:
        """The remembered body marked stale, with its headers; None when nothing is known."""
        with self._lock:
            found = self._entries.get((operation, query))
        if found is None:
            return None
        age = time.monotonic() - found.at
        body = {**found.body, "stale": True, "age_s": round(age, 3)}
        headers = {
            "Age": str(int(age)),
            "Warning": '110 gateway "Response is Stale"',
            "Cache-Control": "no-store",
        }
        return json.dumps(body).encode(), headers
