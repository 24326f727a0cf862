"""What the demo watches: scores, alerts, drift and model events, read back from Kafka.

A background thread consumes the output topics with kafka-python (``read_committed``, so only
committed output counts) and keeps running tallies the live display and the report read.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from txmon.contracts import Alert, ContractError, Drift, ModelEvent, Score, decode
from txmon.settings import Settings


@dataclass
class Truth:
    """What the simulator knows about each transaction: when it happened, and was it bad."""

    event_time: dict[str, datetime]
    positive: dict[str, bool]


@dataclass
class Tally:
    scores: int = 0
    alerts: int = 0
    duplicates: int = 0
    shadow: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    first_seen: dict[str, datetime] = field(default_factory=dict)  # model version -> event time
    drift: list[Drift] = field(default_factory=list)
    models: list[ModelEvent] = field(default_factory=list)
    # per scored transaction: tx_id -> (event time, score, alerted, version)
    rows: dict[str, tuple[datetime, float, bool, str]] = field(default_factory=dict)
    # per shadow-scored transaction: tx_id -> (challenger version, score)
    shadow_rows: dict[str, tuple[str, float]] = field(default_factory=dict)


class Collector:
    def __init__(self, settings: Settings, truth: Truth, group: str):
        self.settings = settings
        self.truth = truth
        self.group = group
        self.tally = Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-collector", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from kafka import KafkaConsumer

        s = self.settings
        topics = {s.topic("scores"): Score, s.topic("alerts"): Alert, s.topic("drift"): Drift,
                  s.topic("models"): ModelEvent}
        consumer = KafkaConsumer(*topics, **s.kafka.kafka_python_config(), group_id=self.group,
                                 auto_offset_reset="earliest", isolation_level="read_committed",
                                 enable_auto_commit=False)
        try:
            while not self._stop.is_set():
                for tp, records in consumer.poll(timeout_ms=500).items():
                    contract = topics[tp.topic]
                    for r in records:
                        try:
                            event = decode(contract, r.value)
                        except ContractError:
                            continue
                        with self._lock:
                            self._add(event)
        finally:
            consumer.close()

    def _add(self, event: object) -> None:
        t = self.tally
        if isinstance(event, Score):
            if event.shadow:  # a challenger's score beside the champion's: not a duplicate
                t.shadow += 1
                t.shadow_rows[event.tx_id] = (event.model_version, event.score)
                return
            if event.tx_id in t.rows:
                t.duplicates += 1
                return
            when = self.truth.event_time.get(event.tx_id) or event.event_time
            if when is None:
                return
            t.scores += 1
            t.alerts += event.alerted
            t.versions[event.model_version] += 1
            t.first_seen.setdefault(event.model_version, when)
            t.rows[event.tx_id] = (when, event.score, event.alerted, event.model_version)
        elif isinstance(event, Drift):
            t.drift.append(event)
        elif isinstance(event, ModelEvent):
            t.models.append(event)

    def snapshot(self) -> Tally:
        with self._lock:
            t = self.tally
            return Tally(t.scores, t.alerts, t.duplicates, t.shadow, Counter(t.versions),
                         dict(t.first_seen), list(t.drift), list(t.models), dict(t.rows),
                         dict(t.shadow_rows))

    def frame(self) -> pd.DataFrame:
        """One row per scored transaction with its truth."""
        rows = self.snapshot().rows
        if not rows:
            return pd.DataFrame(columns=["tx_id", "event_time", "score", "alerted", "version",
                                         "positive"])
        f = pd.DataFrame([(k, *v) for k, v in rows.items()],
                         columns=["tx_id", "event_time", "score", "alerted", "version"])
        f["event_time"] = pd.to_datetime(f["event_time"], utc=True)
        f["positive"] = f["tx_id"].map(self.truth.positive).fillna(False).astype(bool)
        return f.sort_values("event_time", ignore_index=True)

    def pairs(self, champion: str, candidate: str) -> pd.DataFrame:
        """Transactions scored by ``champion`` (serving) and ``candidate`` (shadow), with truth."""
        t = self.snapshot()
        both = [(k, r[0], r[1], t.shadow_rows[k][1]) for k, r in t.rows.items()
                if r[3] == champion and t.shadow_rows.get(k, ("",))[0] == candidate]
        f = pd.DataFrame(both, columns=["tx_id", "event_time", "champion", "candidate"])
        f["event_time"] = pd.to_datetime(f["event_time"], utc=True)
        f["positive"] = f["tx_id"].map(self.truth.positive).fillna(False).astype(bool)
        return f.sort_values("event_time", ignore_index=True)


def buckets(frame: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Alerts, true alerts and the serving version per event-time bucket."""
    if frame.empty:
        return pd.DataFrame(columns=["bucket", "transactions", "alerts", "true_alerts",
                                     "model_version"])
    g = frame.assign(bucket=frame["event_time"].dt.floor(freq),
                     true_alert=frame["alerted"] & frame["positive"]).groupby("bucket")
    out = pd.DataFrame({"transactions": g.size(), "alerts": g["alerted"].sum(),
                        "true_alerts": g["true_alert"].sum(),
                        "model_version": g["version"].agg(lambda v: v.mode().iat[0])})
    return out.reset_index()


def precision_at_budget(frame: pd.DataFrame, per_day: int) -> float:
    """Precision of the top ``per_day`` scores of each day: alert quality at a fixed workload."""
    if frame.empty:
        return float("nan")
    day = frame["event_time"].dt.floor("1D")
    top = frame.assign(day=day).sort_values("score", ascending=False).groupby("day").head(per_day)
    return float(top["positive"].mean()) if len(top) else float("nan")


def by_version(frame: pd.DataFrame) -> dict[str, int]:
    return dict(defaultdict(int, frame["version"].value_counts().to_dict())) if len(frame) else {}


def quantiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)}
