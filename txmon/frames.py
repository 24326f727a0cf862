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
