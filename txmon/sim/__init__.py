"""The simulated bank: everyday activity, card fraud and AML typologies with known truth, delayed
labels and scheduled drift.

>>> from txmon.sim import SimConfig, simulate
>>> result = simulate(SimConfig(accounts=200, days=7, seed=42))
>>> result.frame.columns[0], result.drift_truth
('tx_id', [])

Public API: :class:`SimConfig`, :class:`LabelConfig`, :class:`DriftEvent`, :func:`simulate`,
:class:`SimResult`, :func:`load_drift_schedule`, :func:`write` (Parquet/CSV plus a truth file),
:func:`both_sides` (a frame with each internal transfer also on the beneficiary's side).
"""

from txmon.sim.config import (
    AML_TYPOLOGIES,
    CARD_SCENARIOS,
    DEFAULT_RATES,
    SCENARIOS,
    DriftEvent,
    LabelConfig,
    SimConfig,
    load_drift_schedule,
)
from txmon.sim.engine import SimResult, simulate

__all__ = ["AML_TYPOLOGIES", "CARD_SCENARIOS", "DEFAULT_RATES", "SCENARIOS", "DriftEvent", "LabelConfig",
           "SimConfig", "SimResult", "load_drift_schedule", "simulate"]
