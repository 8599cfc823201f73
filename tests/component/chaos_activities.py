"""Tiny activities for journals made by the real `chaos` command in the judgement tests."""

from pathlib import Path


def flag(path: str) -> bool:
    """True while the file exists: a steady state the test can break by deleting it."""
    return Path(path).exists()


def remove(path: str) -> None:
    Path(path).unlink()


def explode() -> None:
    raise RuntimeError("the fault could not be injected")


def nothing() -> None:
    return None
