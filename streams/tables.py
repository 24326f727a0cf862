"""The worker's state: per-account history (partitioned like the input) and counterparty risk (global).

**Accounts** — each account's recent history (``models.features`` state), a bounded index of its
recent transactions (tx_id -> counterparty, score) to join late labels, and, per input partition, the
alert budget's state. Held in memory and made durable by a compacted changelog topic written *inside
the same Kafka transaction* as the scores and the consumed offsets, one changelog partition per input
partition; a worker that is assigned a partition replays that changelog partition (read_committed)
before it scores. (Entries are in memory, or with ``store="rocksdb"`` mostly on local disk,
:mod:`streams.store`; either way they are restored from the changelog, and restore time is bounded
by compaction.)

**Changelog layout: deltas that compact.** An account is several keys, so a transaction writes what
it changed, not the whole entry (the history and the label index are append-only rings):

=========================  =============================================================
``<account>``              head: the state without its history; counts and ring sizes
``<account>\\x00h<k>``      ``[seq, record]``, history record ``seq``, ``k = seq % history ring``
``<account>\\x00i<k>``      ``[tx_id, counterparty, score, at, seq]``, ``k = seq % index ring``
=========================  =============================================================

The rings are as long as the history and the label index may be (``AccountTable.rings``), and
compaction keeps the latest value per key, so the changelog holds what the entry holds and a
little more (items the age bound dropped). An entry whose rings change size (a new
``label_index_size``) is written out whole once.

Writing the whole entry (history, label index, recent counterparties) at every change cost ~40% of
the worker's CPU per transaction (serialising and compressing ~15 KB), and in production, where an
account seldom appears twice in a batch, one whole entry per transaction. A whole entry as older
changelogs hold it (JSON, maybe zlib-compressed) still restores, and is written out as deltas at
its next change.

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
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from txmon.contracts import Label, tight

POLICY_KEY = b"\x00policy"


def _numpy_scalar(value: Any) -> Any:
    if hasattr(value, "item"):  # a numpy float or int (orjson takes no subclass of float)
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any) -> bytes:
    # Changelog values are written at every change of every account: orjson writes the same
    # compact JSON as json.dumps(separators=(",", ":")) 5-10 times faster (a head record with 64
    # recent counterparties: 3.7 vs 18.6 us). Copied out of orjson's buffer: see tight().
    return tight(orjson.dumps(value, default=_numpy_scalar))


def account_value(value: bytes) -> bytes:
    """An account's changelog value as JSON text, whether written compressed or not."""
    return value if value[:1] in (b"{", b"[") else zlib.decompress(value)


@dataclass
class AccountEntry:
    """One account: its feature ``state`` (``state["h"]`` is an append-only history and
    ``state["n"]`` counts every record ever appended, so record ``j`` of ``h`` is number
    ``n - len(h) + 1 + j``) and its label ``index`` of ``[tx_id, counterparty, score, at, seq]``,
    oldest first, at most label_index_size long and label_index_days old (``at`` is the event's
    epoch seconds, None for items restored from old changelogs)."""

    state: dict[str, Any]
    index: list[list[Any]] = field(default_factory=list)
    seq: int = 0  # index items ever remembered
    # What the changelog already holds: history records and index items up to these numbers.
    written: tuple[int, int] = (0, 0)
    rings: tuple[int, int] = (0, 0)  # (history, index) ring sizes its changelog records are under

    _ids: dict[str, list[Any]] | None = field(default=None, repr=False, compare=False)
    # Per-encoder token rows of the history, keyed by the spec's id (streams.scoring): they only
    # save work and are never persisted.
    caches: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)

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
        self.seq += 1
        item = [tx_id, counterparty_id, score, at, self.seq]
        self.index.append(item)
        ids = self._lookup()
        ids[tx_id] = item
        drop = max(0, len(self.index) - limit)
        if at is not None and max_age:
            # Oldest first: stop at the first young enough (or untimed) item.
            while (drop < len(self.index) and self.index[drop][3] is not None
                   and self.index[drop][3] < at - max_age):
                drop += 1
        if drop:
            for old in self.index[:drop]:
                ids.pop(old[0], None)
            del self.index[:drop]

    def seen(self, tx_id: str) -> bool:
        return tx_id in self._lookup()

    def find(self, tx_id: str) -> list[Any] | None:
        """[tx_id, counterparty_id, score, ...] of a remembered transaction."""
        return self._lookup().get(tx_id)

    def set_score(self, tx_id: str, score: float) -> None:
        """Set a remembered transaction's score: before the changelog is next written (the worker
        does so in the batch that remembered it), or the changelog keeps the old one."""
        item = self._lookup().get(tx_id)
        if item is not None:
            item[2] = score

    def delta(self, key: bytes, rings: tuple[int, int]) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of what changed since the last call: new history records, new index items
        (with the scores they have now), and the head; marks them written. ``rings``: (history,
        index) ring sizes, at least as long as the history and the index may grow."""
        h = self.state.get("h") or []
        if len(h) > rings[0] or len(self.index) > rings[1]:
            raise ValueError(f"{len(h)} history records, {len(self.index)} index items: rings "
                             f"of {rings}")
        if rings != self.rings:  # a record may sit in a slot the new ring reuses: write all
            self.written, self.rings = (0, 0), rings
        n = int(self.state.get("n", len(h)))
        first = n - len(h) + 1  # number of h[0]
        for j in range(max(0, self.written[0] + 1 - first), len(h)):
            seq = first + j
            yield key + b"\x00h%d" % (seq % rings[0]), _dumps([seq, h[j]])
        for item in self.index[self._first_unwritten():]:
            yield key + b"\x00i%d" % (item[4] % rings[1]), _dumps(item)
        head = {"s": {k: v for k, v in self.state.items() if k != "h"},
                "hc": len(h), "ic": len(self.index), "seq": self.seq, "rings": rings}
        yield key, _dumps(head)
        self.written = (n, self.seq)

    def _first_unwritten(self) -> int:
        i = len(self.index)
        while i > 0 and self.index[i - 1][4] > self.written[1]:
            i -= 1
        return i

    def to_json(self) -> bytes:
        """The whole entry as JSON (the local store's format, and older changelogs')."""
        return _dumps({"s": self.state, "i": self.index, "seq": self.seq,
                       "w": list(self.written), "rings": list(self.rings)})


def entry_bytes(entry: AccountEntry) -> bytes:
    """An entry as one value (streams.store keeps evicted entries so)."""
    return zlib.compress(entry.to_json(), 1)


def entry_from_bytes(value: bytes) -> AccountEntry:
    """An entry from one value: :func:`entry_bytes`', or a whole entry of an older changelog (its
    index items get numbers, and it is marked unwritten: its next change writes it all as deltas)."""
    data = orjson.loads(account_value(value))
    index = data.get("i", [])
    if "seq" in data:
        return AccountEntry(data["s"], index, data["seq"], tuple(data.get("w", (0, 0))),
                            tuple(data.get("rings", (0, 0))))
    items = [[*item[:3], item[3] if len(item) > 3 else None, j + 1] for j, item in enumerate(index)]
    return AccountEntry(data["s"], items, len(items))


class ChangelogRestore:
    """Rebuilds one partition's accounts from its changelog records, in offset order, given in as
    many chunks as the reader likes; :meth:`finish` puts them in the table."""

    def __init__(self, table: AccountTable, partition: int):
        self.table = table
        self.partition = partition
        self.records = 0
        # account -> [head (dict, AccountEntry of an old changelog, or None: deleted),
        #             history {seq: record}, index {seq: item}]
        self._parts: dict[str, list[Any]] = {}

    def apply(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        n = 0
        for key, value in records:
            n += 1
            if key == POLICY_KEY:
                if value is not None:
                    self.table.policy_state[self.partition] = json.loads(value)
                continue
            account, sep, slot = key.partition(b"\x00")
            parts = self._parts.setdefault(account.decode(), [None, {}, {}])
            if not sep:
                if value is None:
                    self._parts[account.decode()] = [None, {}, {}]
                    continue
                text = account_value(value)
                data = orjson.loads(text)
                parts[0] = data if "hc" in data else entry_from_bytes(text)
            elif value is not None and slot[:1] == b"h":
                seq, record = orjson.loads(value)
                parts[1][seq] = record
            elif value is not None and slot[:1] == b"i":
                item = orjson.loads(value)
                parts[2][item[4]] = item
        self.records += n
        return n

    def finish(self) -> int:
        """Install the rebuilt accounts (a deleted one is removed); returns the records applied."""
        t = self.table
        for account, (head, history, index) in self._parts.items():
            if head is None:
                t._entries.pop(account, None)
                t._partition_of.pop(account, None)
                continue
            entry = head if isinstance(head, AccountEntry) else _assemble(account, head, history, index)
            t._entries[account] = entry
            t._partition_of[account] = self.partition
        self._parts.clear()
        return self.records


def _assemble(account: str, head: dict[str, Any], history: dict[int, Any],
              index: dict[int, list[Any]]) -> AccountEntry:
    state = dict(head["s"])
    n, seq = int(state.get("n", head["hc"])), int(head["seq"])
    try:
        state["h"] = [history[s] for s in range(n - head["hc"] + 1, n + 1)]
        items = [index[s] for s in range(seq - head["ic"] + 1, seq + 1)]
    except KeyError as exc:  # a committed head always comes with its records
        raise RuntimeError(f"changelog of account {account!r} lacks record {exc}") from None
    return AccountEntry(state, items, seq, (n, seq), tuple(head["rings"]))


class AccountTable:
    """Accounts of the partitions this worker owns, and which of them changed since the last flush."""

    def __init__(self, new_state: Callable[[], dict[str, Any]], new_policy_state: Callable[[], dict],
                 entries: MutableMapping[str, AccountEntry] | None = None,
                 rings: tuple[int, int] = (32, 512)):
        """``entries``: where entries live (default a dict; see :mod:`streams.store`); ``rings``:
        the longest history (``models.features.HISTORY_MAX``) and label index
        (``label_index_size``) an entry may hold."""
        self.rings = (max(1, rings[0]), max(1, rings[1]))
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
            p = self._partition_of[account]
            out.extend((p, k, v) for k, v in self._entries[account].delta(account.encode(),
                                                                        self.rings))
        for p in sorted(self._dirty_policy):
            out.append((p, POLICY_KEY, json.dumps(self.policy_state[p]).encode()))
        self._dirty.clear()
        self._dirty_policy.clear()
        return out

    def discard_changes(self) -> None:
        self._dirty.clear()
        self._dirty_policy.clear()

    def restorer(self, partition: int) -> ChangelogRestore:
        return ChangelogRestore(self, partition)

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Replay one changelog partition at once: later records win, tombstones delete."""
        r = self.restorer(partition)
        r.apply(records)
        return r.finish()

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
