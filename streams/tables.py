"""The worker's state: per-account history (partitioned like the input) and counterparty risk (global).

**Accounts** — each account's recent history (``models.features`` state), a bounded index of its
recent transactions (tx_id -> counterparty, score) to join late labels, and, per input partition, the
alert budget's state. Held in memory and made durable by a compacted changelog topic written *inside
the same Kafka transaction* as the scores and the consumed offsets, one changelog partition per input
partition; a worker that is assigned a partition replays that changelog partition (read_committed)
before it scores. (Entries are in memory, or with ``store="rocksdb"`` mostly on local disk,
:mod:`streams.store`; either way they are restored from the changelog, and restore time is bounded
by compaction.) Account values are zlib-compressed
JSON (:func:`account_value`).

**Counterparty risk** — keyed by counterparty, but the stream is partitioned by *account*, and any
account can pay any counterparty, so every worker needs all of it: a global table. Its changelog holds
label *events* (counterparty, label), not folded state, and every worker folds them in offset
order with ``models.features.update_counterparty_risk``. Two workers therefore never race on a
read-modify-write of the same counterparty; they converge on the same value. A label reaches it when
the labelled transaction is still in its account's index (``label_index_size``); older ones are
counted in ``txmon_worker_labels_unmatched``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from txmon.contracts import Label

POLICY_KEY = b"\x00policy"
_dumps = json.JSONEncoder(separators=(",", ":")).encode
# Account values are zlib-compressed JSON: a full history is ~11 KB of JSON per account and batch,
# ~3 KB compressed at level 1 (~40 us per value); fewer bytes in every transaction, through the
# producer and the broker. Values written as plain JSON (older changelogs) still restore.
COMPRESSION_LEVEL = 1


def account_value(value: bytes) -> bytes:
    """An account's changelog value as JSON text, whether written compressed or not."""
    return value if value[:1] == b"{" else zlib.decompress(value)


@dataclass
class AccountEntry:
    state: dict[str, Any]
    # [tx_id, counterparty_id, score, event epoch seconds], oldest first, at most label_index_size
    # long and label_index_days old (items restored from older changelogs have no time).
    index: list[list[Any]] = field(default_factory=list)

    _ids: dict[str, list[Any]] | None = field(default=None, repr=False, compare=False)
    # Caches that only save work, never persisted: per-encoder token rows of the history (keyed by
    # the spec's id; see streams.scoring) and the JSON text of history records and index items.
    caches: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)
    _text: dict[int, tuple[Any, Any, str]] = field(default_factory=dict, repr=False, compare=False)

    def _lookup(self) -> dict[str, list[Any]]:
        if self._ids is None:
            self._ids = {item[0]: item for item in self.index}
        return self._ids

    def remember(self, tx_id: str, counterparty_id: str, score: float | None, limit: int,
                 at: int | None = None, max_age: float | None = None) -> None:
        """Index a transaction (event time ``at``, epoch seconds); forget the oldest beyond
        ``limit`` items or older than ``max_age`` seconds before ``at``: what bounds the memory."""
        if limit <= 0:
            return
        item = [tx_id, counterparty_id, score] if at is None else [tx_id, counterparty_id, score, at]
        self.index.append(item)
        ids = self._lookup()
        ids[tx_id] = item
        drop = max(0, len(self.index) - limit)
        if at is not None and max_age:
            # Oldest first: stop at the first young enough (or untimed) item.
            while (drop < len(self.index) and len(self.index[drop]) > 3
                   and self.index[drop][3] < at - max_age):
                drop += 1
        if drop:
            for old in self.index[:drop]:
                ids.pop(old[0], None)
            del self.index[:drop]

    def seen(self, tx_id: str) -> bool:
        return tx_id in self._lookup()

    def find(self, tx_id: str) -> list[Any] | None:
        """[tx_id, counterparty_id, score] of a remembered transaction."""
        return self._lookup().get(tx_id)

    def set_score(self, tx_id: str, score: float) -> None:
        item = self._lookup().get(tx_id)
        if item is not None:
            item[2] = score

    def to_json(self) -> bytes:
        """The changelog value ``{"s": state, "i": index}``, the same text as ``json.dumps`` with
        compact separators, but each history record and index item is serialised once and its text
        reused while it stays unchanged (history records never change once appended; an index item
        changes once, when its score is set): a full history is ~7 KB of text per account write. The
        texts cost memory, about as much again as the JSON of the entry.

        The cache is rebuilt with exactly the texts used: it holds its records alive, and the old
        rule (clear past twice the index's length) let it keep every history record an account
        ever had until its label index was full, ~1 KB per transaction (bench/bench_memory.py)."""
        old, cache = self._text, {}
        self._text = cache
        texts = []
        for k, v in self.state.items():
            if k == "h" and isinstance(v, list):
                rows = []
                for r in v:
                    hit = old.get(id(r))
                    if hit is None or hit[0] is not r:
                        hit = (r, None, _dumps(r))
                    cache[id(r)] = hit
                    rows.append(hit[2])
                texts.append('"h":[' + ",".join(rows) + "]")
            else:
                texts.append(f"{_dumps(k)}:{_dumps(v)}")
        items = []
        for item in self.index:
            hit = old.get(id(item))
            if hit is None or hit[0] is not item or hit[1] != item[2]:
                hit = (item, item[2], _dumps(item))
            cache[id(item)] = hit
            items.append(hit[2])
        return ('{"s":{' + ",".join(texts) + '},"i":[' + ",".join(items) + "]}").encode()


def entry_bytes(entry: AccountEntry) -> bytes:
    """An entry as its changelog value."""
    return zlib.compress(entry.to_json(), COMPRESSION_LEVEL)


def entry_from_bytes(value: bytes) -> AccountEntry:
    data = json.loads(account_value(value))
    return AccountEntry(data["s"], data.get("i", []))


class AccountTable:
    """Accounts of the partitions this worker owns, and which of them changed since the last flush."""

    def __init__(self, new_state: Callable[[], dict[str, Any]], new_policy_state: Callable[[], dict],
                 entries: MutableMapping[str, AccountEntry] | None = None):
        """``entries``: where entries live (default a dict; see :mod:`streams.store`)."""
        self._new_state = new_state
        self._new_policy_state = new_policy_state
        self._entries: MutableMapping[str, AccountEntry] = {} if entries is None else entries
        self._partition_of: dict[str, int] = {}
        self.policy_state: dict[int, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._dirty_policy: set[int] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, account_id: str, partition: int) -> AccountEntry:
        entry = self._entries.get(account_id)
        if entry is None:
            entry = self._entries[account_id] = AccountEntry(self._new_state())
            self._partition_of[account_id] = partition
        return entry

    def peek(self, account_id: str) -> AccountEntry | None:
        return self._entries.get(account_id)

    def touch(self, account_id: str) -> None:
        self._dirty.add(account_id)

    def policy(self, partition: int) -> dict[str, Any]:
        self._dirty_policy.add(partition)
        return self.policy_state.setdefault(partition, self._new_policy_state())

    def changelog(self) -> list[tuple[int, bytes, bytes]]:
        """(partition, key, value) of everything changed since the last call; clears the marks."""
        out = []
        for account in sorted(self._dirty):
            e = self._entries[account]
            out.append((self._partition_of[account], account.encode(), entry_bytes(e)))
        for p in sorted(self._dirty_policy):
            out.append((p, POLICY_KEY, json.dumps(self.policy_state[p]).encode()))
        self._dirty.clear()
        self._dirty_policy.clear()
        return out

    def discard_changes(self) -> None:
        self._dirty.clear()
        self._dirty_policy.clear()

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Replay one changelog partition: later records win, tombstones delete."""
        n = 0
        for key, value in records:
            n += 1
            if key == POLICY_KEY:
                if value is not None:
                    self.policy_state[partition] = json.loads(value)
                continue
            account = key.decode()
            if value is None:
                self._entries.pop(account, None)
                self._partition_of.pop(account, None)
                continue
            self._entries[account] = entry_from_bytes(value)
            self._partition_of[account] = partition
        return n

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget what this worker no longer owns (it was revoked); the changelog keeps it."""
        gone = [a for a, p in self._partition_of.items() if p in partitions]
        for a in gone:
            self._entries.pop(a, None)
            self._partition_of.pop(a, None)
            self._dirty.discard(a)
        for p in partitions:
            self.policy_state.pop(p, None)
            self._dirty_policy.discard(p)


class CounterpartyRisk:
    """The global counterparty-risk table, folded from label events in changelog order."""

    def __init__(self, new_risk: Callable[[], dict[str, Any]],
                 update: Callable[[dict[str, Any], Label, str], dict[str, Any]]):
        self._new_risk = new_risk
        self._update = update
        self._risk: dict[str, dict[str, Any]] = {}
        self.applied = 0

    def __len__(self) -> int:
        return len(self._risk)

    def get(self, counterparty_id: str) -> dict[str, Any]:
        return self._risk.get(counterparty_id) or self._new_risk()

    def apply(self, value: bytes) -> None:
        event = json.loads(value)
        cp = event["counterparty_id"]
        label = Label.model_validate(event["label"])
        self._risk[cp] = self._update(self._risk.get(cp) or self._new_risk(), label, cp)
        self.applied += 1

    @staticmethod
    def event(counterparty_id: str, label: Label) -> bytes:
        return json.dumps({"counterparty_id": counterparty_id,
                           "label": label.model_dump(mode="json", exclude_none=True)},
                          separators=(",", ":")).encode()
