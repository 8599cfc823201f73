"""Stack-wide settings: one TOML file, overridable key by key from the environment.

Every process of the stack reads its ports and options through :func:`load`, so a
test can run a second stack on free ports beside a running ``make up`` simply by
setting environment variables::

    >>> import os
    >>> os.environ["SERVOSCOPE_PORTS_GATEWAY"] = "18080"
    >>> load().port("gateway")
    18080

The file is ``servoscope.toml`` at the repository root unless ``SERVOSCOPE_CONFIG``
names another one. Environment variables are named ``SERVOSCOPE_<SECTION>_<KEY>``
in upper case and are parsed to the type of the value they replace.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = REPO_ROOT / "servoscope.toml"
ENV_PREFIX = "SERVOSCOPE_"
T = TypeVar("T")


class SettingsError(RuntimeError):
    """A settings file or override is unusable; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Parsed settings: ``sections[section][key]`` with environment overrides applied."""

    sections: Mapping[str, Mapping[str, Any]]
    source: Path

    def get(self, section: str, key: str) -> Any:
        try:
            return self.sections[section][key]
        except KeyError:
            raise SettingsError(
                f"{self.source}: missing key [{section}] {key}. Add it to the file "
                f"or set {env_name(section, key)}."
            ) from None

    def port(self, name: str) -> int:
        return int(self.get("ports", name))

    @property
    def host(self) -> str:
        return str(self.get("stack", "host"))

    def address(self, name: str) -> str:
        """``host:port`` of a component, e.g. ``address("redis")``.

        The host is ``[hosts] <name>`` when set (containers and Kubernetes reach each
        component by its own name), else ``[stack] host``.
        """
        host = self.sections.get("hosts", {}).get(name) or self.host
        return f"{host}:{self.port(name)}"

    def url(self, name: str) -> str:
        """Base URL of a component of the stack, e.g. ``url("servo")``."""
        return f"http://{self.address(name)}"

    def instance_ports(self, name: str) -> list[str]:
        """Port names of every instance of a service: ``name``, then ``name_2``, ``name_3``...

        ``[instances] telemetry = 2`` starts two telemetry loggers, on ``[ports] telemetry``
        and ``telemetry_2``, and the gateway balances over both: one setting for both.
        """
        count = int(self.sections.get("instances", {}).get(name, 1))
        names = [name] + [f"{name}_{number}" for number in range(2, count + 1)]
        missing = [n for n in names if n not in self.sections.get("ports", {})]
        if count < 1 or missing:
            raise SettingsError(
                f"{self.source}: [instances] {name} = {count} needs a port for every instance: "
                f"add [ports] {missing[0] if missing else name} (instances are named {name}, "
                f"{name}_2, ...)"
            )
        return names

    def options(self, section: str, cls: type[T], **given: Any) -> T:
        """Build the dataclass ``cls`` from ``[section]``: keys it names, defaults for the rest.

        ``given`` supplies fields that don't come from the file (e.g. derived URLs).
        Keys of the section that ``cls`` doesn't name are left to other readers
        (such as gunicorn's ``workers`` and ``threads``).
        """
        values = dict(given)
        table = self.sections.get(section, {})
        for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
            if spec.name in values or spec.name not in table:
                continue
            value = table[spec.name]
            if spec.type in ("float", float) and isinstance(value, int):
                value = float(value)
            values[spec.name] = value
        return cls(**values)

    def path(self, section: str, key: str) -> Path:
        """A path setting, resolved against the repository root when relative."""
        value = Path(str(self.get(section, key)))
        return value if value.is_absolute() else REPO_ROOT / value


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section}_{key}".upper()


def _coerce(raw: str, like: Any, name: str) -> Any:
    """Parse an environment string to the type of the file's value."""
    try:
        if isinstance(like, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(like, int):
            return int(raw)
        if isinstance(like, float):
            return float(raw)
        if isinstance(like, list):
            return [item.strip() for item in raw.split(",") if item.strip()]
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r} is not a valid {type(like).__name__}; use a value like {like!r}."
        ) from None
    return raw


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings file and apply ``SERVOSCOPE_<SECTION>_<KEY>`` overrides."""
    env = os.environ if environ is None else environ
    source = Path(env.get("SERVOSCOPE_CONFIG", DEFAULT_FILE))
    try:
        data = tomllib.loads(source.read_text())
    except FileNotFoundError:
        raise SettingsError(
            f"settings file {source} does not exist. Point SERVOSCOPE_CONFIG at a "
            f"servoscope.toml, or unset it to use {DEFAULT_FILE}."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{source}: {exc}. Fix the TOML syntax there.") from None
    sections: dict[str, dict[str, Any]] = {}
    for section, values in data.items():
        if not isinstance(values, dict):
            raise SettingsError(f"{source}: top-level key {section!r} must be a [section].")
        resolved = {}
        for key, value in values.items():
            name = env_name(section, key)
            resolved[key] = _coerce(env[name], value, name) if name in env else value
        sections[section] = resolved
    return Settings(sections=sections, source=source)
