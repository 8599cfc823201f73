"""A CPU hog for the chaos suite: what another CI job sharing the machine does.

``make chaos HOG=1`` runs the whole suite while one busy loop per core runs at normal
priority (a hog at nice 19 would yield to everything and prove little). Each loop is a
process of its own that ends by itself after ``limit_s``; the suite also stops them by
their pids when it is done, whichever comes first::

    with cpu_hog(limit_s=1200) as pids:
        run_suite(...)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

# Spins until its deadline; `time.monotonic` is checked every 100,000 iterations.
LOOP = """
import sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(100_000):
        pass
"""


@contextlib.contextmanager
def cpu_hog(limit_s: float, processes: int | None = None) -> Iterator[list[int]]:
    """``processes`` busy loops (one per core by default) for at most ``limit_s``."""
    count = processes or os.cpu_count() or 2
    hogs = [
        subprocess.Popen([sys.executable, "-c", LOOP, str(limit_s)], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield [hog.pid for hog in hogs]
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            try:
                hog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                hog.kill()
                hog.wait(timeout=5)
