"""How soon a transactional producer asks again to add partitions while the coordinator is still
completing its previous transaction.

After ``EndTxn`` returns, the coordinator still writes the commit markers to every partition of
that transaction. The first ``AddPartitionsToTxn`` of the next transaction, sent a millisecond
later, is answered ``CONCURRENT_TRANSACTIONS`` until the markers are written, and aiokafka waits a
fixed 20 ms (``aiokafka.producer.sender.BACKOFF_OVERRIDE``, after KAFKA-5477) before asking again,
whatever ``retry_backoff_ms`` says. A worker that commits one transaction per micro-batch pays
that wait at almost every batch. Measured on the local broker (a transactional relay at 1,800/s,
``bench/probe_txn_backoff.py``): markers take 5-10 ms, and the fixed 20 ms puts the relay's p99
end-to-end latency at 115 ms; polling every 2 ms brings it to 46 ms (``txn_backoff.json``).

aiokafka has no setting for it, so :func:`set_concurrent_transactions_backoff` replaces that
module constant, process-wide (it reads the constant at each retry). A retry is one small
request to the coordinator.

>>> previous = set_concurrent_transactions_backoff(2)
>>> concurrent_transactions_backoff_ms()
2.0
>>> _ = set_concurrent_transactions_backoff(previous)
"""

from __future__ import annotations

import logging

from aiokafka.producer import sender as _sender

log = logging.getLogger(__name__)
_NAME = "BACKOFF_OVERRIDE"


def concurrent_transactions_backoff_ms() -> float | None:
    """The wait in use, or None when this aiokafka has no such constant."""
    value = getattr(_sender, _NAME, None)
    return None if value is None else float(value) * 1000


def set_concurrent_transactions_backoff(ms: float) -> float | None:
    """Use ``ms`` from now on; returns the previous value. Logs a warning, and changes nothing, when
    aiokafka no longer has the constant: latency gets worse, correctness does not change."""
    if ms <= 0:
        raise ValueError(f"the backoff must be positive, got {ms} ms")
    previous = concurrent_transactions_backoff_ms()
    if previous is None:
        log.warning("aiokafka.producer.sender has no %s: CONCURRENT_TRANSACTIONS keeps aiokafka's "
                    "own backoff", _NAME)
        return None
    setattr(_sender, _NAME, ms / 1000)
    return previous
