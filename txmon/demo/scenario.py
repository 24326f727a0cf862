"""The demo's world: how big, how long, and what drifts when.

One simulation covers history and live traffic. History (before ``live_start``) trains the first
champion with the labels known by then; live traffic is streamed through Kafka, preceded by a short
warm-up so the worker's per-account state holds the same recent history training saw. The drift is a
new region: the bank's customers start paying merchants in Lithuania (legitimate, but foreign to the
champion), and fraudsters take over accounts there through a wallet channel the champion never
saw — a new fraud pattern in a new place, starting a few days into the live period. Account
takeover is absent from the history (the bank has not met it before), so the champion has never
learnt it and misses much of it; a model fine-tuned on the labels that arrive afterwards should not.

>>> plan = DemoPlan.quick()
>>> (plan.live_start - plan.start).days
28
>>> plan.drift_start > plan.live_start
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd

from txmon.sim import DriftEvent, LabelConfig, SimConfig
from txmon.sim.config import DEFAULT_RATES

LABEL_DAYS_MAX = 6.0  # the latest a demo label arrives after its transaction


@dataclass(frozen=True)
class DemoPlan:
    accounts: int
    history_days: int
    live_days: int
    drift_after_days: float
    warmup_days: int
    seed: int = 7
    # Transactions per second of live traffic; past ``hold_fraction`` of the live period the stream
    # slows to rate / trickle until the retrained model is serving, so the shadow still sees
    # traffic and there is traffic left to show recovery.
    rate: float = 150.0
    hold_fraction: float = 0.75
    trickle: float = 3.0  # a shadow period needs a simulated day or so for its labels to arrive
    pretrain_epochs: int = 1
    finetune_epochs: int = 3
    drift_rate: float = 600.0  # incidents per 1,000 accounts per 30 days
    region_share: float = 0.2  # of everyday card payments that move to the new region
    daily_alert_budget: int = 40
    # Drift detectors sized for a demo: the champion's first events (the warm-up traffic) are its
    # reference; an expected run time of 150,000 events between false alarms is ten times the live
    # traffic, and blocks of 100 events keep detection within a few hundred events of the change.
    drift_warmup_events: int = 4000
    drift_cold_events: int = 2500  # a fresh worker's first events see empty account state
    # The retrain job waits for this many labels after the drift, so it learns the new world.
    labels_after_drift: int = 4000
    # ... of which this many positive: early labels after a drift are mostly of older transactions
    # (a quiet machine started the job on 75 positives, and the candidate lost to the champion).
    positives_after_drift: int = 150
    drift_monitor: dict[str, object] = field(default_factory=lambda: {
        "ert_events": 150_000, "block_events": 100, "reference_blocks": 40, "cvm_windows": [3, 6],
        "lsdd_window": 4, "bootstrap_factor": 3})
    # A safety net, not the target: a stage still waiting after this fails the demo.
    timeout_s: float = 900.0

    @classmethod
    def quick(cls) -> DemoPlan:
        # 4,000 labels after the drift: 2,500 gave the job 74 positives, and a candidate worse
        # than the champion (AP 0.07 vs 0.23); 4,000 gave 223 positives and AP 0.95 vs 0.49.
        return cls(accounts=600, history_days=28, live_days=12, drift_after_days=3, warmup_days=6,
                   rate=150.0, pretrain_epochs=1, finetune_epochs=2, daily_alert_budget=20,
                   timeout_s=600.0)

    @classmethod
    def default(cls) -> DemoPlan:
        return cls(accounts=1500, history_days=45, live_days=21, drift_after_days=5, warmup_days=8,
                   rate=250.0, pretrain_epochs=2, finetune_epochs=4, daily_alert_budget=40,
                   drift_warmup_events=6000, drift_cold_events=6000, labels_after_drift=6000,
                   positives_after_drift=300,
                   timeout_s=1500.0)

    @property
    def start(self) -> datetime:
        # Records carry their event time as Kafka timestamp: everything, late labels included,
        # must lie in the past (Kafka 4 refuses timestamps more than an hour ahead).
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=self.history_days + self.live_days + LABEL_DAYS_MAX + 2)

    @property
    def snapshot_days(self) -> int:
        """The retraining window: the traffic on Kafka (warm-up and live), in whole days."""
        return int(self.warmup_days + self.live_days + LABEL_DAYS_MAX + 2)

    @property
    def live_start(self) -> datetime:
        return self.start + timedelta(days=self.history_days)

    @property
    def drift_start(self) -> datetime:
        return self.live_start + timedelta(days=self.drift_after_days)

    def sim_config(self) -> SimConfig:
        region = DriftEvent(name="new-region-LT", kind="new_region", start=self.drift_start,
                            country="LT", share=self.region_share)
        fraud = DriftEvent(name="ato-wave-in-LT", kind="fraud_pattern", start=self.drift_start,
                           scenario="account_takeover", rate=self.drift_rate, country="LT",
                           channel="wallet")
        # Labels arrive within days, not weeks, so the loop closes inside a demo.
        labels = LabelConfig(unlabelled_share=0.1, chargeback_days=(0.5, 3.0),
                             legit_days=(0.5, 3.0), aml_days=(2.0, LABEL_DAYS_MAX))
        rates = {**DEFAULT_RATES, "account_takeover": 0.0}  # new with the drift, never seen before
        return SimConfig(accounts=self.accounts, days=self.history_days + self.live_days,
                         seed=self.seed, start=self.start, drift=(region, fraud), labels=labels,
                         rates=rates)


def split(frame: pd.DataFrame, plan: DemoPlan) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(history with the labels known at live start, warm-up traffic, live traffic)."""
    live_start = pd.Timestamp(plan.live_start)
    warm_start = live_start - pd.Timedelta(days=plan.warmup_days)
    history = frame[frame["event_time"] < live_start].copy()
    late = history["label_time"].isna() | (history["label_time"] >= live_start)
    history.loc[late, ["label", "label_time"]] = [None, pd.NaT]
    warmup = frame[(frame["event_time"] >= warm_start) & (frame["event_time"] < live_start)].copy()
    live = frame[frame["event_time"] >= live_start].copy()
    return history, warmup, live
