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
