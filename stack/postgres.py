"""The stack's own PostgreSQL server (Debian's ``postgresql``), for a shared telemetry store.

Started only when ``[telemetry_logger] store = "postgres"`` and no ``postgres_dsn`` points
elsewhere. The cluster is created on first start (``initdb``, trust authentication on
loopback, a ``servoscope`` role and database), listens on ``[ports] postgres`` and keeps
its data between restarts of the stack.

PostgreSQL refuses to run as root. Run by root, the server runs as Debian's ``postgres``
user (``setpriv``, which execs: the supervisor's signals reach the server itself), and
its data directory lives where that user can reach it: under the system's temporary
directory, named after the run directory (a test's run directory is often inside a
private one).
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from servoscope.settings import Settings

ROLE = "servoscope"


def wanted(settings: Settings) -> bool:
    """True when the stack must run its own server."""
    section = settings.sections.get("telemetry_logger", {})
    return section.get("store") == "postgres" and not section.get("postgres_dsn")


def binary(name: str) -> str:
    """The newest installed server version's ``name`` (Debian keeps them off PATH)."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0,
    )
    if not found:
        raise FileNotFoundError(
            f"PostgreSQL's {name} is not installed; run `make tools` (Debian's postgresql)"
        )
    return found[-1]


def _as_root() -> bool:
    return os.geteuid() == 0


def data_dir(run_dir: Path) -> Path:
    if not _as_root():
        return run_dir / "postgres-data"
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"servoscope-postgres-{digest}"


def _drop_privileges() -> list[str]:
    return (
        ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"] if _as_root() else []
    )


def prepare(run_dir: Path) -> Path:
    """Create the cluster, its role and database once; returns the data directory."""
    data = data_dir(run_dir)
    if (data / "PG_VERSION").exists():
        return data
    data.mkdir(parents=True, exist_ok=True)
    if _as_root():
        user = pwd.getpwnam("postgres")
        os.chown(data, user.pw_uid, user.pw_gid)
        data.chmod(0o700)
    quiet = {"stdout": subprocess.DEVNULL, "check": True}
    subprocess.run(
        [*_drop_privileges(), binary("initdb"), "-D", str(data), "-U", ROLE, "--auth=trust",
         "-E", "UTF8", "--no-instructions"],
        **quiet,
    )  # fmt: skip
    subprocess.run(
        [*_drop_privileges(), binary("postgres"), "--single", "-D", str(data), "postgres"],
        input=f"CREATE DATABASE {ROLE};\n".encode(),
        **quiet,
    )
    return data


def argv(settings: Settings, run_dir: Path) -> list[str]:
    data = data_dir(run_dir)
    return [
        *_drop_privileges(),
        binary("postgres"),
        *("-D", str(data)),
        *("-h", settings.host),
        *("-p", str(settings.port("postgres"))),
        *("-k", str(data)),  # the Unix socket next to the data, where the server may write
        *("-c", "fsync=on"),
        *("-c", "synchronous_commit=on"),  # a commit is on disk before the logger acks
    ]


def remove(run_dir: Path) -> None:
    """Delete the cluster of ``run_dir`` (tests' throw-away stacks)."""
    shutil.rmtree(data_dir(run_dir), ignore_errors=True)
