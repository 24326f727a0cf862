"""Drift monitoring settings: the false-alarm budget, how events are grouped into checks, windows.

The budget is one expected run time (ERT) between false alarms for the whole monitor, in events
(or hours of traffic at a stated rate). Each detector group gets a share of that budget
(Bonferroni on false-alarm rates: shares sum to one), and alibi-detect's univariate detectors split
their share again across their features (Šidák), so adding a feature does not add false alarms.

Detectors check once per *block* of ``block_events`` consecutive events (block summaries: means and
standard deviations). That keeps the per-event cost to a few array appends and makes a large ERT
in events reachable with a bootstrap count that can actually be simulated. The ``performance`` group is
ADWIN on the delayed-label loss, its ``delta`` calibrated for its share
(:mod:`streams.drift.adwin_budget`). The ``tail`` group is a
CUSUM on high scores per mini-block (:mod:`streams.drift.cusum`): its threshold comes from a Markov
chain, not a bootstrap, and it reacts to a fraud wave within a few hundred to a few thousand events.
With ``seasonal``, every column is compared with its own hour of the week
(:mod:`streams.drift.seasonal`).

>>> c = DriftConfig(ert_events=1_000_000, block_events=500)
>>> round(c.ert_steps("score"))  # checks between false alarms for the score detector
10000
>>> DriftConfig(ert_hours=24, events_per_hour=3600).total_ert_events
86400.0
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Group = Literal["embedding", "features", "score", "binary", "tail", "performance"]
# Bumped when the way a threshold is derived changes, so that references cached or shipped by an
# older release are rebuilt (a worker then warms up) instead of silently keeping old thresholds.
# 2: the tail CUSUM's dispersion is the long-run (block) one (streams.drift.cusum).
# 3: the tail CUSUM is calibrated on the whole contiguous reference window, its dispersion the
#    largest over spans up to a twentieth of it, its expected rate flat (no weekly cycle).
CALIBRATION_METHOD = 3

GROUPS: tuple[Group, ...] = ("embedding", "features", "score", "binary", "tail", "performance")
# About 5.5 hours of traffic at 100 tx/s between false alarms of the whole monitor.
DEFAULT_ERT_EVENTS = 2_000_000.0


class DriftConfigError(ValueError):
    """A drift configuration that cannot deliver its false-alarm budget."""


class DriftConfig(BaseModel):
    """How sensitive the monitor is, and what that costs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # False-alarm budget: one of ert_events, or ert_hours with the traffic rate.
    ert_events: float | None = Field(None, gt=0)
    ert_hours: float | None = Field(None, gt=0)
    events_per_hour: float = Field(360_000.0, gt=0)  # 100 tx/s
    # "performance" is ADWIN on the delayed-label loss: its delta is calibrated for its share
    # (streams.drift.adwin_budget), counted in labelled outcomes (at most one per event).
    budget_shares: dict[Group, float] = Field(default_factory=lambda: {
        "embedding": 0.3, "features": 0.2, "score": 0.2, "binary": 0.2, "tail": 0.05,
        "performance": 0.05})

    # Checks: every block of this many events becomes one detector step.
    block_events: int = Field(500, ge=1)
    # Reference: this many block summaries drawn from the champion's validation window.
    reference_blocks: int = Field(300, ge=20)
    # Binary signals: one event per block is fed to the Fisher exact test (FET needs 0/1 steps).
    binary_reference_events: int = Field(2000, ge=50)

    # Compare like with like: remove an hour-of-day + weekday profile fitted on the reference
    # (when it spans two weeks) from every column before block summaries (streams.drift.seasonal).
    seasonal: bool = True
    # The "tail" group: a CUSUM on how many scores per mini-block exceed the reference's
    # tail_quantile, designed for a rise to tail_ratio times the reference rate (streams.drift.cusum).
    tail_quantile: float = Field(0.99, gt=0.5, lt=1)
    tail_mini_events: int = Field(100, ge=10)
    tail_ratio: float = Field(3.0, gt=1)

    # Windows, in checks (blocks) for CVM/LSDD, in thinned events for FET.
    cvm_windows: tuple[int, ...] = (3, 8)
    lsdd_window: int = Field(6, ge=2)
    fet_windows: tuple[int, ...] = (100,)
    fet_lam: float = Field(0.99, gt=0, le=1)

    # alibi-detect needs n_bootstraps well above 1/(per-check false-alarm rate).
    bootstrap_factor: float = Field(10.0, ge=1.0)
    max_bootstraps: int = Field(2_000_000, ge=100)
    max_lsdd_bootstraps: int = Field(200_000, ge=100)

    # Delayed labels: ADWIN on per-transaction log loss, rolling precision/recall of alerts.
    # adwin_delta is used only when the reference has no calibrated one (no labels, or no
    # "performance" share); it then bounds each test, not an ERT. 1e-4 is what the calibration
    # gave on both benchmarks' references at ERT 5M (losses scaled into [0, 1]; 1e-5 on them
    # missed a model going half blind to fraud within 20,000 outcomes in the tests' synthetic data).
    adwin_delta: float = Field(1e-4, gt=0, lt=1)
    adwin_min_outcomes: int = Field(500, ge=10)
    outcome_window: int = Field(5000, ge=10)

    # Evidence: how many moved features a drift event names.
    evidence_top: int = Field(5, ge=1, le=64)
    # Checkpoint every this many checks (0: only when the caller saves).
    checkpoint_every_blocks: int = Field(20, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> DriftConfig:
        if self.ert_events is not None and self.ert_hours is not None:
            raise DriftConfigError("set ert_events or ert_hours, not both")
        total = sum(self.budget_shares.values())
        if not self.budget_shares or not math.isclose(total, 1.0, rel_tol=1e-6):
            raise DriftConfigError(f"budget_shares must sum to 1 (got {total:g})")
        if any(v <= 0 for v in self.budget_shares.values()):
            raise DriftConfigError("every budget share must be positive; leave a group out instead")
        if min(self.cvm_windows) < 2 or min(self.fet_windows) < 2:
            raise DriftConfigError("windows must hold at least 2 steps")
        return self

    @property
    def total_ert_events(self) -> float:
        """Expected events between false alarms of the whole monitor, on stationary traffic."""
        if self.ert_hours is not None:
            return self.ert_hours * self.events_per_hour
        return float(self.ert_events if self.ert_events is not None else DEFAULT_ERT_EVENTS)

    @property
    def groups(self) -> tuple[Group, ...]:
        return tuple(g for g in GROUPS if g in self.budget_shares)

    def ert_events_for(self, group: Group) -> float:
        """This group's ERT in events: its false-alarm rate is its share of the total rate."""
        return self.total_ert_events / self.budget_shares[group]

    def ert_steps(self, group: Group) -> float:
        """This group's ERT in detector steps (one step per block of ``block_events``)."""
        return self.ert_events_for(group) / self.block_events

    def n_bootstraps(self, group: Group, n_features: int) -> int:
        """Bootstrap streams for threshold simulation; raises when the budget is out of reach.

        Univariate detectors target a per-feature tail probability of about 1/(ERT * features),
        so they need proportionally more streams than a multivariate detector.
        """
        tail = self.ert_steps(group) * (n_features if group != "embedding" else 1)
        n = math.ceil(self.bootstrap_factor * tail)
        cap = self.max_lsdd_bootstraps if group == "embedding" else self.max_bootstraps
        if n > cap:
            raise DriftConfigError(
                f"{group}: an ERT of {self.ert_steps(group):,.0f} checks needs {n:,} bootstrap "
                f"streams (cap {cap:,}); raise block_events, lower the ERT or give {group} a "
                f"larger budget share")
        return n

    def fingerprint(self) -> str:
        """Digest of everything that shapes thresholds: a cached reference is valid only for it."""
        keys = ("block_events", "reference_blocks", "binary_reference_events", "cvm_windows",
                "lsdd_window", "fet_windows", "fet_lam", "bootstrap_factor", "seed", "seasonal",
                "tail_quantile", "tail_mini_events", "tail_ratio", "adwin_min_outcomes")
        shaping = {k: getattr(self, k) for k in keys}
        shaping["ert_steps"] = {g: self.ert_steps(g) for g in self.groups}
        shaping["method"] = CALIBRATION_METHOD
        return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=list).encode()).hexdigest()
