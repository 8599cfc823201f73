"""Benchmarks: ratios measured side by side in one run, written to BENCHMARKS.md.

Each ``bench/bench_<topic>.py`` defines ``run(ctx: BenchContext) -> Section``;
``make bench`` (``python -m bench [topic ...]``) runs them in order and rewrites
BENCHMARKS.md with the machine's description and every section. Benchmarks are not
tests: they print what they measured and never fail on a number.
"""
