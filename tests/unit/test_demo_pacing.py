"""The demo's traffic pauses while the retrain job trains, and resumes when its candidate is out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from txmon.contracts import ModelEvent
from txmon.demo.collector import Tally
from txmon.demo.run import Demo
from txmon.demo.scenario import DemoPlan


def _event(kind: str, version: str) -> ModelEvent:
    return ModelEvent(event=kind, version=version, artifact_sha256="0" * 64,
                      created_at=datetime(2026, 3, 1, tzinfo=UTC))


def _audit(home: Path, *entries: dict) -> None:
    (home / "audit").mkdir(parents=True, exist_ok=True)
    with (home / "audit" / "audit.jsonl").open("a") as f:
        for e in entries:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")


def test_traffic_holds_from_the_trigger_until_the_candidate_is_out(tmp_path: Path) -> None:
    demo = Demo(DemoPlan.quick(), tmp_path, tmp_path / "report", 9092, Console(quiet=True))
    tally = Tally()
    demo.collector = SimpleNamespace(snapshot=lambda: tally)
    demo.observe_job()
    assert not demo.holding()  # no audit log yet
    _audit(tmp_path, {"kind": "decision", "details": {"action": "deferred"}})
    demo.observe_job()
    assert not demo.holding()  # waiting for labels: traffic must flow to bring them
    _audit(tmp_path, {"kind": "trigger", "details": {"job_id": "j1"}})
    demo.observe_job()
    assert demo.holding()  # the job process is starting: its snapshot is the traffic so far
    _audit(tmp_path, {"kind": "job", "details": {"outcome": "started"}})
    demo.observe_job()
    assert demo.holding()
    tally.models.append(_event("candidate", "m2"))
    demo.observe_job()
    assert demo.holding()  # registered, not yet judged by the gates
    tally.models.append(_event("validated", "m2"))
    demo.observe_job()
    assert not demo.holding()


def test_traffic_resumes_when_a_triggered_job_fails_before_it_starts(tmp_path: Path) -> None:
    demo = Demo(DemoPlan.quick(), tmp_path, tmp_path / "report", 9092, Console(quiet=True))
    demo.collector = SimpleNamespace(snapshot=lambda: Tally())
    _audit(tmp_path, {"kind": "trigger", "details": {"job_id": "j1"}},
           {"kind": "job", "details": {"outcome": "failed", "exit_code": 1}})
    demo.observe_job()
    assert not demo.holding()


def test_traffic_resumes_when_the_job_ends_without_a_candidate(tmp_path: Path) -> None:
    demo = Demo(DemoPlan.quick(), tmp_path, tmp_path / "report", 9092, Console(quiet=True))
    demo.collector = SimpleNamespace(snapshot=lambda: Tally())
    _audit(tmp_path, {"kind": "job", "details": {"outcome": "started"}})
    demo.observe_job()
    assert demo.holding()
    _audit(tmp_path, {"kind": "job", "details": {"outcome": "snapshot_rejected"}})
    demo.observe_job()
    assert not demo.holding()


def test_a_detection_before_the_onset_is_flagged_as_a_false_alarm() -> None:
    import pandas as pd

    from txmon.contracts import Drift
    from txmon.demo.report import DemoRecord
    from txmon.demo.run import _detection_figures, _judge

    onset = pd.Timestamp("2026-03-10", tz="UTC")

    def drift(at: str) -> Drift:
        return Drift.model_validate({
            "detector": "cvm.binary", "scope": "feature", "statistic": 2.0, "threshold": 1.0,
            "detected_at": at, "window": {"events": 100}, "champion_version": "v1"})

    fig = _detection_figures([drift("2026-03-05T00:00:00Z"), drift("2026-03-10T12:00:00Z")], onset)
    assert fig["detections_before_onset"] == 1
    assert fig["first_detection_hours_after_onset"] == 12.0
    rec = DemoRecord(stages=[], figures={**fig, "precision_at_budget_during_drift": 0.4,
                                         "precision_at_budget_after_promotion": 0.6,
                                         "duplicates": 0, "daily_alert_budget": 20,
                                         "same_events": _better_candidate()})
    ok, verdict = _judge(rec, None)
    assert ok and "before the true onset" in verdict and "cvm.binary" in verdict
    rec.figures.update(_detection_figures([drift("2026-03-11T00:00:00Z")], onset))
    assert "before the true onset" not in _judge(rec, None)[1]


def _better_candidate() -> dict:
    import numpy as np
    import pandas as pd

    from txmon.demo.sameevents import same_events

    rng = np.random.default_rng(0)
    y = rng.random(3000) < 0.03
    pairs = pd.DataFrame({"event_time": pd.Timestamp("2026-03-12", tz="UTC")
                          + pd.to_timedelta(np.arange(3000) * 60, unit="s"),
                          "champion": rng.random(3000), "candidate": y + rng.random(3000),
                          "positive": y})
    return same_events(pairs, per_day=20, bootstraps=200)
