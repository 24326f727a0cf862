"""A drift reference shipped in the artifact: built at export from the validation window, covered by
the manifest, and used by the worker's feed at once (no warm-up); refused when altered or calibrated
for another drift configuration."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from models.artifact import read_manifest, verify
from models.finetune import FinetuneConfig, TrainConfig, finetune, reference_rows
from models.pretrain import PretrainConfig
from models.toy import toy_frame
from streams.drift import DriftConfig, DriftReference, columns, shipped
from streams.observer import DriftFeed
from streams.scoring import ScoredBatch
from txmon.contracts import Transaction

torch.set_num_threads(1)

DRIFT = {"ert_events": 10_000, "block_events": 100, "reference_blocks": 40, "cvm_windows": [3, 6],
         "lsdd_window": 4, "bootstrap_factor": 3, "checkpoint_every_blocks": 0}
CONFIG = DriftConfig(**DRIFT)
T0 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    frame = toy_frame(accounts=60, days=12, seed=5, fraud_rate=0.35)
    cfg = TrainConfig(max_len=4, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                      min_count=1, threads=1, show_progress=False, pretrain=PretrainConfig(epochs=0),
                      finetune=FinetuneConfig(epochs=1, batch_size=64, negatives_per_positive=3),
                      drift_reference=DRIFT)
    out = tmp_path_factory.mktemp("artifacts") / "v1"
    metrics = finetune(frame, None, out, "v1", cfg)
    return out, metrics, frame


def scored(version: str, artifact_dir, sha256, n: int = 100, dim: int = 16,
           seed: int = 0) -> ScoredBatch:
    rng = np.random.default_rng(seed)
    amounts = np.exp(rng.normal(3.0, 0.5, n))
    txs = [Transaction(tx_id=f"t{i}", event_time=T0 + timedelta(seconds=i), account_id=f"a{i % 7}",
                       counterparty_id="m", amount=f"{a:.2f}") for i, a in enumerate(amounts)]
    records = [{"amt": float(a), "dtp": 3600, "v24h": 1, "rel": 0.0, "ncp": False} for a in amounts]
    scores = rng.random(n) * 0.1
    return ScoredBatch(version, txs, {}, scores, rng.normal(size=(n, dim)).astype(np.float32),
                       scores > 0.5, records, artifact_dir, sha256)


def test_export_ships_a_reference_of_the_validation_window(artifact):
    out, metrics, frame = artifact
    manifest = verify(out)
    assert "drift_reference/reference.json" in manifest.files  # the manifest covers it
    ref = DriftReference.load(out / shipped.REFERENCE_DIR, CONFIG)
    # 12 days of traffic: the validation window is extended to all of it (14 days or more).
    assert metrics["drift_reference_events"] == len(frame)
    assert metrics["drift_reference_seconds"] > 0
    assert f"{len(frame):,} events" in ref.source and "validation window of v1" in ref.source
    assert set(ref.blocks) == {"embedding", "features", "score", "binary"}
    assert ref.blocks["embedding"].shape == (40, 16)  # the model's own pooled embeddings
    # The serving policy's alert decisions are not the model's: no alert rate in a shipped reference.
    assert ref.columns["binary"] == ["cross_border.rate", "new_counterparty.rate", "new_country.rate"]
    assert json.loads((out / "metrics.json").read_text())["drift_reference_bootstraps"] == ref.n_bootstraps


def test_reference_rows_are_the_whole_window_in_time_order():
    ts = np.array([5, 1, 4, 2, 3, 6]) * 86_400  # rows out of time order
    validation = np.array([2, 0, 5])  # days 4 to 6
    cfg = TrainConfig(drift_reference_days=1.5,
                      drift_reference={"block_events": 1, "reference_blocks": 20})
    assert reference_rows(ts, validation, cfg).tolist() == [2, 0, 5]  # the validation window
    cfg.drift_reference_days = 3.5
    assert reference_rows(ts, validation, cfg).tolist() == [4, 2, 0, 5]  # days 3-6, in time order
    # Contiguous even when it holds more blocks than the reference draws: the tail CUSUM
    # measures clustering over hours on all of it.
    cfg.drift_reference_days = 10
    big = np.arange(100) * 3_600
    assert reference_rows(big, np.arange(90, 100), cfg).tolist() == list(range(100))


def test_the_feed_monitors_a_fresh_artifact_at_once_without_warm_up(artifact, tmp_path):
    out, _, _ = artifact
    sha = read_manifest(out).artifact_sha256
    f = DriftFeed(CONFIG, tmp_path / "state", tmp_path / "references", warmup_events=10_000,
                  background=False)
    f.on_batch(scored("v1", out, sha))
    assert f.state == "monitoring" and f.monitor is not None
    assert f.monitor.events_seen == 100  # the very first batch is monitored
    assert "validation window of v1" in f.monitor.reference.source
    assert not (tmp_path / "references" / "v1").exists()  # nothing simulated in the worker


def test_an_altered_or_foreign_reference_falls_back_to_warm_up(artifact, tmp_path, monkeypatch):
    out, _, _ = artifact
    sha = read_manifest(out).artifact_sha256
    other = DriftConfig(**{**DRIFT, "ert_events": 20_000})
    f = DriftFeed(other, tmp_path / "a", tmp_path / "refs-a", warmup_events=1_000, background=False)
    f.on_batch(scored("v1", out, sha))
    assert f.state == "warming"  # calibrated for another configuration: not used

    f = DriftFeed(CONFIG, tmp_path / "b", tmp_path / "refs-b", warmup_events=1_000, background=False)
    f.on_batch(scored("v1", out, "0" * 64))
    assert f.state == "warming"  # not the artifact the worker verified

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    path = copy / shipped.REFERENCE_DIR / "score.npz"
    data = dict(np.load(path))
    data["blocks"] = data["blocks"] + 0.5  # a shifted reference would hide a real shift
    np.savez(path, **data)
    f = DriftFeed(CONFIG, tmp_path / "c", tmp_path / "refs-c", warmup_events=1_000, background=False)
    f.on_batch(scored("v1", copy, sha))
    assert f.state == "warming"

    # A reference watching a column the feed does not compute (as one shipped with ``foreign``
    # meets a feed with ``new_country``): the monitor would refuse every batch, so warm up.
    assert shipped.load(out, CONFIG, sha) is not None
    monkeypatch.setattr(columns, "BINARY", ("alerted", "new_counterparty", "foreign", "cross_border"))
    assert shipped.load(out, CONFIG, sha) is None


def test_cvm_thresholds_are_distribution_free_and_cached_across_references(tmp_path):
    cfg = DriftConfig(**DRIFT)
    rng = np.random.default_rng(3)

    def build(shift: float, cache=None) -> DriftReference:
        n = 2_000
        feats = {"a": rng.normal(shift, 1 + shift, n), "b": rng.exponential(1 + shift, n)}
        return DriftReference.build(None, feats, {"x": rng.random(n) < 0.1 + shift / 10},
                                    rng.beta(1, 10 + shift, n), cfg, threshold_cache=cache)

    a, b = build(0.0), build(2.0)
    for g in ("features", "score", "binary"):  # other data, same thresholds: nothing to simulate
        assert not np.array_equal(a.blocks[g], b.blocks[g])
        np.testing.assert_array_equal(a.calibrations[g]["thresholds"], b.calibrations[g]["thresholds"])
    cache = tmp_path / "thresholds"
    c = build(1.0, cache)
    assert len(list(cache.glob("cvm-*.npy"))) == 3  # one per group: different feature counts
    for f in cache.glob("cvm-*.npy"):  # the next build reads them: make that visible
        np.save(f, np.load(f) + 1.0)
    d = build(1.0, cache)
    np.testing.assert_array_equal(d.calibrations["score"]["thresholds"],
                                  c.calibrations["score"]["thresholds"] + 1.0)
