"""Online drift monitoring: alibi-detect detectors on block summaries, ADWIN on delayed labels.

The streaming worker builds a :class:`DriftReference` once per champion (or loads the cached one),
feeds a :class:`DriftMonitor` after each scored micro-batch and publishes the
:class:`txmon.contracts.Drift` events it returns.
"""

from streams.drift.config import DriftConfig, DriftConfigError
from streams.drift.monitor import DriftMonitor, read_status
from streams.drift.reference import DriftReference, ReferenceError

__all__ = ["DriftConfig", "DriftConfigError", "DriftMonitor", "DriftReference", "ReferenceError",
           "read_status"]
