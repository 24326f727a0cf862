"""Hot model swap: follow ``txmon.models``, load and verify each promoted artifact, switch between batches.

A ``promoted`` :class:`~txmon.contracts.ModelEvent` names the artifact (``artifact_uri``, a directory)
and its ``artifact_sha256``. The artifact is loaded off the event loop and only handed over when it
verifies (every file against the manifest, the manifest digest against the event, the HMAC signature
when ``settings.signing_key`` is set — via ``models.scorer.Scorer.load``); the scoring loop picks it up
at the top of its next micro-batch (:meth:`ModelSlot.for_next_batch`), so a batch is scored by exactly
one model and no transaction is dropped or scored twice by a swap.

A refused artifact is reported three ways and the old model keeps serving: an ERROR log line, the
``txmon_model_rejected_total`` counter, and a dead letter on ``txmon.dlq`` (``stage="model_load"``,
the original ModelEvent bytes, the reason) written in the worker's next transaction. The worker does
not publish ``rejected`` ModelEvents: that topic belongs to the governance loop, and N workers would
publish N copies.

Rollback is a new ``promoted`` event for the older version (what ``txmon`` rollback publishes); a
``rolled_back`` event by itself does not change what a worker serves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.dlq import dead_letter
from txmon.contracts import ContractError, DeadLetter, ModelEvent, decode
from txmon.settings import Settings

log = logging.getLogger(__name__)


def load_scorer(directory: Path, expected_sha256: str | None, settings: Settings,
                intra_op_threads: int | None = 1) -> Any:
    """Verify then load an artifact with ``models.scorer.Scorer``; raises ``ArtifactError``."""
    from models.scorer import Scorer

    from models.artifact import HmacSigner

    verifier = (HmacSigner(settings.signing_key.get_secret_value().encode())
                if settings.signing_key else None)
    return Scorer.load(Path(directory), expected_sha256=expected_sha256, verifier=verifier,
                       intra_op_threads=intra_op_threads)


@dataclass(frozen=True)
class Refusal:
    version: str
    reason: str
    letter: DeadLetter


class ModelSlot:
    """The model being served, the one waiting to take over, and refusals not yet reported."""

    def __init__(self, loader: Callable[[Path, str | None], Any]):
        self._loader = loader
        self.current: Any | None = None
        self._next: Any | None = None
        self.refusals: list[Refusal] = []
        self._versions_tried: set[tuple[str, str]] = set()
        self.on_swap: Callable[[Any], None] | None = None
        self.on_refusal: Callable[[Refusal], None] | None = None

    @property
    def version(self) -> str | None:
        return self.current.version if self.current is not None else None

    def for_next_batch(self) -> Any | None:
        """The model for the batch about to start: switches only here, between batches."""
        if self._next is not None:
            self.current, self._next = self._next, None
            if self.on_swap:
                self.on_swap(self.current)
            log.info("now scoring with model %s", self.current.version)
        return self.current

    def drain_refusals(self) -> list[Refusal]:
        out, self.refusals = self.refusals, []
        return out

    def _refuse(self, version: str, reason: str, topic: str, partition: int, offset: int,
                raw: bytes | None) -> None:
        log.error("refusing model %s: %s; still serving %s", version, reason, self.version)
        r = Refusal(version, reason, dead_letter(topic, partition, offset, version.encode(), raw,
                                                 "artifact", reason, stage="model_load"))
        self.refusals.append(r)
        if self.on_refusal:
            self.on_refusal(r)

    async def offer(self, raw: bytes | None, topic: str, partition: int, offset: int) -> bool:
        """Handle one ``txmon.models`` record; True when a new model is now waiting for its batch."""
        try:
            ev = decode(ModelEvent, raw)
        except ContractError as exc:
            self._refuse("unknown", f"unreadable model event: {exc}", topic, partition, offset, raw)
            return False
        if ev.event != "promoted":
            return False
        if (ev.version, ev.artifact_sha256) in self._versions_tried or (
                self.current is not None and self.current.version == ev.version
                and self._next is None):
            return False
        self._versions_tried.add((ev.version, ev.artifact_sha256))
        if not ev.artifact_uri:
            self._refuse(ev.version, "promoted event has no artifact_uri", topic, partition, offset, raw)
            return False
        try:
            model = await asyncio.to_thread(self._loader, Path(ev.artifact_uri), ev.artifact_sha256)
        except Exception as exc:  # ArtifactError, or a graph ONNX Runtime cannot load: refuse either
            self._refuse(ev.version, f"{type(exc).__name__}: {exc}", topic, partition, offset, raw)
            return False
        if model.version != ev.version:
            self._refuse(ev.version, f"artifact says version {model.version}, event says {ev.version}",
                         topic, partition, offset, raw)
            return False
        self._next = model
        return True

    def install(self, model: Any) -> None:
        """The first model, before any batch (``--model`` / ``model_dir``)."""
        self._next = model
