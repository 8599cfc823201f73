"""``python -m chaos [EXPERIMENT ...]``: the chaos suite (``make chaos``)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

from chaos import runner
from chaos.hog import cpu_hog

HOG_LIMIT_S = 1500  # the loops end by themselves after this, even if the suite never does


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C: the running stack, its `chaos run` and the hog are
    # stopped by the same cleanups instead of being left behind.
    signal.signal(signal.SIGTERM, _interrupt)
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
    parser.add_argument(
        "--hog",
        action="store_true",
        help="keep every core busy (busy loops at normal priority) while the suite runs",
    )
    args = parser.parse_args(argv)
    chosen = runner.experiments(args.experiments)
    results = args.results or runner.default_results()
    with contextlib.ExitStack() as hogged:
        if args.hog:
            pids = hogged.enter_context(cpu_hog(limit_s=HOG_LIMIT_S))
            print(f"==> CPU hog: busy loops {pids} at normal priority", flush=True)
        outcomes = runner.run_suite(chosen, results, control=not args.no_control)
    print(f"\n{(results / 'summary.md').read_text()}\njournals and traces: {results}/")
    wrong = runner.verdict(outcomes)
    for line in wrong:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
