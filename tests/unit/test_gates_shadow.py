"""Shadow comparison: pairing by tx_id, late labels, and the shadow gate's verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from retrain.policy import ShadowPolicy
from retrain.shadow import compare, shadow_gate
from txmon.contracts import Label, Score

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _traffic(n: int, challenger_quality: float, seed: int = 0, labelled_share: float = 0.5):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.01
    champ = np.clip(0.3 * y + rng.normal(0.2, 0.1, n), 0, 1)
    chall = np.clip(challenger_quality * y + rng.normal(0.2, 0.1, n), 0, 1)
    thr = np.quantile(champ, 0.98)
    scores, labels = [], []
    for i in range(n):
        at = T0 + timedelta(seconds=30 * i)
        scores.append(Score(tx_id=f"t{i}", account_id="a", score=float(champ[i]), model_version="v1",
                            alerted=bool(champ[i] >= thr), latency_ms=2, scored_at=at))
        scores.append(Score(tx_id=f"t{i}", account_id="a", score=float(chall[i]), model_version="v2",
                            alerted=False, latency_ms=2, scored_at=at, shadow=True))
        if rng.random() < labelled_share:
            labels.append(Label(tx_id=f"t{i}", account_id="a", label="fraud" if y[i] else "legit",
                                label_time=at + timedelta(days=3)))
    return scores, labels


POLICY = ShadowPolicy(min_events=1000, min_hours=2, min_labelled=200, ap_tolerance=0.02,
                      max_alert_volume_change=1.0)


def test_better_challenger_passes() -> None:
    scores, labels = _traffic(4000, 0.5)
    s = compare(scores, labels, "v1", "v2")
    assert s.events == 4000 and s.labelled == len(labels) and s.hours > 30
    assert s.challenger_ap > s.champion_ap
    assert shadow_gate(s, POLICY).passed


def test_worse_challenger_fails() -> None:
    scores, labels = _traffic(2000, 0.1)
    gate = shadow_gate(compare(scores, labels, "v1", "v2"), POLICY)
    assert not gate.passed and "AP" in gate.detail


def test_too_little_evidence_fails() -> None:
    scores, labels = _traffic(300, 0.5, labelled_share=0.1)
    gate = shadow_gate(compare(scores, labels, "v1", "v2"), POLICY)
    assert not gate.passed and "events" in gate.detail and "labelled" in gate.detail


def test_unpaired_and_non_shadow_scores_are_ignored() -> None:
    scores, labels = _traffic(100, 0.5)
    stray = [Score(tx_id="t5", account_id="a", score=0.99, model_version="v2", alerted=True,
                   latency_ms=1)]  # v2 serving for real somewhere: not a shadow score
    s = compare([*scores[:100], *stray], labels, "v1", "v2")
    assert s.events == 50


def test_fast_average_precision_equals_scikit_learn_with_ties() -> None:
    from sklearn.metrics import average_precision_score

    from retrain.bootstrap import average_precision

    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.random(300) < 0.1
        s = np.round(rng.random(300) + 0.3 * y, 1)  # rounded: many tied scores
        assert abs(average_precision(y, s) - average_precision_score(y, s)) < 1e-12


def _few_positives(challenger: str, seed: int):
    """200 labelled shadow transactions, 8 of them fraud: a demo-sized shadow period."""
    rng = np.random.default_rng(seed)
    y = np.zeros(200, bool)
    y[:8] = True
    champ = np.clip(0.35 * y + rng.normal(0.2, 0.1, 200), 0, 1)
    chall = (np.clip(0.35 * y + rng.normal(0.2, 0.1, 200), 0, 1) if challenger == "equal"
             else rng.random(200))  # "broken": scores unrelated to the truth (a serving skew)
    scores, labels = [], []
    for i in range(200):
        at = T0 + timedelta(seconds=i)
        scores += [Score(tx_id=f"t{i}", account_id="a", score=float(champ[i]), model_version="v1",
                         alerted=False, latency_ms=1, scored_at=at),
                   Score(tx_id=f"t{i}", account_id="a", score=float(chall[i]), model_version="v2",
                         alerted=False, latency_ms=1, scored_at=at, shadow=True)]
        labels.append(Label(tx_id=f"t{i}", account_id="a", label="fraud" if y[i] else "legit",
                            label_time=at))
    return compare(scores, labels, "v1", "v2", bootstraps=400)


LENIENT = ShadowPolicy(min_events=100, min_labelled=100, min_positives=5, ap_tolerance=0.05,
                       decision="no_regression", max_alert_volume_change=100.0)


def test_few_positives_an_equally_good_challenger_is_not_rejected_on_noise() -> None:
    # Same model quality, different noise: the AP point estimates differ by chance.
    gaps = []
    for seed in range(6):
        s = _few_positives("equal", seed)
        gaps.append(abs(s.challenger_ap - s.champion_ap))
        assert shadow_gate(s, LENIENT).passed, s
        # Eight positives cannot show non-inferiority: that decision waits for more evidence.
        assert not shadow_gate(s, LENIENT.model_copy(update={"decision": "non_inferiority"})).passed
    assert max(gaps) > 0.05  # a point-estimate gate at this tolerance would have rejected one


def test_few_positives_still_catch_a_broken_challenger() -> None:
    for seed in range(4):
        s = _few_positives("broken", seed)
        gate = shadow_gate(s, LENIENT)
        assert not gate.passed and "no_regression" in gate.detail, s
        assert s.ap_gap_high < -LENIENT.ap_tolerance


def test_too_few_positives_is_not_enough_evidence() -> None:
    s = _few_positives("equal", 0)
    gate = shadow_gate(s, LENIENT.model_copy(update={"min_positives": 9}))
    assert not gate.passed and "8 positive" in gate.detail


def test_alert_volume_is_recorded_not_gated_for_a_budget_worker() -> None:
    scores, labels = _traffic(4000, 0.5)
    s = compare(scores, labels, "v1", "v2")
    strict = POLICY.model_copy(update={"max_alert_volume_change": 0.0})
    assert s.challenger_alert_rate != s.champion_alert_rate
    assert not shadow_gate(s, strict).passed
    assert shadow_gate(s, strict.model_copy(update={"max_alert_volume_change": None})).passed
