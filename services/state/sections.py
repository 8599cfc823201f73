"""The sections of ``GET /state``: each fetched in parallel, each with its own timeout
and breaker, each answered on its own — a dead dependency marks its section
``unavailable`` (with the last good data and its age) and never fails the whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import context


class Guard(Protocol):
    """A circuit breaker: ``admit`` raises when open; ``record_outcome`` counts what
    :func:`~servoscope.resilience.blame.blame` puts on the dependency."""

    def admit(self) -> str: ...

    def record_outcome(self, outcome: Any) -> None: ...


@dataclass
class Section:
    name: str
    fetch: Callable[[], Any]  # raises on any failure
    guard: Guard
    last_good: Any = None
    last_good_at: float | None = None

    def remember(self, data: Any) -> None:
        self.last_good, self.last_good_at = data, time.time()


class SectionGatherer:
    """Runs every section's fetch in parallel and reports each one's outcome."""

    def __init__(self, sections: list[Section], timeout_s: float) -> None:
        self.sections = sections
        self.timeout_s = timeout_s
        # Enough threads for every section of several concurrent requests; a fetch that
        # outlives its timeout still ends by its own HTTP timeout.
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
        futures: dict[str, Future[Any] | Exception] = {}
        for section in self.sections:
            try:
                section.guard.admit()
            except Exception as refused:  # the breaker is open: don't even ask
                futures[section.name] = refused
                continue
            futures[section.name] = self._pool.submit(self._run, section, ctx)
        answer = {}
        for section in self.sections:
            outcome = futures[section.name]
            answer[section.name] = self._settle(section, outcome, started)
        return answer

    def _settle(
        self, section: Section, outcome: Future[Any] | Exception, started: float
    ) -> dict[str, Any]:
        if isinstance(outcome, Exception):
            return self._unavailable(section, f"circuit breaker open: {outcome}")
        remaining = max(0.0, self.timeout_s - (time.monotonic() - started))
        try:
            data = outcome.result(timeout=remaining)
        except FutureTimeout as exc:
            section.guard.record_outcome(exc)
            return self._unavailable(section, f"no answer within {self.timeout_s}s")
        except Exception as exc:  # any failure of a dependency is this section's problem only
            section.guard.record_outcome(exc)
            return self._unavailable(section, f"{type(exc).__name__}: {exc}")
        section.guard.record_outcome(200)
        section.remember(data)
        return {"status": "ok", "data": data}

    @staticmethod
    def _unavailable(section: Section, reason: str) -> dict[str, Any]:
        answer: dict[str, Any] = {"status": "unavailable", "reason": reason}
        if section.last_good_at is not None:
            answer["last_good"] = section.last_good
            answer["age_s"] = round(time.time() - section.last_good_at, 3)
        return answer
