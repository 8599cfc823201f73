"""``python -m bench [topic ...]``: run the benchmarks and rewrite BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import tempfile
from pathlib import Path

import bench
from bench.report import BenchContext, Section, write_report


def topics() -> list[str]:
    return sorted(
        name.removeprefix("bench_")
        for _, name, _ in pkgutil.iter_modules(bench.__path__)
        if name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("topics", nargs="*", help=f"default: all of {topics()}")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median kept)")
    args = parser.parse_args(argv)
    chosen = args.topics or topics()
    unknown = sorted(set(chosen) - set(topics()))
    if unknown:
        parser.error(f"unknown topic(s) {unknown}; choose from {topics()}")
    if not chosen:
        print("no benchmarks are defined yet (bench/bench_*.py)")
        return 0
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="servoscope-bench-") as work:
        context = BenchContext(Path(work), repeats=args.repeats)
        for topic in chosen:
            context.say(f"benchmark: {topic}")
            module = importlib.import_module(f"bench.bench_{topic}")
            sections.append(module.run(context))
            print(sections[-1].markdown(), flush=True)
    print(f"==> wrote {write_report(sections)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
