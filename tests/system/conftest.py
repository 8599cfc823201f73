"""Fixtures of the system tests: one shared stack of real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.ephemeral import Stack, start_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack shared by the system tests that only read or command it."""
    running = start_stack(tmp_path_factory.mktemp("stack") / "run")
    yield running
    running.make("down")
