"""The wire: the pty a client opens, and the timing of a real serial line.

A real Maestro's bytes travel one at a time at the line's baud rate: a command counts
as received when its last byte would have arrived (commands written together arrive
one after another), and a reply leaves after the reply before it. :class:`SerialLine`
computes those instants; the device (:mod:`.maestro`) sends each reply when it is due.
"""

from __future__ import annotations

import contextlib
import os
import termios
import tty
from collections import deque
from collections.abc import Callable

BITS_PER_BYTE = 10  # start bit + 8 data bits + stop bit


class Pty:
    """One pty pair: we serve the master; clients open ``path`` (the slave).

    We keep our own fd on the slave so the master never sees a hang-up (EIO)
    between clients; it is also the fd we put in raw mode, so no byte is
    translated (no CR/LF mapping, no XON/XOFF, no echo, no signals).
    """

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        try:
            tty.setraw(self.slave, termios.TCSANOW)
            os.set_blocking(self.master, False)
            self.path = os.ttyname(self.slave)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class SerialLine:
    """When bytes arrive and leave on a line at ``baud`` (0: at once, no pacing).

    Offsets count the bytes read from the client since the last :meth:`reset`.
    """

    def __init__(self, baud: int, clock: Callable[[], float]) -> None:
        self.baud = baud
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """A new line (a replug): nothing in flight."""
        # (stream offset, clock time) of each chunk read, to know when a command's
        # first byte arrived.
        self.arrivals: deque[tuple[int, float]] = deque()
        self.fed = 0
        self.last_due = 0.0
        self.in_free = 0.0

    def wire_s(self, length: int) -> float:
        """How long the line takes to carry ``length`` bytes."""
        return length * BITS_PER_BYTE / self.baud if self.baud else 0.0

    def arrived(self, length: int, now: float) -> None:
        """``length`` bytes were read at ``now``."""
        self.arrivals.append((self.fed, now))
        self.fed += length

    def forget(self, pending: int) -> None:
        """Drop arrivals no command can start in any more (``pending`` bytes are
        still waiting for the rest of their command)."""
        start_of_pending = self.fed - pending
        while len(self.arrivals) > 1 and self.arrivals[1][0] <= start_of_pending:
            self.arrivals.popleft()

    def received_at(self, offset: int, length: int) -> float:
        """When the command at ``offset`` (``length`` bytes) was wholly received: the
        line carries one byte at a time, so it starts after the command before it."""
        start = max(self._arrival_time(offset), self.in_free)
        self.in_free = start + self.wire_s(length)
        return self.in_free

    def reply_due(self, ready: float, length: int) -> float:
        """When a reply of ``length`` bytes, ready at ``ready``, has wholly left."""
        due = max(ready, self.last_due) + self.wire_s(length)
        self.last_due = due
        return due

    def _arrival_time(self, offset: int) -> float:
        when = self.arrivals[0][1] if self.arrivals else self.clock()
        for start, at in self.arrivals:
            if start > offset:
                break
            when = at
        return when
