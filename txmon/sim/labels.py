"""Late truth: which label each row gets, and when it arrives.

Card fraud is confirmed by a chargeback days to weeks later; everyday activity is confirmed legit;
AML typology rows end as ``sar`` case outcomes, later still; a share of ordinary transfers is
investigated and ``cleared``. A configured share of rows is never labelled. All draws are per-row
coins on the row's stable key.
"""

from __future__ import annotations

import numpy as np

from txmon.sim.config import SimConfig
from txmon.sim.randomness import uniform

DAY = 86400


def assign(cfg: SimConfig, rows: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(label object array with None for unlabelled, label time in seconds since start, -1 if none)."""
    lc, seed, key = cfg.labels, cfg.seed, rows["key"]
    truth = rows["truth"]
    transfer = truth == "transfer"
    big = rows["amount"] >= 0.5 * cfg.reporting_threshold
    investigated = transfer & (uniform(key, "investigated", seed) < np.where(big, 0.3, lc.investigated_share))
    label = np.full(key.size, "legit", dtype=object)
    label[truth == "fraud"] = "fraud"
    label[truth == "aml"] = "sar"
    label[investigated] = "cleared"
    lo = np.full(key.size, lc.legit_days[0])
    hi = np.full(key.size, lc.legit_days[1])
    for mask, (a, b) in ((truth == "fraud", lc.chargeback_days),
                         ((truth == "aml") | investigated, lc.aml_days)):
        lo[mask], hi[mask] = a, b
    delay = ((lo + (hi - lo) * uniform(key, "label-delay", seed)) * DAY).astype(np.int64)
    missing = uniform(key, "unlabelled", seed) < lc.unlabelled_share
    label[missing] = None
    return label, np.where(missing, -1, rows["t"] + delay)
