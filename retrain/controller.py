"""The retrain controller: decides, by policy, whether a drift event starts a fine-tuning job.

The decision is a pure function of the event, the policy, the controller's state and the time
(:func:`decide`); :class:`Controller` adds the audit trail, persistent state and the job launcher.
Jobs run one at a time in a separate process (:class:`SubprocessLauncher`), so a job that crashes
or is killed by the OOM killer leaves the controller running.

>>> from datetime import datetime, UTC
>>> from retrain.policy import ControllerPolicy, Rule
>>> p = ControllerPolicy(rules=[Rule(scope="score", action="retrain")], min_new_labels=10)
>>> now = datetime(2026, 3, 1, tzinfo=UTC)
>>> decide("score", "high", p, ControllerState(new_labels=50), now).action
'retrain'
>>> decide("score", "high", p, ControllerState(new_labels=5), now).reason
'held: 5 new labels since the last job, policy needs 10'
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from retrain.audit import AuditLog
from retrain.policy import ControllerPolicy
from txmon.contracts import Drift, Label

Outcome = Literal["ignore", "watch", "retrain", "held", "deferred"]


@dataclass(frozen=True)
class Decision:
    action: Outcome
    reason: str


@dataclass
class ControllerState:
    """What the controller must remember across restarts."""

    job_starts: list[datetime] = field(default_factory=list)  # of drift-triggered and manual jobs
    last_drift_job: datetime | None = None
    new_labels: int = 0  # arrived since the last job started
    # A drift-triggered job waiting for labels of the drifted world (policy.labels_after_drift).
    pending: dict[str, Any] | None = None
    pending_labels: int = 0
    pending_positives: int = 0

    def jobs_in_last_day(self, now: datetime) -> int:
        return sum(1 for t in self.job_starts if now - t < timedelta(days=1))

    def to_json(self) -> str:
        d = asdict(self)
        d["job_starts"] = [t.isoformat() for t in self.job_starts]
        d["last_drift_job"] = self.last_drift_job.isoformat() if self.last_drift_job else None
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> ControllerState:
        d = json.loads(text)
        return cls(job_starts=[datetime.fromisoformat(t) for t in d.get("job_starts", [])],
                   last_drift_job=(datetime.fromisoformat(d["last_drift_job"])
                                   if d.get("last_drift_job") else None),
                   new_labels=int(d.get("new_labels", 0)), pending=d.get("pending"),
                   pending_labels=int(d.get("pending_labels", 0)),
                   pending_positives=int(d.get("pending_positives", 0)))


def decide(scope: str, severity: str, policy: ControllerPolicy, state: ControllerState,
           now: datetime, job_running: bool = False) -> Decision:
    """The controller's answer to one drift event; ``held`` means the policy wanted a job but a
    guard (cooldown, daily budget, too few labels, a job already running) stopped it."""
    action = policy.action_for(scope, severity)
    if action != "retrain":
        return Decision(action, f"policy: {scope}/{severity} -> {action}")
    if job_running:
        return Decision("held", "held: a job is already running")
    if state.last_drift_job and now - state.last_drift_job < timedelta(hours=policy.cooldown_hours):
        until = state.last_drift_job + timedelta(hours=policy.cooldown_hours)
        return Decision("held", f"held: cooldown until {until.isoformat()}")
    n = state.jobs_in_last_day(now)
    if n >= policy.max_jobs_per_day:
        return Decision("held", f"held: {n} jobs in the last 24 h, budget {policy.max_jobs_per_day}")
    if state.new_labels < policy.min_new_labels:
        return Decision("held", f"held: {state.new_labels} new labels since the last job, "
                                f"policy needs {policy.min_new_labels}")
    return Decision("retrain", f"policy: {scope}/{severity} -> retrain")


def decide_manual(policy: ControllerPolicy, state: ControllerState, now: datetime,
                  job_running: bool = False) -> Decision:
    """A person asked for a job: cooldown and label minimum do not apply, the daily budget does."""
    if job_running:
        return Decision("held", "held: a job is already running")
    n = state.jobs_in_last_day(now)
    if n >= policy.max_jobs_per_day:
        return Decision("held", f"held: {n} jobs in the last 24 h, budget {policy.max_jobs_per_day}")
    return Decision("retrain", "manual request")


class JobHandle(Protocol):
    def poll(self) -> int | None: ...

    def kill(self) -> None: ...


class Launcher(Protocol):
    def start(self, trigger: dict[str, Any]) -> JobHandle: ...


class SubprocessLauncher:
    """Runs ``python -m retrain.job`` with the trigger in a file; its own process, its own log."""

    def __init__(self, log_dir: Path, extra_args: list[str] | None = None):
        self.log_dir = Path(log_dir)
        self.extra_args = extra_args or []

    def start(self, trigger: dict[str, Any]) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="trigger-", suffix=".json", dir=self.log_dir)
        with os.fdopen(fd, "w") as f:
            json.dump(trigger, f)
        log = open(self.log_dir / f"job-{datetime.now(UTC):%Y%m%dT%H%M%S}.log", "ab")  # noqa: SIM115
        return subprocess.Popen([sys.executable, "-m", "retrain.job", "--trigger", path,
                                 *self.extra_args], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


class Controller:
    """Policy decisions + persistent state + audit + one job at a time."""

    def __init__(self, policy: ControllerPolicy, audit: AuditLog, launcher: Launcher,
                 state_path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.policy, self.audit, self.launcher = policy, audit, launcher
        self.state_path = Path(state_path)
        self.clock = clock
        self.state = (ControllerState.from_json(self.state_path.read_text())
                      if self.state_path.exists() else ControllerState())
        self.job: JobHandle | None = None
        self.job_id: str | None = None
        self.job_started: datetime | None = None

    def save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(self.state.to_json())
        tmp.replace(self.state_path)

    @property
    def job_running(self) -> bool:
        return self.job is not None and self.job.poll() is None

    def on_label(self, label: Label) -> None:
        self.state.new_labels += 1
        if self.state.pending is None:
            return
        self.state.pending_labels += 1
        self.state.pending_positives += int(label.positive)
        if (self.state.pending_labels >= self.policy.labels_after_drift
                and self.state.pending_positives >= self.policy.positives_after_drift
                and not self.job_running):
            trigger = self.state.pending | {"labels_after_drift": self.state.pending_labels,
                                            "positives_after_drift": self.state.pending_positives}
            self.state.pending, self.state.pending_labels, self.state.pending_positives = None, 0, 0
            self.audit.append("decision", actor="controller", action="retrain",
                              reason=f"{trigger['labels_after_drift']} labels "
                                     f"({trigger['positives_after_drift']} positive) arrived after "
                                     "the drift", trigger=trigger)
            self._start(trigger, self.clock(), drift=True)

    def _merge_from_disk(self) -> None:
        """Another process (``txmon retrain``) may have started a job: take its starts into account."""
        if self.state_path.exists():
            disk = ControllerState.from_json(self.state_path.read_text())
            self.state.job_starts = sorted(set(self.state.job_starts) | set(disk.job_starts))
            if disk.last_drift_job and (self.state.last_drift_job is None
                                        or disk.last_drift_job > self.state.last_drift_job):
                self.state.last_drift_job = disk.last_drift_job

    def on_drift(self, event: Drift) -> Decision:
        self._merge_from_disk()
        now = self.clock()
        decision = decide(event.scope, event.severity, self.policy, self.state, now, self.job_running)
        trigger = {"kind": "drift", "detector": event.detector, "scope": event.scope,
                   "severity": event.severity, "statistic": event.statistic,
                   "threshold": event.threshold, "detected_at": event.detected_at.isoformat(),
                   "champion_version": event.champion_version,
                   "evidence": [e.feature for e in event.evidence][:20]}
        deferred = decision.action == "retrain" and (self.policy.labels_after_drift > 0
                                                     or self.policy.positives_after_drift > 0)
        if deferred and self.state.pending is not None:
            decision = Decision("held", "held: a drift-triggered job is already waiting for labels")
        elif deferred:
            decision = Decision("deferred", f"deferred until {self.policy.labels_after_drift} labels "
                                            f"({self.policy.positives_after_drift} positive) "
                                            "have arrived after the drift")
        self.audit.append("decision", actor="controller", action=decision.action,
                          reason=decision.reason, trigger=trigger)
        if decision.action == "deferred":
            self.state.pending, self.state.pending_labels, self.state.pending_positives = trigger, 0, 0
            # Counts as the drift job for the cooldown, so a lasting drift queues nothing more.
            self.state.last_drift_job = now
        elif decision.action == "retrain":
            self._start(trigger, now, drift=True)
        self.save()
        return decision

    def on_manual(self, reason: str, requested_by: str) -> Decision:
        self._merge_from_disk()
        now = self.clock()
        decision = decide_manual(self.policy, self.state, now, self.job_running)
        trigger = {"kind": "manual", "reason": reason, "requested_by": requested_by}
        self.audit.append("decision", actor=requested_by, action=decision.action,
                          reason=decision.reason, trigger=trigger)
        if decision.action == "retrain":
            self._start(trigger, now, drift=False)
        self.save()
        return decision

    def _start(self, trigger: dict[str, Any], now: datetime, drift: bool) -> None:
        job_id = f"job-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        trigger = trigger | {"job_id": job_id, "started_at": now.isoformat()}
        self.audit.append("trigger", actor="controller", job_id=job_id, trigger=trigger)
        self.job = self.launcher.start(trigger)
        self.job_id, self.job_started = job_id, now
        self.state.job_starts = [t for t in self.state.job_starts if now - t < timedelta(days=2)]
        self.state.job_starts.append(now)
        if drift:
            self.state.last_drift_job = now
        self.state.new_labels = 0

    def tick(self) -> int | None:
        """Reap a finished job (returns its exit code once, when it ends); kill one that has run
        longer than the policy allows, so a hung job cannot block every later one."""
        if self.job is None:
            return None
        code = self.job.poll()
        limit = timedelta(minutes=self.policy.max_job_minutes)
        if code is None and self.job_started and self.clock() - self.job_started > limit:
            self.job.kill()
            self.audit.append("job", actor="controller", job_id=self.job_id, exit_code=None,
                              outcome="timed_out", limit_minutes=self.policy.max_job_minutes)
            self.job = None
            return -1
        if code is not None:
            self.audit.append("job", actor="controller", job_id=self.job_id, exit_code=code,
                              outcome="finished" if code == 0 else "failed")
            self.job = None
        return code
