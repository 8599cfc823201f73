"""The CPU hog of ``make chaos HOG=1``: busy loops that burn CPU at normal priority,
end by themselves after their limit, and are stopped by their pids."""

from __future__ import annotations

import os
import time
from pathlib import Path

from chaos.hog import cpu_hog


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_hog_burns_cpu_at_normal_priority_and_is_stopped_by_pid() -> None:
    with cpu_hog(limit_s=30, processes=2) as pids:
        assert len(pids) == 2
        time.sleep(1.5)
        for pid in pids:
            assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)
            assert cpu_seconds(pid) > 0.1, "a busy loop that does not run proves nothing"
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_the_hog_ends_by_itself_after_its_limit() -> None:
    started = time.monotonic()
    with cpu_hog(limit_s=1, processes=1) as [pid]:
        while Path(f"/proc/{pid}").exists() and time.monotonic() - started < 10:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.1)
        assert time.monotonic() - started < 10
