"""The simulator: rates, determinism, labels, both sides of transfers, realism."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from txmon.frames import COLUMNS, both_sides, to_transaction
from txmon.sim import SCENARIOS, LabelConfig, SimConfig, simulate
from txmon.sim.output import truth_path, write


@pytest.fixture(scope="module")
def big():
    return simulate(SimConfig(accounts=4000, days=30, seed=11))


def test_incidents_per_scenario_match_configured_rates(big):
    counts = big.incidents["scenario"].value_counts()
    for scenario in SCENARIOS:
        expected = big.config.expected_incidents(scenario)
        observed = counts.get(scenario, 0)
        # Poisson: within 4 standard deviations.
        assert abs(observed - expected) <= 4 * np.sqrt(expected) + 1, (scenario, observed, expected)


def test_rows_of_each_scenario_are_its_incidents_rows(big):
    rows = big.frame["scenario"].value_counts()
    produced = big.incidents.groupby("scenario")["rows"].sum()
    for scenario in SCENARIOS:
        assert rows.get(scenario, 0) == produced.get(scenario, 0)


def test_rates_follow_the_configuration_when_changed():
    doubled = {s: 2 * r for s, r in SimConfig().rates.items()} | {"high_value": 0.0}
    r = simulate(SimConfig(accounts=4000, days=30, seed=11, rates=doubled))
    counts = r.incidents["scenario"].value_counts()
    assert counts.get("high_value", 0) == 0
    expected = r.config.expected_incidents("card_testing")
    assert abs(counts["card_testing"] - expected) <= 4 * np.sqrt(expected)


def test_fraud_is_a_realistic_share_of_card_rows(big):
    f = big.frame
    card = f["tx_type"].isin(["card_present", "card_not_present"])
    fraud = (f["label"] == "fraud") | (f["scenario"].isin(["card_testing", "compromised_terminal",
                                                           "account_takeover", "high_value"]))
    share = (fraud & card).sum() / card.sum()
    assert 0.002 <= share <= 0.01
    aml = f["scenario"].isin(["structuring", "fan_in", "fan_out", "rapid_pass_through", "round_tripping"])
    assert 0 < aml.mean() < 0.01


def test_no_single_field_gives_fraud_away(big):
    """Legitimate look-alikes: travel abroad, big purchases, new devices."""
    f = big.frame
    card = f[f["tx_type"].isin(["card_present", "card_not_present"])]
    fraud = card["scenario"] != "normal"
    abroad = card["country"] != big.config.home_country
    assert fraud[abroad].mean() < 0.1  # most foreign card use is travel and online shopping
    median = card.groupby("account_id")["amount"].transform("median")
    large = card["amount"] > 10 * median
    assert large.sum() > 0 and fraud[large].mean() < 0.6  # big purchases are often genuine
    first_use = ~card.duplicated(["account_id", "device_id"]) & card["device_id"].notna()
    assert fraud[first_use].mean() < 0.5


def test_frame_shape_and_contract(big):
    f = big.frame
    assert list(f.columns) == list(COLUMNS)
    assert f["event_time"].is_monotonic_increasing
    assert f["tx_id"].is_unique
    assert set(f["segment"]) == {"retail", "small_business", "high_value"}
    assert set(f["direction"]) == {"debit", "credit"}
    assert {"card_present", "card_not_present", "atm_withdrawal", "transfer", "cash_deposit",
            "salary"} <= set(f["tx_type"])
    card = f["tx_type"].isin(["card_present", "card_not_present"])
    assert f.loc[card, "mcc"].notna().all()
    online = f["channel"].isin(["ecommerce", "mobile", "web"])
    assert f.loc[online, "device_id"].notna().all()
    for row in f.sample(300, random_state=0).to_dict("records"):
        to_transaction(row)  # every row meets the Transaction contract


def test_same_seed_same_bytes(tmp_path):
    cfg = SimConfig(accounts=300, days=7, seed=5)
    for ext in ("parquet", "csv"):
        a, b = tmp_path / f"a.{ext}", tmp_path / f"b.{ext}"
        write(simulate(cfg), a)
        write(simulate(cfg), b)
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
        assert truth_path(a).read_text() == truth_path(b).read_text()
    c = tmp_path / "c.parquet"
    write(simulate(cfg.model_copy(update={"seed": 6})), c)
    assert c.read_bytes() != (tmp_path / "a.parquet").read_bytes()


def test_label_delays_within_configured_ranges():
    labels = LabelConfig(unlabelled_share=0.3, chargeback_days=(5, 9), legit_days=(1, 2),
                         aml_days=(40, 50), investigated_share=0.1)
    r = simulate(SimConfig(accounts=1500, days=20, seed=2, labels=labels))
    f = r.frame
    delay = (f["label_time"] - f["event_time"]).dt.total_seconds() / 86400
    for label, (lo, hi) in {"fraud": (5, 9), "legit": (1, 2), "sar": (40, 50), "cleared": (40, 50)}.items():
        d = delay[f["label"] == label]
        assert len(d) > 0, label
        assert d.min() >= lo and d.max() <= hi, label
    assert abs(f["label"].isna().mean() - 0.3) < 0.02
    assert f.loc[f["label"].isna(), "label_time"].isna().all()
    assert (f.loc[f["scenario"] != "normal", "label"].dropna().isin(["fraud", "sar"])).all()
    assert (f.loc[f["scenario"] == "normal", "label"].dropna().isin(["legit", "cleared"])).all()


def test_both_sides_of_a_transfer_see_it(big):
    f = big.frame
    accounts = set(f["account_id"])
    internal = f[f["counterparty_id"].isin(accounts) & (f["direction"] == "debit")]
    assert len(internal) > 100
    assert (internal["scenario"] == "round_tripping").any()
    view = both_sides(f)
    credit = view[view["direction"] == "credit"].set_index("tx_id")
    sides = credit.loc[internal["tx_id"]]
    assert (sides["account_id"].to_numpy() == internal["counterparty_id"].to_numpy()).all()
    assert (sides["counterparty_id"].to_numpy() == internal["account_id"].to_numpy()).all()
    ring = f[f["scenario"] == "round_tripping"]
    members = set(ring["account_id"])
    ring_view = view[view["tx_id"].isin(ring["tx_id"])]
    both = [a for a in members
            if set(ring_view.loc[ring_view["account_id"] == a, "direction"]) == {"debit", "credit"}]
    # Ring members pay and receive (except where the run ends mid-ring).
    assert len(both) >= 0.5 * len(members)


def test_card_testing_is_small_charges_then_big_ones(big):
    f = big.frame[big.frame["scenario"] == "card_testing"]
    inc = f.merge(big.incidents[["account_id"]].drop_duplicates(), on="account_id")
    for _, g in inc.groupby("account_id"):
        g = g.sort_values("event_time")
        assert g["amount"].iloc[0] < 3.01
        assert g["amount"].max() > 10 * g["amount"].iloc[0]
        break
    assert (f["amount"] < 3.01).mean() > 0.5


def test_aml_structuring_stays_under_threshold(big):
    f = big.frame
    deposits = f[(f["scenario"] == "structuring") & (f["tx_type"] == "cash_deposit")]
    assert len(deposits) > 0
    t = big.config.reporting_threshold
    assert deposits["amount"].between(0.85 * t - 10, t).all()


def test_rapid_pass_through_leaves_within_hours(big):
    f = big.frame[big.frame["scenario"] == "rapid_pass_through"]
    for _, g in f.groupby("account_id"):
        ins = g[g["direction"] == "credit"]["event_time"]
        outs = g[g["direction"] == "debit"]["event_time"]
        if len(ins) == 1 and len(outs):
            assert (outs.min() - ins.min()) <= pd.Timedelta(hours=6)
            assert outs.min() > ins.min()
