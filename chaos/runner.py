"""Runs the experiments of ``chaos/experiments/``, each on fresh stacks, and judges them.

Every experiment runs twice: with the stack's protection as configured, and as a
control run with the protection it names switched off (``enabled: false`` in a copy
of ``gateway/routes.yaml``). The suite passes when every protected run passes and
every control run fails: that contrast shows it is the protection that isolates the
fault. Runs are judged from their journals (:mod:`chaos.journal`), never from
``chaos run``'s exit code.

Results go to ``<results>/``: each run's journal and log, the traces of a rejected
and a recovered request from Jaeger, and ``summary.md``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chaos.journal import Judgement, judge_file
from servoscope.settings import REPO_ROOT
from stack.ephemeral import DEV_KEY, Stack, http, start_stack

EXPERIMENTS_DIR = REPO_ROOT / "chaos" / "experiments"
BREACH = re.compile(r"\[(\w+)\] ")
ROUTES_FILE = REPO_ROOT / "gateway" / "routes.yaml"
CHAOS = Path(sys.executable).with_name("chaos")
RUN_TIMEOUT_S = 180


@dataclass
class Experiment:
    path: Path
    title: str
    fault: str
    hypothesis: str
    control: list[str]  # gateway stages switched off in the control run
    control_reason: str  # why there is no control run, when there is none
    settings: dict[str, str] = field(default_factory=dict)  # SERVOSCOPE_* for its stacks
    # A protection that is a setting rather than a gateway stage: the control run's stack
    # gets these too (e.g. SERVOSCOPE_STREAMS_DELIVERY=latest), named by control_label.
    control_settings: dict[str, str] = field(default_factory=dict)
    control_label: str = ""
    run_timeout_s: float = RUN_TIMEOUT_S
    routes: dict[str, Any] = field(default_factory=dict)  # merged into routes.yaml
    # A figure this machine is known not to meet: {activity: <probe name>, figure: <the
    # probe's tag, e.g. p95>, reason: ...}. Only a failure of that probe in that one figure
    # is tolerated in the protected run; its other figures and everything else still judge.
    known_failure: dict[str, str] = field(default_factory=dict)
    # Whose traces to keep: a rejected (``rejected`` status) and a recovered request.
    trace_route: str = "/api/servo/set-position"
    rejected: str = "503"

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def has_control(self) -> bool:
        return bool(self.control or self.control_settings)

    @property
    def switched_off(self) -> str:
        return f"{', '.join([*self.control, *filter(None, [self.control_label])])} off"


@dataclass
class Outcome:
    experiment: Experiment
    protected: bool
    judgement: Judgement
    journal: Path
    recovery_s: float | None
    seconds: float
    traces: dict[str, str] = field(default_factory=dict)  # kind -> trace id


def load(path: Path) -> Experiment:
    document = yaml.safe_load(path.read_text())
    extension = next(
        (e for e in document.get("extensions", []) if e.get("name") == "servoscope"), {}
    )
    return Experiment(
        path=path,
        title=document["title"],
        fault=extension.get("fault", ""),
        hypothesis=extension.get("hypothesis", ""),
        control=list(extension.get("control", [])),
        control_reason=extension.get("control_reason", ""),
        settings={k: str(v) for k, v in extension.get("settings", {}).items()},
        control_settings={k: str(v) for k, v in extension.get("control_settings", {}).items()},
        control_label=extension.get("control_label", ""),
        run_timeout_s=float(extension.get("run_timeout_s", RUN_TIMEOUT_S)),
        routes=extension.get("routes", {}),
        known_failure=dict(extension.get("known_failure", {})),
        trace_route=extension.get("trace_route", "/api/servo/set-position"),
        rejected=str(extension.get("rejected_status", 503)),
    )


def experiments(names: list[str] | None = None) -> list[Experiment]:
    found = {path.stem: path for path in sorted(EXPERIMENTS_DIR.glob("*.yaml"))}
    unknown = [name for name in names or [] if name not in found]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; choose from {sorted(found)}")
    return [load(found[name]) for name in names or found]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def route_table(experiment: Experiment, protected: bool) -> dict[str, Any]:
    """routes.yaml with the experiment's changes, and its protection off for a control."""
    table = _merge(yaml.safe_load(ROUTES_FILE.read_text()), experiment.routes)
    if not protected:
        switched_off = {stage: {"enabled": False} for stage in experiment.control}
        table = _merge(table, {"defaults": switched_off})
        for section in ("upstreams", "routes"):
            for entry in table.get(section, {}).values():
                for scope in (entry, entry.get("policy", {})):
                    for stage in experiment.control:
                        if isinstance(scope.get(stage), dict):
                            scope[stage]["enabled"] = False
    return table


def stack_settings(experiment: Experiment, protected: bool) -> dict[str, str]:
    """The environment of the run's stack: the experiment's settings, and for a control
    run its ``control_settings`` on top (a protection that is a setting, not a stage)."""
    return {**experiment.settings, **({} if protected else experiment.control_settings)}


def chaos_env(stack: Stack) -> dict[str, str]:
    """What the experiments' ``configuration`` reads (``type: env``)."""
    return {
        **stack.env,
        "PYTHONPATH": str(REPO_ROOT),
        "CHAOS_GATEWAY_URL": stack.url("gateway"),
        "CHAOS_API_KEY": DEV_KEY,
        "CHAOS_PROMETHEUS_URL": stack.url("prometheus"),
        "CHAOS_SIMULATOR_URL": stack.url("simulator_control"),
        "CHAOS_TELEMETRY_URL": stack.url("telemetry"),
        "CHAOS_TOXIPROXY_URL": stack.url("toxiproxy"),
        "CHAOS_SERVO_READY_URL": stack.url("servo") + "/readyz",
        "CHAOS_TELEMETRY_READY_URL": stack.url("telemetry") + "/readyz",
        "CHAOS_REDIS_PORT": str(stack.settings.port("redis")),
        "CHAOS_RUN_DIR": str(stack.run_dir),
    }


def _recovery(journal: Path) -> float | None:
    data = json.loads(journal.read_text())
    for activity in data.get("run", []):
        if activity["activity"].get("name") == "recovery" and activity["status"] == "succeeded":
            return float(activity["output"])
    return None


def _trace_id(stack: Stack, route: str, status: str, since: float) -> str:
    """The newest gateway trace of ``route`` answered ``status`` after ``since`` (epoch s)."""
    query = urllib.parse.urlencode(
        {
            "service": "gateway",
            "tags": json.dumps({"http.route": route, "http.response.status_code": status}),
            "start": int(since * 1_000_000),
            "limit": 1,
        }
    )
    reply = http("GET", f"{stack.url('jaeger_ui')}/api/traces?{query}")
    traces = reply.json().get("data") or [] if reply.status == 200 else []
    return traces[0]["traceID"] if traces else ""


def _whole_trace(stack: Stack, trace_id: str, wait_s: float = 5.0) -> dict:
    """The trace as Jaeger answers it once every client span's upstream has reported its
    side, or as it is after ``wait_s``: each process exports its own spans (every half
    second), so a trace picked as it ends may still lack the upstream's."""
    deadline = time.monotonic() + wait_s
    while True:
        trace = http("GET", f"{stack.url('jaeger_ui')}/api/traces/{trace_id}").json()
        if _answered(trace) or time.monotonic() >= deadline:
            return trace
        time.sleep(0.5)


def _answered(trace: dict) -> bool:
    """Every HTTP client span of the trace has a child: the server span of the call it
    made (a serial exchange's client span has none: the device does not trace)."""
    spans = [span for data in trace.get("data") or [] for span in data["spans"]]
    parents = {ref["spanID"] for span in spans for ref in span.get("references", [])}
    for span in spans:
        tags = {t["key"]: t["value"] for t in span["tags"]}
        http_call = tags.get("span.kind") == "client" and "http.request.method" in tags
        if http_call and span["spanID"] not in parents:
            return False
    return True


def run_one(experiment: Experiment, protected: bool, results: Path) -> Outcome:
    label = f"{experiment.name}-{'protected' if protected else 'control'}"
    work = results / label
    work.mkdir(parents=True, exist_ok=True)
    routes_file = work / "routes.yaml"
    routes_file.write_text(yaml.safe_dump(route_table(experiment, protected), sort_keys=False))
    started = time.time()
    settings = stack_settings(experiment, protected)
    stack = start_stack(work / "run", SERVOSCOPE_GATEWAY_ROUTES_FILE=str(routes_file), **settings)
    try:
        return run_on(stack, experiment, protected, results, started=started)
    finally:
        stack.make("down")


def run_on(
    stack: Stack,
    experiment: Experiment,
    protected: bool,
    results: Path,
    env: dict[str, str] | None = None,
    started: float | None = None,
) -> Outcome:
    """Runs ``chaos run`` for one experiment on a running stack (``env`` on top of
    :func:`chaos_env`), keeps its two telling traces, and judges its journal."""
    label = f"{experiment.name}-{'protected' if protected else 'control'}"
    started = time.time() if started is None else started
    journal = results / f"{label}.journal.json"
    traces: dict[str, str] = {}
    with (results / f"{label}.log").open("w") as log:
        subprocess.run(
            [
                str(CHAOS),
                "--no-log-file",
                "run",
                "--rollback-strategy",
                "always",
                "--journal-path",
                str(journal),
                str(experiment.path),
            ],
            cwd=REPO_ROOT,
            env={**chaos_env(stack), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=experiment.run_timeout_s,
            check=False,
        )
    traces = {
        "rejected": _trace_id(stack, experiment.trace_route, experiment.rejected, started),
        "recovered": _trace_id(stack, experiment.trace_route, "200", time.time() - 5),
    }
    # The stack goes away; its two telling traces stay with the journal.
    kept = {kind: _whole_trace(stack, trace_id) for kind, trace_id in traces.items() if trace_id}
    (results / f"{label}.traces.json").write_text(json.dumps(kept, indent=1))
    judgement = judge_file(journal) if journal.exists() else Judgement(experiment.title)
    if not journal.exists():
        judgement.reasons.append(f"no journal written; see {label}.log")
    return Outcome(
        experiment,
        protected,
        judgement,
        journal,
        _recovery(journal) if journal.exists() else None,
        time.time() - started,
        traces,
    )


def only_known_failure(experiment: Experiment, judgement: Judgement) -> bool:
    """The run failed, and only in the one figure of the probe its experiment declares a
    known failure: every reason is that probe's, and every figure it broke (the probes
    tag each: ``[p95] ...``, :func:`chaos.probes.breach`) is the declared one."""
    activity = experiment.known_failure.get("activity")
    figure = experiment.known_failure.get("figure")
    prefix = f"method activity failed: {activity}: "
    reasons = judgement.reasons
    if not (activity and figure and reasons):
        return False
    for reason in reasons:
        figures = set(BREACH.findall(reason.split(" -- ", 1)[0]))
        if not reason.startswith(prefix) or figures != {figure}:
            return False
    return True


def _known(outcome: Outcome) -> bool:
    return outcome.protected and only_known_failure(outcome.experiment, outcome.judgement)


def _cell(outcome: Outcome | None, reason: str = "") -> str:
    if outcome is None:
        return f"n/a ({reason})" if reason else "n/a"
    if outcome.judgement.passed:
        return "holds"
    if outcome.protected and _known(outcome):
        return f"**not met here** ({outcome.experiment.known_failure['reason']}): " + _cell_reasons(
            outcome
        )
    return "broken: " + _cell_reasons(outcome)


def _cell_reasons(outcome: Outcome) -> str:
    reasons = []
    for reason in outcome.judgement.reasons:
        reason = reason.split(" -- ", 1)[0]  # the figures stay in the journal
        for noise in ("method activity failed: ", "chaoslib.exceptions.ActivityFailed: "):
            reason = reason.replace(noise, "")
        reasons.append(reason)
    return "; ".join(reasons)[:240].replace("|", "/")


def summary(outcomes: list[Outcome]) -> str:
    rows = [
        "| experiment | fault | hypothesis | with protection | without protection "
        "| recovery | traces (rejected, recovered) |",
        "|---|---|---|---|---|---|---|",
    ]
    by_name: dict[str, dict[bool, Outcome]] = {}
    for outcome in outcomes:
        by_name.setdefault(outcome.experiment.name, {})[outcome.protected] = outcome
    for name, runs in by_name.items():
        experiment = (runs.get(True) or runs[False]).experiment
        protected = runs.get(True)
        control = runs.get(False)
        recovery = f"{protected.recovery_s:.1f} s" if protected and protected.recovery_s else "-"
        traces = ", ".join(v or "-" for v in (protected.traces.values() if protected else []))
        rows.append(
            f"| {name} | {experiment.fault} | {experiment.hypothesis} | {_cell(protected)} "
            f"| {_cell(control, experiment.control_reason)}"
            f"{f' ({experiment.switched_off})' if control else ''} | {recovery} | {traces or '-'} |"
        )
    return "\n".join(rows) + "\n"


def verdict(outcomes: list[Outcome]) -> list[str]:
    """What keeps the suite from passing: a protected run that failed, or a control run
    that passed (the protection made no difference, so the experiment proves nothing)."""
    wrong = []
    for outcome in outcomes:
        name = outcome.experiment.name
        if outcome.protected and not outcome.judgement.passed and not _known(outcome):
            wrong.append(f"{name}: failed with protection: {'; '.join(outcome.judgement.reasons)}")
        if not outcome.protected and outcome.judgement.passed:
            off = outcome.experiment.switched_off
            wrong.append(f"{name}: held even with {off}, so it does not show the protection")
    return wrong


def run_suite(chosen: list[Experiment], results: Path, control: bool = True) -> list[Outcome]:
    results.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    plan = [
        (experiment, protected)
        for experiment in chosen
        for protected in (True, False)
        if protected or (control and experiment.has_control)
    ]
    for index, (experiment, protected) in enumerate(plan, 1):
        mode = "protected" if protected else f"control ({experiment.switched_off})"
        print(f"==> [{index}/{len(plan)}] {experiment.name}, {mode}", flush=True)
        outcome = run_one(experiment, protected, results)
        state = "holds" if outcome.judgement.passed else "broken"
        if protected and _known(outcome):
            state = f"not met here, a known failure ({experiment.known_failure['reason']})"
        print(f"    {state} in {outcome.seconds:.0f}s", flush=True)
        for reason in outcome.judgement.reasons:
            print(f"    - {reason[:400]}", flush=True)
        outcomes.append(outcome)
        (results / "summary.md").write_text(summary(outcomes))
    return outcomes


def default_results() -> Path:
    return Path(os.environ.get("RESULTS", "results")) / time.strftime("chaos-%Y%m%d-%H%M%S")
