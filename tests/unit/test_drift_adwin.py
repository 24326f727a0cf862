"""ADWIN on the delayed-label loss, calibrated for its share of the false-alarm budget."""

from __future__ import annotations

import numpy as np
import pytest
from river.drift import ADWIN

from streams.drift import DriftConfig, DriftMonitor, DriftReference, adwin_budget
from streams.drift.outcomes import OutcomeTracker, log_loss

# Only the tail CUSUM (no bootstrap) and ADWIN: the reference builds in seconds.
CONFIG = DriftConfig(ert_events=200_000, budget_shares={"tail": 0.5, "performance": 0.5},
                     adwin_min_outcomes=500, checkpoint_every_blocks=0)


def outcomes(rng: np.random.Generator, n: int, missed: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels with fraud in incidents (runs of 5-30), ~1% of outcomes; ``missed``: the
    share of fraud the model scores as legitimate."""
    positive = np.zeros(n, dtype=bool)
    for s in rng.integers(0, n, size=n // 1500):
        positive[s:s + rng.integers(5, 30)] = True
    score = np.where(positive, rng.beta(4, 2, n), rng.beta(0.5, 40, n))
    blind = positive & (rng.random(n) < missed)
    score = np.where(blind, rng.beta(0.5, 40, n), score)
    return score, positive.astype(np.float64)


def losses(score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    return np.asarray([log_loss(s, y > 0.5) for s, y in zip(score, positive, strict=True)])


def raw_adwin_alarms(x: np.ndarray, delta: float) -> int:
    a, n = ADWIN(delta=delta), 0
    for v in x.tolist():
        a.update(v)
        n += a.drift_detected
    return n


def test_calibrated_delta_is_silent_where_river_default_alarms_and_still_detects():
    reference = losses(*outcomes(np.random.default_rng(1), 40_000))
    cal = adwin_budget.calibrate(reference, ert_outcomes=1e6, min_outcomes=500)
    assert 0 < cal.delta < 1 and cal.simulated_outcomes >= 60_000
    stationary = losses(*outcomes(np.random.default_rng(2), 100_000))
    # river's ADWIN as shipped (delta 0.002, raw losses) cuts its window again and again on
    # clumpy stationary losses; the calibrated one (losses scaled into [0, 1]) does not.
    assert raw_adwin_alarms(stationary, 0.002) >= 5
    assert adwin_budget.count_alarms(stationary, cal.delta, 500) == 0
    # The model goes half blind to fraud after 20,000 outcomes: the loss rise is reported.
    rng = np.random.default_rng(3)
    before, after = losses(*outcomes(rng, 20_000)), losses(*outcomes(rng, 20_000, missed=0.5))
    t = OutcomeTracker(cal.delta, 500, window=10)
    hits = [i for i, v in enumerate(np.concatenate([before, after]).tolist())
            if t.update_loss(v) is not None]
    assert hits and 20_000 < hits[0] < 30_000, hits[:3]


def test_calibration_is_cached_with_the_reference_and_survives_a_restart(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    score, positive = outcomes(rng, 20_000)
    positive[rng.random(len(positive)) < 0.1] = np.nan  # labels not known by training time
    ref = DriftReference.build(None, {}, {}, score, CONFIG, labels=positive)
    cal = ref.adwin()
    assert cal is not None and cal.ert_outcomes == CONFIG.ert_events_for("performance") == 400_000
    ref.save(tmp_path / "ref")

    def refuse(*a, **k):
        raise AssertionError("ADWIN calibration ran again")

    monkeypatch.setattr(adwin_budget, "calibrate", refuse)
    loaded = DriftReference.load(tmp_path / "ref", CONFIG)
    assert loaded.adwin() == cal and loaded.fingerprint == ref.fingerprint
    m = DriftMonitor(loaded, CONFIG, tmp_path / "state", "v1")
    for s, y in zip(*outcomes(rng, 3_000), strict=True):
        m.observe_outcome(float(s), bool(y), bool(s > 0.5))
    row = next(r for r in m.status() if r["detector"] == "adwin.loss")
    assert row["delta"] == cal.delta != CONFIG.adwin_delta and row["delta_calibrated"]
    m.save()
    restored = DriftMonitor.restore(DriftReference.load(tmp_path / "ref", CONFIG), CONFIG,
                                    tmp_path / "state", "v1")
    assert restored._outcomes.delta == cal.delta and restored.status() == m.status()


def test_a_reference_without_labels_keeps_the_configured_delta(tmp_path):
    score, _ = outcomes(np.random.default_rng(5), 5_000)
    ref = DriftReference.build(None, {}, {}, score, CONFIG)
    assert ref.adwin() is None
    row = next(r for r in DriftMonitor(ref, CONFIG, tmp_path, "v1").status()
               if r["detector"] == "adwin.loss")
    assert row["delta"] == CONFIG.adwin_delta and not row["delta_calibrated"]


def test_too_few_labelled_outcomes_are_refused():
    with pytest.raises(ValueError, match="needs"):
        adwin_budget.calibrate(np.zeros(100), 1e6, 500)
