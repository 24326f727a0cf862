"""Gates on score arrays: a better candidate passes, a worse or poisoned one fails with named gates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrain.gates import (
    Evaluation,
    expected_calibration_error,
    failed,
    run_gates,
    threshold_at_budget,
)
from retrain.policy import GatePolicy

N = 20_000


@pytest.fixture(scope="module")
def world() -> dict:
    rng = np.random.default_rng(7)
    labels = rng.random(N) < 0.02
    channel = rng.choice(["card", "wire", "online"], N)
    country = rng.choice(["DE", "FR", "NL"], N)
    # A latent "riskiness" the models see noisily; positives sit higher.
    latent = rng.normal(0, 1, N) + 2.5 * labels
    return {"rng": rng, "labels": labels, "latent": latent,
            "segments": pd.DataFrame({"channel": channel, "country": country})}


def _calibrated(logit: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Platt-style rescale so scores are calibrated probabilities on this data."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression().fit(logit[:, None], labels)
    return lr.predict_proba(logit[:, None])[:, 1]


def _model(world: dict, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _calibrated(world["latent"] + rng.normal(0, noise, N), world["labels"])


def _evaluation(world: dict, champion: np.ndarray, candidate: np.ndarray, **kw) -> Evaluation:
    rng = np.random.default_rng(1)
    defaults = dict(
        segments=world["segments"],
        perturbed=[np.clip(candidate + rng.normal(0, 0.002, N), 0, 1) for _ in range(2)],
        reference=candidate + 1e-5, latencies_ms=rng.gamma(2, 1.5, 2000))
    return Evaluation(labels=world["labels"], champion=champion, candidate=candidate,
                      **(defaults | kw))


def test_better_candidate_passes_every_gate(world: dict) -> None:
    results = run_gates(_evaluation(world, _model(world, 1.0, 1), _model(world, 0.8, 2)), GatePolicy())
    assert failed(results) == [], [r for r in results if not r.passed]
    assert {r.name for r in results} == {"average_precision", "recall_at_budget", "alert_volume",
                                         "segment_parity", "calibration_ece", "robustness",
                                         "onnx_parity", "latency_p99"}


def test_worse_candidate_fails_quality_gates(world: dict) -> None:
    results = run_gates(_evaluation(world, _model(world, 0.6, 1), _model(world, 2.0, 2)), GatePolicy())
    assert {"average_precision", "recall_at_budget"} <= set(failed(results))


def test_label_flipped_candidate_is_rejected(world: dict) -> None:
    """An attacker flipped a share of training labels: the candidate learned to rank part of the
    fraud as legitimate and a slice of legitimate traffic as fraud."""
    rng = np.random.default_rng(3)
    labels = world["labels"]
    flipped_fraud = labels & (rng.random(N) < 0.4)
    latent = world["latent"] - 3.0 * flipped_fraud + 1.5 * (~labels & (rng.random(N) < 0.02))
    poisoned = _calibrated(latent + rng.normal(0, 0.6, N), labels)
    results = run_gates(_evaluation(world, _model(world, 1.0, 1), poisoned), GatePolicy())
    assert "average_precision" in failed(results) and "recall_at_budget" in failed(results)


def test_drift_triggered_candidate_needs_a_gain(world: dict) -> None:
    same = _model(world, 1.0, 1)
    policy = GatePolicy(drift_required_gain=0.01)
    assert "average_precision" not in failed(run_gates(_evaluation(world, same, same), policy))
    results = run_gates(_evaluation(world, same, same, drift_triggered=True), policy)
    assert "average_precision" in failed(results)


def test_segment_parity_names_the_group_that_lost_recall(world: dict) -> None:
    champion = _model(world, 1.0, 1)
    candidate = champion.copy()
    wire = (world["segments"]["channel"] == "wire").to_numpy()
    candidate[wire & world["labels"]] *= 0.2  # the candidate went blind on wire fraud
    results = {r.name: r for r in run_gates(_evaluation(world, champion, candidate), GatePolicy())}
    assert not results["segment_parity"].passed
    assert "channel=wire" in results["segment_parity"].detail


def test_miscalibrated_candidate_fails_ece(world: dict) -> None:
    champion = _model(world, 1.0, 1)
    candidate = np.sqrt(champion)  # same ranking, scores inflated
    results = {r.name: r for r in run_gates(_evaluation(world, champion, candidate), GatePolicy())}
    assert results["average_precision"].passed and not results["calibration_ece"].passed


def test_unstable_candidate_fails_robustness(world: dict) -> None:
    champion = _model(world, 1.0, 1)
    rng = np.random.default_rng(9)
    swings = [np.clip(champion + rng.normal(0, 0.2, N) * (rng.random(N) < 0.05), 0, 1)]
    results = {r.name: r for r in run_gates(_evaluation(world, champion, champion, perturbed=swings),
                                            GatePolicy())}
    assert not results["robustness"].passed


def test_parity_latency_and_volume_gates(world: dict) -> None:
    champion = _model(world, 1.0, 1)
    ev = _evaluation(world, champion, np.clip(champion * 3, 0, 1), reference=champion,
                     latencies_ms=np.full(100, 80.0))
    results = {r.name: r for r in run_gates(ev, GatePolicy())}
    assert not results["onnx_parity"].passed
    assert not results["latency_p99"].passed and results["latency_p99"].value == pytest.approx(80.0)
    assert not results["alert_volume"].passed and results["alert_volume"].value > 0.5
    budget = {r.name: r for r in run_gates(ev, GatePolicy(max_alert_volume_change=None))}
    assert budget["alert_volume"].passed and "not gated" in budget["alert_volume"].detail
    assert budget["alert_volume"].value == results["alert_volume"].value


def test_missing_measurements_fail_closed(world: dict) -> None:
    s = _model(world, 1.0, 1)
    ev = Evaluation(labels=world["labels"], champion=s, candidate=s)
    assert {"segment_parity", "robustness", "onnx_parity", "latency_p99"} <= set(
        failed(run_gates(ev, GatePolicy())))


def test_threshold_and_ece_helpers() -> None:
    s = np.arange(100) / 100
    assert (s >= threshold_at_budget(s, 0.05)).sum() == 5
    y = np.zeros(100, bool)
    assert expected_calibration_error(y, np.full(100, 0.3)) == pytest.approx(0.3)
