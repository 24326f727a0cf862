"""A user's CSV — unusual column names, a missing optional column, broken rows — through the broker."""

from __future__ import annotations

import base64
import json

import pytest

from tests.integration.topics import drain
from txmon.broker.topics import ensure_topics
from txmon.contracts import DeadLetter, Label, Transaction, decode
from txmon.mapping import ColumnMapping, load_table
from txmon.replay import publish

pytestmark = pytest.mark.kafka

CSV = """TxnRef,Booked At,PAN token,Merchant,Value,Ccy,Chan,chargeback
T1,2026-03-01T10:00:00Z,card-1,shop-a,12.50,EUR,pos,0
T2,2026-03-01T10:05:00Z,card-1,shop-b,not-money,EUR,pos,0
T3,2026-03-01T10:10:00Z,card-2,shop-a,99.99,EUR,ecommerce,1
T4,2026-03-01T10:15:00Z,card-2,shop-c,5.00,EUR
T5,someday,card-3,shop-a,5.00,EUR,pos,0
T6,2026-03-01T10:25:00Z,card-3,shop-a,7.00,QQQ,pos,0
T7,2026-03-01T10:30:00Z,card-3,shop-d,8.00,EUR,atm,
"""
MAPPING = ["tx_id=TxnRef", "event_time=Booked At", "account_id=PAN token", "counterparty_id=Merchant",
           "amount=Value", "currency=Ccy", "channel=Chan"]  # no mcc, country, device: optional


def test_csv_round_trips_with_every_broken_row_in_the_dlq(kafka_settings_for, topic_prefix, tmp_path):
    settings = kafka_settings_for(topic_prefix)
    ensure_topics(settings, partitions=2)
    path = tmp_path / "export.csv"
    path.write_text(CSV)
    mapped = ColumnMapping.parse(MAPPING, label="chargeback", label_delay="7d").apply(load_table(path))
    report = publish(mapped.frame, settings, bad=mapped.bad, lines=mapped.lines, source="file:export.csv")
    assert (report.transactions, report.labels, report.dead_letters) == (3, 2, 4)

    txs = [decode(Transaction, m.value) for m in drain(settings, "transactions", 3)]
    assert sorted(t.tx_id for t in txs) == ["T1", "T3", "T7"]
    t3 = next(t for t in txs if t.tx_id == "T3")
    assert str(t3.amount) == "99.99" and t3.channel == "ecommerce" and t3.mcc is None

    labels = [decode(Label, m.value) for m in drain(settings, "labels", 2)]
    assert {(lb.tx_id, lb.label) for lb in labels} == {("T1", "legit"), ("T3", "fraud")}
    assert all((lb.label_time - next(t for t in txs if t.tx_id == lb.tx_id).event_time).days == 7
               for lb in labels)

    dead = [decode(DeadLetter, m.value) for m in drain(settings, "dlq", 4)]
    by_line = {d.offset: d for d in dead}
    assert sorted(by_line) == [3, 5, 6, 7]
    assert by_line[3].error_field == "amount"
    assert "expected 8 fields, found 6" in by_line[5].error
    assert by_line[6].error_field == "event_time"
    assert by_line[7].error_field == "currency"
    assert base64.b64decode(by_line[5].original) == b"T4,2026-03-01T10:15:00Z,card-2,shop-c,5.00,EUR\n"
    assert all(d.source_topic == "file:export.csv" for d in dead)
    json.dumps([d.model_dump(mode="json") for d in dead])
