"""Publish a transaction frame to Kafka: transactions at their event time, labels interleaved at
their label time, bad rows to the dead-letter topic. Used by ``txmon replay`` (a user's file) and
``txmon simulate --to-kafka``.

Pacing: as fast as possible (event times advance, nothing waits), ``speed`` N times real time, or a
``rate`` of transactions per second. Labels that fall after the last transaction are published at
the end without waiting.

>>> import pandas as pd
>>> f = pd.DataFrame({"event_time": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True),
...                   "label": ["fraud", None],
...                   "label_time": pd.to_datetime(["2026-01-01T12:00", None], utc=True)})
>>> [(kind, row) for kind, row in schedule(f)]
[('tx', 0), ('label', 0), ('tx', 1)]
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from txmon.contracts import ContractError, DeadLetter
from txmon.frames import to_label, to_transaction
from txmon.mapping import BadRow, Mapped
from txmon.settings import Settings


@dataclass(frozen=True)
class Pacing:
    """How fast to publish: ``speed`` x real time, ``rate`` transactions/second, or neither (fast)."""

    speed: float | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.speed is not None and self.rate is not None:
            raise ValueError("choose a speed or a rate, not both")
        if any(v is not None and v <= 0 for v in (self.speed, self.rate)):
            raise ValueError("speed and rate must be positive")


@dataclass
class PublishReport:
    transactions: int = 0
    labels: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    rejected: list[BadRow] = field(default_factory=list)  # rows the contract refused at publish time

    def as_dict(self) -> dict[str, Any]:
        return {"transactions": self.transactions, "labels": self.labels,
                "dead_letters": self.dead_letters, "seconds": round(self.seconds, 3)}


def schedule(frame: pd.DataFrame) -> Iterator[tuple[str, int]]:
    """(kind, row position) in publishing order: by time, a transaction before a label at the same
    instant; labels only for rows that have both a label and a label time."""
    n = len(frame)
    has_label = (frame["label"].notna() & frame["label_time"].notna()).to_numpy() if "label" in frame \
        else np.zeros(n, bool)
    lpos = np.flatnonzero(has_label)
    times = np.concatenate([frame["event_time"].to_numpy("datetime64[ns]").view(np.int64),
                            frame["label_time"].to_numpy("datetime64[ns]").view(np.int64)[lpos]])
    kind = np.concatenate([np.zeros(n, np.int8), np.ones(lpos.size, np.int8)])
    pos = np.concatenate([np.arange(n), lpos])
    order = np.lexsort((pos, kind, times))
    for k, p in zip(kind[order].tolist(), pos[order].tolist(), strict=True):
        yield ("tx" if k == 0 else "label"), p


def dead_letter(bad: BadRow, source: str, stage: str = "replay") -> DeadLetter:
    return DeadLetter(source_topic=source[:64], partition=0, offset=bad.line,
                      original=base64.b64encode(bad.original).decode(), error=str(bad)[:2048],
                      error_field=(bad.field or None) and bad.field[:64], stage=stage,
                      failed_at=datetime.now(UTC))


class _Producer:
    """kafka-python producer with idempotence and acks=all; raises if any send failed."""

    def __init__(self, settings: Settings):
        from kafka import KafkaProducer

        self._p = KafkaProducer(**settings.kafka.kafka_python_config(), acks="all",
                                enable_idempotence=True, linger_ms=20, batch_size=512 * 1024,
                                max_in_flight_requests_per_connection=5)
        self.errors: list[BaseException] = []

    def send(self, topic: str, key: str | None, value: bytes, timestamp: Any = None) -> None:
        ms = None if timestamp is None else int(pd.Timestamp(timestamp).timestamp() * 1000)
        fut = self._p.send(topic, key=key.encode() if key else None, value=value, timestamp_ms=ms)
        fut.add_errback(self.errors.append)

    def close(self) -> None:
        self._p.flush()
        self._p.close()
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} message(s) were not acknowledged: {self.errors[0]!r}")


def publish(frame: pd.DataFrame, settings: Settings, pacing: Pacing = Pacing(), *,
            bad: Iterable[BadRow] = (), lines: np.ndarray | None = None, source: str = "replay",
            label_source: str = "replay", progress: Callable[[int], None] | None = None,
            sleep: Callable[[float], None] = time.sleep,
            window: tuple[Any, Any] = (None, None), event_timestamps: bool = False) -> PublishReport:
    """Send ``frame`` (a transaction frame sorted or not) and ``bad`` rows to the topics of ``settings``.

    ``lines`` gives each frame row's source line, so a row the contract refuses at publish time
    goes to the dead-letter topic with its line too. ``progress(n)`` is called per transaction.
    ``window=(lo, hi)`` sends only what happens in [lo, hi): transactions by event time, labels by
    label time — so a stream can be published in phases without a label arriving early.
    ``event_timestamps=True`` stamps each record with the time it happened (event time, label
    time) instead of the time it is sent, so time-range reads (training snapshots) line up with
    event time; Kafka's retention then counts from those times too, so history older than the
    topics' retention is deleted at once unless ``TXMON_TOPICS__RETENTION_MS`` is raised.
    """
    stamp = (lambda t: t) if event_timestamps else (lambda _t: None)
    lo, hi = (None if w is None else pd.Timestamp(w) for w in window)
    report = PublishReport()
    t_start = time.monotonic()
    producer = _Producer(settings)
    tx_topic, label_topic, dlq = (settings.topic(n) for n in ("transactions", "labels", "dlq"))
    try:
        for b in bad:
            producer.send(dlq, None, dead_letter(b, source).to_bytes())
            report.dead_letters += 1
        frame = frame.reset_index(drop=True)
        records = frame.to_dict("records")
        first = frame["event_time"].min() if len(frame) else None
        if first is not None and lo is not None:
            first = max(first, lo)
        refused: set[int] = set()
        for kind, pos in schedule(frame):
            row = records[pos]
            at = row["label_time" if kind == "label" else "event_time"]
            if (lo is not None and at < lo) or (hi is not None and at >= hi):
                continue
            if kind == "label":
                if pos in refused:
                    continue
                label = to_label(row, label_source)
                if label is not None:
                    producer.send(label_topic, label.account_id, label.to_bytes(), stamp(label.label_time))
                    report.labels += 1
                continue
            _wait(pacing, report.transactions, row["event_time"], first, t_start, sleep)
            try:
                tx = to_transaction(row)
            except (ContractError, ValueError, ArithmeticError) as exc:
                line = int(lines[pos]) if lines is not None else pos + 1
                b = BadRow(line, f"{getattr(exc, 'field', 'row')}: {getattr(exc, 'problem', exc)}",
                           getattr(exc, "field", None), repr(row).encode())
                producer.send(dlq, None, dead_letter(b, source).to_bytes())
                report.dead_letters += 1
                report.rejected.append(b)
                refused.add(pos)
                continue
            producer.send(tx_topic, tx.account_id, tx.to_bytes(), stamp(tx.event_time))
            report.transactions += 1
            if progress:
                progress(1)
    finally:
        producer.close()
    report.seconds = time.monotonic() - t_start
    return report


def _wait(pacing: Pacing, sent: int, event_time: Any, first: Any, t_start: float,
          sleep: Callable[[float], None]) -> None:
    if pacing.rate:
        due = t_start + sent / pacing.rate
    elif pacing.speed:
        due = t_start + (pd.Timestamp(event_time) - pd.Timestamp(first)).total_seconds() / pacing.speed
    else:
        return
    delay = due - time.monotonic()
    if delay > 0:
        sleep(delay)


def summarize(mapped: Mapped) -> dict[str, Any]:
    """What ``--dry-run`` prints: rows, accounts, time span, label rate, bad rows."""
    f = mapped.frame
    labelled = f["label"].notna() if len(f) else pd.Series(dtype=bool)
    return {
        "rows": len(f) + len(mapped.bad),
        "valid_rows": len(f),
        "bad_rows": len(mapped.bad),
        "accounts": int(f["account_id"].nunique()) if len(f) else 0,
        "first_event": f["event_time"].min().isoformat() if len(f) else None,
        "last_event": f["event_time"].max().isoformat() if len(f) else None,
        "label_rate": float(labelled.mean()) if len(f) else 0.0,
        "labels": {k: int(v) for k, v in f["label"].value_counts().items()} if len(f) else {},
        "positive_rate": float(f["label"].isin(["fraud", "sar"]).sum() / max(1, labelled.sum())),
    }
