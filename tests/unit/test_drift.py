"""Drift monitor: detection, silence, evidence, restart equivalence, cached thresholds, promotion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from streams.drift import DriftConfig, DriftConfigError, DriftMonitor, DriftReference, ReferenceError

torch.set_num_threads(1)

CONFIG = DriftConfig(ert_events=40_000, block_events=50, reference_blocks=100, cvm_windows=(3, 6),
                     lsdd_window=4, bootstrap_factor=3, checkpoint_every_blocks=0)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def events(rng: np.random.Generator, n: int, amount_shift: float = 0.0, emb_shift: float = 0.0):
    emb = rng.normal(size=(n, 64)).astype(np.float32)
    emb[:, :8] += emb_shift
    features = {"log_amount": rng.normal(3.0, 1.0, n) + amount_shift, "gap": rng.exponential(1.0, n)}
    scores = 1 / (1 + np.exp(-rng.normal(-3.0, 1.0, n)))
    binary = {"alerted": scores > 0.3, "new_counterparty": rng.random(n) < 0.1}
    return emb, features, binary, scores


def feed(monitor: DriftMonitor, rng: np.random.Generator, batches: int, start: int = 0,
         batch: int = 120, **shift) -> list:
    out = []
    for i in range(start, start + batches):
        emb, f, b, s = events(rng, batch, **shift)
        times = [T0 + timedelta(seconds=i * batch + j) for j in range(batch)]
        out += monitor.observe_batch(emb, f, b, s, times)
    return out


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory) -> Path:
    emb, f, b, s = events(np.random.default_rng(1), 6000)
    ref = DriftReference.build(emb, f, b, s, CONFIG, source="synthetic validation window")
    return ref.save(tmp_path_factory.mktemp("reference"))


@pytest.fixture
def reference(reference_dir) -> DriftReference:
    return DriftReference.load(reference_dir, CONFIG)


def test_silent_on_a_stationary_stream(reference, tmp_path):
    m = DriftMonitor(reference, CONFIG, tmp_path, "v1")
    assert feed(m, np.random.default_rng(2), batches=25) == []  # 3,000 events, 60 checks
    rows = {r["detector"]: r for r in m.status()}
    assert rows["cvm.features"]["steps"] == 60 and rows["cvm.features"]["detections"] == 0
    assert rows["cvm.features"]["statistic"] < rows["cvm.features"]["threshold"]


def test_detects_a_shifted_feature_and_names_it(reference, tmp_path):
    m = DriftMonitor(reference, CONFIG, tmp_path, "v7")
    rng = np.random.default_rng(3)
    assert feed(m, rng, batches=10) == []
    drifts = feed(m, rng, batches=10, start=10, amount_shift=0.8)
    feature = [d for d in drifts if d.detector == "cvm.features"]
    assert feature, [d.detector for d in drifts]
    d = feature[0]
    assert d.scope == "feature" and d.champion_version == "v7" and d.statistic > d.threshold
    assert d.evidence[0].feature == "log_amount.mean"
    assert d.evidence[0].current_mean - d.evidence[0].reference_mean == pytest.approx(0.8, abs=0.3)
    assert d.window.start < d.window.end <= T0 + timedelta(seconds=20 * 120)
    # The detection came within a few blocks of the shift (at event 1,200).
    assert (d.detected_at - T0).total_seconds() < 1200 + 10 * CONFIG.block_events


def test_detects_an_embedding_shift(reference, tmp_path):
    m = DriftMonitor(reference, CONFIG, tmp_path, "v1")
    drifts = feed(m, np.random.default_rng(4), batches=10, emb_shift=0.3)
    emb = [d for d in drifts if d.scope == "embedding"]
    assert emb and emb[0].evidence[0].feature in {f"embedding[{i}]" for i in range(8)}


def test_restart_continues_exactly_where_it_stopped(reference, tmp_path):
    def run(restart_after: int | None) -> tuple[list, list]:
        rng = np.random.default_rng(5)
        state = tmp_path / f"state-{restart_after}"
        m = DriftMonitor(reference, CONFIG, state, "v1")
        out = []
        for i in range(30):
            if restart_after is not None and i == restart_after:
                m.save()
                m = DriftMonitor.restore(reference, CONFIG, state, "v1")
            out += feed(m, rng, batches=1, start=i, amount_shift=0.6 if i >= 12 else 0.0)
            for score, y in zip(rng.random(20), rng.random(20) < 0.1, strict=True):
                out += m.observe_outcome(float(score), bool(y), bool(score > 0.5), label_time=T0)
        return [d.model_dump() for d in out], m.status()

    uninterrupted, status_a = run(None)
    restarted, status_b = run(7)  # 840 events: mid-block, pending events must survive
    assert uninterrupted and restarted == uninterrupted
    assert status_b == status_a


def test_restore_uses_cached_thresholds_without_simulating(reference_dir, tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("threshold simulation ran on restore")

    import alibi_detect.cd.cvm_online as cvm
    import alibi_detect.cd.pytorch.lsdd_online as lsdd

    ref = DriftReference.load(reference_dir, CONFIG)
    m = DriftMonitor(ref, CONFIG, tmp_path, "v1")
    feed(m, np.random.default_rng(6), batches=5)
    m.save()
    monkeypatch.setattr(cvm.CVMDriftOnline, "_simulate_streams", refuse)
    monkeypatch.setattr(lsdd, "permed_lsdds", refuse)
    restored = DriftMonitor.restore(DriftReference.load(reference_dir, CONFIG), CONFIG, tmp_path, "v1")
    assert restored.status() == m.status()
    det = restored._detectors["features"]._det
    np.testing.assert_array_equal(det.thresholds, ref.calibrations["features"]["thresholds"])


def test_reference_refuses_another_config_or_altered_files(reference_dir, tmp_path):
    other = CONFIG.model_copy(update={"ert_events": 80_000})
    with pytest.raises(ReferenceError, match="another drift configuration"):
        DriftReference.load(reference_dir, other)
    copy = tmp_path / "ref"
    DriftReference.load(reference_dir).save(copy)
    with np.load(copy / "score.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["cal_thresholds"] = arrays["cal_thresholds"] * 0.5
    np.savez(copy / "score.npz", **arrays)
    with pytest.raises(ReferenceError, match="altered"):
        DriftReference.load(copy)


def test_promotion_resets_detectors_and_changes_champion(reference, tmp_path):
    m = DriftMonitor(reference, CONFIG, tmp_path, "v1")
    feed(m, np.random.default_rng(7), batches=5)
    m.reset(reference, "v2")
    assert all(r.get("steps", 0) == 0 for r in m.status())
    restored = DriftMonitor.restore(reference, CONFIG, tmp_path, "v2")
    assert restored.blocks_seen == 0 and restored.champion_version == "v2"
    # A checkpoint taken for another champion is not resumed.
    assert DriftMonitor.restore(reference, CONFIG, tmp_path, "v3").blocks_seen == 0


def test_performance_drift_from_delayed_labels(reference, tmp_path):
    m = DriftMonitor(reference, CONFIG, tmp_path, "v1")
    rng = np.random.default_rng(8)
    out = []
    for i in range(6000):
        positive = rng.random() < 0.1
        good = i < 3000  # the model stops separating fraud from legit halfway
        score = (0.8 if positive else 0.05) if good else rng.random()
        out += m.observe_outcome(score, positive, score > 0.5, label_time=T0)
    assert out and all(d.scope == "performance" for d in out)
    d = out[0]
    assert d.statistic > d.threshold and d.evidence[0].feature == "log_loss"
    assert {e.feature for e in d.evidence} >= {"alert_precision", "alert_recall"}


def test_unreachable_false_alarm_budget_is_refused():
    with pytest.raises(DriftConfigError, match="bootstrap streams"):
        DriftConfig(ert_events=1e9, block_events=10).n_bootstraps("score", 2)


def test_a_column_whose_blocks_move_together_is_reported_blind():
    from streams.drift.blocks import dependence
    from streams.drift.detectors import UnivariateDetector

    rng = np.random.default_rng(0)
    x_ref = rng.normal(size=(50, 2))
    # Column 1 in runs of 8 equal blocks: a window of 8 consecutive blocks is one block's worth.
    runs = np.c_[rng.normal(size=400), np.repeat(rng.normal(size=50), 8)]
    dep = dependence(runs, (3, 8))
    assert dep[:, 0].max() < 1.5 and dep[1, 1] > 4
    cal = {"thresholds": np.full((15, 1), 10.0), "dependence": dep}
    det = UnivariateDetector(x_ref, 1e4, (3, 8), 100, cal)
    # Every value of a window above every reference value: the largest statistic a window of 3
    # among 50 can reach is under 10, a window of 8's over it.
    low, high = det.ceilings()
    assert low < 10 < high
    assert det.reachable().tolist() == [True, False]
    # Fed the most extreme windows possible, the blind column never alarms, the other does.
    checks = [det.predict(np.array([10.0 + i, 10.0 + i])) for i in range(8)]
    assert checks[-1].is_drift and checks[-1].per_feature[1] < 10 < checks[-1].per_feature[0]


def test_drift_status_names_the_columns_a_detector_cannot_fire_on(tmp_path):
    from typer.testing import CliRunner

    from txmon.cli import app

    rng = np.random.default_rng(3)
    emb, f, b, s = events(rng, 6000)
    # A slow state shared by runs of 300 events (6 blocks): its block means move together.
    f["gap"] = f["gap"] + np.repeat(rng.normal(0.0, 3.0, 20), 300)
    ref = DriftReference.build(emb, f, b, s, CONFIG)
    m = DriftMonitor(ref, CONFIG, tmp_path, "v1")
    assert "gap.mean" in m.blind("features") and "log_amount.mean" not in m.blind("features")
    feed(m, rng, 5)
    m.save()
    out = CliRunner().invoke(app, ["drift", "status", "--state-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "cvm.features cannot fire on gap.mean" in " ".join(out.output.split())
