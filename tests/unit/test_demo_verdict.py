"""The demo's verdict judges the candidate against the champion on the same shadow events, not
precision before and after the swap, which is measured on different traffic."""

from __future__ import annotations

import numpy as np
import pandas as pd

from txmon.demo.report import DemoRecord
from txmon.demo.run import _judge
from txmon.demo.sameevents import same_events


def _pairs(candidate_skill: float, champion_skill: float, n: int = 4000,
           seed: int = 1) -> pd.DataFrame:
    """Scores that separate the positives by ``skill`` (0: noise), over three simulated days."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.03
    return pd.DataFrame({
        "event_time": pd.Timestamp("2026-03-12", tz="UTC")
        + pd.to_timedelta(np.arange(n) * (3 * 86400 // n), unit="s"),
        "champion": champion_skill * y + rng.random(n),
        "candidate": candidate_skill * y + rng.random(n), "positive": y})


def _record(same: dict, during: float = 0.4, after: float = 0.6) -> DemoRecord:
    return DemoRecord(stages=[], figures={
        "precision_at_budget_during_drift": during, "precision_at_budget_after_promotion": after,
        "duplicates": 0, "daily_alert_budget": 20, "detections_before_onset": 0,
        "same_events": same})


def test_a_better_candidate_on_the_same_events_passes() -> None:
    same = same_events(_pairs(1.5, 0.3), per_day=20, bootstraps=300)
    assert same["events"] == 4000 and same["days"] == 3
    assert same["candidate_ap"] > same["champion_ap"] and same["ap_gap_low"] > 0
    assert same["candidate_precision_at_budget"] > same["champion_precision_at_budget"]
    ok, verdict = _judge(_record(same), None)
    assert ok, verdict
    assert "on the same 4,000 shadow events" in verdict


def test_a_candidate_no_better_on_the_same_events_fails_even_when_precision_rose() -> None:
    # The same scores for both models: precision after > during came from the traffic, not it.
    p = _pairs(0.8, 0.0)
    p["candidate"] = p["champion"]
    ok, verdict = _judge(_record(same_events(p, per_day=20, bootstraps=300)), None)
    assert not ok and "not shown better" in verdict
    worse = same_events(_pairs(0.2, 1.5), per_day=20, bootstraps=300)
    assert worse["ap_gap_high"] < 0
    ok, verdict = _judge(_record(worse), None)
    assert not ok and "not shown better" in verdict


def test_no_paired_events_fails_and_precision_on_other_traffic_is_reported_not_judged() -> None:
    empty = same_events(_pairs(1.5, 0.3).iloc[:0], per_day=20, bootstraps=10)
    assert not _judge(_record(empty), None)[0]
    better = same_events(_pairs(1.5, 0.3), per_day=20, bootstraps=300)
    ok, verdict = _judge(_record(better, during=0.6, after=0.5), None)
    assert ok and "0.600 during the drift, 0.500 after the promotion" in verdict
