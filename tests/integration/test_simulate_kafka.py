"""``simulate --to-kafka``: every transaction and every label lands on the real broker."""

from __future__ import annotations

import pytest

from tests.integration.topics import drain
from txmon.broker.topics import ensure_topics
from txmon.contracts import Label, Transaction, decode
from txmon.replay import publish
from txmon.sim import SimConfig, simulate

pytestmark = pytest.mark.kafka


def test_every_transaction_and_label_lands(kafka_settings_for, topic_prefix):
    settings = kafka_settings_for(topic_prefix)
    ensure_topics(settings, partitions=3)
    result = simulate(SimConfig(accounts=80, days=3, seed=4))
    frame = result.frame
    report = publish(frame, settings, source="simulate", label_source="simulator")
    n_labels = int(frame["label"].notna().sum())
    assert (report.transactions, report.labels, report.dead_letters) == (len(frame), n_labels, 0)

    txs = drain(settings, "transactions", len(frame))
    got = {decode(Transaction, m.value).tx_id: m for m in txs}
    assert set(got) == set(frame["tx_id"])
    assert all(m.key.decode() == decode(Transaction, m.value).account_id for m in txs)
    row = frame.iloc[0]
    tx = decode(Transaction, got[row["tx_id"]].value)
    assert tx.account_id == row["account_id"] and float(tx.amount) == pytest.approx(row["amount"])

    labels = [decode(Label, m.value) for m in drain(settings, "labels", n_labels)]
    truth = frame.dropna(subset=["label"]).set_index("tx_id")
    assert {lb.tx_id for lb in labels} == set(truth.index)
    assert all(lb.label == truth.loc[lb.tx_id, "label"] and lb.source == "simulator" for lb in labels)


def test_publishing_in_time_windows_sends_each_event_once_and_never_early(kafka_settings_for,
                                                                          topic_prefix):
    import pandas as pd

    settings = kafka_settings_for(topic_prefix)
    ensure_topics(settings, partitions=2)
    frame = simulate(SimConfig(accounts=60, days=4, seed=5)).frame
    cut = frame["event_time"].min() + pd.Timedelta(days=2)
    first = publish(frame, settings, window=(None, cut))
    second = publish(frame, settings, window=(cut, None))
    labelled = frame["label"].notna() & frame["label_time"].notna()
    assert first.transactions + second.transactions == len(frame)
    assert first.transactions == int((frame["event_time"] < cut).sum())
    assert first.labels == int((labelled & (frame["label_time"] < cut)).sum())
    assert first.labels + second.labels == int(labelled.sum())

    labels = [decode(Label, m.value) for m in drain(settings, "labels", int(labelled.sum()))]
    assert len({lb.tx_id for lb in labels}) == len(labels) == int(labelled.sum())


def test_event_timestamps_stamp_records_with_when_they_happened(kafka_settings_for, topic_prefix):
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    settings = kafka_settings_for(topic_prefix)
    ensure_topics(settings, partitions=1)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=6)
    frame = simulate(SimConfig(accounts=30, days=2, seed=6, start=start)).frame
    # Kafka 4 refuses timestamps more than an hour ahead: labels due in the future stay unsent.
    future = frame["label_time"] > datetime.now(UTC)
    frame.loc[future, ["label", "label_time"]] = [None, pd.NaT]
    publish(frame, settings, event_timestamps=True)
    want = {r.tx_id: int(r.event_time.timestamp() * 1000) for r in frame.itertuples()}
    got = {decode(Transaction, m.value).tx_id: m.timestamp
           for m in drain(settings, "transactions", len(frame))}
    assert got == want
