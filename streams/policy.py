"""Alert policy: does a score become an alert, at which threshold, and how severe. Pure.

Two modes. ``threshold``: alert at or above a fixed score. ``budget``: at most ``daily_budget``
alerts per UTC day (of the transaction's event time), shared evenly between input partitions so
every worker decides alone and deterministically; alerts are paced through the day (no more than the
day's elapsed share plus ``burst``) so a morning spike cannot use the whole day's analyst capacity.
Critical scores bypass the budget unless configured otherwise.

The per-partition budget state is a small JSON-able dict the worker keeps in its changelog, so a
restarted worker continues the day's count instead of starting over.

>>> from datetime import datetime, UTC
>>> p = AlertPolicy(PolicyConfig(mode="budget", threshold=0.5, daily_budget=4, burst=1), partitions=2)
>>> t = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
>>> state = p.new_state()
>>> [p.decide(0.9, t, state).alert for _ in range(3)]
[True, True, False]
>>> p.decide(0.99, t, state).severity, p.decide(0.99, t, state).alert
('critical', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.config import PolicyConfig
from txmon.contracts import Severity

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Decision:
    alert: bool
    threshold: float
    severity: Severity


class AlertPolicy:
    """Decides per score; ``state`` is the caller's per-partition dict, updated in place."""

    def __init__(self, config: PolicyConfig, partitions: int = 1):
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.config = config
        self.partitions = partitions
        self.partition_budget = math.ceil(config.daily_budget / partitions)

    @staticmethod
    def new_state() -> dict[str, Any]:
        return {"day": None, "used": 0}

    def severity(self, score: float) -> Severity:
        c = self.config
        if score >= c.critical:
            return "critical"
        if score >= c.high:
            return "high"
        if score >= c.medium:
            return "medium"
        return "low"

    def allowance(self, event_time: datetime) -> int:
        """Alerts a partition may have raised by ``event_time`` on its day (pacing plus burst)."""
        midnight = event_time.replace(hour=0, minute=0, second=0, microsecond=0)
        elapsed = (event_time - midnight).total_seconds() / SECONDS_PER_DAY
        return min(self.partition_budget, math.ceil(self.partition_budget * elapsed) + self.config.burst)

    def decide(self, score: float, event_time: datetime, state: dict[str, Any]) -> Decision:
        c = self.config
        severity = self.severity(score)
        if score < c.threshold:
            return Decision(False, c.threshold, severity)
        if c.mode == "threshold":
            return Decision(True, c.threshold, severity)
        day = event_time.date().isoformat()
        # A late event from an earlier day counts against today's budget: days only move forward.
        if state.get("day") is None or day > state["day"]:
            state["day"], state["used"] = day, 0
        within = state["used"] < self.allowance(event_time)
        if within or (severity == "critical" and c.critical_bypasses_budget):
            state["used"] += 1
            return Decision(True, c.threshold, severity)
        return Decision(False, c.threshold, severity)
