"""Idle memory of the whole local stack: every process of every component, summed over
each process tree (gunicorn masters with their workers, Jaeger, Prometheus, the simulator,
the supervisor). The budget is 1 GiB of RSS.

RSS counts pages shared between processes (a forked worker and its master) once per
process, so the RSS total is an upper bound; PSS splits each shared page between its
sharers and adds up to what the stack really holds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.report import BenchContext, Section
from stack.ephemeral import ephemeral_stack
from stack.traffic import rated_traffic

BUDGET_MIB = 1024
SAMPLES = 5


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += children(current)
    return pids


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) if it has gone."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0, 0
    fields = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:] if ":" in line}
    return fields.get("Rss", 0), fields.get("Pss", 0)


def measure(roots: dict[str, int]) -> dict[str, tuple[int, float, float]]:
    """Per component: (processes, median RSS MiB, median PSS MiB) over a few samples."""
    samples: dict[str, list[tuple[int, int, int]]] = {name: [] for name in roots}
    for _ in range(SAMPLES):
        for name, root in roots.items():
            pids = tree(root)
            rss, pss = (sum(values) for values in zip(*map(memory_kib, pids), strict=True))
            samples[name].append((len(pids), rss, pss))
        time.sleep(1)
    return {
        name: (
            max(s[0] for s in taken),
            statistics.median(s[1] for s in taken) / 1024,
            statistics.median(s[2] for s in taken) / 1024,
        )
        for name, taken in samples.items()
    }


def run(ctx: BenchContext) -> Section:
    run_dir = ctx.work_dir / "footprint" / "run"
    with ephemeral_stack(run_dir) as stack:
        # Warm: every code path a user touches has run, Prometheus holds some series.
        rated_traffic(stack, rounds=20)
        ctx.say("stack warm; letting it idle for 20 s")
        time.sleep(20)
        roots = {"supervisor": int((run_dir / "supervisor.pid").read_text()), **stack.pids()}
        # The supervisor's tree holds every component: count each process once.
        supervisor_only = {"supervisor": roots.pop("supervisor")}
        figures = measure(roots)
        own_rss, own_pss = memory_kib(supervisor_only["supervisor"])
        figures["supervisor"] = (1, own_rss / 1024, own_pss / 1024)
        workers = stack.settings.get("gateway", "workers")
    rows = [
        [name, processes, f"{rss:.0f}", f"{pss:.0f}"]
        for name, (processes, rss, pss) in sorted(figures.items(), key=lambda kv: -kv[1][1])
    ]
    total_rss = sum(f[1] for f in figures.values())
    total_pss = sum(f[2] for f in figures.values())
    verdict = "within" if total_rss < BUDGET_MIB else "OVER"
    rows.append(
        [
            "**whole stack**",
            sum(f[0] for f in figures.values()),
            f"**{total_rss:.0f}**",
            f"**{total_pss:.0f}**",
        ]
    )
    return Section(
        "Footprint: idle memory of the local stack",
        ["component", "processes", "RSS MiB", "PSS MiB"],
        rows,
        notes=[
            f"Budget: {BUDGET_MIB} MiB RSS for the whole stack; measured {total_rss:.0f} MiB, "
            f"{verdict} budget.",
            "Idle = 20 s after a warm-up of 20 rounds of mixed traffic through the gateway; "
            f"median of {SAMPLES} samples 1 s apart, each summed over the component's process "
            "tree from /proc/<pid>/smaps_rollup.",
            f"Default settings (gateway workers = {workers}); Prometheus scraping every 2 s, "
            f"Jaeger with in-memory storage. Components: {', '.join(sorted(figures))}.",
        ],
    )
