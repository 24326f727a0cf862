"""Shadow evaluation: the challenger scores live traffic beside the champion, without alerting, and
is compared with it as labels arrive.

The worker does the scoring (it owns the live traffic): for every transaction it also scores with
the challenger and publishes that score on ``txmon.scores`` with ``shadow=True`` and the challenger's
``model_version``, never raising an alert for it. This module joins those pairs with the labels that
have arrived (:func:`compare`) and turns the comparison into one more gate (:func:`shadow_gate`).

>>> from datetime import datetime, UTC
>>> t = datetime(2026, 3, 1, tzinfo=UTC)
>>> s = [Score(tx_id="a", account_id="x", score=0.9, model_version="c1", alerted=True,
...            latency_ms=1, scored_at=t),
...      Score(tx_id="a", account_id="x", score=0.7, model_version="c2", alerted=False,
...            latency_ms=1, scored_at=t, shadow=True)]
>>> compare(s, [], "c1", "c2").events
1
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np

from retrain.bootstrap import ap_gap_bounds
from retrain.gates import average_precision, threshold_at_budget
from retrain.policy import ShadowPolicy
from txmon.contracts import POSITIVE_LABELS, GateResult, Label, Score


@dataclass(frozen=True)
class ShadowSummary:
    """The champion/challenger comparison over the shadow period so far."""

    champion_version: str
    challenger_version: str
    events: int              # transactions scored by both
    hours: float             # from the first to the last paired score
    labelled: int
    positives: int
    champion_ap: float
    challenger_ap: float
    champion_alert_rate: float     # at the champion's own threshold (its alerts)
    challenger_alert_rate: float   # at that same threshold
    mean_abs_diff: float
    # Bootstrap bounds on challenger AP - champion AP at ``confidence`` (retrain/bootstrap.py).
    ap_gap_low: float = float("nan")
    ap_gap_high: float = float("nan")
    confidence: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def compare(scores: Iterable[Score], labels: Iterable[Label], champion_version: str,
            challenger_version: str, alert_budget: float = 0.01, confidence: float = 0.95,
            bootstraps: int = 1000) -> ShadowSummary:
    """Pair champion and challenger scores by tx_id and compare them on the labels that arrived."""
    champ: dict[str, Score] = {}
    chall: dict[str, Score] = {}
    for s in scores:
        if s.model_version == champion_version and not s.shadow:
            champ[s.tx_id] = s
        elif s.model_version == challenger_version and s.shadow:
            chall[s.tx_id] = s
    both = sorted(set(champ) & set(chall))
    truth: dict[str, bool] = {}
    for lab in sorted(labels, key=lambda x: x.label_time):
        truth[lab.tx_id] = lab.label in POSITIVE_LABELS
    a = np.array([champ[t].score for t in both], float)
    b = np.array([chall[t].score for t in both], float)
    times = [x for t in both for x in (champ[t].scored_at, chall[t].scored_at) if x is not None]
    hours = ((max(times) - min(times)).total_seconds() / 3600) if times else 0.0
    lab_ids = [i for i, t in enumerate(both) if t in truth]
    y = np.array([truth[both[i]] for i in lab_ids], bool)
    # The champion's live threshold is the lowest score it alerted on; the budget if it never did.
    alerted = [s.score for s in champ.values() if s.alerted]
    thr = min(alerted) if alerted else threshold_at_budget(a, alert_budget)
    low, high = ap_gap_bounds(y, b[lab_ids], a[lab_ids], confidence=confidence,
                              bootstraps=bootstraps) if len(lab_ids) else (math.nan, math.nan)
    return ShadowSummary(
        champion_version=champion_version, challenger_version=challenger_version,
        events=len(both), hours=hours, labelled=len(lab_ids), positives=int(y.sum()),
        champion_ap=average_precision(y, a[lab_ids]) if len(lab_ids) else float("nan"),
        challenger_ap=average_precision(y, b[lab_ids]) if len(lab_ids) else float("nan"),
        champion_alert_rate=float((a >= thr).mean()) if len(a) else float("nan"),
        challenger_alert_rate=float((b >= thr).mean()) if len(b) else float("nan"),
        mean_abs_diff=float(np.abs(a - b).mean()) if len(a) else float("nan"),
        ap_gap_low=low, ap_gap_high=high, confidence=confidence)


def shadow_gate(s: ShadowSummary, p: ShadowPolicy) -> GateResult:
    """Enough shadow traffic and labels, the AP gap judged on its bootstrap bounds as the policy's
    ``decision`` says, alert volume in bounds.

    With few labelled positives the AP point estimates are noise, so the verdict uses the bounds:
    ``non_inferiority`` needs the lower bound above ``-ap_tolerance`` (evidence the challenger is no
    worse); ``no_regression`` fails when the upper bound is below it (evidence it is worse).
    """
    problems = []
    if s.events < p.min_events:
        problems.append(f"{s.events} events < {p.min_events}")
    if s.hours < p.min_hours:
        problems.append(f"{s.hours:.1f} h < {p.min_hours:g} h")
    if s.labelled < p.min_labelled or s.positives < p.min_positives:
        problems.append(f"{s.labelled} labelled ({s.positives} positive) < {p.min_labelled} "
                        f"({p.min_positives} positive)")
    gap = s.challenger_ap - s.champion_ap
    bound = s.ap_gap_low if p.decision == "non_inferiority" else s.ap_gap_high
    if not (math.isfinite(gap) and math.isfinite(bound)) or bound < -p.ap_tolerance:
        problems.append(f"AP {s.challenger_ap:.4f} vs champion {s.champion_ap:.4f} "
                        f"(gap {_bounds(s)}, {p.decision} at tolerance {p.ap_tolerance:g})")
    change = ((s.challenger_alert_rate - s.champion_alert_rate) / s.champion_alert_rate
              if s.champion_alert_rate else math.inf)
    if p.max_alert_volume_change is not None and not abs(change) <= p.max_alert_volume_change:
        problems.append(f"alert volume change {change:+.1%}")
    return GateResult(name="shadow", passed=not problems,
                      value=round(gap, 6) if math.isfinite(gap) else None,
                      threshold=-p.ap_tolerance,
                      detail=("; ".join(problems) or
                              f"{s.events} events over {s.hours:.1f} h, {s.labelled} labelled "
                              f"({s.positives} positive): AP {s.challenger_ap:.4f} vs "
                              f"{s.champion_ap:.4f}, gap {_bounds(s)}")[:2048])


def _bounds(s: ShadowSummary) -> str:
    return f"{s.ap_gap_low:+.3f}..{s.ap_gap_high:+.3f} at {s.confidence:.0%}"


def read_shadow(settings: Any, since: datetime, until: datetime, champion_version: str,
                challenger_version: str, alert_budget: float, timeout_s: float = 120.0,
                confidence: float = 0.95, bootstraps: int = 1000) -> ShadowSummary:
    """Read scores and labels from Kafka for the shadow period and compare."""
    from retrain.snapshot import read_window
    from txmon.contracts import ContractError, decode

    def events(kind: type, topic: str) -> list:
        out = []
        for _, raw in read_window(settings, settings.topic(topic), since, until, timeout_s):
            try:
                out.append(decode(kind, raw))
            except ContractError:
                continue
        return out

    return compare(events(Score, "scores"), events(Label, "labels"), champion_version,
                   challenger_version, alert_budget, confidence, bootstraps)
