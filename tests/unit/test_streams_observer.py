"""The worker's drift hook: warm-up reference per champion, monitoring, promotion reset, restart."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

import streams.drift.columns as columns_module
from streams.drift import DriftConfig
from streams.observer import DriftFeed, columns
from streams.scoring import ScoredBatch
from txmon.contracts import Label, Transaction

torch.set_num_threads(1)

CONFIG = DriftConfig(ert_events=10_000, block_events=100, reference_blocks=40, cvm_windows=(3, 6),
                     lsdd_window=4, bootstrap_factor=3, checkpoint_every_blocks=0)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
WARMUP = 1_000


def batch(rng: np.random.Generator, version: str, start: int, n: int = 100,
          amount_shift: float = 0.0) -> ScoredBatch:
    amounts = np.exp(rng.normal(3.0 + amount_shift, 0.5, n))
    txs = [Transaction(tx_id=f"t{start + i}", event_time=T0 + timedelta(seconds=start + i),
                       account_id=f"a{i % 7}", counterparty_id="m", amount=f"{a:.2f}")
           for i, a in enumerate(amounts)]
    records = [{"amt": float(a), "dtp": int(rng.exponential(3600)), "v24h": int(rng.poisson(2)),
                "rel": float(rng.normal()), "ncp": bool(rng.random() < 0.1), "nctry": False,
                "cp_foreign": bool(rng.random() < 0.05)} for a in amounts]
    scores = 1 / (1 + np.exp(-rng.normal(-3, 1, n)))
    return ScoredBatch(version, txs, {}, scores, rng.normal(size=(n, 8)).astype(np.float32),
                       scores > 0.5, records)


def feed(f: DriftFeed, rng, version: str, batches: int, start: int = 0, **shift) -> list:
    out = []
    for i in range(batches):
        out += f.on_batch(batch(rng, version, start + i * 100, **shift))
    return out


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A warm-up reference for v1, built once through the feed itself."""
    root = tmp_path_factory.mktemp("drift")
    f = DriftFeed(CONFIG, root / "state", root / "references", warmup_events=WARMUP, background=False)
    rng = np.random.default_rng(0)
    assert feed(f, rng, "v1", 9) == [] and f.state == "warming"
    feed(f, rng, "v1", 1, start=900)
    assert f.state == "monitoring" and f.monitor.events_seen == 0  # warm-up events are not monitored
    return root / "references"


def new_feed(tmp_path, cached, background=False) -> DriftFeed:
    refs = tmp_path / "references"
    if not refs.exists():
        shutil.copytree(cached, refs)
    return DriftFeed(CONFIG, tmp_path / "state", refs, warmup_events=WARMUP, background=background)


def test_the_warm_up_reference_is_cached_per_version(cached):
    assert (cached / "v1" / "reference.json").is_file()
    assert "first 1000 events scored by v1" in (cached / "v1" / "reference.json").read_text()


def test_a_cached_reference_monitors_at_once_and_names_a_shifted_feature(tmp_path, cached):
    f = new_feed(tmp_path, cached)
    rng = np.random.default_rng(5)
    quiet = feed(f, rng, "v1", 5)
    assert f.state == "monitoring" and f.monitor.events_seen == 500
    drifts = quiet + feed(f, rng, "v1", 15, start=500, amount_shift=1.5)
    feature = [d for d in drifts if d.detector == "cvm.features"]
    assert feature, [d.detector for d in drifts]
    assert feature[0].champion_version == "v1"
    assert feature[0].evidence[0].feature == "log_amount.mean"


def test_a_cached_reference_on_columns_no_longer_computed_is_warmed_up_again(tmp_path, cached,
                                                                           monkeypatch):
    # A worker upgraded past a column change (foreign -> new_country) finds its old warm-up
    # reference: used, the monitor would refuse every batch and the worker would crash-loop.
    monkeypatch.setattr(columns_module, "BINARY", ("alerted", "new_counterparty", "cross_border"))
    f = new_feed(tmp_path, cached)
    rng = np.random.default_rng(5)
    assert feed(f, rng, "v1", 3) == []
    assert f.state == "warming" and f.monitor is None


def test_promotion_restarts_the_monitor_on_the_new_champion(tmp_path, cached):
    f = new_feed(tmp_path, cached)
    rng = np.random.default_rng(6)
    feed(f, rng, "v1", 3)
    monitor = f.monitor
    feed(f, rng, "v2", 5, start=300)  # v2 has no reference yet: warming up, v1's monitor unfed
    assert f.state == "warming" and f.version == "v2"
    assert monitor.events_seen == 300 and monitor.champion_version == "v1"
    feed(f, rng, "v2", 5, start=800)
    assert f.state == "monitoring" and f.monitor is monitor  # the same monitor, reset
    assert monitor.champion_version == "v2" and monitor.events_seen == 0
    assert (tmp_path / "references" / "v2" / "reference.json").is_file()
    feed(f, rng, "v1", 1, start=1300)  # a rollback: v1's cached reference, no warm-up
    assert f.state == "monitoring" and monitor.champion_version == "v1" and monitor.events_seen == 100


def test_a_restart_continues_from_the_checkpoint(tmp_path, cached):
    f = new_feed(tmp_path, cached)
    rng = np.random.default_rng(7)
    feed(f, rng, "v1", 4)
    f.close()
    again = new_feed(tmp_path, cached)
    feed(again, rng, "v1", 1, start=400)
    assert again.state == "monitoring" and again.monitor.events_seen == 500


def test_labels_of_the_champion_feed_adwin(tmp_path, cached):
    f = new_feed(tmp_path, cached)
    feed(f, np.random.default_rng(8), "v1", 1)
    label = Label(tx_id="t1", account_id="a1", label="fraud", label_time=T0)

    def steps():
        return next(r for r in f.monitor.status() if r["detector"] == "adwin.loss")["steps"]

    assert f.on_label(label, None, "v1") == [] and f.on_label(label, 0.9, "v0") == []
    assert steps() == 0
    f.on_label(label, 0.9, "v1")
    assert steps() == 1


def test_the_reference_builds_in_the_background_while_scoring_goes_on(tmp_path):
    f = DriftFeed(CONFIG, tmp_path / "state", tmp_path / "references", warmup_events=WARMUP)
    rng = np.random.default_rng(9)
    feed(f, rng, "v1", 10)
    assert f.state == "building"
    f._building.result(timeout=120)
    feed(f, rng, "v1", 1, start=1000)  # picks the finished reference up between batches
    assert f.state == "monitoring"
    f.close()


def test_a_finished_build_monitors_without_waiting_for_a_batch(tmp_path):
    # An idle worker sends no batch to pick it up with; its health must still say monitoring.
    f = DriftFeed(CONFIG, tmp_path / "state", tmp_path / "references", warmup_events=WARMUP)
    feed(f, np.random.default_rng(9), "v1", 10)
    f._building.result(timeout=120)
    assert f.state == "monitoring" and f.active
    f.close()


def test_columns_fill_missing_history_with_neutral_values():
    rng = np.random.default_rng(1)
    b = batch(rng, "v1", 0, n=3)
    b.records[0].update(dtp=None, rel=None)
    del b.records[0]["nctry"]  # a record made before the key existed
    features, binary = columns(b)
    assert features["log_gap_s"][0] == pytest.approx(np.log1p(30 * 86_400))
    assert features["amount_vs_usual"][0] == 0.0 and not binary["new_country"][0]
    assert list(binary["alerted"]) == list(b.alerted)


def test_a_cold_start_is_kept_out_of_the_reference(tmp_path):
    """The events a fresh worker scores with empty account state are skipped before warm-up."""
    f = DriftFeed(CONFIG, tmp_path / "state", tmp_path / "references", warmup_events=WARMUP,
                  background=False, cold_events=300)
    rng = np.random.default_rng(3)
    feed(f, rng, "v1", 12)  # 300 cold + 900 warm-up events: the window is not full yet
    assert f.state == "warming"
    feed(f, rng, "v1", 1, start=1200)
    assert f.state == "monitoring"
    assert "first 1000 events" in (tmp_path / "references" / "v1" / "reference.json").read_text()
