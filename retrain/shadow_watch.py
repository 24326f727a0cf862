"""The shadow period, watched: once a challenger that awaits shadow evidence has enough of it,
record the shadow gate (which promotes, rejects or waits for approval, as the policy says).

The controller service calls :meth:`ShadowWatch.check` every ``interval_s``. "Enough" is the shadow
policy's ``min_events`` paired scores, ``min_labelled`` arrived labels and ``min_hours``; before
that nothing is recorded. A challenger that never gathers enough evidence within ``max_hours`` is
judged on what it has (and so fails the gate), so a shadow period cannot hang forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from models.registry import CHALLENGER, CHAMPION
from retrain.shadow import ShadowSummary, read_shadow, shadow_gate

log = logging.getLogger(__name__)


def enough(summary: ShadowSummary, min_events: int, min_labelled: int, min_hours: float,
           min_positives: int = 1) -> bool:
    """Has the shadow period gathered the evidence its policy asks for?

    >>> s = ShadowSummary("v1", "v2", events=900, hours=2.0, labelled=40, positives=3,
    ...                   champion_ap=0.1, challenger_ap=0.2, champion_alert_rate=0.01,
    ...                   challenger_alert_rate=0.01, mean_abs_diff=0.05)
    >>> enough(s, 1000, 30, 0), enough(s, 500, 30, 0), enough(s, 500, 30, 0, min_positives=5)
    (False, True, False)
    """
    return (summary.events >= min_events and summary.labelled >= min_labelled
            and summary.positives >= min_positives and summary.hours >= min_hours)


@dataclass
class ShadowWatch:
    settings: Any
    governance: Callable[[], Any]  # a fresh Governance (registry, audit, publisher, policy)
    interval_s: float = 15.0
    max_hours: float = 72.0
    reader: Callable[..., ShadowSummary] = read_shadow
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _last: float = field(default=0.0, init=False)

    def check(self) -> str | None:
        """Evaluate the waiting challenger, at most every ``interval_s``; returns the outcome when a
        shadow gate was recorded."""
        if time.monotonic() - self._last < self.interval_s:
            return None
        self._last = time.monotonic()
        gov = self.governance()
        challenger = gov.registry.alias(CHALLENGER)
        if challenger is None or challenger.status != "awaiting_shadow":
            return None
        champion = gov.registry.alias(CHAMPION)
        if champion is None:
            return None
        now = self.clock()
        started = datetime.fromtimestamp(challenger.created_ms / 1000, tz=UTC)
        p = gov.policy.shadow
        # Shadow scores are stamped when scored; their labels arrive later, up to now.
        summary = self.reader(self.settings, started - timedelta(days=gov.policy.snapshot.window_days),
                              now, champion.tags.get("model_version", champion.version),
                              challenger.tags.get("model_version", challenger.version),
                              gov.policy.gates.alert_budget, confidence=p.confidence,
                              bootstraps=p.bootstraps)
        overdue = now - started > timedelta(hours=self.max_hours)
        if not (enough(summary, p.min_events, p.min_labelled, p.min_hours, p.min_positives) or overdue):
            log.info("shadow %s: %d paired events, %d labelled so far", challenger.version,
                     summary.events, summary.labelled)
            return None
        gate = shadow_gate(summary, p)
        outcome = gov.record_shadow(challenger.version, gate, summary.to_dict())
        log.info("shadow gate for %s: %s -> %s", challenger.version,
                 "passed" if gate.passed else "failed", outcome)
        return outcome
