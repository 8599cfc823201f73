"""The README's commands work verbatim against a running stack."""

from __future__ import annotations

import json
import re
import subprocess

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


def test_every_readme_curl_command_works(stack: Stack) -> None:
    gateway = stack.url("gateway").removeprefix("http://")
    for command in readme_commands("curl "):
        local = command.replace("localhost:8080", gateway)
        result = subprocess.run(["bash", "-c", local], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (command, result.stderr)
        body = json.loads(result.stdout)
        if "Authorization" in command:
            assert "status" not in body or body["status"] < 400, (command, body)
            assert body["channel"] == 0, body
        else:
            assert body["status"] == 401, body
            assert body["type"].endswith("/unauthorized")


def test_readme_make_targets_exist() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in re.findall(
        r"^make (\w+)", "\n".join(re.findall(r"```sh\n(.*?)```", README, re.S)), re.M
    ):
        assert re.search(rf"^{target}:", makefile, re.M), target
