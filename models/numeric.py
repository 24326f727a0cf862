"""Numeric per-transaction inputs of the transformer, beside its field tokens.

They are the engineered aggregates LightGBM sees (:data:`models.baselines.AGGREGATES`, computed from
the same account state and arrived-label counterparty risk, before the transaction is applied), made
network-friendly by a fixed, stateless transform: heavy-tailed counts and amounts on a log scale,
missing values as 0 plus a "missing" flag, hashed category codes dropped (the tokens carry those).
Standardisation (mean/std learned on the training rows) lives inside the model, so the exported graph
takes these raw values and a fine-tune keeps its champion's scaling.

>>> import numpy as np
>>> from models.baselines import AGGREGATES
>>> x = numeric_inputs(np.zeros((2, len(AGGREGATES)), np.float32))
>>> x.shape == (2, len(NUMERIC)), x.dtype
(True, dtype('float32'))
"""

from __future__ import annotations

import numpy as np

from models.baselines import AGGREGATES, CATEGORICAL

_LOG = frozenset({"amount", "vel_1h", "vel_24h", "distinct_cp_7d", "hist_len", "credits_24h",
                  "debits_24h", "in_out_24h", "near_threshold_7d", "cp_risk_labels"})
# Aggregates that are undefined for some transactions (first of the account, no device, no country).
_NULLABLE = ("rel_amount", "log_since_prev", "new_device", "foreign", "cp_foreign",
             "hist_mean_log_amount")
_VALUES = tuple(a for a in AGGREGATES if a not in CATEGORICAL)
NUMERIC: tuple[str, ...] = (*_VALUES, *(f"{a}_missing" for a in _NULLABLE))
_VALUE_COLS = np.array([AGGREGATES.index(a) for a in _VALUES])
_LOG_MASK = np.array([a in _LOG for a in _VALUES])
_NULL_COLS = np.array([AGGREGATES.index(a) for a in _NULLABLE])


def numeric_inputs(agg: np.ndarray) -> np.ndarray:
    """Rows of :data:`~models.baselines.AGGREGATES` (n, A) -> model inputs (n, len(NUMERIC)) float32."""
    agg = np.asarray(agg, dtype=np.float32)
    v = agg[:, _VALUE_COLS]
    v[:, _LOG_MASK] = np.log1p(np.maximum(v[:, _LOG_MASK], 0.0))
    missing = np.isnan(agg[:, _NULL_COLS]).astype(np.float32)
    return np.nan_to_num(np.concatenate([v, missing], axis=1), nan=0.0, posinf=0.0,
                         neginf=0.0).astype(np.float32, copy=False)
