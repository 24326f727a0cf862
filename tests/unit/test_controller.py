"""The controller: policy actions, cooldown, daily budget, label minimum, one job at a time,
state surviving a restart, and a crashing job process that leaves the controller running."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retrain.audit import AuditLog, verify
from retrain.controller import Controller
from retrain.policy import ControllerPolicy, Rule
from txmon.contracts import Drift, Label, Window

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
POLICY = ControllerPolicy(
    rules=[Rule(scope="performance", action="retrain"),
           Rule(scope="feature", severity=["critical"], action="retrain"),
           Rule(scope="*", severity=["low"], action="ignore")],
    default_action="watch", cooldown_hours=6, max_jobs_per_day=2, min_new_labels=3)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeJob:
    def __init__(self) -> None:
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code

    def kill(self) -> None:
        self.code = -9


class FakeLauncher:
    def __init__(self) -> None:
        self.started: list[dict] = []
        self.jobs: list[FakeJob] = []

    def start(self, trigger: dict) -> FakeJob:
        self.started.append(trigger)
        self.jobs.append(FakeJob())
        return self.jobs[-1]


def drift(scope: str = "performance", severity: str = "high") -> Drift:
    return Drift(detector="adwin", scope=scope, statistic=0.3, threshold=0.1, detected_at=T0,
                 window=Window(events=500), champion_version="1", severity=severity)


def label(i: int, value: str = "fraud") -> Label:
    return Label(tx_id=f"t{i}", account_id="a", label=value, label_time=T0)


@pytest.fixture
def setup(tmp_path: Path):
    clock, launcher = Clock(), FakeLauncher()
    ctl = Controller(POLICY, AuditLog(tmp_path / "audit.jsonl"), launcher,
                     tmp_path / "state.json", clock=clock)
    return ctl, clock, launcher, tmp_path


def feed_labels(ctl: Controller, n: int, value: str = "fraud") -> None:
    for i in range(n):
        ctl.on_label(label(i, value))


def test_policy_actions_by_scope_and_severity(setup) -> None:
    ctl, _, launcher, _ = setup
    feed_labels(ctl, 10)
    assert ctl.on_drift(drift("feature", "low")).action == "ignore"
    assert ctl.on_drift(drift("feature", "high")).action == "watch"
    assert launcher.started == []
    assert ctl.on_drift(drift("feature", "critical")).action == "retrain"
    assert launcher.started[0]["scope"] == "feature"


def test_min_new_labels_holds_then_allows(setup) -> None:
    ctl, _, launcher, _ = setup
    feed_labels(ctl, 2)
    d = ctl.on_drift(drift())
    assert d.action == "held" and "labels" in d.reason
    feed_labels(ctl, 1)
    assert ctl.on_drift(drift()).action == "retrain" and len(launcher.started) == 1


def test_one_job_at_a_time_then_cooldown_then_budget(setup) -> None:
    ctl, clock, launcher, _ = setup
    feed_labels(ctl, 5)
    assert ctl.on_drift(drift()).action == "retrain"
    feed_labels(ctl, 5)
    assert "already running" in ctl.on_drift(drift()).reason
    launcher.jobs[-1].code = 0
    assert ctl.tick() == 0 and ctl.tick() is None
    clock.now = T0 + timedelta(hours=5)
    assert "cooldown" in ctl.on_drift(drift()).reason
    clock.now = T0 + timedelta(hours=7)
    assert ctl.on_drift(drift()).action == "retrain"
    launcher.jobs[-1].code = 0
    ctl.tick()
    clock.now = T0 + timedelta(hours=14)
    feed_labels(ctl, 5)
    d = ctl.on_drift(drift())
    assert d.action == "held" and "budget" in d.reason
    clock.now = T0 + timedelta(hours=24, minutes=1)
    assert ctl.on_drift(drift()).action == "retrain"
    assert len(launcher.started) == 3


def test_manual_request_skips_cooldown_but_not_budget(setup) -> None:
    ctl, clock, launcher, _ = setup
    feed_labels(ctl, 5)
    ctl.on_drift(drift())
    launcher.jobs[-1].code = 0
    ctl.tick()
    clock.now = T0 + timedelta(minutes=10)
    assert ctl.on_manual("analyst saw new mule pattern", "alice").action == "retrain"
    launcher.jobs[-1].code = 0
    ctl.tick()
    assert "budget" in ctl.on_manual("again", "alice").reason


def test_state_survives_restart_and_everything_is_audited(setup) -> None:
    ctl, clock, launcher, tmp = setup
    feed_labels(ctl, 5)
    ctl.on_drift(drift())
    again = Controller(POLICY, ctl.audit, launcher, tmp / "state.json", clock=clock)
    clock.now = T0 + timedelta(hours=1)
    feed_labels(again, 5)
    assert "cooldown" in again.on_drift(drift()).reason
    kinds = [e["kind"] for e in ctl.audit.entries()]
    assert kinds == ["decision", "trigger", "decision"]
    assert verify(ctl.audit.path).ok


class ProcessLauncher:
    """Starts a real child process that crashes, as a broken job would."""

    def start(self, trigger: dict) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", "import os; os._exit(3)"])


def test_a_crashing_job_process_does_not_stop_the_controller(tmp_path: Path) -> None:
    clock = Clock()
    ctl = Controller(POLICY.model_copy(update={"cooldown_hours": 0}), AuditLog(tmp_path / "a.jsonl"),
                     ProcessLauncher(), tmp_path / "s.json", clock=clock)
    feed_labels(ctl, 5)
    assert ctl.on_drift(drift()).action == "retrain"
    ctl.job.wait(timeout=30)
    assert ctl.tick() == 3
    last = list(ctl.audit.entries())[-1]
    assert last["kind"] == "job" and last["details"]["outcome"] == "failed"
    feed_labels(ctl, 5)
    assert ctl.on_drift(drift()).action == "retrain"


def test_job_lock_allows_one_job_at_a_time_across_holders(tmp_path: Path) -> None:
    from retrain.job import Paths, job_lock

    paths = Paths(tmp_path)
    with job_lock(paths) as first:
        assert first
        # A second process (here: a second open file description) is refused while the first runs.
        with job_lock(paths) as second:
            assert not second
    with job_lock(paths) as again:
        assert again


def test_a_hung_job_is_killed_after_the_policy_limit(setup) -> None:
    ctl, clock, launcher, _ = setup
    feed_labels(ctl, 5)
    ctl.on_drift(drift())
    clock.now = T0 + timedelta(minutes=POLICY.max_job_minutes - 1)
    assert ctl.tick() is None and ctl.job_running
    clock.now = T0 + timedelta(minutes=POLICY.max_job_minutes + 1)
    assert ctl.tick() == -1 and launcher.jobs[-1].code == -9 and not ctl.job_running
    last = list(ctl.audit.entries())[-1]["details"]
    assert last["outcome"] == "timed_out"


def test_drift_job_waits_for_labels_of_the_drifted_world_and_survives_restart(tmp_path: Path) -> None:
    policy = POLICY.model_copy(update={"labels_after_drift": 5})
    clock, launcher = Clock(), FakeLauncher()
    ctl = Controller(policy, AuditLog(tmp_path / "audit.jsonl"), launcher, tmp_path / "s.json",
                     clock=clock)
    feed_labels(ctl, 10)
    assert ctl.on_drift(drift()).action == "deferred"
    assert ctl.on_drift(drift()).action == "held" and launcher.started == []
    feed_labels(ctl, 3)
    ctl.save()  # as the service does after each consumed batch
    # A restart keeps the pending job and how many labels it has seen.
    ctl = Controller(policy, AuditLog(tmp_path / "audit.jsonl"), launcher, tmp_path / "s.json",
                     clock=clock)
    feed_labels(ctl, 1)
    assert launcher.started == []
    feed_labels(ctl, 1)
    assert len(launcher.started) == 1
    assert launcher.started[0]["labels_after_drift"] == 5 and launcher.started[0]["kind"] == "drift"
    feed_labels(ctl, 20)
    assert len(launcher.started) == 1, "one drift, one job"
    assert verify(tmp_path / "audit.jsonl").ok
    log = AuditLog(tmp_path / "audit.jsonl")
    actions = [e["details"]["action"] for e in log.entries() if e["kind"] == "decision"]
    assert actions == ["deferred", "held", "retrain"]


def test_drift_job_also_waits_for_positive_labels(tmp_path: Path) -> None:
    policy = POLICY.model_copy(update={"labels_after_drift": 5, "positives_after_drift": 2})
    clock, launcher = Clock(), FakeLauncher()
    ctl = Controller(policy, AuditLog(tmp_path / "audit.jsonl"), launcher, tmp_path / "s.json",
                     clock=clock)
    feed_labels(ctl, 10, "legit")
    assert ctl.on_drift(drift()).action == "deferred"
    feed_labels(ctl, 10, "legit")  # enough labels after the drift, no positive
    assert launcher.started == []
    feed_labels(ctl, 1, "fraud")
    ctl.save()
    ctl = Controller(policy, AuditLog(tmp_path / "audit.jsonl"), launcher, tmp_path / "s.json",
                     clock=clock)  # the positives counted so far survive a restart
    assert launcher.started == []
    feed_labels(ctl, 1, "sar")
    assert len(launcher.started) == 1
    assert launcher.started[0]["positives_after_drift"] == 2
