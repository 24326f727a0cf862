"""Drift on seasonal traffic: a weekly cycle is not drift; a fraud wave in the score tail is, fast."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from streams.drift import DriftConfig, DriftMonitor, DriftReference
from streams.drift.cusum import TailCusum, arl, calibrate, threshold
from streams.drift.seasonal import SeasonalProfile, cross_fitted

torch.set_num_threads(1)

SHARES = {"features": 0.3, "score": 0.3, "binary": 0.3, "tail": 0.1}
CONFIG = DriftConfig(ert_events=40_000, block_events=50, reference_blocks=100, cvm_windows=(3, 6),
                     bootstrap_factor=3, checkpoint_every_blocks=0, budget_shares=SHARES)
T0 = int(pd.Timestamp("2026-01-05", tz="UTC").timestamp())  # a Monday
GAP_S = 120  # one event every two minutes: a block of 50 is 100 minutes of traffic


def traffic(rng: np.random.Generator, start_s: int, days: int, wave: float = 0.0):
    """A bank with a strong weekly cycle: busy Monday velocity, weekend new counterparties,
    riskier nights. ``wave``: share of events that are a new fraud pattern scoring high."""
    t = start_s + np.arange(0, days * 86_400, GAP_S)
    n = len(t)
    hour = (t // 3600) % 24
    weekday = ((t - T0) // 86_400) % 7
    night, monday, weekend = hour < 6, weekday == 0, weekday >= 5
    features = {"velocity_24h": rng.poisson(2 + 4 * monday + 2 * ~night).astype(float),
                "log_amount": rng.normal(3.0 + 0.6 * weekend, 1.0)}
    binary = {"new_counterparty": rng.random(n) < np.where(weekend, 0.35, 0.1)}
    z = rng.normal(-4.0 + 1.0 * night, 1.0)
    z[rng.random(n) < wave] = 3.0
    return t, features, binary, 1 / (1 + np.exp(-z))


_REFERENCES: dict[str, DriftReference] = {}


def monitor(config: DriftConfig, tmp_path) -> DriftMonitor:
    """A fresh monitor on a reference of three weeks of ``traffic`` (built once per config)."""
    key = config.fingerprint()
    if key not in _REFERENCES:
        t, f, b, s = traffic(np.random.default_rng(1), T0, 21)
        # CVM thresholds are distribution-free: simulated by the first build, reused by the next.
        _REFERENCES[key] = DriftReference.build(None, f, b, s, config, times=t,
                                                threshold_cache=tmp_path.parent / "cvm")
    return DriftMonitor(_REFERENCES[key], config, tmp_path, "v1", rearm_blocks=0)


def feed(m: DriftMonitor, t, f, b, s, batch: int = 200) -> list:
    out = []
    for i in range(0, len(t), batch):
        sl = slice(i, i + batch)
        out += m.observe_batch(None, {k: v[sl] for k, v in f.items()},
                               {k: v[sl] for k, v in b.items()}, s[sl],
                               pd.to_datetime(t[sl], unit="s", utc=True))
    return out


def test_profile_removes_a_weekly_cycle_and_cross_fitting_does_not_overfit():
    t, f, _, _ = traffic(np.random.default_rng(0), T0, 21)
    x = f["velocity_24h"]
    p = SeasonalProfile.fit({"v": x}, t)
    hour, monday = (t // 3600) % 24, ((t - T0) // 86_400) % 7 == 0
    assert p.weekday[0, 0] - p.weekday[1:, 0].mean() == pytest.approx(4.0, abs=0.3)
    assert p.hour[12, 0] - p.hour[3, 0] == pytest.approx(2.0, abs=0.3)
    adjusted = p.adjust({"v": x}, t)["v"]
    assert abs(adjusted[monday].mean() - adjusted[~monday].mean()) < 0.1
    assert abs(adjusted[hour < 6].mean() - adjusted[hour >= 6].mean()) < 0.1
    assert adjusted[monday].std() == pytest.approx(adjusted[~monday].std(), rel=0.1)
    # Each week adjusted by the others' profile varies at least as much as in-sample residuals.
    out_of_week = cross_fitted({"v": x}, t)[0]["v"]
    assert out_of_week.var() >= adjusted.var()


def test_a_weekly_cycle_is_not_drift_but_a_shift_is(tmp_path):
    live = traffic(np.random.default_rng(2), T0 + 21 * 86_400, 14)  # two more weeks, same world
    m = monitor(CONFIG, tmp_path / "seasonal")
    assert m.reference.seasonal is not None
    assert feed(m, *live) == []  # 10,080 events, 201 checks
    # Without the profile, the cycle reads as dependence between consecutive blocks: the CVM
    # statistics are divided by it (no false alarms either), at the price of 2-5 times less power.
    naive = monitor(CONFIG.model_copy(update={"seasonal": False}), tmp_path / "naive")
    assert naive.reference.seasonal is None
    for group, column in (("features", "velocity_24h.mean"), ("binary", "new_counterparty.rate")):
        j = naive.reference.columns[group].index(column)
        assert naive.reference.calibrations[group]["dependence"][:, j].min() > 2.0
        assert m.reference.calibrations[group]["dependence"][:, j].max() < 1.5
    # A real shift in one feature is still found, and named.
    t, f, b, s = traffic(np.random.default_rng(3), T0 + 21 * 86_400, 4)
    f["log_amount"] = f["log_amount"] + 0.5
    drifts = [d for d in feed(monitor(CONFIG, tmp_path / "shift"), t, f, b, s)
              if d.detector == "cvm.features"]
    assert drifts and drifts[0].evidence[0].feature == "log_amount.mean"


def test_tail_cusum_finds_a_fraud_wave_within_a_few_hundred_events(tmp_path):
    m = monitor(CONFIG, tmp_path)
    tail = m.status()[-2]
    assert tail["detector"] == "cusum.tail" and tail["reference_rate"] == pytest.approx(0.01, abs=0.002)
    assert 1.0 <= tail["mini_block_dispersion"] <= tail["dispersion"]
    t, f, b, s = traffic(np.random.default_rng(4), T0 + 21 * 86_400, 3)
    onset = len(t) // 2
    s[onset:] = np.where(np.random.default_rng(5).random(len(t) - onset) < 0.03, 0.95, s[onset:])
    drifts = [d for d in feed(m, t, f, b, s, batch=100) if d.detector == "cusum.tail"]
    assert drifts, "a wave of 3% high scores (4x the reference tail) went unseen"
    first = drifts[0]
    at = int(first.detected_at.timestamp())
    delay = int(np.searchsorted(t, at)) - onset
    # The expected rate is flat, so this traffic's riskier nights count in the long-run dispersion.
    assert 0 <= delay <= 1_000
    ev = first.evidence[0]
    assert ev.feature == "score.tail_rate" and ev.current_mean > 2 * ev.reference_mean


def test_cusum_run_length_matches_simulation_and_restarts_exactly():
    k = 2 / math.log(3)
    h, run = threshold(500, 1.0, 1.0, k)
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(300):
        s, n = 0.0, 0
        while s < h:
            n, s = n + 1, max(0.0, s + rng.poisson(1.0) - k)
        lengths.append(n)
    assert np.mean(lengths) == pytest.approx(run, rel=0.15)
    assert arl(h, 1.0, 3.0, k) < run  # overdispersed counts alarm sooner at the same h
    # Clumped reference exceedances give a larger dispersion, hence a larger h.
    clumped = np.zeros(20_000, dtype=bool)
    clumped[::1000] = True
    clumped = np.convolve(clumped, np.ones(10), "same") > 0
    spread = np.random.default_rng(1).random(20_000) < clumped.mean()
    assert calibrate(clumped, 100, 3.0, 1e6).h > calibrate(spread, 100, 3.0, 1e6).h
    # State survives a restart mid-mini-block.
    cal = calibrate(spread, 100, 3.0, 1e6)
    x = np.random.default_rng(2).random(1_050) < 0.03
    e, us = np.full(len(x), cal.p0), np.arange(len(x)) * 1_000_000
    a = TailCusum(cal)
    a.update(x, e, us)
    b = TailCusum(cal)
    b.update(x[:530], e[:530], us[:530])
    c = TailCusum(cal)
    c.load(b.state())
    c.update(x[530:], e[530:], us[530:])
    assert c.state() == a.state()


def _incidents(rng: np.random.Generator, n: int) -> np.ndarray:
    """High scores at 1%, plus incidents (one every ~3,000 events) of ~200 events at 4%."""
    x = rng.random(n) < 0.01
    for s in np.flatnonzero(rng.random(n) < 1 / 3000):
        span = min(int(rng.exponential(200)) + 1, n - s)
        x[s:s + span] |= rng.random(span) < 0.04
    return x


def _alarms(cal, x: np.ndarray) -> int:
    counts = x[: len(x) // cal.mini_events * cal.mini_events].reshape(-1, cal.mini_events).sum(1)
    s, n = 0.0, 0
    for c in counts:
        s = max(0.0, s + c - cal.k * cal.p0 * cal.mini_events)
        if s >= cal.h:
            n, s = n + 1, 0.0
    return n


def test_cusum_threshold_accounts_for_incidents_spanning_mini_blocks():
    # Counts of consecutive mini-blocks are correlated when incidents outlast them: a threshold
    # from the single mini-block's dispersion alarms several times as often as the ERT says.
    rng = np.random.default_rng(0)
    reference, stationary = _incidents(rng, 50_000), _incidents(rng, 2_000_000)
    cal = calibrate(reference, 100, 3.0, 2e5)
    assert cal.dispersion > 1.5 * cal.mini_dispersion and cal.dispersion_span > 100
    mini_h, _ = threshold(2e5 / 100, cal.p0 * 100, cal.mini_dispersion, cal.k)
    mini = dataclasses.replace(cal, h=mini_h, dispersion=cal.mini_dispersion)
    assert cal.h > 1.5 * mini.h
    expected = 2_000_000 / 2e5
    assert _alarms(mini, stationary) > 8 * expected
    # The long-run dispersion (largest over spans of 1, 2, 4, ... mini-blocks: 3.8 at 1,600
    # events vs 1.6) brings 136 alarms down to 26. Still above the ERT's 10: a negative binomial
    # of the long-run dispersion is only an approximation of correlated counts.
    assert _alarms(cal, stationary) < _alarms(mini, stationary) / 4


def test_score_detector_reports_rises_not_quiet_stretches(tmp_path):
    t, f, b, s = traffic(np.random.default_rng(6), T0 + 21 * 86_400, 4)
    logit = np.log(s / (1 - s))
    quiet = monitor(CONFIG, tmp_path / "quiet")
    lower = 1 / (1 + np.exp(-(logit - 1.0)))  # every score lower: fewer fraud-like scores
    assert not [d for d in feed(quiet, t, f, b, lower) if d.detector == "cvm.score"]
    assert next(r for r in quiet.status() if r["detector"] == "cvm.score")["drops_not_reported"] > 0
    higher = 1 / (1 + np.exp(-(logit + 1.0)))
    rises = [d for d in feed(monitor(CONFIG, tmp_path / "rise"), t, f, b, higher)
             if d.detector == "cvm.score"]
    assert rises and rises[0].evidence[0].current_mean > rises[0].evidence[0].reference_mean
