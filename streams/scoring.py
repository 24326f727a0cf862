"""The scoring core: one micro-batch of consumed records in, every record it must produce out.

Pure with respect to Kafka: :meth:`ScoringCore.process` takes records (from any of the worker's input
topics, in offset order per partition) and returns the outputs — scores, alerts, dead letters,
re-keyed credit sides, counterparty-label events, drift events and changelog records — that the
transactional adapter (:mod:`streams.worker`) then writes *in one Kafka transaction* together with
the consumed offsets. The in-memory tables are updated as it goes; if the transaction then fails the
worker exits and a restart restores them from the committed changelog (crash-only: nothing is
half-applied).

Per transaction: decode against the contract (a bad one is a dead letter, never a crash), encode with
the account's history *before* it and the counterparty's risk (the same ``models.features`` code as
training), fold it into the history, and, after one ONNX call for the whole batch, decide the alert
with :class:`~streams.policy.AlertPolicy`. Only alerted transactions pay for ``Scorer.explain``.

Shadow scoring: given a challenger, the same batch is scored a second time (one more ONNX call, on the
same collated inputs when both models tokenise alike, else on the challenger's own encoding of the
same account state) and every transaction gets a second Score with ``shadow=True``, the challenger's
version and ``alerted=False``. Shadow scores never reach the alert policy (nor its budget), the label
join (labels are joined to the champion's score) or the drift observer. A challenger that fails to
encode or score costs the batch its shadow scores, never its champion outputs: the failure is reported
in :attr:`BatchResult.shadow_error` and the worker stops shadowing.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streams.config import WorkerConfig
from streams.dlq import dead_letter, from_contract_error, record_key
from streams.policy import AlertPolicy
from streams.rules import rule_hits
from streams.tables import AccountEntry, AccountTable, CounterpartyRisk
from txmon.contracts import Alert, ContractError, Drift, Label, Transaction, decode, score_bytes
from txmon.settings import Settings

# Records between the pauses of ScoringCore.steps: ~2 ms of work at ~230 us per transaction.
STEP_RECORDS = 8
# Where a batch's time goes: decode, features and state (records), the ONNX call (score), alert
# explanations (explain), scores and alerts out (publish), the drift monitor (drift), the
# challenger (shadow), changelog records (changelog); the worker adds the wait for the previous
# batch's transaction (wait) and this batch's own (commit).
PHASES = ("records", "score", "explain", "publish", "drift", "shadow", "changelog", "wait", "commit")


# Records and outputs: several per transaction, so slotted and not frozen (a frozen dataclass's
# __init__ costs 0.7 us against 0.2); nothing changes them after construction.
@dataclass(slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass(frozen=True)
class Topics:
    """Every topic the worker reads or writes; internal ones are named after the consumer group."""

    transactions: str
    labels: str
    scores: str
    alerts: str
    dlq: str
    drift: str
    models: str
    credits: str
    changelog: str
    counterparty: str

    @classmethod
    def from_settings(cls, settings: Settings, group_id: str) -> Topics:
        internal = f"{settings.topics.prefix}{group_id}"
        return cls(transactions=settings.topic("transactions"), labels=settings.topic("labels"),
                   scores=settings.topic("scores"), alerts=settings.topic("alerts"),
                   dlq=settings.topic("dlq"), drift=settings.topic("drift"),
                   models=settings.topic("models"), credits=f"{internal}-credits",
                   changelog=f"{internal}-accounts-changelog",
                   counterparty=f"{internal}-counterparty-labels")

    @property
    def inputs(self) -> tuple[str, str, str]:
        """Co-partitioned by account and consumed by one group: same partition numbers, same owner."""
        return (self.transactions, self.credits, self.labels)


class Model(Protocol):
    """What the core needs of ``models.scorer.Scorer``."""

    version: str
    encoder: Any

    def score(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...

    def explain(self, model_input: Any) -> list[Any]: ...


@dataclass(frozen=True)
class ScoredBatch:
    """What the drift monitor sees after each scored batch."""

    model_version: str
    transactions: list[Transaction]
    inputs: dict[str, np.ndarray]
    scores: np.ndarray
    embeddings: np.ndarray
    alerted: np.ndarray
    # Each transaction's feature record (``models.features.observe``): gaps, velocities, novelty.
    records: list[dict[str, Any]] = field(default_factory=list)
    # Where the scoring artifact lives and its verified digest: the drift reference it may ship.
    artifact_dir: Path | None = None
    artifact_sha256: str | None = None


class BatchObserver(Protocol):
    """The drift hook: fed in-process, returns Drift events to publish in the same transaction."""

    def on_batch(self, batch: ScoredBatch) -> list[Drift]: ...

    def on_label(self, label: Label, score: float | None, model_version: str) -> list[Drift]: ...


@dataclass
class BatchResult:
    outputs: list[Output] = field(default_factory=list)
    scored: int = 0
    alerts: list[Alert] = field(default_factory=list)
    dead: list[tuple[str, str]] = field(default_factory=list)  # (stage, field)
    duplicates: int = 0
    credits: int = 0
    labels: int = 0
    unmatched_labels: int = 0
    scoring_seconds: float = 0.0
    shadow_scored: int = 0
    shadow_version: str | None = None
    shadow_seconds: float = 0.0
    shadow_error: str | None = None
    event_times: list[datetime] = field(default_factory=list)
    ingest_ms: list[int] = field(default_factory=list)
    # Wall seconds per phase of the batch (PHASES), for the phase histogram and the batch trace.
    phases: dict[str, float] = field(default_factory=dict)

    def spent(self, phase: str, since: float) -> float:
        """Add the time since ``since`` to ``phase``; returns now (the next phase's start)."""
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - since
        return now


@dataclass(slots=True)
class _Pending:
    record: Record
    tx: Transaction
    model_input: Any
    shadow_input: Any = None  # the challenger's own encoding, when it tokenises differently


def positive_rate(features: Any, risk: dict[str, Any], at: datetime) -> float:
    """Decayed share of a counterparty's labelled transactions that were fraud/SAR (0 when none)."""
    labelled, rate = features.risk_numbers(risk, features.epoch_seconds(at))
    return rate if labelled >= 1.0 else 0.0


class ScoringCore:
    def __init__(self, topics: Topics, config: WorkerConfig, features: Any, accounts: AccountTable,
                 risk: CounterpartyRisk, policy: AlertPolicy, observer: BatchObserver | None = None):
        self.topics = topics
        self.config = config
        self.features = features
        self.accounts = accounts
        self.risk = risk
        self.policy = policy
        self.observer = observer

    # -- one batch -------------------------------------------------------------------------
    def process(self, records: list[Record], model: Model, challenger: Model | None = None) -> BatchResult:
        """Every output of ``records``; with a ``challenger``, also its shadow score per transaction."""
        out = BatchResult()
        for _ in self.steps(records, model, challenger, out):
            pass
        return out

    def steps(self, records: list[Record], model: Model, challenger: Model | None,
              out: BatchResult) -> Iterator[None]:
        """:meth:`process` into ``out``, pausing every :data:`STEP_RECORDS` records and around
        scoring: a caller on an event loop lets the previous batch's transaction take its next step
        at each pause, instead of it waiting for the whole batch."""
        pending: list[_Pending] = []
        own_encoding = challenger is not None and not same_encoding(model, challenger)
        t = time.perf_counter()
        for i, r in enumerate(records):
            if i and not i % STEP_RECORDS:
                t = out.spent("records", t)
                yield
                t = time.perf_counter()
            if r.topic == self.topics.transactions:
                self._transaction(r, model, out, pending, challenger if own_encoding else None)
            elif r.topic == self.topics.credits:
                self._credit(r, out)
            elif r.topic == self.topics.labels:
                self._label(r, model, out)
        out.spent("records", t)
        if pending:
            yield
            batch = yield from self._score(pending, model, out)
            if challenger is not None and out.shadow_error is None:
                yield
                t = time.perf_counter()
                self._shadow(pending, challenger, None if own_encoding else batch, out)
                out.spent("shadow", t)
        yield
        t = time.perf_counter()
        for partition, key, value in self.accounts.changelog():
            out.outputs.append(Output(self.topics.changelog, key, value, partition))
        out.spent("changelog", t)

    def _dead(self, r: Record, out: BatchResult, exc: ContractError | None = None, *,
              field_: str | None = None, error: str = "", stage: str = "decode") -> None:
        dl = (from_contract_error(r.topic, r.partition, r.offset, r.key, r.value, exc, stage=stage)
              if exc is not None else
              dead_letter(r.topic, r.partition, r.offset, r.key, r.value, field_, error, stage=stage))
        out.outputs.append(Output(self.topics.dlq, record_key(r.key), dl.to_bytes()))
        out.dead.append((dl.stage, dl.error_field or ""))

    def _transaction(self, r: Record, model: Model, out: BatchResult, pending: list[_Pending],
                     shadow_encoder: Model | None = None) -> None:
        try:
            tx = decode(Transaction, r.value)
        except ContractError as exc:
            self._dead(r, out, exc)
            return
        if r.key != tx.account_id.encode():
            # Keyed by something else, it sits on another account's partition: its history would
            # split between two workers. Refuse it loudly instead of scoring on half a history.
            self._dead(r, out, field_="key", stage="partitioning",
                       error=f"record key does not match account_id {tx.account_id!r}")
            return
        entry = self.accounts.get(tx.account_id, r.partition)
        if entry.seen(tx.tx_id):
            out.duplicates += 1  # a publisher retry: it already has its one score
            return
        shadow_input = None
        if shadow_encoder is not None and out.shadow_error is None:
            # Before the state update below: the challenger sees the same history as the champion.
            try:
                shadow_input = shadow_encoder.encoder.encode(
                    entry.state, tx, self.risk.get(tx.counterparty_id),
                    rows=self._rows(entry, shadow_encoder.encoder))
            except Exception as exc:
                out.shadow_error = f"challenger encoding: {type(exc).__name__}: {exc}"
        try:
            model_input = model.encoder.encode(entry.state, tx, self.risk.get(tx.counterparty_id),
                                               rows=self._rows(entry, model.encoder))
            records = getattr(model_input, "records", None)
            entry.state = self.features.update_account_state(
                entry.state, tx, record=records[-1] if records else None)
        except Exception as exc:  # a feature bug must not stop the stream; the DLQ shows it
            self._dead(r, out, field_="(features)", error=f"{type(exc).__name__}: {exc}",
                       stage="features")
            return
        entry.remember(tx.tx_id, tx.counterparty_id, None, self.config.label_index_size,
                       records[-1]["ts"] if records else self.features.epoch_seconds(tx.event_time),
                       self.config.label_index_days * 86400)
        self.accounts.touch(tx.account_id)
        pending.append(_Pending(r, tx, model_input, shadow_input))
        if (tx.tx_type in self.config.credit_tx_types and tx.direction == "debit"
                and tx.counterparty_id != tx.account_id):
            out.outputs.append(Output(self.topics.credits, tx.counterparty_id.encode(), r.value or b""))

    def _rows(self, entry: AccountEntry, encoder: Any) -> Any:
        """The account's history token rows under ``encoder``'s spec (champion, maybe challenger)."""
        spec = getattr(encoder, "spec", None)
        if spec is None:
            return None
        rows = entry.caches.get(id(spec))
        if rows is None or rows.spec is not spec:  # rows hold their spec, so its id is not reused
            if len(entry.caches) >= 2:
                entry.caches.clear()  # a swapped-out model's rows
            rows = entry.caches[id(spec)] = self.features.HistoryRows(spec)
        return rows

    def _credit(self, r: Record, out: BatchResult) -> None:
        try:
            tx = decode(Transaction, r.value)
        except ContractError as exc:
            self._dead(r, out, exc)
            return
        entry = self.accounts.get(tx.counterparty_id, r.partition)
        entry.state = self.features.update_account_state(entry.state, tx, as_counterparty=True)
        self.accounts.touch(tx.counterparty_id)
        out.credits += 1

    def _label(self, r: Record, model: Model, out: BatchResult) -> None:
        try:
            label = decode(Label, r.value)
        except ContractError as exc:
            self._dead(r, out, exc)
            return
        out.labels += 1
        entry = self.accounts.peek(label.account_id)
        item = entry.find(label.tx_id) if entry is not None else None
        if item is None:
            out.unmatched_labels += 1
            score = None
        else:
            counterparty, score = item[1], item[2]
            out.outputs.append(Output(self.topics.counterparty, counterparty.encode(),
                                      CounterpartyRisk.event(counterparty, label)))
        if self.observer is not None:
            self._drift(self.observer.on_label(label, score, model.version), out)

    def _score(self, pending: list[_Pending], model: Model,
               out: BatchResult) -> Generator[None, None, dict[str, np.ndarray]]:
        t0 = time.perf_counter()
        batch = model.encoder.collate([p.model_input for p in pending])
        t1 = time.perf_counter()
        scores, embeddings = model.score(batch)
        out.scoring_seconds = time.perf_counter() - t1
        out.spent("score", t0)
        yield
        t = time.perf_counter()
        now = datetime.now(UTC)
        now_ms = now.timestamp() * 1000
        alerted = np.zeros(len(pending), dtype=bool)
        policy_states: dict[int, dict[str, Any]] = {}
        for i, p in enumerate(pending):
            if i and not i % STEP_RECORDS:
                t = out.spent("publish", t)
                yield
                t = time.perf_counter()
            tx, r = p.tx, p.record
            score = min(1.0, max(0.0, float(scores[i])))
            state = policy_states.get(r.partition)
            if state is None:
                state = policy_states[r.partition] = self.accounts.policy(r.partition)
            decision = self.policy.decide(score, tx.event_time, state)
            # Looked up again, not kept from _transaction: a RocksDB store may have evicted and
            # reloaded the entry since (streams.store).
            self.accounts.get(tx.account_id, r.partition).set_score(tx.tx_id, score)
            key = r.key  # the account id: _transaction refused any other
            if decision.alert:
                alerted[i] = True
                t = out.spent("publish", t)
                reasons = model.explain(p.model_input)[: self.config.policy.max_reasons]
                t = out.spent("explain", t)
                rate = positive_rate(self.features, self.risk.get(tx.counterparty_id), tx.event_time)
                alert = Alert(tx_id=tx.tx_id, account_id=tx.account_id, score=score,
                              threshold=decision.threshold, model_version=model.version,
                              severity=decision.severity, reasons=reasons,
                              rule_hits=rule_hits(tx, rate, self.config.rules),
                              created_at=now)
                out.alerts.append(alert)
                out.outputs.append(Output(self.topics.alerts, key, alert.to_bytes()))
            out.outputs.append(Output(self.topics.scores, key, score_bytes(
                tx_id=tx.tx_id, account_id=tx.account_id, score=score,
                model_version=model.version, alerted=decision.alert,
                latency_ms=max(0.0, now_ms - r.timestamp_ms), event_time=tx.event_time,
                scored_at=now)))
            out.event_times.append(tx.event_time)
            out.ingest_ms.append(r.timestamp_ms)
        out.scored += len(pending)
        out.spent("publish", t)
        if self.observer is not None:
            yield
            t = time.perf_counter()
            self._drift(self.observer.on_batch(ScoredBatch(
                model.version, [p.tx for p in pending], batch, np.asarray(scores),
                np.asarray(embeddings), alerted,
                [p.model_input.records[-1] if getattr(p.model_input, "records", None) else {}
                 for p in pending], getattr(model, "artifact_dir", None),
                getattr(model, "sha256", None))), out)
            out.spent("drift", t)
        return batch

    def _shadow(self, pending: list[_Pending], challenger: Model,
                batch: dict[str, np.ndarray] | None, out: BatchResult) -> None:
        """The challenger's score of every transaction the champion just scored; never an alert.

        ``batch`` is the champion's collated input when the challenger can share it, else None.
        """
        t0 = time.perf_counter()
        try:
            if batch is None:
                batch = challenger.encoder.collate([p.shadow_input for p in pending])
            scores, _ = challenger.score(batch)
            if len(scores) != len(pending):
                raise ValueError(f"{len(scores)} scores for {len(pending)} transactions")
        except Exception as exc:
            out.shadow_error = f"challenger scoring: {type(exc).__name__}: {exc}"
            return
        out.shadow_seconds = time.perf_counter() - t0
        now = datetime.now(UTC)
        now_ms = now.timestamp() * 1000
        for i, p in enumerate(pending):
            tx, r = p.tx, p.record
            out.outputs.append(Output(self.topics.scores, tx.account_id.encode(), score_bytes(
                tx_id=tx.tx_id, account_id=tx.account_id,
                score=min(1.0, max(0.0, float(scores[i]))), model_version=challenger.version,
                alerted=False, latency_ms=max(0.0, now_ms - r.timestamp_ms),
                event_time=tx.event_time, scored_at=now, shadow=True)))
        out.shadow_scored = len(pending)
        out.shadow_version = challenger.version

    def _drift(self, events: list[Drift], out: BatchResult) -> None:
        for ev in events or ():
            out.outputs.append(Output(self.topics.drift, ev.champion_version.encode(), ev.to_bytes()))


def same_encoding(a: Model, b: Model) -> bool:
    """Do two models tokenise identically (same feature spec, same sequence length)?

    A challenger fine-tuned from the champion usually does, and then shares the champion's collated
    batch; otherwise it encodes the same account state with its own encoder.
    """
    ea, eb = a.encoder, b.encoder
    return ea is eb or (getattr(ea, "max_len", None) == getattr(eb, "max_len", None)
                        and getattr(ea, "spec", None) is not None
                        and getattr(ea, "spec", None) == getattr(eb, "spec", None))
