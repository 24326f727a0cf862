"""Worker configuration: ``TXMON_WORKER__*`` environment variables, separate from the shared settings.

>>> c = WorkerConfig(instance_id="w1", batch_size=64)
>>> c.transactional_id
'txmon-scorer-w1'
>>> c.policy.mode
'threshold'
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PolicyConfig(BaseModel):
    """When a score becomes an alert, and how severe it is."""

    mode: Literal["threshold", "budget"] = "threshold"
    threshold: float = Field(0.8, ge=0.0, le=1.0)
    # budget mode: alerts per UTC day over the whole topic, shared evenly between its partitions;
    # ``threshold`` is then the floor below which nothing alerts whatever the budget.
    daily_budget: int = Field(1000, ge=0)
    # Alerts allowed ahead of the day's even pace, so a morning burst is not silenced.
    burst: int = Field(20, ge=0)
    critical_bypasses_budget: bool = True
    # Severity by score: the first band whose lower bound the score reaches, else "low".
    critical: float = Field(0.97, ge=0.0, le=1.0)
    high: float = Field(0.92, ge=0.0, le=1.0)
    medium: float = Field(0.85, ge=0.0, le=1.0)
    max_reasons: int = Field(5, ge=0, le=32)


class RuleConfig(BaseModel):
    """Deterministic AML/fraud rules reported next to the model's reasons (never instead of them)."""

    large_amount: float = 10_000.0
    # Amounts just under a cash-reporting threshold: the classic structuring pattern.
    reporting_threshold: float = 10_000.0
    structuring_band: float = 0.1
    high_risk_countries: tuple[str, ...] = ("KP", "IR", "MM")
    risky_counterparty_rate: float = 0.2


class WorkerConfig(BaseSettings):
    """Everything the scoring worker can be told; see the README section on the worker."""

    model_config = SettingsConfigDict(env_prefix="TXMON_WORKER__", env_nested_delimiter="__",
                                      extra="ignore")

    group_id: str = "txmon-scorer"
    # Stable per deployment slot (a StatefulSet ordinal, a systemd instance name): a restarted worker
    # with the same id fences its dead predecessor and aborts its open transaction at once.
    instance_id: str = Field(default_factory=socket.gethostname)
    batch_size: int = Field(256, ge=1, le=10_000)
    max_wait_ms: int = Field(20, ge=1, le=60_000)
    transaction_timeout_ms: int = Field(30_000, ge=1_000)
    session_timeout_ms: int = Field(10_000, ge=1_000)
    # Back-to-back transactions: the broker answers a produce whose partition it cannot yet verify
    # in the new transaction (the coordinator still completing the last one, KIP-890) with a
    # retriable NOT_ENOUGH_REPLICAS, retried after retry_backoff_ms (aiokafka's default: 100 ms).
    # Back-to-back transactions here (bench/probe_txn_latency.py): 20 ms p90 10-35 ms; 5 ms p90
    # 12-14 ms; 2 ms no better and a worse p99. aiokafka's backoff is not exponential: an
    # unreachable broker is retried every 5 ms until the request timeout.
    retry_backoff_ms: int = Field(5, ge=1)
    # The first AddPartitionsToTxn of a transaction meets CONCURRENT_TRANSACTIONS while the last
    # one's markers are written (5-10 ms here); aiokafka then waits a fixed 20 ms, whatever
    # retry_backoff_ms says. This replaces that wait (streams.txn_backoff): relay p99 115 -> 46 ms.
    concurrent_txn_backoff_ms: float = Field(2.0, gt=0, le=1_000)
    # Transactions per account remembered for joining late labels (counterparty and score): at most
    # label_index_size, none older (event time) than label_index_days before the account's latest
    # (0: no age limit). Together they bound the worker's memory: ~accounts x min(size, days x daily
    # transactions) x ~0.4 KB. 120 days: the simulator's slowest labels (AML investigations).
    label_index_size: int = Field(512, ge=0)
    label_index_days: float = Field(120.0, ge=0)
    credit_tx_types: tuple[str, ...] = ("transfer",)
    # Account entries: "memory", or "rocksdb" (streams.store; needs rocksdict) with the most recent
    # store_cache_entries in memory and the rest in store_dir (default $TXMON_HOME/worker/<id>),
    # wiped at start. Either way they are restored from the changelog.
    store: Literal["memory", "rocksdb"] = "memory"
    store_dir: Path | None = None
    store_cache_entries: int = Field(100_000, ge=1)
    model_dir: Path | None = None
    intra_op_threads: int = Field(1, ge=1)
    # /metrics (Prometheus) and /health; 0 picks a free port (tests), -1 serves neither.
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(9100, ge=-1, le=65535)
    # Score with a ``validated`` challenger beside the champion (shadow=True scores, never alerts).
    shadow: bool = True
    # Drift monitoring of the champion (streams.observer.DriftFeed). Without a cached reference a
    # champion's first ``drift_warmup_events`` scored events become its reference.
    drift: bool = True
    drift_warmup_events: int = Field(20_000, ge=1)
    # Events a freshly started worker scores before its warm-up window opens (its per-account
    # state is still cold then, so those events are no fair reference).
    drift_cold_events: int = Field(0, ge=0)
    # The monitor's checkpoints (``txmon drift status`` reads them); default $TXMON_HOME/drift/state.
    # Several workers on one host need one directory each.
    drift_state_dir: Path | None = None
    # Passed to streams.drift.DriftConfig (e.g. ert_events, block_events); empty: its defaults.
    drift_monitor: dict[str, Any] = Field(default_factory=dict)
    # A JSON line per committed batch (size, oldest record's age, seconds per phase): where the
    # tail latency comes from. A diagnostic, off by default; ~150 bytes per batch.
    batch_trace: Path | None = None
    policy: PolicyConfig = PolicyConfig()
    rules: RuleConfig = RuleConfig()

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}-{self.instance_id}"
