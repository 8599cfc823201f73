"""A scripted transport for pipeline tests: the client seam's one method, ``request``,
answering from a script and recording every attempt that reached the "wire"."""

from __future__ import annotations

from typing import Any

from servoscope.outbound import Reply, Timeout


class ScriptedClient:
    def __init__(self, *script: Reply | Exception) -> None:
        self.script = list(script)
        self.attempts: list[dict[str, Any]] = []

    def request(self, method: str, path: str, *, timeout: Timeout, **sent: Any) -> Reply:
        self.attempts.append({"method": method, "path": path, "timeout": timeout, **sent})
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def reply(status: int = 200, body: bytes = b'{"ok": true}', **headers: str) -> Reply:
    """An answer; ``Retry_After="1"`` becomes the header ``Retry-After: 1``."""
    return Reply(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)
