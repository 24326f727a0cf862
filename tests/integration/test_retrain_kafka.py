"""The governance loop against a real Kafka broker: the controller consumes drift and labels and
commits its offsets; promotion and rollback publish ModelEvents a worker can read."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import SecretStr

from models.artifact import HmacSigner, read_manifest, write_manifest
from models.registry import Registry
from retrain.audit import AuditLog, verify
from retrain.controller import Controller
from retrain.policy import ControllerPolicy, Rule, load_policy
from retrain.promotion import Governance, KafkaPublisher
from retrain.service import GROUP, serve
from txmon.broker.topics import ensure_topics
from txmon.contracts import Drift, Label, ModelEvent, Window, decode

pytestmark = pytest.mark.kafka
NOW = datetime.now(UTC)


class RecordingLauncher:
    def __init__(self) -> None:
        self.started: list[dict] = []

    def start(self, trigger: dict):
        self.started.append(trigger)

        class Done:
            def poll(self) -> int:
                return 0
        return Done()


def _drift(severity: str) -> bytes:
    return Drift(detector="mmd", scope="embedding", statistic=0.4, threshold=0.1, detected_at=NOW,
                 window=Window(events=1000), champion_version="m0", severity=severity).to_bytes()


def test_controller_service_decides_from_kafka(kafka_settings_for, topic_prefix, tmp_path: Path) -> None:
    settings = kafka_settings_for(topic_prefix)
    ensure_topics(settings, partitions=2)
    launcher = RecordingLauncher()
    policy = ControllerPolicy(rules=[Rule(scope="embedding", severity=["high"], action="retrain")],
                              min_new_labels=5, cooldown_hours=1, max_jobs_per_day=3)
    ctl = Controller(policy, AuditLog(tmp_path / "audit.jsonl"), launcher, tmp_path / "state.json")
    producer = KafkaProducer(**settings.kafka.kafka_python_config(), acks="all")
    for i in range(6):
        producer.send(settings.topic("labels"), Label(tx_id=f"t{i}", account_id="a", label="fraud",
                                                      label_time=NOW).to_bytes())
    producer.flush()

    stop = threading.Event()
    decisions: list[str] = []
    worker = threading.Thread(target=serve, args=(settings, ctl, stop),
                              kwargs={"on_decision": lambda _e, d: decisions.append(d.action),
                                      "poll_ms": 200, "offset_reset": "earliest"})
    worker.start()
    deadline = time.monotonic() + 60
    while ctl.state.new_labels < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ctl.state.new_labels == 6
    # Keyed by champion version, as the worker publishes them: one partition, so in order (unkeyed,
    # the two could land on different partitions and be decided in either order).
    producer.send(settings.topic("drift"), _drift("low"), key=b"m0")
    producer.send(settings.topic("drift"), _drift("high"), key=b"m0")
    producer.send(settings.topic("drift"), b"not json")  # must be skipped, not fatal
    producer.flush()
    producer.close()
    deadline = time.monotonic() + 60
    while len(decisions) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    # Offsets are committed after each batch: the group resumes after all three drift records,
    # the undecodable one included.
    c = KafkaConsumer(**settings.kafka.kafka_python_config(), group_id=GROUP, enable_auto_commit=False)
    tps = [TopicPartition(settings.topic("drift"), p) for p in range(2)]
    committed = 0
    while committed < 3 and time.monotonic() < deadline:
        committed = sum(c.committed(tp) or 0 for tp in tps)
        time.sleep(0.2)
    c.close()
    stop.set()
    worker.join(30)
    assert not worker.is_alive()
    assert decisions == ["watch", "retrain"], decisions
    assert committed == 3
    assert len(launcher.started) == 1 and launcher.started[0]["scope"] == "embedding"
    assert verify(tmp_path / "audit.jsonl").ok


def _artifact(root: Path, name: str, signer: HmacSigner) -> Path:
    d = root / name
    d.mkdir()
    (d / "model.onnx").write_bytes(name.encode() * 100)
    write_manifest(d, version=name, signer=signer)
    return d


def test_promotion_and_rollback_publish_model_events(kafka_settings_for, topic_prefix,
                                                     tmp_path: Path) -> None:
    settings = kafka_settings_for(topic_prefix).model_copy(
        update={"home": tmp_path, "signing_key": SecretStr("k" * 32)})
    ensure_topics(settings, partitions=1)
    signer = HmacSigner(b"k" * 32)
    registry = Registry.from_settings(settings)
    publisher = KafkaPublisher(settings)
    gov = Governance(registry, AuditLog(tmp_path / "audit.jsonl"), publisher, load_policy(),
                     verifier=signer)
    versions = []
    for name in ("m1", "m2"):
        d = _artifact(tmp_path, name, signer)
        versions.append(registry.register(d, artifact_sha256=read_manifest(d).artifact_sha256,
                                          metrics={}, params={}, tags={"model_version": name}).version)
        gov.promote(versions[-1], by="alice")
    gov.rollback(by="bob", reason="alert spike")
    publisher.close()

    consumer = KafkaConsumer(settings.topic("models"), **settings.kafka.kafka_python_config(),
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    events = [decode(ModelEvent, m.value) for m in consumer]
    consumer.close()
    assert [(e.event, e.version) for e in events] == [
        ("promoted", "m1"), ("promoted", "m2"), ("rolled_back", "m2"), ("promoted", "m1")]
    last = events[-1]
    assert signer.verify(last.artifact_sha256, last.signature)
    assert Path(last.artifact_uri, "model.onnx").read_bytes().startswith(b"m1")
