"""The worker's drift hook: feeds :class:`streams.drift.DriftMonitor` from scored micro-batches.

:class:`DriftFeed` implements :class:`streams.scoring.BatchObserver`. Per champion version it needs a
:class:`~streams.drift.DriftReference`, found in this order:

1. **shipped in the artifact** (``drift_reference/``, :mod:`streams.drift.shipped`): built at export
   from the champion's validation window, thresholds already simulated, covered by the artifact's
   manifest. Used when it verifies and was calibrated for this feed's ``DriftConfig``;
2. **cached** under ``references_dir/<version>`` (an earlier warm-up of this version here);
3. **warm-up** (the fallback): the first ``warmup_events`` events that version scores here (no
   drift is reported for them), then the detectors' thresholds are simulated on a background
   thread while scoring goes on (events scored meanwhile are not monitored), and the result is
   cached as in 2. A warm-up reference assumes the champion's first traffic is normal: drift
   already present when it starts becomes part of its reference.

The monitor continues from its last checkpoint in ``state_dir`` (``DriftMonitor.restore``).

A promotion is seen as a batch scored by another version: the monitor stops, and restarts
(``DriftMonitor.reset``) on the new version's reference, shipped, cached or warmed up. Shadow scores never
reach this feed (:mod:`streams.scoring`). Labels feed ADWIN with the champion's score; "alerted" is
approximated by ``score >= alert_threshold``.

Columns (one row per scored transaction): the pooled embedding, the score, and the feature columns
of :mod:`streams.drift.columns` (``alerted`` only in a warm-up reference: a shipped one has none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from streams.drift import DriftConfig, DriftMonitor, DriftReference, ReferenceError, shipped
from streams.drift.columns import BINARY, FEATURES, record_columns, unmonitored
from streams.scoring import ScoredBatch
from txmon.contracts import Drift, Label

log = logging.getLogger(__name__)


def columns(batch: ScoredBatch) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(numeric features, binary signals) of a scored batch, one row per transaction.

    >>> from datetime import datetime, UTC
    >>> from txmon.contracts import Transaction
    >>> tx = Transaction(tx_id="t", event_time=datetime(2026, 1, 1, tzinfo=UTC), account_id="a",
    ...                  counterparty_id="m", amount="99.00")
    >>> rec = {"amt": 99.0, "dtp": None, "v24h": 2, "rel": None, "ncp": True, "foreign": None}
    >>> f, b = columns(ScoredBatch("v1", [tx], {}, np.array([0.1]), np.zeros((1, 2)),
    ...                            np.array([False]), [rec]))
    >>> round(float(f["log_amount"][0]), 3), float(f["amount_vs_usual"][0]), b["new_counterparty"]
    (4.605, 0.0, array([ True]))
    """
    recs = batch.records or [{} for _ in batch.transactions]
    return record_columns(recs, [float(tx.amount) for tx in batch.transactions], batch.alerted)


class _Window:
    """The warm-up events of one version, until there are enough to build a reference."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]] = []
        self.times: list[np.ndarray] = []  # epoch seconds
        self.events = 0

    def add(self, batch: ScoredBatch) -> None:
        features, binary = columns(batch)
        self.parts.append((np.asarray(batch.embeddings, dtype=np.float32), features, binary,
                           np.asarray(batch.scores, dtype=np.float64)))
        self.times.append(np.asarray([int(tx.event_time.timestamp()) for tx in batch.transactions],
                                     dtype=np.int64))
        self.events += len(batch.scores)

    def stacked(self) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
        emb = np.concatenate([p[0] for p in self.parts])
        features = {k: np.concatenate([p[1][k] for p in self.parts]) for k in FEATURES}
        binary = {k: np.concatenate([p[2][k] for p in self.parts]) for k in BINARY}
        return emb, features, binary, np.concatenate([p[3] for p in self.parts])


class DriftFeed:
    """A :class:`~streams.scoring.BatchObserver` around one :class:`DriftMonitor` per champion."""

    def __init__(self, config: DriftConfig, state_dir: Path, references_dir: Path, *,
                 warmup_events: int = 20_000, alert_threshold: float = 0.8,
                 background: bool = True, cold_events: int = 0,
                 threshold_cache: Path | None = None):
        if warmup_events < config.block_events:
            raise ValueError(f"warmup_events ({warmup_events}) is less than one block "
                             f"({config.block_events} events)")
        self.config = config
        self.state_dir = Path(state_dir)
        self.references_dir = Path(references_dir)
        self.threshold_cache = threshold_cache  # distribution-free CVM thresholds, shared
        self.warmup_events = warmup_events
        # A worker that starts with empty per-account state sees every counterparty as new and no
        # gap since a previous transaction: its first events describe a cold cache, not the world,
        # and must not become a reference.
        self.cold_events = cold_events
        self._seen = 0
        self.alert_threshold = alert_threshold
        self.monitor: DriftMonitor | None = None
        self.version: str | None = None  # the champion being monitored (or warmed up for)
        self.active = False  # the monitor watches self.version
        self._window: _Window | None = None
        self._building: Future[DriftReference] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="drift-reference") if background else None
        self.on_state: Callable[[str, str], None] | None = None  # (version, new state)

    @property
    def state(self) -> str:
        """``idle`` (no batch yet), ``warming``, ``building``, ``monitoring`` or ``failed``.

        A finished reference build takes effect at the next batch or the next look at the state,
        whichever comes first (both on the event loop's thread), so ``/health`` and ``txmon drift
        status`` of an idle worker do not report a build that is over as still running.
        """
        if self._building is not None and self._building.done():
            self._built(self._building)
        if self.active:
            return "monitoring"
        if self._building is not None:
            return "building"
        if self._window is not None:
            return "warming"
        return "failed" if self.version is not None else "idle"

    # -- BatchObserver ---------------------------------------------------------------------
    def on_batch(self, batch: ScoredBatch) -> list[Drift]:
        if batch.model_version != self.version:
            self._switch(batch.model_version, batch.artifact_dir, batch.artifact_sha256)
        if not self.active:
            # Warm-up events (and the batch that completes the reference) are not monitored.
            self._warm(batch)
            return []
        assert self.monitor is not None
        features, binary = columns(batch)
        return self.monitor.observe_batch(batch.embeddings, features, binary, batch.scores,
                                          [tx.event_time for tx in batch.transactions])

    def on_label(self, label: Label, score: float | None, model_version: str) -> list[Drift]:
        if not self.active or score is None or model_version != self.version:
            return []
        assert self.monitor is not None
        return self.monitor.observe_outcome(score, label.positive, score >= self.alert_threshold,
                                            label.label_time)

    # -- lifecycle -------------------------------------------------------------------------
    def _switch(self, version: str, artifact_dir: Path | None = None,
                artifact_sha256: str | None = None) -> None:
        log.info("drift: champion is now %s (was %s)", version, self.version)
        self.version, self.active, self._window, self._building = version, False, None, None
        shipped_reference = shipped.load(artifact_dir, self.config, artifact_sha256)
        if shipped_reference is not None:
            self._start(shipped_reference, version)
            return
        try:
            reference = DriftReference.load(self.references_dir / version, self.config)
            stale = unmonitored(reference.columns)
            if stale:
                raise ReferenceError(f"it watches columns no longer computed: {sorted(stale)}")
        except ReferenceError as exc:
            log.info("drift: no usable cached reference for %s (%s); warming up on its first %d "
                     "events", version, exc, self.warmup_events)
            self._window = _Window()
            self._notify("warming")
            return
        self._start(reference, version)

    def _warm(self, batch: ScoredBatch) -> None:
        if self._building is not None:
            if self._building.done():
                self._built(self._building)
            return
        if self._window is None:
            return  # a failed build: not monitoring this version
        self._seen += len(batch.transactions)
        if self._seen <= self.cold_events:
            return
        self._window.add(batch)
        if self._window.events < self.warmup_events:
            return
        window, version = self._window, self.version
        self._window = None
        assert version is not None
        if self._executor is None:
            done: Future[DriftReference] = Future()
            try:
                done.set_result(self._build(window, version))
            except Exception as exc:
                done.set_exception(exc)
            self._built(done)
        else:
            self._building = self._executor.submit(self._build, window, version)
            self._notify("building")

    def _build(self, window: _Window, version: str) -> DriftReference:
        import torch

        # Threshold simulation is minutes of torch work: one core, so ONNX scoring keeps the other.
        torch.set_num_threads(1)
        emb, features, binary, scores = window.stacked()
        reference = DriftReference.build(emb, features, binary, scores, self.config,
                                         source=f"warm-up: first {window.events} events scored by "
                                                f"{version} in this worker",
                                         threshold_cache=self.threshold_cache,
                                         times=np.concatenate(window.times))
        reference.save(self.references_dir / version)
        return reference

    def _built(self, future: Future[DriftReference]) -> None:
        self._building = None
        try:
            reference = future.result()
        except Exception:
            log.exception("drift: building the reference of %s failed; not monitoring it", self.version)
            self._notify("failed")
            return
        assert self.version is not None
        self._start(reference, self.version)

    def _start(self, reference: DriftReference, version: str) -> None:
        if self.monitor is None:  # first champion of this process: continue from its checkpoint
            self.monitor = DriftMonitor.restore(reference, self.config, self.state_dir, version)
        else:
            self.monitor.reset(reference, version)
        self.active = True
        log.info("drift: monitoring %s (%s)", version, reference.source or "cached reference")
        self._notify("monitoring")

    def _notify(self, state: str) -> None:
        if self.on_state and self.version is not None:
            self.on_state(self.version, state)

    def close(self) -> None:
        """Checkpoint the monitor and stop a reference build in progress."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self.monitor is not None and self.active:
            self.monitor.save()

