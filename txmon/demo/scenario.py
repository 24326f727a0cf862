"""The demo's world: how big, how long, and what drifts when.

One simulation covers history and live traffic. History (before ``live_start``) trains the first
champion with the labels known by then; live traffic is streamed through Kafka, preceded by a short
warm-up so the worker's per-account state holds the same recent history training saw. The drift is a
new fraud pattern — account takeover through a wallet channel the champion never saw, cashed out
abroad — starting a few days into the live period.

>>> plan = DemoPlan.quick()
>>> plan.live_start - plan.start
datetime.timedelta(days=28)
>>> plan.drift_start > plan.live_start
True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from txmon.sim import DriftEvent, LabelConfig, SimConfig


@dataclass(frozen=True)
class DemoPlan:
    accounts: int
    history_days: int
    live_days: int
    drift_after_days: float
    warmup_days: int
    seed: int = 7
    # Transactions per second of live traffic; the stream holds at ``hold_fraction`` of the live
    # period until the retrained model is serving, so there is traffic left to show recovery.
    rate: float = 400.0
    hold_fraction: float = 0.7
    pretrain_epochs: int = 1
    finetune_epochs: int = 3
    drift_rate: float = 150.0  # incidents per 1,000 accounts per 30 days
    daily_alert_budget: int = 40
    # A safety net, not the target: a stage still waiting after this fails the demo.
    timeout_s: float = 900.0

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(accounts=600, history_days=28, live_days=12, drift_after_days=3, warmup_days=4,
                   rate=500.0, pretrain_epochs=1, finetune_epochs=2, timeout_s=600.0)

    @classmethod
    def default(cls) -> DemoPlan:
        return cls(accounts=1500, history_days=45, live_days=21, drift_after_days=5, warmup_days=7,
                   rate=400.0, pretrain_epochs=2, finetune_epochs=4, timeout_s=1500.0)

    @property
    def start(self) -> datetime:
        # Event times end just before now, so Kafka's time-based retention keeps everything.
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=self.history_days + self.live_days + 1)

    @property
    def live_start(self) -> datetime:
        return self.start + timedelta(days=self.history_days)

    @property
    def drift_start(self) -> datetime:
        return self.live_start + timedelta(days=self.drift_after_days)

    def sim_config(self) -> SimConfig:
        drift = DriftEvent(name="ato-wave-via-wallets", kind="fraud_pattern",
                           start=self.drift_start, scenario="account_takeover",
                           rate=self.drift_rate, channel="wallet", country="RO")
        # Labels arrive within days, not weeks, so the loop closes inside a demo.
        labels = LabelConfig(unlabelled_share=0.1, chargeback_days=(0.5, 3.0),
                             legit_days=(0.5, 3.0), aml_days=(2.0, 6.0))
        return SimConfig(accounts=self.accounts, days=self.history_days + self.live_days,
                         seed=self.seed, start=self.start, drift=(drift,), labels=labels)


def split(frame: pd.DataFrame, plan: DemoPlan) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(history with the labels known at live start, warm-up traffic, live traffic)."""
    live_start = pd.Timestamp(plan.live_start)
    warm_start = live_start - pd.Timedelta(days=plan.warmup_days)
    history = frame[frame["event_time"] < live_start].copy()
    late = history["label_time"].isna() | (history["label_time"] >= live_start)
    history.loc[late, ["label", "label_time"]] = [None, pd.NaT]
    warmup = frame[(frame["event_time"] >= warm_start) & (frame["event_time"] < live_start)].copy()
    # Warm-up rows are history: their labels were used for training, so none are re-published.
    warmup[["label", "label_time"]] = [None, pd.NaT]
    live = frame[frame["event_time"] >= live_start].copy()
    return history, warmup, live
