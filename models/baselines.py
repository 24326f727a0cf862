"""Baselines the transformer must beat in the same backtest: LightGBM on engineered aggregates (the
usual industry model) and a rules engine (large amount, velocity, structuring).

Aggregates are computed from the same account state and counterparty risk as the transformer's inputs,
at the same moment (before the transaction is added), so the comparison is like for like.

>>> RulesBaseline().hits(dict(zip(AGGREGATES, [0.0] * len(AGGREGATES))) | {"amount": 12000.0})
['large_amount']
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

STRUCTURING_THRESHOLD = 10_000.0  # the usual cash/transfer reporting threshold, in major units
NEAR_FRACTION = 0.8

AGGREGATES: tuple[str, ...] = (
    "amount", "log_amount", "rel_amount", "log_since_prev", "new_cp", "new_device", "vel_1h",
    "vel_24h", "log_sum_24h", "distinct_cp_7d", "foreign", "cp_foreign", "hour", "weekday", "debit",
    "hist_len", "hist_mean_log_amount", "credits_24h", "log_credit_sum_24h", "debits_24h",
    "in_out_24h", "near_threshold", "near_threshold_7d", "cp_risk_labels", "cp_risk_rate",
    "channel_code", "type_code", "mcc_code",
)
CATEGORICAL = ("channel_code", "type_code", "mcc_code")


def _code(v: str | None) -> float:
    return math.nan if v is None else float(zlib.crc32(v.encode()) % 997)


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


def aggregates(state: dict[str, Any], rec: dict[str, Any], risk_labels: float,
               risk_rate: float) -> list[float]:
    """Engineered aggregates for one transaction (``rec`` from ``observe`` on ``state``)."""
    ts, amt = rec["ts"], rec["amt"]
    credits = debits = 0
    credit_sum = debit_sum = 0.0
    near7 = 0
    log_sum = 0.0
    hist = state["h"]
    lo = NEAR_FRACTION * STRUCTURING_THRESHOLD
    # Runs for every scored transaction over up to 32 records: locals and early exits, not max().
    log1p, week, day, hi = math.log1p, ts - 7 * 86400, ts - 86400, STRUCTURING_THRESHOLD
    for r in hist:
        a = r["amt"]
        log_sum += log1p(a) if a > 0.0 else 0.0
        t = r["ts"]
        if t >= week:
            if lo <= a < hi:
                near7 += 1
            if t >= day:
                if r["dir"] == "credit":
                    credits += 1
                    credit_sum += a
                else:
                    debits += 1
                    debit_sum += a
    dtp = rec["dtp"]
    return [
        amt, math.log1p(max(amt, 0.0)), _nan(rec["rel"]),
        math.nan if dtp is None else math.log1p(dtp), float(rec["ncp"]), _nan(rec["ndev"]),
        float(rec["v1h"]), float(rec["v24h"]), math.log1p(rec["s24"]), float(rec["dcp7"]),
        _nan(rec["foreign"]), _nan(rec["cp_foreign"]), float((ts // 3600) % 24),
        float((ts // 86400 + 3) % 7), float(rec["dir"] == "debit"), float(len(hist)),
        log_sum / len(hist) if hist else math.nan, float(credits), math.log1p(credit_sum),
        float(debits), (credit_sum + 1.0) / (debit_sum + amt + 1.0),
        float(lo <= amt < STRUCTURING_THRESHOLD), float(near7), risk_labels, risk_rate,
        _code(rec["ch"]), _code(rec["typ"]), _code(rec["mcc"]),
    ]


@dataclass
class RulesBaseline:
    """Threshold rules as a typical transaction-monitoring system ships them."""

    large_amount: float = STRUCTURING_THRESHOLD
    velocity_1h: int = 5
    velocity_24h: int = 10
    structuring_count_7d: int = 2

    def hits(self, a: dict[str, float]) -> list[str]:
        out = []
        if a["amount"] >= self.large_amount:
            out.append("large_amount")
        if a["vel_1h"] >= self.velocity_1h or a["vel_24h"] >= self.velocity_24h:
            out.append("velocity")
        if a["near_threshold"] and a["near_threshold_7d"] >= self.structuring_count_7d:
            out.append("structuring")
        return out

    def score(self, agg: np.ndarray) -> np.ndarray:
        """Per row: the fraction of rules hit (0 = no alert), ties broken by amount."""
        col = {n: agg[:, i] for i, n in enumerate(AGGREGATES)}
        large = col["amount"] >= self.large_amount
        vel = (col["vel_1h"] >= self.velocity_1h) | (col["vel_24h"] >= self.velocity_24h)
        struct = (col["near_threshold"] > 0) & (col["near_threshold_7d"] >= self.structuring_count_7d)
        hits = large.astype(np.float64) + vel + struct
        # Within a hit count, larger amounts rank first (what an analyst queue does).
        return (hits + np.clip(col["log_amount"], 0, 20) / 21.0 * (hits > 0)) / 4.0

    def alerts(self, agg: np.ndarray) -> np.ndarray:
        return self.score(agg) > 0


@dataclass
class LightGBMBaseline:
    """LightGBM on :data:`AGGREGATES`, imbalance weighted, early-stopped on validation AP."""

    num_leaves: int = 63
    learning_rate: float = 0.05
    rounds: int = 600
    seed: int = 0
    threads: int = 2
    booster: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> LightGBMBaseline:
        import lightgbm as lgb

        pos = max(float(y.sum()), 1.0)
        params = {
            "objective": "binary", "metric": "average_precision", "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves, "min_data_in_leaf": 50, "feature_fraction": 0.9,
            "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
            "scale_pos_weight": min(math.sqrt((len(y) - pos) / pos), 50.0), "seed": self.seed,
            "num_threads": self.threads, "verbose": -1, "deterministic": True,
        }
        cats = [AGGREGATES.index(c) for c in CATEGORICAL]
        train = lgb.Dataset(x, y, feature_name=list(AGGREGATES), categorical_feature=cats)
        val = lgb.Dataset(x_val, y_val, reference=train)
        self.booster = lgb.train(params, train, self.rounds, valid_sets=[val],
                                 callbacks=[lgb.early_stopping(50, verbose=False)])
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, num_iteration=self.booster.best_iteration)
