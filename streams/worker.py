"""The scoring worker: a transactional consume -> score -> produce loop on aiokafka.

**What is guaranteed.** For every record of ``txmon.transactions`` that reaches the worker's consumer
group, exactly one :class:`~txmon.contracts.Score` (or, if it breaks its contract, exactly one
DeadLetter) is visible to consumers that read ``txmon.scores`` / ``txmon.alerts`` / ``txmon.dlq`` with
``isolation_level=read_committed`` — across crashes (``kill -9``), restarts and rebalances between
live workers. Each micro-batch is one Kafka transaction holding its outputs, the changelog records of
the state it changed, and the consumed offsets (``send_offsets_to_transaction``): all become visible
together or not at all. A crashed worker's open transaction is aborted when a worker with the same
``instance_id`` starts (``InitProducerId`` fences the old producer epoch), or after
``transaction_timeout_ms`` otherwise; its partitions restart from the last committed offsets with the
state of the last committed changelog, so a replay recomputes the same outputs and only one copy ever
commits. Consumers reading ``read_uncommitted`` can see aborted copies: they must read committed.

**What is not.** Zombie fencing across *different* instance ids: aiokafka's
``send_offsets_to_transaction`` does not carry the consumer-group generation (KIP-447), so a worker
that stalls longer than ``session_timeout_ms`` without dying, loses its partitions, and then wakes up
inside a transaction could still commit that one batch. The rebalance listener narrows this (revocation
waits for the in-flight transaction; records fetched before a rebalance are discarded) but cannot close
it; run one process per ``instance_id`` and keep batches far shorter than the session timeout.

**Why not Faust's agent runtime.** faust-streaming 0.15's ``exactly_once`` puts each *output* record in
the transaction of the output record's partition (``faust/transport/consumer.py``, ``send``:
``transactional_id = f"{app.conf.id}-{group}-{p}"`` with ``p`` the output partition), not the
transaction of the input partition that produced it, commits offsets on a timer independent of
``stream.take`` buffers (issue 606), logs and swallows fenced/begin errors
(``faust/transport/drivers/aiokafka.py``, ``begin_transaction``) and duplicates under rebalances
(issues 323, 517). None of that can give the guarantee above, so the loop is written on the same
aiokafka client Faust uses. ``getmany(max_records=batch_size, timeout_ms=max_wait_ms)`` is the
micro-batch ``stream.take(batch_size, within=max_wait)`` would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from streams.config import WorkerConfig
from streams.hotswap import ModelSlot, Refusal, load_scorer
from streams.metrics import WorkerMetrics, observe_many
from streams.policy import AlertPolicy
from streams.scoring import PHASES, BatchObserver, BatchResult, Output, Record, ScoringCore, Topics
from streams.sender import BatchSender, delivered
from streams.store import account_entries
from streams.tables import AccountTable, CounterpartyRisk
from streams.txn_backoff import set_concurrent_transactions_backoff
from txmon.settings import Settings

log = logging.getLogger(__name__)


def ensure_worker_topics(settings: Settings, topics: Topics) -> dict[str, int]:
    """Create the shared topics and the worker's internal ones; returns each one's partition count."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from txmon.broker.topics import admin_client, ensure_topics

    ensure_topics(settings)
    admin = admin_client(settings)
    try:
        described = {d["name"]: len(d["partitions"]) for d in admin.describe_topics([topics.transactions])}
        n = described[topics.transactions]
        rf = settings.topics.replication_factor
        # Small segments, so compaction reaches them: the active segment is never compacted, and at
        # the 1 GB default a restart restored every write ever made (54 s after 200k transactions).
        compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000",
                     "segment.bytes": str(16 * 1024 * 1024), "segment.ms": str(3_600_000),
                     "min.cleanable.dirty.ratio": "0.2"}
        wanted = [
            NewTopic(topics.credits, n, rf,
                     topic_configs={"retention.ms": str(settings.topics.retention_ms)}),
            NewTopic(topics.changelog, n, rf, topic_configs=compacted),
            # Label events are folded, not compacted: every event counts.
            NewTopic(topics.counterparty, n, rf, topic_configs={"retention.ms": "-1"}),
        ]
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, timeout_ms=30000)
        names = [topics.transactions, topics.counterparty, topics.models]
        # A topic just created may be described with no partitions until its metadata settles (seen
        # on a loaded machine): a worker reading it then would follow nothing.
        deadline = time.monotonic() + 30.0
        while True:
            counts = {d["name"]: len(d["partitions"]) for d in admin.describe_topics(names)}
            if all(counts.get(name, 0) > 0 for name in names) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        empty = [name for name in names if counts.get(name, 0) == 0]
        if empty:
            raise RuntimeError(f"topics without partitions after 30 s: {', '.join(empty)}")
        return counts
    finally:
        admin.close()


async def read_to_end(settings: Settings, tps: list[TopicPartition],
                      apply: Callable[[int, list[Any]], None], *, client_id: str) -> int:
    """Read partitions from the beginning up to their last stable offset (read_committed)."""
    if not tps:
        return 0
    consumer = AIOKafkaConsumer(**settings.kafka.aiokafka_config() | {"client_id": client_id},
                                enable_auto_commit=False, isolation_level="read_committed",
                                auto_offset_reset="earliest")
    await consumer.start()
    n = 0
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=1000)
            for tp, recs in batches.items():
                apply(tp.partition, recs)
                n += len(recs)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return n


# Committed batches between two settle_heap(young=True) calls: ~1.5 s at 2,000 transactions/s.
SETTLE_EVERY_BATCHES = 64
# Net container allocations between two young (generation-0) collections; CPython's default is 700.
YOUNG_COLLECTION_EVERY = 10_000


def settle_heap(young: bool = False) -> None:
    """Take every object alive now out of the cyclic garbage collector's sight (``gc.freeze``);
    with ``young``, first collect the young generations, so this batch's short-lived cycles are
    freed rather than frozen.

    The worker's imports (torch, alibi-detect, onnxruntime, pandas) leave ~500k container objects,
    and the account state grows by a few objects per transaction. A full (generation 2)
    collection walks every one of them and ran inside a batch: in the paced benchmark's slowest 1%
    of batches, 12.6 ms of the batch on average was generation-2 collection (batch trace,
    ``bench/bench_worker.py``), and the backlog it left made the next batches larger still.
    Freezing at start-up, after each restore and every :data:`SETTLE_EVERY_BATCHES` committed
    batches keeps generation 2 nearly empty: collection time in the slowest 1% of batches fell to
    0 and 1.6 ms in two runs. The e2e tail did not follow (p99 120 and 153 ms vs 131-163): the
    batches that queue the p99 are long for other reasons now (``worker_settle.json``).
    Frozen objects are still freed by reference counting; only reference cycles among them are
    never collected. The account state (dicts, lists, bytes) forms none, and
    ``bench/bench_memory.py`` shows the same RSS shape as before (``memory_settle.json``).

    Young collections come every :data:`YOUNG_COLLECTION_EVERY` allocations instead of 700: a
    transaction allocates ~100 containers, almost all freed by reference counting within its
    batch, and at 700 a generation-0 collection ran every ~7 transactions and cost 5.4 us a
    transaction (0.38 ms each, the collector walking survivors in cold memory); at 10,000, 1.0 us
    (``bench/probe_core.py`` with the collector timed). Memory is not the price: cycles wait for
    at most 10,000 allocations more.
    """
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    if young:
        gc.collect(1)
    gc.freeze()


@dataclass
class Health:
    started_at: float = field(default_factory=time.time)
    assigned: list[int] = field(default_factory=list)
    last_batch_at: float | None = None
    restoring: bool = True
    fatal: str | None = None
    committed_batches: int = 0
    scored: int = 0

    shadow_scored: int = 0

    def snapshot(self, model_version: str | None,
                 challenger_version: str | None = None) -> tuple[bool, dict[str, Any]]:
        ok = self.fatal is None and not self.restoring and model_version is not None
        return ok, {"status": "ok" if ok else "unavailable", "model_version": model_version,
                    "challenger_version": challenger_version, "shadow_scored": self.shadow_scored,
                    "assigned_partitions": self.assigned, "restoring": self.restoring,
                    "last_batch_at": self.last_batch_at, "committed_batches": self.committed_batches,
                    "scored": self.scored, "fatal": self.fatal,
                    "uptime_s": round(time.time() - self.started_at, 1)}


@dataclass
class _Txn:
    """A batch's open Kafka transaction and its offsets, sent early (:meth:`Worker._begin`)."""

    offsets: asyncio.Task[None] | None
    consumed: dict[TopicPartition, int]  # what ``offsets`` commits

    def settled(self) -> bool:
        return self.offsets is None or self.offsets.done()

    async def abort(self, producer: Any) -> None:
        """Abort after a failure, unless the producer's state is fatal (it then aborts nothing,
        as ``producer.transaction()`` does); the caller raises the failure on."""
        if self.offsets is not None and not self.offsets.done():
            self.offsets.cancel()
        if not producer._txn_manager.is_fatal_error():
            with contextlib.suppress(Exception):
                await producer.abort_transaction()


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: Worker):
        self.w = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Waits for the in-flight batch's transaction to commit: its offsets are then committed
        # before the partitions' next owner fetches them.
        async with self.w.lock:
            await self.w.committed()
            self.w.generation += 1
            parts = {tp.partition for tp in revoked}
            self.w.accounts.drop_partitions(parts)
            log.info("revoked partitions %s", sorted(parts))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # The state is restored by the loop (Worker._restore_assigned), not here: aiokafka sends no
        # heartbeats while this callback runs, so a restore longer than the session timeout got the
        # worker evicted, and every rejoin restored again — a livelock once the changelog was big.
        async with self.w.lock:
            self.w.generation += 1
            self.w.to_restore = sorted({tp.partition for tp in assigned})
            self.w.health.restoring = True
            log.info("assigned partitions %s", self.w.to_restore)


class Worker:
    """One scoring worker process; :meth:`run` until :meth:`stop` (or SIGTERM)."""

    def __init__(self, settings: Settings, config: WorkerConfig, *,
                 observer: BatchObserver | None = None, loader: Callable[..., Any] | None = None,
                 metrics: WorkerMetrics | None = None):
        import models.features as features

        self.settings = settings
        self.config = config
        self.topics = Topics.from_settings(settings, config.group_id)
        self.metrics = metrics or WorkerMetrics()
        self.health = Health()
        self.lock = asyncio.Lock()
        self.generation = 0
        self.to_restore: list[int] | None = None  # assigned partitions whose state is not restored yet
        self._stopping = asyncio.Event()
        self.features = features
        self.accounts = AccountTable(features.new_account_state, AlertPolicy.new_state, account_entries(
            config.store, config.store_dir or settings.home / "worker" / config.instance_id / "accounts",
            config.store_cache_entries), rings=(features.HISTORY_MAX, config.label_index_size))
        self.risk = CounterpartyRisk(features.new_counterparty_risk, features.update_counterparty_risk)
        self.observer = observer
        self.slot = ModelSlot(loader or (lambda d, sha: load_scorer(d, sha, settings,
                                                                    config.intra_op_threads)),
                              shadow=config.shadow)
        self.slot.on_swap = self._swapped
        self.slot.on_shadow = self._shadowing
        self.slot.on_refusal = lambda r: self.metrics.model_rejected.inc()
        self._positions: dict[TopicPartition, int] = {}
        # The previous batch's transaction, committing while the next batch is fetched and processed.
        self._in_flight: asyncio.Task[None] | None = None
        self.open_txn: _Txn | None = None  # the newest batch's transaction (tests look at it)
        self._partitions: dict[str, int] = {}
        self.core: ScoringCore | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.sender: BatchSender | None = None
        self.web_port: int | None = None
        self._trace = open(config.batch_trace, "a", buffering=1 << 16) if config.batch_trace else None  # noqa: SIM115
        # With the trace on: seconds spent in cyclic garbage collection (inside the phases above).
        self._gc_seconds, self._gc_started = 0.0, 0.0
        if self._trace is not None:
            gc.callbacks.append(self._gc_timer)

    def _gc_timer(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_seconds += time.perf_counter() - self._gc_started

    def _swapped(self, model: Any) -> None:
        self.metrics.model.info({"version": str(model.version)})
        self.metrics.model_swaps.inc()

    def _shadowing(self, model: Any | None) -> None:
        self.metrics.challenger.info({"version": str(model.version) if model is not None else ""})

    def stop(self) -> None:
        self._stopping.set()

    # -- state -----------------------------------------------------------------------------
    async def _restore_assigned(self) -> None:
        """Restore the partitions the last rebalance assigned, before any of their records is
        processed; heartbeats go on meanwhile (the rebalance is over)."""
        async with self.lock:
            parts, self.to_restore = self.to_restore, None
            if parts is None:
                return
            t0 = time.perf_counter()
            n = await self.restore(parts)
            self.health.assigned = parts
            self.health.restoring = False
            log.info("partitions %s: restored %d changelog records in %.2fs",
                     parts, n, time.perf_counter() - t0)
            settle_heap()  # the restored state lives as long as the partitions stay

    async def restore(self, partitions: list[int]) -> int:
        tps = [TopicPartition(self.topics.changelog, p) for p in partitions]

        restorers = {p: self.accounts.restorer(p) for p in partitions}

        def apply(p: int, recs: list[Any]) -> None:
            restorers[p].apply((r.key, r.value) for r in recs)

        n = await read_to_end(self.settings, tps, apply,
                              client_id=f"{self.config.transactional_id}-restore")
        for r in restorers.values():  # an account's records may span several fetches
            r.finish()
        return n

    async def _follow(self, topic: str, apply: Callable[[Any], Any], ready: asyncio.Event,
                      name: str, caught_up: Callable[[], Any] | None = None) -> None:
        """Read a topic's every partition from the start, forever; ``ready`` once caught up (after
        awaiting ``caught_up()``, if given)."""
        consumer = AIOKafkaConsumer(**self.settings.kafka.aiokafka_config()
                                    | {"client_id": f"{self.config.transactional_id}-{name}"},
                                    enable_auto_commit=False, isolation_level="read_committed",
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(self._partitions[topic])]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                for recs in batches.values():
                    for r in recs:
                        res = apply(r)
                        if asyncio.iscoroutine(res):
                            await res
                if not ready.is_set() and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    if caught_up is not None:
                        await caught_up()
                    ready.set()
        finally:
            await consumer.stop()

    async def _on_model_record(self, r: Any) -> None:
        await self.slot.offer(r.value, r.topic, r.partition, r.offset)

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        cfg, s = self.config, self.settings
        self._partitions = await asyncio.to_thread(ensure_worker_topics, s, self.topics)
        self.core = ScoringCore(self.topics, cfg, self.features, self.accounts, self.risk,
                                AlertPolicy(cfg.policy, self._partitions[self.topics.transactions]),
                                self.observer)
        web = await self._start_web() if cfg.metrics_port >= 0 else None
        if cfg.model_dir is not None:
            self.slot.install(await asyncio.to_thread(load_scorer, cfg.model_dir, None, s,
                                                      cfg.intra_op_threads))
        risk_ready, models_ready = asyncio.Event(), asyncio.Event()
        self.slot.begin_catch_up()
        followers = [
            asyncio.create_task(self._follow(self.topics.counterparty, lambda r: self.risk.apply(r.value),
                                             risk_ready, "risk")),
            asyncio.create_task(self._follow(self.topics.models, self._on_model_record, models_ready,
                                             "models", self.slot.finish_catch_up)),
        ]
        try:
            await self._wait_ready(followers, risk_ready, models_ready)
            # The producer first: its InitProducerId aborts a dead predecessor's open transaction
            # before this worker reads committed state.
            set_concurrent_transactions_backoff(cfg.concurrent_txn_backoff_ms)
            self.producer = AIOKafkaProducer(
                **s.kafka.aiokafka_config() | {"client_id": cfg.transactional_id},
                transactional_id=cfg.transactional_id, enable_idempotence=True, acks="all",
                transaction_timeout_ms=cfg.transaction_timeout_ms, linger_ms=2,
                max_batch_size=256 * 1024, retry_backoff_ms=cfg.retry_backoff_ms)
            await self.producer.start()
            self.sender = BatchSender(self.producer)
            self.consumer = AIOKafkaConsumer(
                **s.kafka.aiokafka_config() | {"client_id": cfg.transactional_id},
                group_id=cfg.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                isolation_level="read_committed", partition_assignment_strategy=(RangePartitionAssignor,),
                session_timeout_ms=cfg.session_timeout_ms, max_poll_records=cfg.batch_size,
                fetch_max_wait_ms=min(cfg.max_wait_ms, 500))
            await self.consumer.start()
            self.consumer.subscribe(list(self.topics.inputs), listener=_Rebalance(self))
            await self._loop(followers)
            await self.committed()
        except Exception as exc:
            self.health.fatal = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._stopping.set()
            if self._in_flight is not None:
                if not self._in_flight.done():
                    self._in_flight.cancel()  # failing: its transaction aborts with the producer
                with contextlib.suppress(BaseException):
                    await self._in_flight
            for t in followers:
                t.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            if self.consumer is not None:
                await self.consumer.stop()
            if self.producer is not None:
                await self.producer.stop()
            if web is not None:
                await web.cleanup()
            if self._trace is not None:
                self._trace.close()
                gc.callbacks.remove(self._gc_timer)
            close = getattr(self.observer, "close", None)
            if close is not None:
                close()  # the drift monitor's last checkpoint

    async def _wait_ready(self, followers: list[asyncio.Task], *events: asyncio.Event) -> None:
        while not all(e.is_set() for e in events):
            for t in followers:
                if t.done():
                    t.result()  # re-raise what stopped a follower
            await asyncio.sleep(0.05)
        while self.slot.current is None and self.slot.for_next_batch() is None:
            if self._stopping.is_set():
                return
            log.warning("no model to serve yet: waiting for a promoted event on %s", self.topics.models)
            await asyncio.sleep(1.0)

    async def _loop(self, followers: list[asyncio.Task]) -> None:
        assert self.consumer is not None and self.core is not None
        cfg = self.config
        last_lag = 0.0
        while not self._stopping.is_set():
            for t in followers:
                if t.done():
                    t.result()
            if self._in_flight is not None and self._in_flight.done():
                await self.committed()  # a failed commit ends the worker now, not at the next batch
            if self.to_restore is not None:
                await self.committed()
                await self._restore_assigned()
                continue
            generation = self.generation
            batches = await self.consumer.getmany(timeout_ms=cfg.max_wait_ms, max_records=cfg.batch_size)
            async with self.lock:
                assigned = self.consumer.assignment()
                if generation != self.generation:
                    # Fetched before a rebalance: unprocessed, so rewind to its first record. A
                    # partition that stayed ours would otherwise go on after this batch.
                    for tp, recs in batches.items():
                        if recs and tp in assigned:
                            self.consumer.seek(tp, recs[0].offset)
                    continue
                records = [Record(tp.topic, tp.partition, r.offset, r.key, r.value, r.timestamp)
                           for tp, recs in batches.items() if tp in assigned for r in recs]
                # Each partition's records come in offset order: the next offset is after its last.
                offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items()
                           if recs and tp in assigned}
                refusals = self.slot.drain_refusals()
                if records or refusals:
                    await self._transact(records, offsets, refusals)
                else:
                    # Idle is between batches too: a loaded model takes over now, so /health and
                    # the metrics name the model that will score the next record.
                    self.slot.for_next_batch()
            if time.monotonic() - last_lag > 2.0:
                last_lag = time.monotonic()
                self._update_lag()

    async def committed(self) -> None:
        """Wait for the in-flight transaction; raise what failed it."""
        task, self._in_flight = self._in_flight, None
        if task is not None:
            await task

    async def _transact(self, records: list[Record], offsets: dict[TopicPartition, int],
                        refusals: list[Refusal]) -> None:
        """Process a batch while the previous batch's transaction commits, then hand this batch's
        transaction to a task and return — when the batch was full (a backlog); a partial batch
        commits before the next fetch, which is lower latency when the worker keeps up.

        A commit is mostly waiting on the broker (5-10 ms); processing pauses every few records
        (:meth:`ScoringCore.steps`) so the commit's requests go out between them. Transactions stay
        one at a time and in order: a batch's begins (:meth:`_begin`) as soon as the previous one
        committed — before processing when none is in flight, else at the first pause after. A
        failed commit is raised at the next batch (or revocation, or stop) and ends the worker
        before anything later commits; the tables, which by then hold the next batch's changes
        too, are rebuilt from the committed changelog at restart (crash-only, as before).
        """
        assert self.core is not None
        t0 = time.perf_counter()
        model = self.slot.for_next_batch()
        result = BatchResult()
        gc_before = self._gc_seconds
        if self._trace is not None and records:
            result.phases["age"] = time.time() - min(r.timestamp_ms for r in records) / 1000
        txn: _Txn | None = None
        try:
            if records:
                txn = await self._begin_if_free(txn, offsets)
                for _ in self.core.steps(records, model, self.slot.challenger, result):
                    txn = await self._begin_if_free(txn, offsets)
                    if (txn is not None and not txn.settled()) or (
                            self._in_flight is not None and not self._in_flight.done()):
                        await asyncio.sleep(0)
        except BaseException:
            if txn is not None:
                await txn.abort(self.producer)
            raise
        result.outputs.extend(Output(self.topics.dlq, r.version.encode(), r.letter.to_bytes())
                              for r in refusals)
        if self._trace is not None:
            result.phases["gc"] = self._gc_seconds - gc_before
        t = time.perf_counter()
        await self.committed()
        result.spent("wait", t)
        txn = await self._begin_if_free(txn, offsets)
        assert txn is not None
        self._in_flight = asyncio.create_task(self._commit(result, txn, len(records), t0, refusals))
        if len(records) < self.config.batch_size:
            # Caught up (a partial batch): these records are fastest out by committing now. Only
            # a backlog is worth overlapping, where it buys throughput.
            await self.committed()

    async def _begin_if_free(self, txn: _Txn | None, offsets: dict[TopicPartition, int]) -> _Txn | None:
        """``txn``, or a new one (:meth:`_begin`) once no earlier transaction is in flight."""
        if txn is None and (self._in_flight is None or self._in_flight.done()):
            await self.committed()  # raises what failed the previous one
            txn = self.open_txn = await self._begin(offsets)
        return txn

    async def _begin(self, offsets: dict[TopicPartition, int]) -> _Txn:
        """Open the batch's transaction and send its consumed offsets right away.

        The offsets are known when the batch is fetched, and a transaction may take them before
        its records: AddOffsetsToTxn and TxnOffsetCommit (two of a transaction's five round trips)
        then go out while the batch is processed, at its pauses, instead of after it. The first of
        them also absorbs the coordinator's CONCURRENT_TRANSACTIONS answers while it still writes
        the previous transaction's markers (:mod:`streams.txn_backoff`). Atomicity is Kafka's:
        offsets and outputs still commit or abort together at EndTxn. Measured: the commit phase
        after processing fell from 7.7 to 5.2 ms a batch at half the max rate (bench_worker.py).
        Adding the expected output partitions early as well (aiokafka's private
        ``maybe_add_partition_to_txn``) measured 6.1 ms: not kept.
        """
        assert self.producer is not None
        await self.producer.begin_transaction()
        task = (asyncio.create_task(self.producer.send_offsets_to_transaction(
            offsets, self.config.group_id)) if offsets else None)
        return _Txn(task, offsets)

    async def _commit(self, result: BatchResult, txn: _Txn, n: int, t0: float,
                      refusals: list[Refusal]) -> None:
        assert self.producer is not None and self.sender is not None
        t = time.perf_counter()
        try:
            try:
                futures = await self.sender.send(result.outputs)
                if txn.offsets is not None:
                    await txn.offsets
            except BaseException:
                await txn.abort(self.producer)
                raise
            await self.producer.commit_transaction()
            await delivered(futures)
        except Exception:
            self.metrics.transactions.labels("failed").inc()
            # The tables already hold this batch's changes; only a restore from the committed
            # changelog makes them true again. Crash-only: stop, let the supervisor restart us.
            log.exception("transaction failed; exiting so a restart restores committed state")
            raise
        result.spent("commit", t)
        self.metrics.transactions.labels("committed").inc()
        if self.health.committed_batches % SETTLE_EVERY_BATCHES == 0:
            # The first batch loaded what scoring and drift import lazily; later, the state grew.
            settle_heap(young=True)
        self._positions.update(txn.consumed)
        self._observe(result, n, time.perf_counter() - t0, refusals)
        if result.shadow_error is not None:
            self.metrics.shadow_failures.inc()
            self.slot.drop_challenger(result.shadow_error)

    def _observe(self, result: BatchResult, n: int, seconds: float, refusals: list[Refusal]) -> None:
        m, h = self.metrics, self.health
        now = time.time()
        h.last_batch_at = now
        h.committed_batches += 1
        h.scored += result.scored
        if n:
            m.batch_size.observe(n)
            m.batch_seconds.observe(seconds)
            for phase in PHASES:
                if phase in result.phases:
                    m.phase_seconds.labels(phase).observe(result.phases[phase])
            if self._trace is not None:
                self._trace.write(json.dumps({"at": round(now, 4), "n": n, "s": round(seconds, 5)} | {
                    k: round(v, 5) for k, v in result.phases.items()}) + "\n")
        if result.scored:
            m.scoring_seconds.observe(result.scoring_seconds)
            m.scores.inc(result.scored)
            m.events.labels("transaction", "scored").inc(result.scored)
        if result.shadow_scored:
            h.shadow_scored += result.shadow_scored
            m.shadow_scores.inc(result.shadow_scored)
            m.shadow_seconds.observe(result.shadow_seconds)
        if result.event_times:
            observe_many(m.e2e_event_seconds, [max(0.0, now - et.timestamp())
                                               for et in result.event_times])
        if result.ingest_ms:
            observe_many(m.e2e_ingest_seconds,
                         np.maximum(0.0, now - np.asarray(result.ingest_ms, dtype=np.float64) / 1000))
        for a in result.alerts:
            m.alerts.labels(a.severity).inc()
        for stage, fld in result.dead:
            m.dead_letters.labels(f"{stage}:{fld}").inc()
        for _ in refusals:
            m.dead_letters.labels("model_load:artifact").inc()
        if result.duplicates:
            m.events.labels("transaction", "duplicate").inc(result.duplicates)
        if result.credits:
            m.events.labels("credit", "applied").inc(result.credits)
        if result.labels:
            m.events.labels("label", "joined").inc(result.labels - result.unmatched_labels)
            m.unmatched_labels.inc(result.unmatched_labels)

    def _update_lag(self) -> None:
        assert self.consumer is not None
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            done = self._positions.get(tp)
            if high is not None and done is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - done))

    # -- http ------------------------------------------------------------------------------
    async def _start_web(self) -> Any:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.metrics.registry),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def health(_: web.Request) -> web.Response:
            ok, body = self.health.snapshot(self.slot.version, self.slot.challenger_version)
            drift = getattr(self.observer, "state", None)
            if drift is not None:
                body["drift"] = {"state": drift, "champion_version": self.observer.version}
            return web.json_response(body, status=200 if ok else 503)

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.config.metrics_host, self.config.metrics_port)
        await site.start()
        self.web_port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked
        log.info("metrics and health on http://%s:%d", self.config.metrics_host, self.web_port)
        return runner


def drift_feed(settings: Settings, config: WorkerConfig) -> BatchObserver:
    """The drift monitor as configured: checkpoints in ``drift_state_dir`` (default
    ``$TXMON_HOME/drift/state``), references cached in ``$TXMON_HOME/drift/references/<version>``,
    distribution-free CVM thresholds in ``$TXMON_HOME/drift/thresholds``."""
    from streams.drift import DriftConfig
    from streams.observer import DriftFeed

    home = settings.home / "drift"
    return DriftFeed(DriftConfig(**config.drift_monitor), config.drift_state_dir or home / "state",
                     home / "references", warmup_events=config.drift_warmup_events,
                     cold_events=config.drift_cold_events,
                     alert_threshold=config.policy.threshold, threshold_cache=home / "thresholds")


def run_worker(settings: Settings, config: WorkerConfig, observer: BatchObserver | None = None) -> None:
    """Run until SIGTERM/SIGINT: finishes the batch in flight, leaves the group, exits.

    Without an ``observer`` and with ``config.drift`` on, the champion is drift-monitored
    (:func:`drift_feed`).
    """
    if observer is None and config.drift:
        observer = drift_feed(settings, config)

    async def main() -> None:
        worker = Worker(settings, config, observer=observer)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())
