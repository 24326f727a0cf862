"""Data checks on a training snapshot, run before any fine-tuning.

Each check returns a :class:`Check`; a snapshot is usable only if all pass. Label leakage is the
one that matters most for honest metrics: a label that arrived after the snapshot time is knowledge
the model could not have had in production, and a label dated before its transaction is a broken
feed.

>>> import pandas as pd
>>> t = pd.Timestamp("2026-01-10", tz="UTC")
>>> f = pd.DataFrame({"tx_id": ["a", "b"], "event_time": [t, t], "account_id": ["x", "y"],
...                   "counterparty_id": ["m", "m"], "amount": [1.0, 2.0], "label": ["fraud", None],
...                   "label_time": [t + pd.Timedelta("2D"), pd.NaT]})
>>> [c.name for c in run_checks(f, snapshot_time=t + pd.Timedelta("1D"), min_positives=1)
...  if not c.passed]
['label_leakage']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from txmon.contracts import POSITIVE_LABELS
from txmon.frames import REQUIRED

LABEL_VALUES = frozenset({"fraud", "legit", "sar", "cleared"})


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    detail: str = ""


class SnapshotRejected(RuntimeError):
    """The snapshot failed a data check; no model is trained on it."""

    def __init__(self, failed: list[Check]):
        self.failed = failed
        super().__init__("; ".join(f"{c.name}: {c.detail}" for c in failed))


def positives(frame: pd.DataFrame) -> pd.Series:
    """Boolean: the row carries a positive (fraud / SAR) label."""
    return frame["label"].isin(POSITIVE_LABELS)


def check_schema(frame: pd.DataFrame) -> Check:
    missing = [c for c in (*REQUIRED, "label", "label_time") if c not in frame.columns]
    if missing:
        return Check("schema", False, detail=f"missing columns: {', '.join(missing)}")
    problems = []
    if not isinstance(frame["event_time"].dtype, pd.DatetimeTZDtype):
        problems.append("event_time is not a timezone-aware datetime")
    if not pd.api.types.is_float_dtype(frame["amount"]) or not np.isfinite(frame["amount"]).all():
        problems.append("amount is not a finite float column")
    for col in ("tx_id", "account_id", "counterparty_id"):
        if frame[col].isna().any():
            problems.append(f"{col} has missing values")
    bad = set(frame["label"].dropna().unique()) - LABEL_VALUES
    if bad:
        problems.append(f"unknown label values: {sorted(map(str, bad))[:5]}")
    return Check("schema", not problems, detail="; ".join(problems) or "ok")


def check_duplicates(frame: pd.DataFrame, max_fraction: float) -> Check:
    frac = float(frame["tx_id"].duplicated().mean()) if len(frame) else 0.0
    return Check("duplicates", frac <= max_fraction, frac, max_fraction,
                 f"{int(frame['tx_id'].duplicated().sum())} duplicate tx_id rows")


def check_min_positives(frame: pd.DataFrame, minimum: int, name: str = "min_positives") -> Check:
    n = int(positives(frame).sum())
    return Check(name, n >= minimum, n, minimum, f"{n} positive labels (need {minimum})")


def check_label_leakage(frame: pd.DataFrame, snapshot_time: pd.Timestamp) -> Check:
    lt = frame["label_time"]
    late = int((lt > snapshot_time).sum())
    early = int((lt < frame["event_time"]).sum())
    return Check("label_leakage", late == 0 and early == 0, late + early, 0,
                 f"{late} labels newer than the snapshot time, {early} labels older than their "
                 "transaction")


def run_checks(frame: pd.DataFrame, snapshot_time: pd.Timestamp, min_positives: int | None,
               max_duplicate_fraction: float = 0.0) -> list[Check]:
    """Schema first (the others need it), then duplicates, positives (unless None) and leakage."""
    schema = check_schema(frame)
    if not schema.passed:
        return [schema]
    checks = [schema, check_duplicates(frame, max_duplicate_fraction),
              check_label_leakage(frame, snapshot_time)]
    if min_positives is not None:
        checks.insert(2, check_min_positives(frame, min_positives))
    return checks


def require(checks: list[Check]) -> None:
    failed = [c for c in checks if not c.passed]
    if failed:
        raise SnapshotRejected(failed)
