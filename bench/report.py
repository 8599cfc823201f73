"""What a benchmark returns, the context it runs in, and how BENCHMARKS.md is written."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servoscope.settings import REPO_ROOT


@dataclass
class Section:
    """One benchmark's findings: a title, a markdown table, and notes on method."""

    title: str
    headers: Sequence[str]
    rows: list[Sequence[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "---|" * len(self.headers))
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


@dataclass
class BenchContext:
    """Where a benchmark may put its stacks and files; how many repeats to take."""

    work_dir: Path
    repeats: int = 3

    def say(self, message: str) -> None:
        print(f"==> {message}", flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        memory = "unknown memory"
    return (
        f"{os.cpu_count()} x {cpu}, {memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _existing_sections(path: Path) -> dict[str, str]:
    """The sections already in BENCHMARKS.md, by title, so a partial run keeps the rest."""
    if not path.exists():
        return {}
    sections: dict[str, str] = {}
    for chunk in path.read_text().split("\n## ")[1:]:
        title = chunk.split("\n", 1)[0].strip()
        sections[title] = "## " + chunk.rstrip() + "\n"
    return sections


def write_report(sections: list[Section], path: Path = REPO_ROOT / "BENCHMARKS.md") -> Path:
    """Rewrite ``path``: the sections just measured replace their old versions; sections of
    topics not run this time stay as they were, each with the date it was measured."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    merged = _existing_sections(path)
    for section in sections:
        stamped = Section(
            section.title,
            section.headers,
            section.rows,
            [f"measured {now} on {machine_description()}", *section.notes],
        )
        merged[section.title] = stamped.markdown()
    header = (
        "# Benchmarks\n\n"
        "Written by `make bench` (`make bench TOPICS=<topic>` re-measures one section). Every\n"
        "ratio in a section was measured side by side in one run on a shared, noisy machine,\n"
        "so compare ratios rather than absolute numbers.\n\n"
    )
    path.write_text(header + "\n".join(merged.values()))
    return path
