"""The order of the gateway's stages, outermost first: its own, then the core's.

The core's stages keep the one order :data:`servoscope.resilience.pipeline.ORDER` states;
the gateway puts its own stages before them. :class:`~gateway.pipeline.Pipeline` builds
every route's pipeline in this order (it refuses to start if its stages and this list
disagree), and ``python -m gateway.routing`` prints it for every route with the stages
that route has switched off, which is what a chaos control run changes. Authentication
is the first stage; :mod:`gateway.dispatch` runs it before it hands the call to the
pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from servoscope.resilience.pipeline import ORDER as CORE_ORDER

if TYPE_CHECKING:
    from gateway.routing import Route, Upstream


@dataclass(frozen=True)
class StageSpec:
    name: str
    refuses: str  # what a client sees when this stage says no
    enabled: Callable[[Route, Upstream], bool]


def _always(route: Route, upstream: Upstream) -> bool:
    return True


AUTHENTICATE = StageSpec("authenticate", "401 / 403", _always)
OWN = (  # the gateway's own stages, before the core's
    StageSpec("rate limit", "429 + Retry-After", lambda r, u: r.rate_limit.enabled),
    StageSpec("request check", "400 / 413", _always),
)
CORE = {  # how the gateway answers each core stage's refusal, and where its switch is
    "deadline": StageSpec("deadline", "504", lambda r, u: r.deadline.enabled),
    "bulkhead": StageSpec("bulkhead", "503", lambda r, u: u.bulkhead.enabled),
    "retry (budget)": StageSpec("retry (budget)", "-", lambda r, u: r.retry.enabled),
    "breaker": StageSpec("breaker", "503 + Retry-After", lambda r, u: u.breaker.enabled),
    "attempt timeout": StageSpec("attempt timeout", "504", lambda r, u: r.attempt_timeout.enabled),
    "transport": StageSpec("transport", "502", _always),
}
ORDER: tuple[StageSpec, ...] = (*OWN, *(CORE[name] for name in CORE_ORDER))


def describe(route: Route, upstream: Upstream) -> str:
    """``route``'s pipeline on one line, e.g. ``authenticate → rate limit (off) → …``."""
    names = [
        spec.name if spec.enabled(route, upstream) else f"{spec.name} (off)"
        for spec in (AUTHENTICATE, *ORDER)
    ]
    return " → ".join(names)
