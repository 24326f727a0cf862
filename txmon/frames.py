"""The transaction frame: a pandas DataFrame with one row per transaction, shared by the simulator,
replay, training, backtests and benchmarks.

Columns are the :class:`~txmon.contracts.Transaction` fields plus the truth a simulator or a labelled
history knows: ``label`` (fraud / legit / sar / cleared, or missing when never labelled),
``label_time`` (when that label arrived) and, from the simulator, ``scenario`` and ``segment``.
In a frame ``amount`` is a float64 in major units — for analytics only; on the wire it becomes a
decimal string again (:func:`to_transaction`).

>>> import pandas as pd
>>> f = empty_frame()
>>> list(f.columns[:5])
['tx_id', 'event_time', 'account_id', 'counterparty_id', 'amount']
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from txmon.contracts import Label, Transaction, minor_unit_exponent

REQUIRED = ("tx_id", "event_time", "account_id", "counterparty_id", "amount")
OPTIONAL = ("currency", "channel", "tx_type", "direction", "mcc", "country",
            "counterparty_country", "device_id")
TRUTH = ("label", "label_time", "scenario", "segment")
COLUMNS = REQUIRED + OPTIONAL + TRUTH

DEFAULTS: dict[str, Any] = {"currency": "EUR", "channel": "unknown", "tx_type": "unknown",
                            "direction": "debit"}


def empty_frame() -> pd.DataFrame:
    f = pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    f["amount"] = f["amount"].astype("float64")
    for c in ("event_time", "label_time"):
        f[c] = pd.Series(dtype="datetime64[ns, UTC]")
    return f


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and v != v) and v is not pd.NaT


def to_transaction(row: dict[str, Any]) -> Transaction:
    """One frame row -> a validated :class:`Transaction` (money rounded to the currency's unit)."""
    currency = row.get("currency") if _present(row.get("currency")) else DEFAULTS["currency"]
    exp = minor_unit_exponent(currency)
    fields = {k: row[k] for k in REQUIRED + OPTIONAL if k in row and _present(row[k])}
    fields["amount"] = str(Decimal(repr(float(row["amount"]))).quantize(Decimal(1).scaleb(-exp)))
    fields["event_time"] = pd.Timestamp(row["event_time"]).to_pydatetime()
    return Transaction.model_validate(fields)


def to_label(row: dict[str, Any], source: str = "history") -> Label | None:
    """The label a row carries, as the event that arrives at ``label_time``; None if unlabelled."""
    if not (_present(row.get("label")) and _present(row.get("label_time"))):
        return None
    return Label(tx_id=row["tx_id"], account_id=row["account_id"], label=row["label"],
                 label_time=pd.Timestamp(row["label_time"]).to_pydatetime(), source=source)


def both_sides(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame plus, for each transfer between two accounts of the frame, its credit side.

    A transfer is one row keyed by the payer; the beneficiary's history needs it too. The mirrored
    row has the same ``tx_id``, ``account_id`` = the beneficiary, ``counterparty_id`` = the payer and
    ``direction`` = ``"credit"``, right after its debit side; the frame's order is otherwise kept.

    >>> f = pd.DataFrame({"tx_id": ["t1"], "event_time": [pd.Timestamp("2026-01-01", tz="UTC")],
    ...                   "account_id": ["a"], "counterparty_id": ["b"], "amount": [5.0],
    ...                   "direction": ["debit"]})
    >>> f = pd.concat([f, f.assign(tx_id="t2", account_id="b", counterparty_id="shop")])
    >>> both_sides(f)[["tx_id", "account_id", "counterparty_id", "direction"]].values.tolist()
    [['t1', 'a', 'b', 'debit'], ['t1', 'b', 'a', 'credit'], ['t2', 'b', 'shop', 'debit']]
    """
    internal = frame["counterparty_id"].isin(frame["account_id"].unique()) & (frame["direction"] == "debit")
    mirror = frame[internal].copy()
    mirror["account_id"], mirror["counterparty_id"] = frame.loc[internal, "counterparty_id"], \
        frame.loc[internal, "account_id"]
    mirror["direction"] = "credit"
    position = np.concatenate([np.arange(len(frame)), np.flatnonzero(internal.to_numpy()) + 0.5])
    out = pd.concat([frame, mirror], ignore_index=True)
    return out.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)
