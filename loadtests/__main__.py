"""``python -m loadtests run --profile smoke`` runs locust headless and judges the run.

Results go to ``results/<time>-<profile>/``: locust's CSV and HTML, and summary.md.
The exit status is non-zero when a threshold broke, and the output says which and by
how much. With no ``--host``, the run targets the local stack and starts it
(``make up``) if the gateway is not answering.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from loadtests.profiles import PROFILES_FILE, ProfileError, get_profile
from loadtests.verdict import judge, read_stats, summary_markdown
from servoscope.settings import REPO_ROOT, load

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
GRACE_S = 30  # on top of the profile's own length: the hard stop of every run


def gateway_ready(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"{host}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def run(profile_name: str, host: str | None, results_root: Path, profiles: Path) -> int:
    profile = get_profile(profile_name, profiles)
    if host is None:
        host = load().url("gateway")
        if not gateway_ready(host):
            print(f"==> {host} is not answering; starting the local stack", flush=True)
            subprocess.run(["make", "--no-print-directory", "up"], cwd=REPO_ROOT, check=True)
    out = results_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{profile.name}"
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"==> load profile {profile.name} against {host} for {profile.duration_s:.0f}s "
        f"(results in {out})",
        flush=True,
    )
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--run-time",
        f"{int(profile.duration_s + GRACE_S)}s",
        "--csv",
        str(out / "locust"),
        "--html",
        str(out / "report.html"),
        "--csv-full-history",  # per-second history: what the knee benchmark reads
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    env = {
        **os.environ,
        "SERVOSCOPE_LOAD_PROFILE": profile.name,
        "SERVOSCOPE_LOAD_PROFILES": str(profiles),
        "PYTHONPATH": str(REPO_ROOT),
    }
    locust = subprocess.run(command, cwd=REPO_ROOT, env=env, timeout=profile.duration_s + 120)
    stats_file = out / "locust_stats.csv"
    if not stats_file.exists():
        print(f"==> locust wrote no statistics (exit {locust.returncode})", flush=True)
        return 2
    stats = read_stats(stats_file)
    checks = judge(profile, stats)
    summary = summary_markdown(profile, stats, checks)
    (out / "summary.md").write_text(summary)
    print(summary, flush=True)
    broken = [check for check in checks if not check.passed]
    for check in broken:
        print(f"==> threshold broken: {check.describe()}", flush=True)
    return 1 if broken else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__)
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--host", help="gateway base URL (default: the local stack's)")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results")
    parser.add_argument("--profiles", type=Path, default=PROFILES_FILE, help="profiles file")
    args = parser.parse_args(argv)
    try:
        return run(args.profile, args.host, args.results, args.profiles)
    except ProfileError as exc:
        parser.error(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
