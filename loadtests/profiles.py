"""Load profiles and thresholds from profiles.yaml, validated before a run starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROFILES_FILE = Path(__file__).with_name("profiles.yaml")
LIMITS = ("max_error_ratio", "max_p95_ms", "max_p99_ms", "min_rps")


class ProfileError(ValueError):
    """profiles.yaml is wrong or names no such profile; the message says where."""


@dataclass(frozen=True)
class Stage:
    duration_s: float
    users: int
    spawn_rate: float


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    stages: tuple[Stage, ...]
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return sum(stage.duration_s for stage in self.stages)

    def stage_at(self, elapsed_s: float) -> Stage | None:
        """The stage running ``elapsed_s`` into the run; None once the run is over."""
        end = 0.0
        for stage in self.stages:
            end += stage.duration_s
            if elapsed_s < end:
                return stage
        return None


def load_profiles(path: Path = PROFILES_FILE) -> dict[str, Profile]:
    data = yaml.safe_load(path.read_text()) or {}
    profiles = {}
    for name, entry in data.items():
        where = f"{path}: {name}"
        try:
            stages = tuple(
                Stage(float(s["duration_s"]), int(s["users"]), float(s["spawn_rate"]))
                for s in entry["stages"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(
                f"{where}.stages: each needs duration_s, users, spawn_rate ({exc})"
            ) from None
        if not stages or any(s.duration_s <= 0 or s.users < 0 for s in stages):
            raise ProfileError(f"{where}.stages: list stages with positive durations")
        thresholds = entry.get("thresholds") or {}
        for route, limits in thresholds.items():
            unknown = set(limits) - set(LIMITS)
            if unknown:
                raise ProfileError(
                    f"{where}.thresholds.{route}: unknown {sorted(unknown)}; use {list(LIMITS)}"
                )
        profiles[name] = Profile(name, str(entry.get("description", "")), stages, thresholds)
    return profiles


def get_profile(name: str, path: Path = PROFILES_FILE) -> Profile:
    profiles = load_profiles(path)
    if name not in profiles:
        raise ProfileError(f"no profile {name!r} in {path}; choose one of {sorted(profiles)}")
    return profiles[name]
