"""The README's commands work verbatim against a running stack."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
import serial

from servoscope.settings import REPO_ROOT
from stack.ephemeral import Stack

README = (REPO_ROOT / "README.md").read_text()


def readme_commands(prefix: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    commands = []
    for block in blocks:
        for command in re.split(r"(?<!\\)\n", block.strip()):
            if command.startswith(prefix):
                commands.append(command)
    return commands


def test_the_readme_has_curl_examples() -> None:
    assert len(readme_commands("curl ")) >= 3


def check_readme_curl_commands(
    run: Callable[[str], subprocess.CompletedProcess], gateway: str
) -> None:
    """Run every README curl line with ``run`` against ``gateway`` (host:port); check each.

    The compose test runs the same lines inside its network namespace.
    """
    for command in readme_commands("curl "):
        result = run(command.replace("localhost:8080", gateway))
        assert result.returncode == 0, (command, result.stderr)
        body = json.loads(result.stdout)
        if "Authorization" in command:
            assert "status" not in body or body["status"] < 400, (command, body)
            if "/api/state" in command:
                assert {s: body[s]["status"] for s in ("servo", "motion", "telemetry")} == {
                    "servo": "ok",
                    "motion": "ok",
                    "telemetry": "ok",
                }, body
            elif "/api/telemetry/events" in command:
                assert body["events"] and "kind" in body["events"][0], body
            else:
                assert body["channel"] in (0, 1), body
        else:
            assert body["status"] == 401, body
            assert body["type"].endswith("/unauthorized")


def test_every_readme_curl_command_works(stack: Stack) -> None:
    check_readme_curl_commands(
        lambda command: subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=30
        ),
        stack.url("gateway").removeprefix("http://"),
    )


def test_readme_make_targets_exist() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in re.findall(
        r"^make ([\w-]+)", "\n".join(re.findall(r"```sh\n(.*?)```", README, re.S)), re.M
    ):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_make_up_prints_urls_and_a_curl_line_that_works(stack: Stack) -> None:
    output = stack.up_output
    for name in ("gateway", "jaeger_ui", "prometheus"):
        assert stack.url(name) in output, (name, output)
    match = re.search(r"try:\s+(curl .*?\}')", output, flags=re.S)
    assert match, output
    result = subprocess.run(
        ["bash", "-c", match.group(1)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["channel"] == 0


def test_make_simulator_prints_its_pty_first_and_speaks_maestro() -> None:
    process = subprocess.Popen(
        ["make", "--no-print-directory", "simulator"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("device: /dev/pts/"), first
        with serial.Serial(first.removeprefix("device: "), 115200, timeout=2) as port:
            port.write(bytes([0x90, 0x00]))  # Get Position, channel 0
            reply = port.read(2)
        assert len(reply) == 2
        assert reply[0] | reply[1] << 8 == 6000  # home: 1500 us in quarter-microseconds
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches make and the simulator
        process.wait(timeout=10)
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):  # nothing of the group is left
        os.killpg(process.pid, 0)
