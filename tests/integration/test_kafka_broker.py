"""The managed broker and both Kafka clients, against a real Apache Kafka 4.x (KRaft)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

from tests.conftest import free_port_block
from txmon.contracts import Transaction, decode
from txmon.settings import Settings

pytestmark = pytest.mark.kafka


def _tx(i: int, account: str) -> Transaction:
    return Transaction(tx_id=f"tx-{i}", event_time=datetime(2026, 1, 1, tzinfo=UTC)
                       + timedelta(seconds=i), account_id=account, counterparty_id=f"m{i % 97}",
                       amount=f"{(i % 5000) / 100:.2f}", currency="EUR", channel="pos",
                       tx_type="card_present", country="DE")


def test_kafka_python_to_aiokafka_10k_no_loss_order_per_key(kafka_settings_for, topic_prefix):
    s: Settings = kafka_settings_for(topic_prefix)
    topic = s.topic("transactions")
    from txmon.broker.topics import ensure_topics

    ensure_topics(s)
    producer = KafkaProducer(**s.kafka.kafka_python_config(), acks="all", linger_ms=5)
    sent: dict[str, list[str]] = defaultdict(list)
    for i in range(10_000):
        account = f"acct-{i % 137}"
        producer.send(topic, key=account.encode(), value=_tx(i, account).to_bytes())
        sent[account].append(f"tx-{i}")
    producer.flush()
    producer.close()

    async def consume() -> dict[str, list[str]]:
        consumer = AIOKafkaConsumer(topic, **s.kafka.aiokafka_config(), group_id=f"{topic_prefix}g",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        got: dict[str, list[str]] = defaultdict(list)
        n = 0
        try:
            while n < 10_000:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 60)
                for records in batches.values():
                    for r in records:
                        tx = decode(Transaction, r.value)
                        assert r.key.decode() == tx.account_id
                        got[tx.account_id].append(tx.tx_id)
                        n += 1
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(consume())
    assert sum(map(len, got.values())) == 10_000
    assert got == sent  # same ids, same order within each key


def _txmon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "txmon.cli", "kafka", *args], env=env,
                          capture_output=True, text=True, timeout=240)


def test_cli_up_down_keeps_data_and_status_exit_code(tmp_path: Path):
    port = free_port_block(1)
    env = {**os.environ, "TXMON_HOME": str(tmp_path), "TXMON_BROKER__PORT": str(port),
           "TXMON_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "COLUMNS": "200"}
    try:
        up = _txmon(env, "up", "--partitions", "2")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "is up" in up.stdout
        again = _txmon(env, "up")
        assert again.returncode == 0 and "is up" in again.stdout
        ps = subprocess.run(["pgrep", "-f", f"{tmp_path}.*kafka.Kafka|kafka.Kafka.*{tmp_path}"],
                            capture_output=True, text=True)
        assert ps.stdout.split(), "a genuine java kafka.Kafka process runs"
        st = _txmon(env, "status")
        assert st.returncode == 0 and "running" in st.stdout and "txmon.transactions" in st.stdout

        s = Settings(home=tmp_path).model_copy(update={"kafka": Settings().kafka.model_copy(
            update={"bootstrap_servers": f"127.0.0.1:{port}"})})
        producer = KafkaProducer(**s.kafka.kafka_python_config(), acks="all")
        for i in range(50):
            producer.send("txmon.transactions", key=b"a", value=_tx(i, "a").to_bytes())
        producer.flush()
        producer.close()

        assert _txmon(env, "down").returncode == 0
        stopped = _txmon(env, "status")
        assert stopped.returncode == 1 and "not running" in stopped.stdout
        assert _txmon(env, "up").returncode == 0

        from kafka import KafkaConsumer

        consumer = KafkaConsumer("txmon.transactions", **s.kafka.kafka_python_config(),
                                 auto_offset_reset="earliest", consumer_timeout_ms=5000)
        ids = [decode(Transaction, m.value).tx_id for m in consumer]
        consumer.close()
        assert ids == [f"tx-{i}" for i in range(50)]
    finally:
        _txmon(env, "down")
