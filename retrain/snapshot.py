"""The training snapshot: transactions and the labels that had arrived, for a time window, read
from Kafka by timestamp, pseudonymised, checked and hashed.

The Kafka side (:func:`read_window`) uses kafka-python's ``offsets_for_times`` to find where the
window starts and ends in every partition, with no consumer group (a snapshot must not move anyone's
committed offsets). The pure side (:func:`build_snapshot`) turns decoded events into a frame, joins
each transaction to its latest label that arrived by the snapshot time, pseudonymises identifiers,
runs the data checks and computes a content hash over the frame.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from retrain.checks import Check, check_min_positives, positives, run_checks
from retrain.policy import SnapshotPolicy
from retrain.pseudonymise import Pseudonymiser
from txmon.contracts import ContractError, Label, Transaction, decode
from txmon.frames import empty_frame

FRAME_FILE = "frame.parquet"
META_FILE = "snapshot.json"


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def read_window(settings: Any, topic: str, start: datetime, end: datetime,
                timeout_s: float = 60.0) -> Iterator[tuple[int, bytes]]:
    """Yield ``(timestamp_ms, value)`` of every record of ``topic`` with start <= timestamp < end.

    Partitions are assigned directly (no group, no commits). Records past ``end`` in a partition
    stop that partition; the read finishes when every partition reached its end offset.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka.kafka_python_config(), enable_auto_commit=False,
                             group_id=None, auto_offset_reset="earliest",
                             consumer_timeout_ms=int(timeout_s * 1000))
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise LookupError(f"topic {topic!r} does not exist or has no partitions")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        latest = consumer.end_offsets(tps)
        first = consumer.offsets_for_times({tp: _ms(start) for tp in tps})
        after = consumer.offsets_for_times({tp: _ms(end) for tp in tps})
        stop: dict[Any, int] = {}
        for tp in tps:
            begin = first[tp].offset if first[tp] is not None else latest[tp]
            stop[tp] = after[tp].offset if after[tp] is not None else latest[tp]
            if begin >= stop[tp]:
                consumer.pause(tp)
                continue
            consumer.seek(tp, begin)
        remaining = {tp for tp in tps if tp not in consumer.paused()}
        deadline = datetime.now().timestamp() + timeout_s
        while remaining:
            if datetime.now().timestamp() > deadline:
                raise TimeoutError(f"{topic}: window not read within {timeout_s:.0f}s")
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    if r.offset >= stop[tp]:
                        break
                    if _ms(start) <= r.timestamp < _ms(end):
                        yield r.timestamp, r.value
                if consumer.position(tp) >= stop[tp]:
                    consumer.pause(tp)
                    remaining.discard(tp)
    finally:
        consumer.close()


@dataclass
class Snapshot:
    """A checked, pseudonymised training frame and the facts an auditor needs about it."""

    frame: pd.DataFrame
    window_start: datetime
    snapshot_time: datetime
    holdout_start: datetime
    content_sha256: str
    key_fingerprint: str
    checks: list[Check]
    rejected_records: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def train(self) -> pd.DataFrame:
        return self.frame[self.frame["event_time"] < self.holdout_start]

    @property
    def holdout(self) -> pd.DataFrame:
        return self.frame[self.frame["event_time"] >= self.holdout_start]

    def summary(self) -> dict[str, Any]:
        """Window, counts, hash and checks: what goes to the audit log, the registry and the card."""
        f = self.frame
        return {
            "window_start": self.window_start.isoformat(), "snapshot_time": self.snapshot_time.isoformat(),
            "holdout_start": self.holdout_start.isoformat(), "rows": len(f),
            "labelled": int(f["label"].notna().sum()), "positives": int(positives(f).sum()),
            "train_rows": len(self.train), "holdout_rows": len(self.holdout),
            "train_positives": int(positives(self.train).sum()),
            "holdout_positives": int(positives(self.holdout).sum()),
            "accounts": int(f["account_id"].nunique()), "content_sha256": self.content_sha256,
            "pseudonym_key_fingerprint": self.key_fingerprint,
            "rejected_records": self.rejected_records,
            "checks": [{"name": c.name, "passed": c.passed, "value": c.value, "detail": c.detail}
                       for c in self.checks],
        }

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.frame.to_parquet(directory / FRAME_FILE, index=False)
        (directory / META_FILE).write_text(json.dumps(self.summary(), indent=2))
        return directory


def content_hash(frame: pd.DataFrame) -> str:
    """sha256 over the frame's columns and rows in tx_id order: same data, same hash."""
    ordered = frame.sort_values(["tx_id", "event_time"], kind="stable").reset_index(drop=True)
    h = hashlib.sha256(json.dumps(list(map(str, ordered.columns))).encode())
    h.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    return h.hexdigest()


def check_window_coverage(timestamps_ms: list[int], window_start: datetime,
                          slack: timedelta = timedelta(days=1)) -> Check:
    """The topic still holds the start of the window: a window cut short by topic retention (or a
    compacted or recreated topic) would silently train on less history than the policy asks."""
    if not timestamps_ms:
        return Check("window_coverage", False, detail="no transactions in the window")
    first = datetime.fromtimestamp(min(timestamps_ms) / 1000, tz=window_start.tzinfo)
    late = (first - window_start).total_seconds() / 86400
    return Check("window_coverage", first <= window_start + slack, round(late, 2),
                 slack.total_seconds() / 86400,
                 f"earliest transaction on the topic is {late:.1f} days after the window start "
                 "(check topic retention against snapshot.window_days)" if first > window_start + slack
                 else "the topic covers the whole window")


def _decode_all(contract: type, records: Iterable[tuple[int, bytes]]) -> tuple[list, int]:
    out, bad = [], 0
    for _, raw in records:
        try:
            out.append(decode(contract, raw))
        except ContractError:
            bad += 1  # the worker already sent these to the DLQ; a snapshot just leaves them out
    return out, bad


def transactions_frame(txs: list[Transaction]) -> pd.DataFrame:
    if not txs:
        return empty_frame()
    f = pd.DataFrame([t.model_dump(exclude={"schema_version"}) for t in txs])
    f = f.reindex(columns=list(empty_frame().columns))
    f["amount"] = f["amount"].astype("float64")
    f["event_time"] = pd.to_datetime(f["event_time"], utc=True)
    return f


def join_labels(frame: pd.DataFrame, labels: list[Label]) -> pd.DataFrame:
    """Each transaction gets its latest label. Which labels had *arrived* by the snapshot time is
    the reader's job (Kafka timestamps); a label that claims a later ``label_time`` is left in, for
    the leakage check to reject the snapshot — it means a broken label feed, not data to drop."""
    out = frame.drop(columns=["label", "label_time"], errors="ignore")
    if labels:
        lab = pd.DataFrame([{"tx_id": x.tx_id, "label": x.label, "label_time": x.label_time}
                            for x in labels])
        lab["label_time"] = pd.to_datetime(lab["label_time"], utc=True)
        lab = lab.sort_values("label_time").drop_duplicates("tx_id", keep="last")
        out = out.merge(lab, on="tx_id", how="left")
    else:
        out["label"], out["label_time"] = None, pd.NaT
    out["label_time"] = pd.to_datetime(out["label_time"], utc=True)
    return out


def build_snapshot(transactions: Iterable[tuple[int, bytes]], labels: Iterable[tuple[int, bytes]],
                   window_start: datetime, snapshot_time: datetime, policy: SnapshotPolicy,
                   pseudonymiser: Pseudonymiser) -> Snapshot:
    """Decoded, joined, pseudonymised, checked and hashed; raw ids never leave this function."""
    transactions = list(transactions)
    coverage = check_window_coverage([ts for ts, _ in transactions], window_start)
    txs, bad_tx = _decode_all(Transaction, transactions)
    labs, bad_lab = _decode_all(Label, labels)
    txs = [t for t in txs if window_start <= t.event_time < snapshot_time]
    frame = join_labels(transactions_frame(txs), labs)
    frame = pseudonymiser.frame(frame).sort_values("event_time", kind="stable").reset_index(drop=True)
    # Labels lag transactions by days or weeks, so "the most recent week" by event time would be
    # unlabelled: the holdout is the last holdout_days before the newest *labelled* transaction.
    labelled = frame.loc[frame["label"].notna(), "event_time"]
    newest = labelled.max().to_pydatetime() if len(labelled) else snapshot_time
    holdout_start = newest - timedelta(days=policy.holdout_days)
    checks = run_checks(frame, pd.Timestamp(snapshot_time), None, policy.max_duplicate_fraction)
    checks.append(coverage)
    if checks[0].passed:
        recent = frame["event_time"] >= pd.Timestamp(holdout_start)
        checks += [check_min_positives(frame[~recent], policy.min_positives, "min_train_positives"),
                   check_min_positives(frame[recent], policy.min_holdout_positives,
                                       "min_holdout_positives")]
    return Snapshot(frame=frame, window_start=window_start, snapshot_time=snapshot_time,
                    holdout_start=holdout_start, content_sha256=content_hash(frame),
                    key_fingerprint=pseudonymiser.fingerprint, checks=checks,
                    rejected_records={"transactions": bad_tx, "labels": bad_lab})


def take_snapshot(settings: Any, policy: SnapshotPolicy, pseudonymiser: Pseudonymiser,
                  snapshot_time: datetime, timeout_s: float = 120.0) -> Snapshot:
    """Read the window from Kafka and build the snapshot.

    Transactions are read by Kafka timestamp over the window; labels from the window start up to the
    snapshot time (they arrive late, so their timestamps run later than their transactions').
    """
    start = snapshot_time - timedelta(days=policy.window_days)
    txs = read_window(settings, settings.topic("transactions"), start, snapshot_time, timeout_s)
    labels = read_window(settings, settings.topic("labels"), start, snapshot_time, timeout_s)
    return build_snapshot(list(txs), list(labels), start, snapshot_time, policy, pseudonymiser)
