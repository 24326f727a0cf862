"""Performance drift from delayed labels: ADWIN on each transaction's log loss, and the rolling
precision and recall of alerts over the last labelled outcomes.

ADWIN sees each loss divided by the largest possible one (-ln 1e-4 = 9.2): its cut bound assumes
values in [0, 1], and a missed fraud's loss of up to 9.2 otherwise makes cuts far likelier than
``delta`` says. ``delta`` itself bounds one test, not a run time between false alarms: the monitor
uses the one calibrated on the reference's losses for its share of the budget
(:mod:`streams.drift.adwin_budget`). Only a rise in loss counts as drift; a model getting better
is not news for the retrain controller.

>>> t = OutcomeTracker(delta=1e-3, min_outcomes=50, window=100)
>>> hits = [t.update(0.9, True, True) for _ in range(200)]
>>> any(hits), round(t.precision, 2), round(t.recall, 2)
(False, 1.0, 1.0)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

EPS = 1e-4
MAX_LOSS = -math.log(EPS)


def log_loss(score: float, positive: bool) -> float:
    p = min(max(float(score), EPS), 1 - EPS)
    return -math.log(p if positive else 1 - p)


@dataclass(frozen=True)
class LossShift:
    """ADWIN cut its window: the mean loss before and after, and the new window's length."""

    before: float
    after: float
    width: int


class OutcomeTracker:
    """Feeds ADWIN one loss per labelled transaction; keeps alert precision/recall on a window."""

    def __init__(self, delta: float, min_outcomes: int, window: int):
        from river.drift import ADWIN

        self.delta = float(delta)
        self._adwin = ADWIN(delta=self.delta)
        self.min_outcomes = min_outcomes
        self._recent: deque[tuple[bool, bool]] = deque(maxlen=window)
        self.seen = 0
        self.last_loss_mean = float("nan")

    def update(self, score: float, positive: bool, alerted: bool) -> LossShift | None:
        self._recent.append((bool(positive), bool(alerted)))
        return self.update_loss(log_loss(score, positive))

    def update_loss(self, loss: float) -> LossShift | None:
        """Feed one log loss (the calibration's simulation feeds these directly)."""
        self.seen += 1
        a = self._adwin
        prev_mean, prev_width = a.estimation * MAX_LOSS, a.width
        a.update(loss / MAX_LOSS)
        after = a.estimation * MAX_LOSS
        self.last_loss_mean = after
        if not a.drift_detected or self.seen < self.min_outcomes:
            return None
        dropped = prev_width + 1 - a.width
        before = ((prev_mean * prev_width + loss - after * a.width) / dropped
                  if dropped > 0 else prev_mean)
        if after <= before:
            return None
        return LossShift(before=before, after=after, width=int(a.width))

    @property
    def precision(self) -> float:
        alerted = [pos for pos, al in self._recent if al]
        return sum(alerted) / len(alerted) if alerted else float("nan")

    @property
    def recall(self) -> float:
        positives = [al for pos, al in self._recent if pos]
        return sum(positives) / len(positives) if positives else float("nan")

    @property
    def width(self) -> int:
        return int(self._adwin.width)

    def state(self) -> dict[str, Any]:
        return {"adwin": self._adwin, "recent": list(self._recent), "seen": self.seen,
                "last_loss_mean": self.last_loss_mean}

    def load(self, state: dict[str, Any]) -> None:
        self._adwin = state["adwin"]
        self.delta = float(self._adwin.delta)  # the checkpoint's delta: what its window was cut with
        self._recent.clear()
        self._recent.extend(tuple(r) for r in state["recent"])
        self.seen = int(state["seen"])
        self.last_loss_mean = float(state["last_loss_mean"])
