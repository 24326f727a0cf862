"""Drift schedules: measurable change after the start, nothing before it."""

from __future__ import annotations

import importlib.resources
from datetime import timedelta

import pandas as pd
import pytest

from txmon.sim import DriftEvent, SimConfig, load_drift_schedule, simulate

BASE = {"accounts": 2500, "days": 30, "seed": 9}


@pytest.fixture(scope="module")
def baseline():
    return simulate(SimConfig(**BASE))


def _before_after(frame: pd.DataFrame, start) -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame[frame["event_time"] < start], frame[frame["event_time"] >= start]


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


@pytest.mark.parametrize("event", [
    DriftEvent(kind="fraud_pattern", start="12d", scenario="account_takeover", rate=60, channel="wallet",
               country="RO"),
    DriftEvent(kind="channel_mix", start="12d", channel="ecommerce", share=0.4),
    DriftEvent(kind="merchant_mix", start="12d", mccs=("7995", "6051"), share=0.2),
    DriftEvent(kind="amount_inflation", start="12d", factor=1.3),
    DriftEvent(kind="new_region", start="12d", country="LT", share=0.1),
], ids=lambda e: e.kind)
def test_drift_changes_after_start_and_not_before(baseline, event):
    r = simulate(SimConfig(**BASE, drift=(event,)))
    start = r.drift_truth[0]["start"]
    assert start == r.config.start + timedelta(days=12)
    before, after = _before_after(r.frame, start)
    base_before, base_after = _before_after(baseline.frame, start)
    _same(before, base_before)  # byte-for-byte the same world up to the start

    card = ["card_present", "card_not_present"]
    if event.kind == "fraud_pattern":
        ato = after[after["scenario"] == "account_takeover"]
        base_ato = base_after[base_after["scenario"] == "account_takeover"]
        assert len(ato) > 3 * len(base_ato)
        assert (ato["channel"] == "wallet").all() and (ato["country"] == "RO").all()
    elif event.kind == "channel_mix":
        share = (after.loc[after["tx_type"].isin(card), "channel"] == "ecommerce").mean()
        base_share = (base_after.loc[base_after["tx_type"].isin(card), "channel"] == "ecommerce").mean()
        assert share - base_share > 0.25
    elif event.kind == "merchant_mix":
        moved = ["7995", "6051"]
        assert after["mcc"].isin(moved).mean() > base_after["mcc"].isin(moved).mean() + 0.1
    elif event.kind == "amount_inflation":
        normal = after["scenario"] == "normal"
        ratio = after.loc[normal, "amount"].median() / base_after.loc[
            base_after["scenario"] == "normal", "amount"].median()
        assert ratio == pytest.approx(1.3, rel=0.02)
    elif event.kind == "new_region":
        assert (before["country"] != "LT").all()
        assert (after.loc[after["tx_type"].isin(card), "country"] == "LT").mean() > 0.07


def test_drift_window_ends(baseline):
    event = DriftEvent(kind="amount_inflation", start="10d", end="15d", factor=2.0)
    r = simulate(SimConfig(**BASE, drift=(event,)))
    end = r.config.start + timedelta(days=15)
    _same(r.frame[r.frame["event_time"] >= end].drop(columns=["label", "label_time"]),
          baseline.frame[baseline.frame["event_time"] >= end].drop(columns=["label", "label_time"]))


def test_new_scenario_appears_only_after_its_start():
    rates = SimConfig().rates | {"card_testing": 0.0}
    event = DriftEvent(kind="fraud_pattern", start="2026-01-20T00:00:00Z", scenario="card_testing", rate=30)
    r = simulate(SimConfig(**BASE, rates=rates, drift=(event,)))
    t = r.frame.loc[r.frame["scenario"] == "card_testing", "event_time"]
    assert len(t) > 0 and t.min() >= pd.Timestamp("2026-01-20T00:00:00Z")


def test_example_schedule_loads_and_is_documented():
    path = importlib.resources.files("txmon.sim") / "drift_example.yaml"
    events = load_drift_schedule(path)
    assert {e.kind for e in events} >= {"fraud_pattern", "channel_mix", "amount_inflation", "new_region"}
    assert "kinds and their parameters" in path.read_text()


def test_bad_schedules_are_refused(tmp_path):
    with pytest.raises(ValueError, match="needs factor"):
        DriftEvent(kind="amount_inflation", start="1d")
    with pytest.raises(ValueError, match="unknown scenario"):
        DriftEvent(kind="fraud_pattern", start="1d", scenario="nope", rate=1)
    p = tmp_path / "d.json"
    p.write_text('[{"kind": "channel_mix", "start": "2026-01-10T00:00:00", "channel": "pos", "share": 0.1}]')
    with pytest.raises(ValueError, match="timezone"):
        load_drift_schedule(p)[0].resolve_start(SimConfig().start)
