"""The snapshot reads exactly its time window from a real Kafka broker, by timestamp."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from kafka import KafkaProducer

from models.toy import toy_frame
from retrain.policy import SnapshotPolicy
from retrain.pseudonymise import Pseudonymiser
from retrain.snapshot import read_window, take_snapshot
from txmon.broker.topics import ensure_topics
from txmon.frames import to_label, to_transaction

pytestmark = pytest.mark.kafka


def _produce(settings, frame: pd.DataFrame) -> None:
    producer = KafkaProducer(**settings.kafka.kafka_python_config(), acks="all")
    for r in frame.to_dict("records"):
        tx = to_transaction(r)
        producer.send(settings.topic("transactions"), key=tx.account_id.encode(), value=tx.to_bytes(),
                      timestamp_ms=int(tx.event_time.timestamp() * 1000))
        lab = to_label(r)
        if lab is not None:
            producer.send(settings.topic("labels"), key=lab.account_id.encode(), value=lab.to_bytes(),
                          timestamp_ms=int(lab.label_time.timestamp() * 1000))
    producer.flush(30)
    producer.close()


def test_snapshot_from_kafka_window(kafka_settings_for, topic_prefix) -> None:
    settings = kafka_settings_for(topic_prefix)
    ensure_topics(settings, partitions=3)
    frame = toy_frame(accounts=50, days=20, seed=5, fraud_rate=0.5)
    _produce(settings, frame)
    t = pd.Timestamp("2026-01-21", tz="UTC").to_pydatetime()
    policy = SnapshotPolicy(window_days=10, holdout_days=3, min_positives=3, min_holdout_positives=1)

    snap = take_snapshot(settings, policy, Pseudonymiser(b"p" * 32), t, timeout_s=60)

    start = t - timedelta(days=10)
    expected = frame[(frame["event_time"] >= pd.Timestamp(start)) & (frame["event_time"] < t)]
    assert len(snap.frame) == len(expected) and snap.passed, snap.checks
    assert set(snap.frame["tx_id"]) == set(expected["tx_id"])
    # Only labels that had arrived (label_time = Kafka timestamp) before the snapshot time.
    arrived = expected[expected["label_time"] < pd.Timestamp(t)]
    assert snap.frame["label"].notna().sum() == len(arrived)
    assert not set(frame["account_id"]) & set(snap.frame["account_id"])


def test_read_window_empty_and_missing_topic(kafka_settings_for, topic_prefix) -> None:
    settings = kafka_settings_for(topic_prefix)
    ensure_topics(settings, partitions=2)
    t = pd.Timestamp("2026-01-21", tz="UTC").to_pydatetime()
    assert list(read_window(settings, settings.topic("transactions"), t - timedelta(days=1), t, 20)) == []
    with pytest.raises(LookupError):
        list(read_window(settings, topic_prefix + "nope", t - timedelta(days=1), t, 10))
