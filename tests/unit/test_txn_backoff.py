"""The CONCURRENT_TRANSACTIONS backoff reaches the code in aiokafka that waits on it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer.sender import AddPartitionsToTxnHandler
from aiokafka.structs import TopicPartition

from streams.config import WorkerConfig
from streams.txn_backoff import concurrent_transactions_backoff_ms, set_concurrent_transactions_backoff


@pytest.fixture
def restore_backoff():
    before = concurrent_transactions_backoff_ms()
    yield
    set_concurrent_transactions_backoff(before)


def _first_add_meets_concurrent_transactions() -> float:
    """What aiokafka waits before re-sending the first AddPartitionsToTxn of a transaction that the
    coordinator answered CONCURRENT_TRANSACTIONS (it is still completing the previous one)."""
    manager = SimpleNamespace(txn_partitions=set(), transactional_id="t", producer_id=1, producer_epoch=0)
    sender = SimpleNamespace(_txn_manager=manager, _retry_backoff=0.1)
    handler = AddPartitionsToTxnHandler(sender, [TopicPartition("out", 0)])
    response = SimpleNamespace(errors=[("out", [(0, ConcurrentTransactions.errno)])])
    return handler.handle_response(response)


def test_aiokafka_waits_what_the_worker_configures(restore_backoff) -> None:
    assert _first_add_meets_concurrent_transactions() == pytest.approx(
        concurrent_transactions_backoff_ms() / 1000)
    set_concurrent_transactions_backoff(WorkerConfig().concurrent_txn_backoff_ms)
    assert _first_add_meets_concurrent_transactions() == pytest.approx(0.002)
    set_concurrent_transactions_backoff(7)
    assert _first_add_meets_concurrent_transactions() == pytest.approx(0.007)


def test_a_backoff_must_be_positive(restore_backoff) -> None:
    with pytest.raises(ValueError, match="positive"):
        set_concurrent_transactions_backoff(0)
