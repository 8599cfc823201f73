"""Sizes of the images `make images` builds (uncompressed, as podman stores them), and how
long a `make images` with nothing to rebuild takes."""

from __future__ import annotations

import subprocess
import time

from bench.report import BenchContext, Section
from servoscope.settings import REPO_ROOT

MIB = 1024 * 1024
SCRIPT = REPO_ROOT / "tools" / "images.sh"


def run(ctx: BenchContext) -> Section:
    subprocess.run([SCRIPT], check=True, capture_output=True)  # everything built once
    started = time.monotonic()
    subprocess.run([SCRIPT], check=True, capture_output=True)
    cached_s = time.monotonic() - started
    sizes = subprocess.run([SCRIPT, "--sizes"], check=True, capture_output=True, text=True)
    rows = []
    for line in sizes.stdout.splitlines():
        name, size = line.split()
        role = "CI only" if name in ("jaeger", "prometheus", "redis", "pause") else "servoscope"
        rows.append((name, role, f"{int(size) / MIB:.0f}"))
    return Section(
        "Images: sizes",
        ["image", "kind", "size MiB"],
        rows,
        [
            "Uncompressed sizes of localhost/servoscope/<image> (podman image inspect). The "
            "servoscope images share every layer but their last few (the Debian base, Python "
            "and the venv), so on a node they cost little more than one.",
            f"`make images` with nothing to rebuild: {cached_s:.1f} s.",
        ],
    )
