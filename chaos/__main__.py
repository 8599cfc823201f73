"""``python -m chaos [EXPERIMENT ...]``: the chaos suite (``make chaos``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaos import runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Run the chaos experiments on fresh stacks, each with its protection "
        "on and (as a control) off, and judge every run from its journal.",
    )
    parser.add_argument("experiments", nargs="*", help="names in chaos/experiments/ (all if none)")
    parser.add_argument("--results", type=Path, help="where journals and summary.md go")
    parser.add_argument(
        "--no-control", action="store_true", help="skip the runs with protection switched off"
    )
    args = parser.parse_args(argv)
    chosen = runner.experiments(args.experiments)
    results = args.results or runner.default_results()
    outcomes = runner.run_suite(chosen, results, control=not args.no_control)
    print(f"\n{(results / 'summary.md').read_text()}\njournals and traces: {results}/")
    wrong = runner.verdict(outcomes)
    for line in wrong:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
