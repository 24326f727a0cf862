"""The RocksDB account store: same scores and changelog as the memory store, however small its cache."""

from __future__ import annotations

import json

import pytest

import models.features as features
from streams.policy import AlertPolicy
from streams.store import RocksEntries, account_entries
from streams.tables import AccountTable, entry_bytes, entry_from_bytes
from tests.unit.test_streams_scoring import (  # noqa: F401  (fixtures)
    TokenModel,
    encoder,
    frame,
    make_core,
    outputs_on,
    topics,
    tx_records,
)

pytest.importorskip("rocksdict")


def comparable(outputs):
    """Outputs without the wall-clock fields (scored_at, latency_ms, created_at)."""
    clock = {"scored_at", "latency_ms", "created_at"}
    out = []
    for o in outputs:
        value = o.value
        if value.startswith(b"{"):
            value = {k: v for k, v in json.loads(value).items() if k not in clock}
        out.append((o.topic, o.key, o.partition, value))
    return out


def rocks_core(topic_names, path, cache_size):
    core = make_core(topic_names)
    core.accounts = AccountTable(features.new_account_state, AlertPolicy.new_state,
                                 RocksEntries(path, entry_bytes, entry_from_bytes, cache_size))
    return core


@pytest.mark.parametrize("cache_size", [1, 3])
def test_a_tiny_cache_changes_no_output(frame, encoder, topics, tmp_path, cache_size):  # noqa: F811
    """With 12 accounts and a cache of 1 or 3, entries go to disk and come back all the time."""
    records = tx_records(frame, topics)
    memory, rocks = make_core(topics), rocks_core(topics, tmp_path / "db", cache_size)
    for i in range(0, len(records), 16):
        a = memory.process(records[i:i + 16], TokenModel(encoder))
        b = rocks.process(records[i:i + 16], TokenModel(encoder))
        assert comparable(a.outputs) == comparable(b.outputs)
    assert len(rocks.accounts) == len(memory.accounts) == frame["account_id"].nunique()
    for account in frame["account_id"].unique():
        m, r = memory.accounts.peek(account), rocks.accounts.peek(account)
        assert json.dumps(m.state) == json.dumps(r.state) and m.index == r.index
    rocks.accounts.drop_partitions({0, 1, 2})
    assert len(rocks.accounts) == 0 and rocks.accounts.peek(frame["account_id"].iloc[0]) is None


def test_the_store_is_wiped_when_opened(frame, encoder, topics, tmp_path):  # noqa: F811
    """Never trusted across restarts: the changelog is the durable copy."""
    first = rocks_core(topics, tmp_path / "db", 2)
    first.process(tx_records(frame, topics), TokenModel(encoder))
    first.accounts._entries.close()
    reopened = RocksEntries(tmp_path / "db", entry_bytes, entry_from_bytes, 2)
    assert len(reopened) == 0 and list(reopened) == []


def test_memory_is_the_default(tmp_path):
    assert account_entries("memory", tmp_path, 10) is None
    assert isinstance(account_entries("rocksdb", tmp_path / "db", 10), RocksEntries)
