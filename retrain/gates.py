"""Validation gates: a candidate model against the champion on the same recent holdout.

Pure functions of labels, score arrays and segment columns; the job produces the arrays (scoring
both models with ONNX Runtime) and this module decides. Every gate fails closed: a measurement
that is missing is a failed gate, never a skipped one.

>>> import numpy as np
>>> y = np.array([0, 0, 0, 0, 1, 0, 0, 1, 0, 0] * 20, bool)
>>> good = np.where(y, 0.9, 0.1)
>>> recall_at_threshold(y, good, threshold_at_budget(good, 0.2))
1.0
>>> round(expected_calibration_error(y, np.full(200, 0.2)), 3)
0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from retrain.policy import GatePolicy
from txmon.contracts import GateResult


def threshold_at_budget(scores: np.ndarray, budget: float) -> float:
    """The score above which the top ``budget`` fraction of transactions would be alerted."""
    if len(scores) == 0:
        return 1.0
    k = max(1, math.ceil(budget * len(scores)))
    return float(np.partition(scores, len(scores) - k)[len(scores) - k])


def recall_at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    pos = labels.sum()
    return float((scores[labels] >= threshold).sum() / pos) if pos else float("nan")


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(average_precision_score(labels, scores)) if labels.any() else float("nan")


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed rate - mean score| over equal-width score bins."""
    if len(scores) == 0:
        return float("nan")
    idx = np.minimum((scores * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(labels[mask].mean() - scores[mask].mean())
    return float(total / len(scores))


@dataclass
class Evaluation:
    """Everything the offline gates look at, measured on one holdout."""

    labels: np.ndarray                      # bool, one per holdout transaction
    champion: np.ndarray                    # champion scores on the holdout
    candidate: np.ndarray                   # candidate (ONNX) scores on the holdout
    segments: pd.DataFrame | None = None    # segment columns aligned with labels
    champion_threshold: float | None = None  # the alert threshold in production now
    perturbed: Sequence[np.ndarray] = field(default_factory=list)  # candidate on perturbed inputs
    reference: np.ndarray | None = None     # candidate scores from torch, for ONNX parity
    latencies_ms: np.ndarray | None = None  # per-batch-row candidate scoring latency
    drift_triggered: bool = False

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, bool)
        self.champion = np.asarray(self.champion, float)
        self.candidate = np.asarray(self.candidate, float)
        if not len(self.labels) == len(self.champion) == len(self.candidate):
            raise ValueError("labels, champion and candidate scores must align")


def _gate(name: str, passed: bool, value: float | None, threshold: float | None,
          detail: str) -> GateResult:
    clean = None if value is None or not math.isfinite(value) else round(float(value), 6)
    return GateResult(name=name, passed=bool(passed) and clean is not None, value=clean,
                      threshold=None if threshold is None else round(float(threshold), 6),
                      detail=detail[:2048])


def quality_gates(ev: Evaluation, p: GatePolicy) -> list[GateResult]:
    """Average precision and recall at the alert budget, candidate minus champion."""
    ap_c, ap_ch = average_precision(ev.labels, ev.candidate), average_precision(ev.labels, ev.champion)
    need = p.drift_required_gain if ev.drift_triggered else -p.ap_tolerance
    ap = _gate("average_precision", ap_c - ap_ch >= need, ap_c - ap_ch, need,
               f"candidate {ap_c:.4f} vs champion {ap_ch:.4f} on {int(ev.labels.sum())} positives"
               + (" (drift-triggered: a gain is required)" if ev.drift_triggered else ""))
    r_c = recall_at_threshold(ev.labels, ev.candidate, threshold_at_budget(ev.candidate, p.alert_budget))
    r_ch = recall_at_threshold(ev.labels, ev.champion, threshold_at_budget(ev.champion, p.alert_budget))
    rec = _gate("recall_at_budget", r_c - r_ch >= -p.recall_tolerance, r_c - r_ch, -p.recall_tolerance,
                f"recall at {p.alert_budget:.2%} alerted: candidate {r_c:.4f} vs champion {r_ch:.4f}")
    return [ap, rec]


def alert_volume_gate(ev: Evaluation, p: GatePolicy) -> GateResult:
    """Relative change in alerts if the candidate ran at the champion's production threshold."""
    thr = (ev.champion_threshold if ev.champion_threshold is not None
           else threshold_at_budget(ev.champion, p.alert_budget))
    v_ch, v_c = float((ev.champion >= thr).mean()), float((ev.candidate >= thr).mean())
    change = (v_c - v_ch) / v_ch if v_ch > 0 else (0.0 if v_c == 0 else float("inf"))
    detail = f"at threshold {thr:.4f}: candidate alerts {v_c:.3%} vs champion {v_ch:.3%}"
    if p.max_alert_volume_change is None:
        return GateResult(name="alert_volume", passed=True, threshold=None,
                          value=round(change, 6) if math.isfinite(change) else None,
                          detail=f"not gated (alerts by daily budget); {detail}")
    return _gate("alert_volume", abs(change) <= p.max_alert_volume_change, change,
                 p.max_alert_volume_change, detail)


def segment_parity_gate(ev: Evaluation, p: GatePolicy) -> GateResult:
    """No segment's recall at the budget may fall by more than the allowed amount."""
    if ev.segments is None:
        return _gate("segment_parity", False, None, p.max_segment_recall_drop, "no segment columns")
    thr_c = threshold_at_budget(ev.candidate, p.alert_budget)
    thr_ch = threshold_at_budget(ev.champion, p.alert_budget)
    worst, where, gated, small = -math.inf, "", 0, 0
    for col in p.segment_columns:
        if col not in ev.segments.columns:
            continue
        values = ev.segments[col].astype("string").fillna("(missing)").to_numpy()
        for group in pd.unique(values):
            mask = values == group
            y = ev.labels[mask]
            if y.sum() < p.min_segment_positives:
                small += 1
                continue
            gated += 1
            drop = (recall_at_threshold(y, ev.champion[mask], thr_ch)
                    - recall_at_threshold(y, ev.candidate[mask], thr_c))
            if drop > worst:
                worst, where = drop, f"{col}={group}"
    if gated == 0:
        return _gate("segment_parity", False, None, p.max_segment_recall_drop,
                     f"no segment has {p.min_segment_positives} positives to compare")
    return _gate("segment_parity", worst <= p.max_segment_recall_drop, worst, p.max_segment_recall_drop,
                 f"largest recall drop {worst:.4f} in {where}; {gated} groups gated, "
                 f"{small} too small to gate")


def calibration_gate(ev: Evaluation, p: GatePolicy) -> GateResult:
    e_c = expected_calibration_error(ev.labels, ev.candidate)
    e_ch = expected_calibration_error(ev.labels, ev.champion)
    return _gate("calibration_ece", e_c <= p.max_ece, e_c, p.max_ece,
                 f"ECE candidate {e_c:.4f}, champion {e_ch:.4f}")


def robustness_gate(ev: Evaluation, p: GatePolicy) -> GateResult:
    """p99 of |score change| when amounts and times are nudged slightly."""
    if not ev.perturbed:
        return _gate("robustness", False, None, p.max_robustness_delta, "no perturbed scores")
    deltas = np.concatenate([np.abs(np.asarray(s, float) - ev.candidate) for s in ev.perturbed])
    p99 = float(np.quantile(deltas, 0.99))
    return _gate("robustness", p99 <= p.max_robustness_delta, p99, p.max_robustness_delta,
                 f"p99 |Δscore| {p99:.4f}, max {deltas.max():.4f} over {len(ev.perturbed)} "
                 f"perturbations (amount ±{p.robustness_amount_rel:.1%}, "
                 f"time ±{p.robustness_time_minutes:g} min)")


def onnx_parity_gate(ev: Evaluation, p: GatePolicy) -> GateResult:
    if ev.reference is None:
        return _gate("onnx_parity", False, None, p.onnx_parity_atol, "no torch reference scores")
    diff = float(np.max(np.abs(np.asarray(ev.reference, float) - ev.candidate)))
    return _gate("onnx_parity", diff <= p.onnx_parity_atol, diff, p.onnx_parity_atol,
                 f"max |torch - onnx| {diff:.2e} over {len(ev.candidate)} rows")


def latency_gate(ev: Evaluation, p: GatePolicy) -> GateResult:
    if ev.latencies_ms is None or len(ev.latencies_ms) == 0:
        return _gate("latency_p99", False, None, p.max_p99_latency_ms, "no latency measurements")
    p99 = float(np.quantile(ev.latencies_ms, 0.99))
    return _gate("latency_p99", p99 <= p.max_p99_latency_ms, p99, p.max_p99_latency_ms,
                 f"p99 {p99:.2f} ms, p50 {np.median(ev.latencies_ms):.2f} ms")


def run_gates(ev: Evaluation, p: GatePolicy) -> list[GateResult]:
    """Every offline gate, in a fixed order."""
    return [*quality_gates(ev, p), alert_volume_gate(ev, p), segment_parity_gate(ev, p),
            calibration_gate(ev, p), robustness_gate(ev, p), onnx_parity_gate(ev, p),
            latency_gate(ev, p)]


def failed(results: Sequence[GateResult]) -> list[str]:
    return [g.name for g in results if not g.passed]
