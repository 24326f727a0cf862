"""Shadow scoring against a real broker: a validated challenger scores beside the champion in the same
Kafka transactions, until it is promoted."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from kafka import KafkaProducer

from retrain.shadow import compare
from streams.worker import Worker
from tests.integration.test_worker_kafka import (
    PARTITIONS,
    make_transactions,
    produce,
    read_committed,
    tiny_artifact,
    wait_for,
    worker_config,
)
from txmon.broker.topics import ensure_topics
from txmon.contracts import Alert, DeadLetter, ModelEvent, Score, decode
from txmon.settings import Settings

pytestmark = pytest.mark.kafka


def publish(s: Settings, kind: str, version: str, sha: str, uri: Path) -> None:
    ev = ModelEvent(event=kind, version=version, artifact_sha256=sha, artifact_uri=str(uri),
                    created_at=datetime.now(UTC))
    producer = KafkaProducer(**s.kafka.kafka_python_config(), acks="all")
    producer.send(s.topic("models"), key=version.encode(), value=ev.to_bytes())
    producer.flush()
    producer.close()


async def health(worker: Worker) -> dict:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{worker.web_port}/health") as r:
        return await r.json()


async def test_validated_challenger_is_shadowed_until_promoted(kafka_settings_for, topic_prefix,
                                                                 tmp_path):
    s = kafka_settings_for(topic_prefix)
    ensure_topics(s, PARTITIONS)
    v1, v2, v3 = tmp_path / "v1", tmp_path / "v2", tmp_path / "v3"
    await asyncio.to_thread(tiny_artifact, v1, "v1", 1)
    sha2 = await asyncio.to_thread(tiny_artifact, v2, "v2", 2)
    sha3 = await asyncio.to_thread(tiny_artifact, v3, "v3", 3)
    onnx = next(p for p in v3.iterdir() if p.suffix == ".onnx")
    onnx.write_bytes(onnx.read_bytes()[:-8] + b"tampered")  # a validated artifact altered afterwards
    n = 1_500
    before, during, after = (make_transactions(n, seed=seed) for seed in (31, 32, 33))
    worker = Worker(s, worker_config(model_dir=v1, metrics_host="127.0.0.1", metrics_port=0))
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.to_thread(produce, s, before)
        await read_committed(s, s.topic("scores"), n, timeout=120, settle=0.0)

        await asyncio.to_thread(publish, s, "validated", "v2", sha2, v2)
        await wait_for(lambda: worker.slot.next_versions == ("v1", "v2"))
        await asyncio.to_thread(produce, s, during)
        await read_committed(s, s.topic("scores"), 3 * n, timeout=120, settle=0.0)
        shadowing = await health(worker)

        await asyncio.to_thread(publish, s, "validated", "v3", sha3, v3)
        await wait_for(lambda: worker.metrics.model_rejected._value.get() == 1)
        await asyncio.to_thread(publish, s, "promoted", "v2", sha2, v2)
        await wait_for(lambda: worker.slot.next_versions == ("v2", None))
        await asyncio.to_thread(produce, s, after)
        records = await read_committed(s, s.topic("scores"), 4 * n, timeout=120)
        alerts = [decode(Alert, r.value) for r in
                  await read_committed(s, s.topic("alerts"), 0, timeout=5, settle=1.0)]
        letters = [decode(DeadLetter, r.value) for r in
                   await read_committed(s, s.topic("dlq"), 1, timeout=30, settle=1.0)]
        promoted = await health(worker)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)

    scores = [decode(Score, r.value) for r in records]
    kinds = Counter((x.tx_id, x.model_version, x.shadow) for x in scores)
    assert max(kinds.values()) == 1, "a transaction got the same kind of score twice"
    assert len(scores) == 4 * n

    def kinds_of(txs):
        ids = {t.tx_id for t in txs}
        return Counter((v, sh) for (t, v, sh) in kinds if t in ids)

    # Before validation: the champion only. While shadowing: one champion and one shadow score each.
    # After promotion: the new champion only, and no shadow scores.
    assert kinds_of(before) == {("v1", False): n}
    assert kinds_of(during) == {("v1", False): n, ("v2", True): n}
    assert kinds_of(after) == {("v2", False): n}
    assert not any(x.alerted for x in scores if x.shadow)
    during_ids = {t.tx_id for t in during}
    assert all(a.model_version == "v1" for a in alerts if a.tx_id in during_ids)
    # What the governance loop will read of this period.
    summary = compare(scores, [], "v1", "v2")
    assert summary.events == n and summary.mean_abs_diff > 0
    # The tampered challenger was refused like a tampered champion; v2 went on shadowing.
    assert [(d.stage, d.key) for d in letters] == [("model_load", "v3")]
    assert "sha256" in letters[0].error
    assert worker.metrics.shadow_scores._value.get() == n
    assert (shadowing["model_version"], shadowing["challenger_version"]) == ("v1", "v2")
    assert (promoted["model_version"], promoted["challenger_version"]) == ("v2", None)
