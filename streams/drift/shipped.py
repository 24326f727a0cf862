"""The drift reference a model artifact ships: built at export from the validation window.

The fine-tune/export path (:func:`models.finetune.finetune`) replays the training window through the
streaming feature code, scores the validation window (the latest ``val_fraction`` of it, by time) and
calls :func:`build` on those events: the champion's own embeddings, scores and the monitor's
feature columns (:mod:`streams.drift.columns`). The thresholds are simulated once, there, and the
reference is saved under ``drift_reference/`` inside the artifact before its manifest is written, so
the manifest's sha256 (and signature) covers it. The worker (:class:`streams.observer.DriftFeed`)
loads it with :func:`load` when the version starts serving; no warm-up, no simulation.

``alerted`` is not part of a shipped reference: alert decisions belong to the serving policy (a
threshold or a daily budget), not to the model; the score detector watches the score itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streams.drift import columns as monitored
from streams.drift.columns import record_columns
from streams.drift.config import DriftConfig
from streams.drift.reference import META, DriftReference, Progress, ReferenceError

REFERENCE_DIR = "drift_reference"
log = logging.getLogger(__name__)


def build(embeddings: np.ndarray, scores: np.ndarray, records: Sequence[dict[str, Any]],
          config: DriftConfig, source: str = "", progress: Progress | None = None,
          threshold_cache: Path | None = None, labels: np.ndarray | None = None) -> DriftReference:
    """A reference (thresholds simulated, CVM ones maybe from ``threshold_cache``) from the
    validation events: one row per event; ``labels`` (1/0, NaN when not known by training time)
    calibrate ADWIN on the delayed-label loss."""
    if not len(records) == len(scores) == len(embeddings):
        raise ValueError(f"one row per event: {len(embeddings)} embeddings, {len(scores)} scores, "
                         f"{len(records)} records")
    if len(scores) < config.block_events:
        raise ValueError(f"{len(scores)} validation events are less than one block "
                         f"({config.block_events})")
    features, binary = record_columns(records)
    times = (np.asarray([r["ts"] for r in records], dtype=np.int64)
             if all("ts" in r for r in records) else None)
    return DriftReference.build(embeddings, features, binary, scores, config, progress=progress,
                                source=source, threshold_cache=threshold_cache, times=times,
                                labels=labels)


def save(reference: DriftReference, artifact_work_dir: Path) -> Path:
    """Write ``reference`` into an artifact directory that has no manifest yet."""
    return reference.save(Path(artifact_work_dir) / REFERENCE_DIR)


def load(artifact_dir: Path | None, config: DriftConfig,
         expected_sha256: str | None = None) -> DriftReference | None:
    """The artifact's reference, or None when it ships none, one calibrated for another config, or
    one built on columns the feed no longer computes (``foreign`` before ``new_country``).

    The whole artifact is verified against its manifest (and ``expected_sha256``) first: a
    reference file that was swapped or is not covered by the manifest is refused, not used.
    """
    if artifact_dir is None or not (Path(artifact_dir) / REFERENCE_DIR / META).is_file():
        return None
    from models.artifact import ArtifactError, verify

    try:
        verify(Path(artifact_dir), expected_sha256=expected_sha256)
        reference = DriftReference.load(Path(artifact_dir) / REFERENCE_DIR, config)
    except (ArtifactError, ReferenceError) as exc:
        log.warning("drift: the reference shipped in %s is not used: %s", artifact_dir, exc)
        return None
    # The monitor would refuse every live batch that lacks one of these: warm up instead.
    stale = monitored.unmonitored(reference.columns)
    if stale:
        log.warning("drift: the reference shipped in %s watches columns no longer computed (%s); "
                    "warming up instead", artifact_dir, ", ".join(sorted(stale)))
        return None
    return reference
