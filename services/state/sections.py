"""The sections of ``GET /state``: each fetched in parallel, each through its own
pipeline of the resilience core (its own deadline, breaker and attempt timeout), each
answered on its own — a dead dependency marks its section ``unavailable`` (with the last
good data and its age) and never fails the whole.

The breaker is the section pipeline's: an open one refuses at once, and an attempt's
outcome is counted when it ends, which its deadline puts within ``timeout_s`` of its
start. The gatherer waits that long (and a little, for the thread to report) for every
section at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from opentelemetry import context

from servoscope.resilience.attempt import AttemptFailed
from servoscope.resilience.breaker import BreakerOpen

REPORT_S = 0.05  # beyond the timeout, for a section's thread to hand its outcome over


@dataclass
class Section:
    name: str
    fetch: Callable[[], Any]  # through the section's pipeline; raises on any failure
    last_good: Any = None
    last_good_at: float | None = None

    def remember(self, data: Any) -> None:
        self.last_good, self.last_good_at = data, time.time()


class SectionGatherer:
    """Runs every section's fetch in parallel and reports each one's outcome."""

    def __init__(self, sections: list[Section], timeout_s: float) -> None:
        self.sections = sections
        self.timeout_s = timeout_s
        # Enough threads for every section of several concurrent requests; a fetch ends
        # by its own deadline.
        self._pool = ThreadPoolExecutor(max_workers=4 * len(sections), thread_name_prefix="state")

    def _run(self, section: Section, ctx: context.Context) -> Any:
        token = context.attach(ctx)
        try:
            return section.fetch()
        finally:
            context.detach(token)

    def gather(self) -> dict[str, dict[str, Any]]:
        started = time.monotonic()
        ctx = context.get_current()
        futures = {s.name: self._pool.submit(self._run, s, ctx) for s in self.sections}
        return {s.name: self._settle(s, futures[s.name], started) for s in self.sections}

    def _settle(self, section: Section, outcome: Future[Any], started: float) -> dict[str, Any]:
        remaining = max(0.0, self.timeout_s + REPORT_S - (time.monotonic() - started))
        try:
            data = outcome.result(timeout=remaining)
        except FutureTimeout:
            return self._unavailable(section, f"no answer within {self.timeout_s}s")
        except Exception as exc:  # any failure of a dependency is this section's problem only
            return self._unavailable(section, self._reason(exc))
        section.remember(data)
        return {"status": "ok", "data": data}

    def _reason(self, exc: Exception) -> str:
        if isinstance(exc, BreakerOpen):
            return f"circuit breaker open: {exc}"
        if isinstance(exc, AttemptFailed):
            if exc.status == 504:
                return f"no answer within {self.timeout_s}s"
            exc = exc.cause or exc  # what the client saw: could not connect, broke off
        return f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _unavailable(section: Section, reason: str) -> dict[str, Any]:
        answer: dict[str, Any] = {"status": "unavailable", "reason": reason}
        if section.last_good_at is not None:
            answer["last_good"] = section.last_good
            answer["age_s"] = round(time.time() - section.last_good_at, 3)
        return answer
