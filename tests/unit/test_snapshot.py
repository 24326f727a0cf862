"""Snapshot building: window, late labels, pseudonymisation, checks and a stable content hash."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from models.toy import toy_frame
from retrain.policy import SnapshotPolicy
from retrain.pseudonymise import Pseudonymiser
from retrain.snapshot import build_snapshot, content_hash
from txmon.frames import to_label, to_transaction

KEY = b"k" * 32
POLICY = SnapshotPolicy(window_days=14, holdout_days=4, min_positives=5, min_holdout_positives=1,
                        max_duplicate_fraction=0.0)


def _events(frame: pd.DataFrame, snapshot_time: pd.Timestamp):
    """(kafka timestamp ms, bytes) as a producer would have written them; labels at label_time."""
    txs = [(int(r["event_time"].timestamp() * 1000), to_transaction(r).to_bytes())
           for r in frame.to_dict("records")]
    labels = []
    for r in frame.to_dict("records"):
        lab = to_label(r)
        if lab is not None and lab.label_time <= snapshot_time:
            labels.append((int(lab.label_time.timestamp() * 1000), lab.to_bytes()))
    return txs, labels


@pytest.fixture(scope="module")
def world():
    f = toy_frame(accounts=80, days=20, seed=3, fraud_rate=0.4)
    snapshot_time = pd.Timestamp("2026-01-23", tz="UTC")
    txs, labels = _events(f, snapshot_time)
    return f, snapshot_time.to_pydatetime(), txs, labels


def _build(world, txs=None, labels=None, key=KEY):
    _, t, tx0, lab0 = world
    return build_snapshot(tx0 if txs is None else txs, lab0 if labels is None else labels,
                          t - timedelta(days=POLICY.window_days), t, POLICY, Pseudonymiser(key))


def test_window_labels_and_split(world) -> None:
    f, t, _, _ = world
    snap = _build(world)
    assert snap.passed, snap.checks
    in_window = f[(f["event_time"] >= pd.Timestamp(t - timedelta(days=14))) & (f["event_time"] < t)]
    assert len(snap.frame) == len(in_window)
    # Labels arrive 3 days late: nothing from the last 3 days is labelled yet.
    recent = snap.frame["event_time"] >= pd.Timestamp(t - timedelta(days=3))
    assert snap.frame.loc[recent, "label"].isna().all()
    assert snap.frame.loc[~recent, "label"].notna().all()
    s = snap.summary()
    assert s["train_rows"] + s["holdout_rows"] == s["rows"] and s["holdout_positives"] >= 1


def test_no_raw_identifier_survives(world, tmp_path: Path) -> None:
    f, *_ = world
    snap = _build(world)
    raw = set(f["account_id"]) | set(f["counterparty_id"])
    assert not raw & set(snap.frame["account_id"]) and not raw & set(snap.frame["counterparty_id"])
    snap.save(tmp_path)
    stored = pd.read_parquet(tmp_path / "frame.parquet")
    assert not raw & (set(stored["account_id"]) | set(stored["counterparty_id"]))
    meta = (tmp_path / "snapshot.json").read_text()
    assert "acc1" not in meta and KEY.decode() not in meta
    assert json.loads(meta)["pseudonym_key_fingerprint"] == Pseudonymiser(KEY).fingerprint


def test_content_hash_is_stable_and_sensitive(world) -> None:
    _, _, txs, labels = world
    a, b = _build(world), _build(world, txs=list(reversed(txs)), labels=list(reversed(labels)))
    assert a.content_sha256 == b.content_sha256
    assert _build(world, key=b"z" * 32).content_sha256 != a.content_sha256
    changed = a.frame.copy()
    changed.loc[0, "amount"] += 0.01
    assert content_hash(changed) != a.content_sha256


def test_label_from_the_future_is_leakage(world) -> None:
    f, t, _, labels = world
    in_window = f["event_time"].between(pd.Timestamp(t - timedelta(days=10)),
                                        pd.Timestamp(t - timedelta(days=5)))
    row = f[in_window].iloc[0].to_dict()
    row["label_time"] = pd.Timestamp(t + timedelta(days=2))
    future = to_label(row)
    snap = _build(world, labels=[*labels, (int(t.timestamp() * 1000) - 1, future.to_bytes())])
    leak = next(c for c in snap.checks if c.name == "label_leakage")
    assert not leak.passed and not snap.passed


def test_duplicates_and_bad_records(world) -> None:
    _, _, txs, _ = world
    snap = _build(world, txs=[*txs, txs[len(txs) // 2], (0, b'{"tx_id": "x", "amount": 1.5}')])
    assert snap.rejected_records["transactions"] == 1
    dup = next(c for c in snap.checks if c.name == "duplicates")
    assert not dup.passed


def test_too_few_positives_fails(world) -> None:
    snap = _build(world, labels=[])
    failed = {c.name for c in snap.checks if not c.passed}
    assert {"min_train_positives", "min_holdout_positives"} <= failed


def test_window_cut_short_by_retention_fails_coverage(world) -> None:
    _, t, txs, _ = world
    recent_only = [(ts, raw) for ts, raw in txs if ts >= (t - timedelta(days=5)).timestamp() * 1000]
    snap = _build(world, txs=recent_only)
    cov = next(c for c in snap.checks if c.name == "window_coverage")
    assert not cov.passed and "retention" in cov.detail
    assert next(c for c in _build(world).checks if c.name == "window_coverage").passed
