"""Ranking metrics for fraud/AML queues: AUC-ROC, average precision, and alert-budget metrics that
say what an operations team with a fixed daily capacity would actually catch.

>>> import numpy as np
>>> y = np.array([1, 0, 0, 1]); s = np.array([.9, .1, .8, .2])
>>> round(average_precision(y, s), 3)
0.833
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s)) if 0 < np.sum(y) < len(y) else math.nan


def auc_roc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < np.sum(y) < len(y) else math.nan


def daily_metrics(y: np.ndarray, s: np.ndarray, ts: np.ndarray, account: np.ndarray,
                  budget: int, k: int) -> dict[str, float]:
    """Per day (UTC): alert the ``budget`` highest scores; look at the top ``k`` alerts and accounts.

    * ``recall_at_budget``: share of all positives that fell in some day's alert budget;
    * ``precision_top_k``: mean over days of the positive share of the top-k transactions;
    * ``account_precision_top_k``: mean over days of the share of the top-k accounts (by their
      highest score that day) that had a positive transaction that day.
    """
    f = pd.DataFrame({"y": y, "s": s, "day": ts // 86400, "acc": account})
    f["rank"] = f.groupby("day")["s"].rank(ascending=False, method="first")
    caught = f.loc[f["rank"] <= budget, "y"].sum()
    top = f[f["rank"] <= k].groupby("day")["y"].mean()
    acc = f.groupby(["day", "acc"]).agg(s=("s", "max"), y=("y", "max")).reset_index()
    acc["rank"] = acc.groupby("day")["s"].rank(ascending=False, method="first")
    acc_top = acc[acc["rank"] <= k].groupby("day")["y"].mean()
    return {
        "recall_at_budget": float(caught / y.sum()) if y.sum() else math.nan,
        "precision_top_k": float(top.mean()) if len(top) else math.nan,
        "account_precision_top_k": float(acc_top.mean()) if len(acc_top) else math.nan,
    }


def false_positives_at_recall(y: np.ndarray, s: np.ndarray, recall: float) -> tuple[int, float]:
    """(false positives, threshold) of the highest threshold whose recall reaches ``recall``."""
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(y[order])
    need = math.ceil(recall * y.sum() - 1e-9)
    if need <= 0:
        return 0, float("inf")
    i = int(np.searchsorted(tp, need))
    i = min(i, len(order) - 1)
    # Ties: everything scoring at least the threshold is alerted.
    thr = s[order[i]]
    alerted = s >= thr
    return int((alerted & (y == 0)).sum()), float(thr)


def report(y: np.ndarray, s: np.ndarray, ts: np.ndarray, account: np.ndarray, budget: int,
           k: int) -> dict[str, float]:
    return {"auc_roc": auc_roc(y, s), "average_precision": average_precision(y, s)} | \
        daily_metrics(y, s, ts, account, budget, k)
