"""The per-transaction columns the drift monitor watches, from feature records.

One definition for both places that need them: the worker's feed (:mod:`streams.observer`, records
of live scored batches) and the reference an artifact ships (:mod:`streams.drift.shipped`, records of
the validation window replayed through the same feature code, :func:`models.dataset.replay`).

Numeric: ``log_amount``, ``log_gap_s`` (seconds since the account's previous transaction; 30 days
when it has none), ``velocity_24h`` and ``amount_vs_usual`` (log amount minus the account's running
mean; 0 until it has three transactions). Binary: ``alerted`` (live only), ``new_counterparty``,
``new_country`` and ``cross_border``.

``new_country`` (record key ``nctry``: a country none of the account's kept records has; records
made before it existed read as False) stands in for ``foreign`` (outside the home country): being
abroad is a state that lasts a 3-15-day trip on the simulator, so consecutive blocks of a few hours
share it and are not independent, which the CVM block thresholds assume (measured by
``bench/probe_drift_onset.py``). An onset still moves when travel or a new region does.
``cross_border`` (counterparty country ≠ the transaction's) is a property of a payee, not a trip.

>>> f, b = record_columns([{"amt": 99.0, "dtp": None, "v24h": 2, "rel": None, "ncp": True}])
>>> round(float(f["log_amount"][0]), 3), float(f["amount_vs_usual"][0]), b["new_counterparty"]
(4.605, 0.0, array([ True]))
>>> sorted(b)
['cross_border', 'new_counterparty', 'new_country']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NO_PREVIOUS_GAP_S = 30 * 86_400
FEATURES = ("log_amount", "log_gap_s", "velocity_24h", "amount_vs_usual")
BINARY = ("alerted", "new_counterparty", "new_country", "cross_border")


def record_columns(records: Sequence[dict[str, Any]], amounts: Sequence[float] | None = None,
                   alerted: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(numeric features, binary signals), one row per record.

    ``amounts``: used where a record has no ``amt``; ``alerted``: the alert decisions, left out
    when None (a validation window has scores, not the serving policy's decisions).
    """
    if amounts is None:
        amounts = [r["amt"] for r in records]
    else:
        amounts = [r.get("amt", a) for r, a in zip(records, amounts, strict=True)]
    features = {
        "log_amount": np.log1p(np.maximum(np.asarray(amounts, dtype=np.float64), 0.0)),
        "log_gap_s": np.log1p(np.asarray([NO_PREVIOUS_GAP_S if r.get("dtp") is None else r["dtp"]
                                          for r in records], dtype=np.float64)),
        "velocity_24h": np.asarray([r.get("v24h") or 0 for r in records], dtype=np.float64),
        "amount_vs_usual": np.asarray([r.get("rel") or 0.0 for r in records], dtype=np.float64),
    }
    binary = {
        "new_counterparty": np.asarray([bool(r.get("ncp")) for r in records], dtype=bool),
        "new_country": np.asarray([bool(r.get("nctry")) for r in records], dtype=bool),
        "cross_border": np.asarray([bool(r.get("cp_foreign")) for r in records], dtype=bool),
    }
    if alerted is not None:
        binary["alerted"] = np.asarray(alerted, dtype=bool)
    return features, binary


def unmonitored(reference_columns: dict[str, list[str]]) -> set[str]:
    """Columns a reference watches that :func:`record_columns` no longer computes (a reference
    saved before ``new_country`` replaced ``foreign``). The monitor refuses every batch that lacks
    one, so such a reference must not be used: warm up a new one instead.

    >>> sorted(unmonitored({"binary": ["foreign.rate", "new_counterparty.rate"], "score": ["score.mean"]}))
    ['foreign']
    """
    watched = {c.rsplit(".", 1)[0] for g in ("features", "binary") for c in reference_columns.get(g, [])}
    return watched - {*FEATURES, *BINARY}

