"""The champion and the candidate on the same live events: the shadow period's pairs, judged on
the simulator's truth.

Precision before the drift, during it and after the promotion is measured on different traffic,
whose fraud rate moves with the world; the shadow period scores one set of events with both
models, so their gap is the model's doing. These events came after the retrain job's snapshot
(traffic pauses while it trains), so the candidate never trained on them. Every paired event
counts, labelled or not (the simulator knows the truth), which gives many more positives than the
shadow gate's labels; the gap's bounds come from the paired, stratified bootstrap the gate uses.

>>> import pandas as pd
>>> f = pd.DataFrame({"event_time": pd.to_datetime(["2026-03-01"] * 4, utc=True),
...                   "champion": [0.9, 0.8, 0.2, 0.1], "candidate": [0.1, 0.9, 0.8, 0.2],
...                   "positive": [False, True, True, False]})
>>> same_events(f, per_day=2)["candidate_precision_at_budget"]
1.0
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from retrain.bootstrap import ap_gap_bounds, average_precision
from txmon.demo.collector import precision_at_budget


def same_events(pairs: pd.DataFrame, per_day: int, confidence: float = 0.95,
                bootstraps: int = 1000) -> dict[str, Any]:
    """AP and top-``per_day`` precision of both models on the paired events, and bounds on the AP
    gap (candidate - champion) at ``confidence``."""
    y = pairs["positive"].to_numpy(bool)
    a, b = pairs["champion"].to_numpy(float), pairs["candidate"].to_numpy(float)
    low, high = ap_gap_bounds(y, b, a, confidence=confidence, bootstraps=bootstraps)
    days = pairs["event_time"].dt.floor("1D")

    def at_budget(col: str) -> float:
        return precision_at_budget(pairs.assign(score=pairs[col]), per_day)

    return {"events": len(pairs), "positives": int(y.sum()),
            "days": int(days.nunique()) if len(pairs) else 0,
            "champion_ap": average_precision(y, a), "candidate_ap": average_precision(y, b),
            "ap_gap_low": low, "ap_gap_high": high, "confidence": confidence,
            "champion_precision_at_budget": at_budget("champion"),
            "candidate_precision_at_budget": at_budget("candidate")}
