"""The images of ``make images``: what each one promises, checked on the built image.

Non-root; OCI labels (source, version, revision); no compiler and no pip in a servoscope
image; the same entry point as the local stack's process (stack/components.py). ``make
test`` builds the images before the suite runs (``tools/images.sh``).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from servoscope.settings import REPO_ROOT, load
from stack.components import components

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(300)]

SERVICES = ["gateway", "servo-controller", "motion-planner", "telemetry-logger", "device-state"]
CI_IMAGES = ["jaeger", "prometheus", "redis", "pause"]
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
COMPILERS = re.compile(r"^(gcc|cc|c\+\+|g\+\+|clang|x86_64-linux-gnu-gcc.*|make)$", re.M)


def podman(*args: str) -> subprocess.CompletedProcess:
    conf = subprocess.run(
        [REPO_ROOT / "tools" / "containers.sh", "--conf"], capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=False,
        env={"CONTAINERS_CONF": conf, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip


def inspect(name: str) -> dict:
    found = podman("image", "inspect", f"localhost/servoscope/{name}:{VERSION}")
    assert found.returncode == 0, f"{name} is not built: run make images ({found.stderr})"
    return json.loads(found.stdout)[0]


@pytest.mark.parametrize("name", [*SERVICES, "simulator", *CI_IMAGES])
def test_non_root_with_oci_labels(name: str) -> None:
    config = inspect(name)["Config"]
    user = config.get("User", "")
    assert user and user.split(":")[0] not in ("0", "root"), f"{name} runs as {user!r}"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.version"] == VERSION
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"]), labels


@pytest.mark.parametrize("name", [*SERVICES, "simulator"])
def test_no_compiler_and_no_pip(name: str) -> None:
    image = f"localhost/servoscope/{name}:{VERSION}"
    listing = podman(
        "run", "--rm", "--network=none", "--entrypoint", "sh", image,
        "-c", "ls /usr/bin /usr/local/bin /opt/venv/bin; python -m pip --version || echo no-pip",
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert not COMPILERS.findall(listing.stdout), COMPILERS.findall(listing.stdout)
    assert "no-pip" in listing.stdout


def test_same_entry_points_as_the_local_stack(tmp_path: Path) -> None:
    local = {c.name: c.argv for c in components(load({}), tmp_path)}
    for name in SERVICES:
        command = inspect(name)["Config"]["Cmd"]
        assert command == ["python", *local[name][1:]], name
    simulator = inspect("simulator")["Config"]["Cmd"]
    assert simulator[:3] == ["python", "-m", "services.servo.simulator"]
