"""Hot swap and shadow scoring: follow ``txmon.models``, load and verify artifacts, switch between batches.

A ``promoted`` :class:`~txmon.contracts.ModelEvent` names the artifact (``artifact_uri``, a directory)
and its ``artifact_sha256``. The artifact is loaded off the event loop and only handed over when it
verifies (every file against the manifest, the manifest digest against the event, the HMAC signature
when ``settings.signing_key`` is set — via ``models.scorer.Scorer.load``); the scoring loop picks it up
at the top of its next micro-batch (:meth:`ModelSlot.for_next_batch`), so a batch is scored by exactly
one model and no transaction is dropped or scored twice by a swap.

A ``validated`` event (the offline gates passed; governance may now want a shadow period) is loaded
and verified the same way and becomes the *challenger*: from the next batch on, the worker also scores
every transaction with it and publishes a ``shadow=True`` score (never an alert) in the same Kafka
transaction. Shadowing of a version ends when that version is ``promoted`` (the already-verified
challenger becomes the champion without a reload), ``rejected`` or ``rolled_back``, and a newly
validated version replaces it. Like a swap, a challenger change takes effect between batches: a batch
is shadowed by one challenger or none. With ``shadow=False`` validated events are ignored.

A refused artifact (promoted or validated) is reported three ways and whatever was serving keeps
serving (the champion, and the challenger too): an ERROR log line, the ``txmon_model_rejected_total``
counter, and a dead letter on ``txmon.dlq`` (``stage="model_load"``, the original ModelEvent bytes,
the reason) written in the worker's next transaction. A refused (version, sha256) is not tried again.
The worker does not publish ``rejected`` ModelEvents: that topic belongs to the governance loop, and N
workers would publish N copies.

On start the worker reads ``txmon.models`` from the beginning. While it catches up
(:meth:`ModelSlot.begin_catch_up` .. :meth:`ModelSlot.finish_catch_up`) events are only folded into
"what should serve now", and only that champion and challenger are loaded: a restart does not load
every artifact in the topic's history, nor dead-letter old artifacts that were since cleaned up.
If that champion is refused (its registry version was deleted with its files, or it no longer
verifies) and the worker has no ``--model`` to serve, it is dead-lettered like any refusal and the
worker falls back to the champion promoted before it, and so on (the last :data:`FALLBACKS`
champions): a restart keeps serving the old model as a running worker would, instead of none.

Rollback is a new ``promoted`` event for the older version (what ``txmon`` rollback publishes); a
``rolled_back`` event by itself does not change what a worker serves (it only ends a shadow of that
version).
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
    from models.artifact import HmacSigner
    from models.scorer import Scorer

    verifier = (HmacSigner(settings.signing_key.get_secret_value().encode())
                if settings.signing_key else None)
    return Scorer.load(Path(directory), expected_sha256=expected_sha256, verifier=verifier,
                       intra_op_threads=intra_op_threads)


@dataclass(frozen=True)
class Refusal:
    version: str
    reason: str
    letter: DeadLetter
    event: str = "promoted"


@dataclass(frozen=True)
class _Loaded:
    """A verified model and the digest it was verified against."""

    model: Any
    sha256: str | None

    def matches(self, version: str, sha256: str) -> bool:
        return self.model.version == version and self.sha256 in (None, sha256)


@dataclass(frozen=True)
class _Pending:
    """An event seen while catching up, with where it came from (for a dead letter)."""

    event: ModelEvent
    where: tuple[str, int, int, bytes | None]


_KEEP = object()  # "no challenger change is waiting" (None means "stop shadowing")
FALLBACKS = 8  # earlier champions a restarting worker may fall back to


class ModelSlot:
    """The champion being served, the challenger shadowing it, what takes over at the next batch,
    and refusals not yet reported."""

    def __init__(self, loader: Callable[[Path, str | None], Any], *, shadow: bool = True):
        self._loader = loader
        self.shadow = shadow
        self._current: _Loaded | None = None
        self._challenger: _Loaded | None = None
        self._next: _Loaded | None = None
        self._next_challenger: Any = _KEEP  # _Loaded | None | _KEEP
        self.refusals: list[Refusal] = []
        self._refused: set[tuple[str, str]] = set()
        self._catching_up = False
        self._backlog: dict[str, _Pending | None] = {"challenger": None}
        self._champions: list[_Pending] = []  # promoted while catching up, oldest first, one per version
        self.on_swap: Callable[[Any], None] | None = None
        self.on_shadow: Callable[[Any | None], None] | None = None
        self.on_refusal: Callable[[Refusal], None] | None = None

    # -- what serves -----------------------------------------------------------------------
    @property
    def current(self) -> Any | None:
        return self._current.model if self._current is not None else None

    @property
    def challenger(self) -> Any | None:
        return self._challenger.model if self._challenger is not None else None

    @property
    def version(self) -> str | None:
        return self.current.version if self.current is not None else None

    @property
    def challenger_version(self) -> str | None:
        return self.challenger.version if self.challenger is not None else None

    @property
    def next_versions(self) -> tuple[str | None, str | None]:
        """(champion, challenger) versions the next batch will be scored with."""
        champ, chall = self._target_champion(), self._target_challenger()
        return (champ.model.version if champ else None, chall.model.version if chall else None)

    def _target_champion(self) -> _Loaded | None:
        return self._next if self._next is not None else self._current

    def _target_challenger(self) -> _Loaded | None:
        return self._challenger if self._next_challenger is _KEEP else self._next_challenger

    def for_next_batch(self) -> Any | None:
        """The champion for the batch about to start; the challenger (:attr:`challenger`) switches
        here too. Switches happen only here, between batches."""
        if self._next is not None:
            self._current, self._next = self._next, None
            if self.on_swap:
                self.on_swap(self._current.model)
            log.info("now scoring with model %s", self._current.model.version)
        if self._next_challenger is not _KEEP:
            before = self.challenger_version
            self._challenger, self._next_challenger = self._next_challenger, _KEEP
            if self.on_shadow:
                self.on_shadow(self.challenger)
            if self._challenger is not None:
                log.info("now shadow scoring with challenger %s", self.challenger_version)
            elif before is not None:
                log.info("stopped shadow scoring with %s", before)
        return self.current

    def drop_challenger(self, reason: str) -> None:
        """Stop shadowing now (between batches), e.g. because the challenger failed to score."""
        if self._challenger is None:
            return
        log.error("stopping shadow scoring with %s: %s", self.challenger_version, reason)
        self._refused.add((self._challenger.model.version, self._challenger.sha256 or ""))
        self._challenger = None
        if self._next_challenger is None:
            self._next_challenger = _KEEP
        if self.on_shadow:
            self.on_shadow(None)

    def drain_refusals(self) -> list[Refusal]:
        out, self.refusals = self.refusals, []
        return out

    def install(self, model: Any) -> None:
        """The first model, before any batch (``--model`` / ``model_dir``)."""
        self._next = _Loaded(model, getattr(model, "sha256", None))

    # -- events ----------------------------------------------------------------------------
    def begin_catch_up(self) -> None:
        """From now until :meth:`finish_catch_up`, only fold events into what should serve."""
        self._catching_up = True

    async def finish_catch_up(self) -> None:
        """Load the champion and challenger the folded history asks for."""
        self._catching_up = False
        champions, self._champions = self._champions, []
        for i, pending in enumerate(reversed(champions)):
            if i:
                log.warning("falling back to the earlier champion %s", pending.event.version)
            await self._apply(pending.event, pending.where)
            if self._target_champion() is not None:
                break  # loaded, or refused while an installed model (--model) goes on serving
        pending, self._backlog["challenger"] = self._backlog["challenger"], None
        if pending is not None:
            await self._apply(pending.event, pending.where)

    async def offer(self, raw: bytes | None, topic: str, partition: int, offset: int) -> bool:
        """Handle one ``txmon.models`` record; True when a model change now waits for its batch."""
        where = (topic, partition, offset, raw)
        try:
            ev = decode(ModelEvent, raw)
        except ContractError as exc:
            self._refuse("unknown", "unknown", f"unreadable model event: {exc}", where)
            return False
        if self._catching_up:
            self._fold(ev, where)
            return False
        return await self._apply(ev, where)

    def _fold(self, ev: ModelEvent, where: tuple[str, int, int, bytes | None]) -> None:
        chall = self._backlog["challenger"]
        if ev.event == "promoted":
            self._champions = [p for p in self._champions if p.event.version != ev.version]
            self._champions = [*self._champions, _Pending(ev, where)][-FALLBACKS:]
            if chall is not None and chall.event.version == ev.version:
                self._backlog["challenger"] = None
        elif ev.event == "validated":
            self._backlog["challenger"] = _Pending(ev, where)
        elif ev.event in ("rejected", "rolled_back") and chall is not None \
                and chall.event.version == ev.version:
            self._backlog["challenger"] = None

    async def _apply(self, ev: ModelEvent, where: tuple[str, int, int, bytes | None]) -> bool:
        if ev.event == "promoted":
            return await self._promote(ev, where)
        if ev.event == "validated":
            return await self._validate(ev, where)
        if ev.event in ("rejected", "rolled_back"):
            chall = self._target_challenger()
            if chall is not None and chall.model.version == ev.version:
                log.info("model %s %s: its shadow scoring ends", ev.version, ev.event)
                self._next_challenger = None
                return True
        return False

    async def _promote(self, ev: ModelEvent, where: tuple[str, int, int, bytes | None]) -> bool:
        champ, chall = self._target_champion(), self._target_challenger()
        if champ is not None and champ.matches(ev.version, ev.artifact_sha256):
            return False
        if chall is not None and chall.matches(ev.version, ev.artifact_sha256):
            # Verified against this very digest when it was validated: no second load.
            self._next, self._next_challenger = chall, None
            return True
        loaded = await self._load(ev, where)
        if loaded is None:
            return False
        self._next = loaded
        if chall is not None and chall.model.version == ev.version:
            self._next_challenger = None  # same name, other bytes: shadowing it is meaningless now
        return True

    async def _validate(self, ev: ModelEvent, where: tuple[str, int, int, bytes | None]) -> bool:
        if not self.shadow:
            return False
        champ, chall = self._target_champion(), self._target_challenger()
        if champ is not None and champ.model.version == ev.version:
            return False  # already the champion: nothing to compare it with
        if chall is not None and chall.matches(ev.version, ev.artifact_sha256):
            return False
        loaded = await self._load(ev, where)
        if loaded is None:
            return False  # the challenger already shadowing (if any) goes on
        self._next_challenger = loaded
        return True

    async def _load(self, ev: ModelEvent, where: tuple[str, int, int, bytes | None]) -> _Loaded | None:
        if (ev.version, ev.artifact_sha256) in self._refused:
            return None
        if not ev.artifact_uri:
            self._refuse(ev.version, ev.event, f"{ev.event} event has no artifact_uri", where,
                         ev.artifact_sha256)
            return None
        try:
            model = await asyncio.to_thread(self._loader, Path(ev.artifact_uri), ev.artifact_sha256)
        except Exception as exc:  # ArtifactError, or a graph ONNX Runtime cannot load: refuse either
            self._refuse(ev.version, ev.event, f"{type(exc).__name__}: {exc}", where, ev.artifact_sha256)
            return None
        if model.version != ev.version:
            self._refuse(ev.version, ev.event,
                         f"artifact says version {model.version}, event says {ev.version}", where,
                         ev.artifact_sha256)
            return None
        return _Loaded(model, ev.artifact_sha256)

    def _refuse(self, version: str, event: str, reason: str,
                where: tuple[str, int, int, bytes | None], sha256: str | None = None) -> None:
        topic, partition, offset, raw = where
        log.error("refusing %s model %s: %s; still serving %s (challenger %s)", event, version, reason,
                  self.version, self.challenger_version)
        if sha256 is not None:
            self._refused.add((version, sha256))
        r = Refusal(version, reason, dead_letter(topic, partition, offset, version.encode(), raw,
                                                 "artifact", reason, stage="model_load"), event)
        self.refusals.append(r)
        if self.on_refusal:
            self.on_refusal(r)
