from datetime import UTC, datetime, timedelta

import pytest

from streams.config import PolicyConfig
from streams.policy import AlertPolicy


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def test_threshold_mode_alerts_at_and_above_threshold_only():
    p = AlertPolicy(PolicyConfig(threshold=0.8))
    s = p.new_state()
    assert not p.decide(0.7999, at(9), s).alert
    assert p.decide(0.8, at(9), s).alert
    assert p.decide(0.95, at(9), s).threshold == 0.8


@pytest.mark.parametrize(("score", "severity"), [(0.5, "low"), (0.85, "medium"), (0.92, "high"),
                                                 (0.97, "critical"), (1.0, "critical")])
def test_severity_bands(score, severity):
    assert AlertPolicy(PolicyConfig()).severity(score) == severity


def test_budget_is_paced_through_the_day_and_never_exceeded():
    cfg = PolicyConfig(mode="budget", threshold=0.5, daily_budget=48, burst=0, critical=1.0)
    p = AlertPolicy(cfg, partitions=2)  # 24 per partition, one per hour of the day
    s = p.new_state()
    alerts = 0
    t = at(0, 30)
    while t.day == 1:
        alerts += p.decide(0.9, t, s).alert
        if (t.hour, t.minute) == (5, 55):
            assert alerts == 6  # by 05:xx only the first six hours' share
        t += timedelta(minutes=5)
    assert alerts == 24


def test_budget_resets_on_a_new_day_and_late_events_count_against_today():
    p = AlertPolicy(PolicyConfig(mode="budget", threshold=0.5, daily_budget=2, burst=2, critical=1.0))
    s = p.new_state()
    assert [p.decide(0.9, at(1), s).alert for _ in range(3)] == [True, True, False]
    assert p.decide(0.9, at(1, day=2), s).alert
    assert s == {"day": "2026-01-02", "used": 1}
    assert p.decide(0.9, at(23, day=1), s).alert  # yesterday's straggler uses today's budget
    assert s["used"] == 2


def test_critical_bypasses_an_exhausted_budget_unless_configured_not_to():
    for bypass, expected in ((True, True), (False, False)):
        p = AlertPolicy(PolicyConfig(mode="budget", threshold=0.5, daily_budget=1, burst=0,
                                     critical_bypasses_budget=bypass))
        s = p.new_state()
        assert p.decide(0.9, at(23), s).alert
        assert p.decide(0.99, at(23), s).alert is expected


def test_below_threshold_never_alerts_even_with_budget_left():
    p = AlertPolicy(PolicyConfig(mode="budget", threshold=0.6, daily_budget=100))
    s = p.new_state()
    assert not p.decide(0.59, at(12), s).alert
    assert s["used"] == 0
