"""The demo's world is fixed: any date gives the same world, moved by whole weeks to end near it."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
from pandas.testing import assert_frame_equal

from txmon.demo.scenario import ANCHOR, LABEL_DAYS_MAX, DemoPlan, simulate_world, split


def _midnight(d: date) -> pd.Timestamp:
    return pd.Timestamp(datetime(d.year, d.month, d.day), tz="UTC")


def test_two_dates_give_the_same_world_up_to_a_whole_week_shift() -> None:
    days = [date(2026, 11, 24), date(2027, 3, 3)]  # different weekdays, months, a year apart
    plans = [DemoPlan.quick(accounts=100, today=d) for d in days]
    worlds = [simulate_world(p) for p in plans]
    a, b = worlds
    delta = b.shift - a.shift
    assert delta > timedelta(0) and delta.days % 7 == 0 and delta.seconds == 0
    assert a.config == b.config  # both simulated at the anchor
    moved = b.frame.copy()
    for col in ("event_time", "label_time"):
        moved[col] = moved[col] - pd.Timedelta(delta)
    assert_frame_equal(moved, a.frame)
    assert b.incidents["start"].tolist() == [t + delta for t in a.incidents["start"]]
    pa, pb = plans
    for attr in ("start", "live_start", "drift_start"):
        assert getattr(pb, attr) - getattr(pa, attr) == delta
    assert [d["start"] for d in b.drift_truth] == [d["start"] + delta for d in a.drift_truth]
    # The split (history / warm-up / live) picks the same transactions on both dates.
    for part_a, part_b in zip(split(a.frame, pa), split(b.frame, pb), strict=True):
        assert part_a["tx_id"].tolist() == part_b["tx_id"].tolist()


def test_the_world_ends_in_the_past_within_a_week_of_the_plan() -> None:
    for d in (date(2026, 11, 24), date(2026, 11, 29), date(2027, 1, 1)):
        plan = DemoPlan.quick(accounts=100, today=d)
        world = simulate_world(plan)
        assert plan.start.weekday() == ANCHOR.weekday() == 0
        # The drift truth, the plan's onset and the data agree.
        assert world.drift_truth[0]["start"] == plan.drift_start
        after = world.frame[world.frame["event_time"] >= pd.Timestamp(plan.drift_start)]
        assert (after["scenario"] == "account_takeover").any()
        assert not (world.frame.loc[world.frame["event_time"] < pd.Timestamp(plan.drift_start),
                                    "scenario"] == "account_takeover").any()
        # Everything, late labels included, lies before the day: Kafka refuses future timestamps.
        latest = max(world.frame["event_time"].max(), world.frame["label_time"].max())
        today = _midnight(d)
        assert latest < today
        # ... and the world ends at most a week earlier than it would with no shift.
        natural_end = today - pd.Timedelta(days=LABEL_DAYS_MAX + 2)
        end = pd.Timestamp(plan.start) + pd.Timedelta(days=plan.history_days + plan.live_days)
        assert natural_end - pd.Timedelta(days=7) < end <= natural_end
