"""The scoring worker against a real broker: every transaction scored exactly once, bad ones dead-lettered."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner
from kafka import KafkaProducer

from models.artifact import verify, write_manifest
from models.dataset import fit_spec
from models.features import FeatureEncoder
from models.toy import toy_frame
from streams.config import PolicyConfig, WorkerConfig
from streams.worker import Worker
from tests.unit.test_streams_scoring import TokenModel
from txmon.broker.topics import ensure_topics
from txmon.contracts import DeadLetter, Score, Transaction, decode
from txmon.settings import Settings

pytestmark = pytest.mark.kafka

PARTITIONS = 3


def make_transactions(n: int, accounts: int = 300, seed: int = 0) -> list[Transaction]:
    rng = random.Random(seed)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(n):
        a = rng.randrange(accounts)
        transfer = rng.random() < 0.05
        out.append(Transaction(
            tx_id=f"tx-{seed}-{i}", event_time=t0 + timedelta(milliseconds=i * 50),
            account_id=f"acc{a}", counterparty_id=f"acc{rng.randrange(accounts)}" if transfer
            else f"m{rng.randrange(50)}", amount=f"{rng.lognormvariate(3, 1):.2f}",
            channel=rng.choice(["pos", "online", "atm"]), tx_type="transfer" if transfer else "card",
            country="DE", counterparty_country=rng.choice(["DE", "DE", "FR", "IR"])))
    return out


MALFORMED = [b'{"tx_id": "bad", "amount": 1.5}', b"\xff not utf8", b"[1, 2]",
             b'{"tx_id": "x", "event_time": "2026-01-01T00:00:00Z", "account_id": "acc1", '
             b'"counterparty_id": "m", "amount": "1", "currency": "XXZ"}']


def produce(s: Settings, txs: list[Transaction], malformed_every: int = 0) -> int:
    producer = KafkaProducer(**s.kafka.kafka_python_config(), acks="all", linger_ms=5)
    bad = 0
    for i, tx in enumerate(txs):
        producer.send(s.topic("transactions"), key=tx.account_id.encode(), value=tx.to_bytes())
        if malformed_every and i % malformed_every == malformed_every - 1:
            producer.send(s.topic("transactions"), key=b"acc1", value=MALFORMED[bad % len(MALFORMED)])
            bad += 1
    producer.flush()
    producer.close()
    return bad


async def read_committed(s: Settings, topic: str, until: int, timeout: float = 120.0,
                         settle: float = 2.0) -> list:
    """All committed records of ``topic``; waits for ``until`` of them, then ``settle`` s for extras."""
    consumer = AIOKafkaConsumer(topic, **s.kafka.aiokafka_config(), group_id=None,
                                isolation_level="read_committed", auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    got: list = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    quiet_until = None
    try:
        while loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for recs in batches.values():
                got.extend(recs)
            if len(got) >= until:
                quiet_until = quiet_until or loop.time() + settle
                if loop.time() >= quiet_until:
                    break
    finally:
        await consumer.stop()
    return got


@pytest.fixture(scope="module")
def encoder():
    return FeatureEncoder(fit_spec(toy_frame(accounts=12, days=6, seed=3), min_count=1), max_len=8)


def artifact(tmp: Path, version: str) -> tuple[Path, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "model.onnx").write_bytes(f"weights of {version}".encode())
    return tmp, write_manifest(tmp, version=version).artifact_sha256


def verifying_loader(encoder, bias: dict[str, float] | None = None):
    """Checks the artifact for real (models.artifact.verify), then serves the token model."""

    def load(directory: Path, expected_sha256: str | None):
        m = verify(directory, expected_sha256=expected_sha256)
        return TokenModel(encoder, m.version, (bias or {}).get(m.version, 0.0))

    return load


def worker_config(**kw) -> WorkerConfig:
    base = dict(instance_id="w1", group_id="scorer", batch_size=256, max_wait_ms=20,
                metrics_port=-1, transaction_timeout_ms=10_000, session_timeout_ms=6_000,
                policy=PolicyConfig(threshold=0.9))
    return WorkerConfig(**base | kw)


async def test_every_transaction_scored_once_and_malformed_in_dlq(kafka_settings_for, topic_prefix,
                                                                   encoder, tmp_path):
    s = kafka_settings_for(topic_prefix)
    ensure_topics(s, PARTITIONS)
    n = 50_000  # the figure: ~37 s on 2 cores at load 4, ~90 s at load 11
    txs = make_transactions(n)
    bad = await asyncio.to_thread(produce, s, txs, 100)
    model_dir, _ = artifact(tmp_path / "m1", "m1")
    trace = tmp_path / "batches.jsonl"
    worker = Worker(s, worker_config(model_dir=None, batch_trace=trace), loader=verifying_loader(encoder))
    worker.slot.install(verifying_loader(encoder)(model_dir, None))
    task = asyncio.create_task(worker.run())
    try:
        scores = await read_committed(s, s.topic("scores"), n, timeout=300)
        letters = await read_committed(s, s.topic("dlq"), bad, timeout=30, settle=0.5)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    ids = [decode(Score, r.value).tx_id for r in scores]
    assert len(ids) == n and set(ids) == {t.tx_id for t in txs}
    # Record batches (streams.sender) put each score where the default partitioner would.
    assert all(r.partition == DefaultPartitioner()(r.key, list(range(PARTITIONS)), []) for r in scores)
    dead = [decode(DeadLetter, r.value) for r in letters]
    assert len(dead) == bad == n // 100
    assert all(d.source_topic == s.topic("transactions") and d.error and d.original for d in dead)
    assert worker.metrics.scores._value.get() == n
    # The batch trace accounts for every consumed record, each batch with its commit time.
    batches = [json.loads(line) for line in trace.read_text().splitlines()]
    assert sum(b["n"] for b in batches) >= n + bad
    assert all(b["commit"] > 0 and b["records"] > 0 and b["age"] >= 0 and b["gc"] >= 0 for b in batches)
    assert worker.metrics.phase_seconds.labels("commit")._sum.get() > 0
    # The changelog is compacted in small segments, so a restart restores state, not history.
    from kafka.admin import ConfigResource, ConfigResourceType

    from txmon.broker.topics import admin_client
    admin = admin_client(s)
    try:
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC,
                                                     worker.topics.changelog)])
    finally:
        admin.close()
    (configs,) = [c for by_name in res.values() for c in by_name.values()]
    value = {k: (v["value"] if isinstance(v, dict) else v) for k, v in configs.items()}
    assert value["cleanup.policy"] == "compact" and int(value["segment.bytes"]) <= 16 << 20, value


def tiny_artifact(out_dir: Path, version: str, seed: int = 0) -> str:
    """A real (untrained) transformer exported to ONNX through models.export; returns its sha256."""
    import torch

    from models.configuration import TxmonConfig
    from models.export import export_artifact
    from models.modeling import TxmonModel

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    spec = fit_spec(toy_frame(accounts=12, days=6, seed=3), min_count=1)
    model = TxmonModel(TxmonConfig(vocab_sizes=spec.vocab_sizes, max_len=8, hidden_size=16,
                                   field_size=8, num_layers=1, num_heads=2, intermediate_size=32))
    return export_artifact(model, spec, out_dir, version).artifact_sha256


def start_worker(s: Settings, model_dir: Path, log: Path) -> subprocess.Popen:
    env = os.environ | {"TXMON_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
                        "TXMON_TOPICS__PREFIX": s.topics.prefix, "TXMON_HOME": str(s.home),
                        "TXMON_WORKER__INSTANCE_ID": "w1", "TXMON_WORKER__METRICS_PORT": "-1",
                        "TXMON_WORKER__TRANSACTION_TIMEOUT_MS": "10000",
                        "OMP_NUM_THREADS": "1"}
    txmon = Path(sys.executable).with_name("txmon")
    return subprocess.Popen([str(txmon), "worker", "--model", str(model_dir), "--batch-size", "200"],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def count_committed(s: Settings, topic: str, at_least: int, timeout: float) -> int:
    return len(await read_committed(s, topic, at_least, timeout=timeout, settle=0.0))


async def test_kill_9_mid_stream_then_restart_no_loss_no_duplicate(kafka_settings_for, topic_prefix,
                                                                   tmp_path):
    s = kafka_settings_for(topic_prefix)
    ensure_topics(s, PARTITIONS)
    model_dir = tmp_path / "artifact"
    await asyncio.to_thread(tiny_artifact, model_dir, "tiny-1")
    n = 12_000
    txs = make_transactions(n, seed=9)
    await asyncio.to_thread(produce, s, txs)
    log = tmp_path / "worker.log"
    kills = 0
    for target in (2_000, 6_000):
        proc = start_worker(s, model_dir, log)
        try:
            got = await count_committed(s, s.topic("scores"), target, timeout=120)
            assert got >= target, log.read_text()[-3000:]
        finally:
            proc.send_signal(signal.SIGKILL)  # mid-stream: no shutdown, no flush, open transaction
            proc.wait(10)
            kills += 1
        assert got < n, "the worker finished before it could be killed mid-stream"
    proc = start_worker(s, model_dir, log)
    try:
        scores = await read_committed(s, s.topic("scores"), n, timeout=180, settle=3.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    ids = [decode(Score, r.value).tx_id for r in scores]
    dupes = len(ids) - len(set(ids))
    assert dupes == 0, f"{dupes} duplicate scores after {kills} kill -9"
    assert set(ids) == {t.tx_id for t in txs}, f"{n - len(set(ids))} transactions lost"
    assert {decode(Score, r.value).model_version for r in scores} == {"tiny-1"}


async def wait_for(predicate, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def publish_model_event(s: Settings, version: str, sha: str, uri: Path) -> None:
    from txmon.contracts import ModelEvent

    ev = ModelEvent(event="promoted", version=version, artifact_sha256=sha, artifact_uri=str(uri),
                    created_at=datetime.now(UTC))
    producer = KafkaProducer(**s.kafka.kafka_python_config(), acks="all")
    producer.send(s.topic("models"), key=version.encode(), value=ev.to_bytes())
    producer.flush()
    producer.close()


async def test_hot_swap_mid_stream_and_tampered_artifact_refused(kafka_settings_for, topic_prefix,
                                                                 tmp_path):
    s = kafka_settings_for(topic_prefix)
    ensure_topics(s, PARTITIONS)
    v1 = tmp_path / "v1"
    v2 = tmp_path / "v2"
    v3 = tmp_path / "v3"
    await asyncio.to_thread(tiny_artifact, v1, "v1", 1)
    sha2 = await asyncio.to_thread(tiny_artifact, v2, "v2", 2)
    sha3 = await asyncio.to_thread(tiny_artifact, v3, "v3", 3)
    onnx = next(p for p in v3.iterdir() if p.suffix == ".onnx")
    onnx.write_bytes(onnx.read_bytes()[:-8] + b"tampered")  # after signing off: must be refused
    worker = Worker(s, worker_config(model_dir=v1))
    task = asyncio.create_task(worker.run())
    try:
        first = make_transactions(2_000, seed=21)
        await asyncio.to_thread(produce, s, first)
        await read_committed(s, s.topic("scores"), 1_000, timeout=120, settle=0.0)
        await asyncio.to_thread(publish_model_event, s, "v2", sha2, v2)
        await wait_for(lambda: worker.slot.version == "v2")
        await asyncio.to_thread(publish_model_event, s, "v3", sha3, v3)
        await wait_for(lambda: worker.metrics.model_rejected._value.get() == 1)
        second = make_transactions(2_000, seed=22)
        await asyncio.to_thread(produce, s, second)
        scores = [decode(Score, r.value) for r in
                  await read_committed(s, s.topic("scores"), 4_000, timeout=120)]
        letters = [decode(DeadLetter, r.value) for r in
                   await read_committed(s, s.topic("dlq"), 1, timeout=30, settle=1.0)]
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    ids = [x.tx_id for x in scores]
    assert len(ids) == len(set(ids)) == 4_000
    assert set(ids) == {t.tx_id for t in first + second}
    by_version = {v: sum(x.model_version == v for x in scores) for v in ("v1", "v2", "v3")}
    assert by_version["v1"] > 0 and by_version["v2"] >= 2_000 and by_version["v3"] == 0
    later = {t.tx_id for t in second}
    assert all(x.model_version == "v2" for x in scores if x.tx_id in later)  # old model kept serving
    assert [(d.stage, d.key) for d in letters] == [("model_load", "v3")]
    assert "sha256" in letters[0].error


async def test_a_batch_failing_after_its_offsets_went_out_commits_nothing(kafka_settings_for, topic_prefix,
                                                                          encoder, tmp_path, monkeypatch):
    """A batch's offsets go into its transaction before it is processed (Worker._begin); a failure
    after that must still leave neither its offsets nor its outputs committed."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.scoring import ScoringCore

    s = kafka_settings_for(topic_prefix)
    ensure_topics(s, PARTITIONS)
    txs = make_transactions(900, seed=41)
    await asyncio.to_thread(produce, s, txs)
    model_dir, _ = artifact(tmp_path / "m1", "m1")
    trace = tmp_path / "batches.jsonl"
    worker = Worker(s, worker_config(model_dir=None, batch_size=150, batch_trace=trace),
                    loader=verifying_loader(encoder))
    worker.slot.install(verifying_loader(encoder)(model_dir, None))
    real_steps, calls = ScoringCore.steps, []

    def third_batch_fails(self, records, model, challenger, out):
        calls.append((len(records), sum(r.topic == self.topics.transactions for r in records)))
        yield from real_steps(self, records, model, challenger, out)
        if len(calls) == 3:
            # Processed; this batch's transaction is open and its offsets were sent early: fail
            # once the broker has taken them.
            mine: dict = {}
            for r in records:
                tp = (r.topic, r.partition)  # equal to the worker's aiokafka TopicPartition keys
                mine[tp] = max(mine.get(tp, 0), r.offset + 1)
            while not (worker.open_txn is not None and worker.open_txn.consumed == mine
                       and worker.open_txn.offsets is not None and worker.open_txn.offsets.done()):
                yield
            assert worker.open_txn.offsets.exception() is None
            raise RuntimeError("injected failure after TxnOffsetCommit")

    monkeypatch.setattr(ScoringCore, "steps", third_batch_fails)
    with pytest.raises(RuntimeError, match="injected"):
        await asyncio.wait_for(worker.run(), 120)
    assert len(calls) == 3
    consumed = sum(n for n, _ in calls[:2])
    assert sum(json.loads(line)["n"] for line in trace.read_text().splitlines()) == consumed > 0
    scores = await read_committed(s, s.topic("scores"), 1, timeout=30, settle=3.0)
    ids = [decode(Score, r.value).tx_id for r in scores]
    assert len(ids) == len(set(ids)) == sum(t for _, t in calls[:2])

    def group_offsets() -> int:
        c = KafkaConsumer(**s.kafka.kafka_python_config(), group_id=worker.config.group_id,
                          enable_auto_commit=False)
        try:
            return sum(c.committed(TopicPartition(topic, p)) or 0
                       for topic in worker.topics.inputs
                       for p in (c.partitions_for_topic(topic) or ()))
        finally:
            c.close()

    # Only the two committed batches moved the group: the third's early offsets were aborted.
    assert await asyncio.to_thread(group_offsets) == consumed
