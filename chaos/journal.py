"""Judging a Chaos Toolkit run from its journal, never from ``chaos run``'s exit code.

``chaos run`` exits 0 when the steady state was already broken before the method and
when a method action failed; the journal tells the truth. A run passes only when:

- its status is ``completed``;
- the steady-state hypothesis held before the fault (otherwise the baseline was unmet
  and the experiment proved nothing) and after it, and the run did not deviate;
- every activity of the method succeeded (our during-fault probes raise when
  isolation does not hold, so a failed probe is a broken hypothesis, not noise);
- every declared rollback was played and succeeded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Judgement:
    title: str
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons


def _failure(activity: dict[str, Any]) -> str:
    name = activity.get("activity", {}).get("name", "?")
    exception = activity.get("exception") or []
    last = exception[-1].strip() if exception else activity.get("status", "?")
    return f"{name}: {last.removeprefix('chaoslib.exceptions.ActivityFailed: ')}"


def _failed_probes(state: dict[str, Any] | None) -> list[str]:
    if not state:
        return []
    return [
        f"{probe['activity'].get('name')} = {probe.get('output')!r}"
        for probe in state.get("probes", [])
        if not probe.get("tolerance_met", False)
    ]


def judge(journal: dict[str, Any]) -> Judgement:
    experiment = journal.get("experiment", {})
    verdict = Judgement(experiment.get("title", "untitled experiment"))
    reasons = verdict.reasons
    status = journal.get("status")
    if status != "completed":
        reasons.append(f"status is {status!r}, not 'completed'")
    states = journal.get("steady_states") or {}
    before, after = states.get("before"), states.get("after")
    if not before or not before.get("steady_state_met"):
        failed = ", ".join(_failed_probes(before)) or "no baseline recorded"
        reasons.append(f"unmet baseline: the steady state did not hold before the fault ({failed})")
    if journal.get("deviated"):
        failed = ", ".join(_failed_probes(after)) or "see the journal"
        reasons.append(f"deviated: the steady state did not hold after the fault ({failed})")
    elif before and before.get("steady_state_met") and not (after or {}).get("steady_state_met"):
        reasons.append("the steady state was not checked after the fault")
    for activity in journal.get("run", []):
        if activity.get("status") != "succeeded":
            reasons.append(f"method activity failed: {_failure(activity)}")
    declared = len(experiment.get("rollbacks", []))
    played = journal.get("rollbacks") or []
    if len(played) < declared:
        reasons.append(f"rollbacks skipped: {len(played)} of {declared} played")
    for activity in played:
        if activity.get("status") != "succeeded":
            reasons.append(f"rollback failed: {_failure(activity)}")
    return verdict


def judge_file(path: Path) -> Judgement:
    return judge(json.loads(path.read_text()))
