"""Retraining benchmark: time from a drift event on Kafka to a promoted model, by stage.

    .venv/bin/python bench/bench_retrain.py [--accounts 1000] [--days 30]

A private Kafka broker; the toy world (models.toy) shifted so its last transaction is an hour ago,
produced to txmon.transactions with event-time timestamps and to txmon.labels with label-arrival
timestamps; a first champion built and promoted. Then the real thing: a Drift event is published,
the retrain controller (in process, consuming txmon.drift + txmon.labels) decides by the shipped
policy and starts ``python -m retrain.job`` as a child process, which snapshots from Kafka,
fine-tunes from the champion, exports ONNX, runs the gates, registers in MLflow and promotes. The
clock stops when the ``promoted`` ModelEvent for the new version is read back from txmon.models.
Shadow scoring is a live-traffic period (hours of wall-clock by policy), so it is not part of this
figure; the shipped policy has ``require_shadow: false``. Writes bench/results/retrain.json.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    command_line,
    guard_children,
    machine,
    private_broker,
    write_result,
)

PREFIX = "bench."
SIGN, PSEUDO = "bench-signing-key-0123456789abcdef", "bench-pseudonym-key-0123456789abcd"


def _world(accounts: int, days: int):
    import pandas as pd

    from models.toy import toy_frame

    f = toy_frame(accounts=accounts, days=days, seed=11, fraud_rate=0.3)
    shift = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta("1h") - f["event_time"].max()
    f["event_time"] += shift
    f["label_time"] += shift
    return f


def _produce(settings, frame) -> dict[str, int]:
    import pandas as pd
    from kafka import KafkaProducer

    from txmon.frames import to_label, to_transaction

    now = pd.Timestamp.now(tz="UTC")
    producer = KafkaProducer(**settings.kafka.kafka_python_config(), acks="all", linger_ms=20)
    n_tx = n_lab = 0
    for r in frame.to_dict("records"):
        tx = to_transaction(r)
        producer.send(settings.topic("transactions"), key=tx.account_id.encode(), value=tx.to_bytes(),
                      timestamp_ms=int(tx.event_time.timestamp() * 1000))
        n_tx += 1
        lab = to_label(r)
        if lab is not None and lab.label_time <= now:  # labels still in the future have not arrived
            producer.send(settings.topic("labels"), key=lab.account_id.encode(), value=lab.to_bytes(),
                          timestamp_ms=int(lab.label_time.timestamp() * 1000))
            n_lab += 1
    producer.flush(60)
    producer.close()
    return {"transactions": n_tx, "labels": n_lab}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--max-alert-volume-change", type=float, default=None,
                    help="override this one gate of the shipped policy (the toy world's candidates "
                         "shift their score scale; the benchmark measures time, not model quality)")
    args = ap.parse_args()
    guard_children()
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` shows where a slow run is

    from kafka import KafkaConsumer, KafkaProducer
    from pydantic import SecretStr

    from models.artifact import HmacSigner, read_manifest
    from models.finetune import TrainConfig, build_champion
    from models.registry import Registry
    from retrain.audit import AuditLog, verify
    from retrain.job import Paths
    from retrain.policy import load_policy
    from retrain.promotion import Governance, KafkaPublisher
    from retrain.pseudonymise import Pseudonymiser
    from retrain.service import controller_for, serve
    from txmon.broker.topics import ensure_topics
    from txmon.contracts import Drift, ModelEvent, Window, decode
    from txmon.settings import KafkaSettings, Settings, TopicSettings

    with private_broker() as (bootstrap, tmp):
        home = tmp / "home"
        os.environ.update({"TXMON_HOME": str(home), "TXMON_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                           "TXMON_TOPICS__PREFIX": PREFIX, "TXMON_SIGNING_KEY": SIGN,
                           "TXMON_PSEUDONYM_KEY": PSEUDO})
        settings = Settings(home=home, kafka=KafkaSettings(bootstrap_servers=bootstrap),
                            topics=TopicSettings(prefix=PREFIX), signing_key=SecretStr(SIGN),
                            pseudonym_key=SecretStr(PSEUDO))
        # Topic retention must cover the snapshot window (plus label delay), or the broker deletes
        # the start of the window before the job reads it (the snapshot's coverage check fails).
        retention_ms = int((load_policy().snapshot.window_days + 14) * 86_400_000)
        settings = settings.model_copy(update={"topics": TopicSettings(
            prefix=PREFIX, partitions=3, retention_ms=retention_ms)})
        ensure_topics(settings)
        frame = _world(args.accounts, args.days)
        t0 = time.perf_counter()
        counts = _produce(settings, frame)
        produce_s = time.perf_counter() - t0

        # The first champion: trained on the first half of the history, outside the timed loop.
        policy_path = None
        if args.max_alert_volume_change is not None:
            import yaml

            from retrain.policy import POLICY_FILE

            data = yaml.safe_load(POLICY_FILE.read_text())
            data["gates"]["max_alert_volume_change"] = args.max_alert_volume_change
            policy_path = tmp / "policy.yaml"
            policy_path.write_text(yaml.safe_dump(data, sort_keys=False))
        policy = load_policy(policy_path)
        signer = HmacSigner(SIGN.encode())
        cut = frame["event_time"].min() + (frame["event_time"].max() - frame["event_time"].min()) / 2
        early = Pseudonymiser(PSEUDO.encode()).frame(frame[frame["event_time"] < cut])
        t0 = time.perf_counter()
        build_champion(early, tmp / "m0", "m0", TrainConfig(show_progress=False),
                       signer=signer)
        champion_s = time.perf_counter() - t0
        registry = Registry.from_settings(settings)
        publisher = KafkaPublisher(settings)
        gov = Governance(registry, AuditLog(Paths(home).audit), publisher, policy, verifier=signer)
        m = read_manifest(tmp / "m0")
        first = registry.register(tmp / "m0", artifact_sha256=m.artifact_sha256, metrics={},
                                  params={}, tags={"model_version": "m0"})
        gov.promote(first.version, by="bench-bootstrap")
        publisher.close()

        # The timed loop: drift event -> controller -> job process -> promoted event.
        ctl = controller_for(settings, policy, policy_path)
        stop = threading.Event()
        decided: dict[str, float] = {}
        service = threading.Thread(target=serve, args=(settings, ctl, stop), daemon=True, kwargs={
            "poll_ms": 200, "offset_reset": "earliest",
            "on_decision": lambda _e, d: decided.setdefault(d.action, time.perf_counter())})
        service.start()
        deadline = time.perf_counter() + 300
        while ctl.state.new_labels < counts["labels"]:  # the controller has read the labels
            if time.perf_counter() > deadline:
                raise SystemExit(f"controller read {ctl.state.new_labels} of {counts['labels']} labels")
            time.sleep(0.2)
        drift = Drift(detector="adwin", scope="performance", statistic=0.31, threshold=0.1,
                      detected_at=datetime.now(UTC), window=Window(events=5000), champion_version="m0",
                      severity="high")
        producer = KafkaProducer(**settings.kafka.kafka_python_config(), acks="all")
        t_drift = time.perf_counter()
        producer.send(settings.topic("drift"), drift.to_bytes()).get(30)
        producer.close()

        consumer = KafkaConsumer(settings.topic("models"), **settings.kafka.kafka_python_config(),
                                 auto_offset_reset="earliest", consumer_timeout_ms=1000)
        promoted_at, final = None, None
        deadline = time.perf_counter() + 3600
        while promoted_at is None and time.perf_counter() < deadline:
            for msg in consumer:
                ev = decode(ModelEvent, msg.value)
                if ev.event in ("promoted", "rejected") and ev.version != "m0":
                    promoted_at, final = time.perf_counter(), ev
                    break
            if ctl.job is None and "retrain" in decided and promoted_at is None and ctl.state.job_starts:
                break  # the job ended without an event: reported below
        consumer.close()
        while ctl.job is not None and ctl.job.poll() is None:
            time.sleep(0.5)
        stop.set()
        service.join(30)

        log = sorted(Paths(home).job_logs.glob("job-*.log"))[-1].read_text()
        result_json = json.loads(log[log.index("{\n"):]) if "{\n" in log else {}
        stages = result_json.get("stages", {})
        total = (promoted_at - t_drift) if promoted_at else None
        snap = result_json.get("snapshot", {})
        out = {
            "benchmark": "retrain", "command": command_line(), "machine": machine(),
            "measured_at": datetime.now(UTC).isoformat(),
            "data": {"accounts": args.accounts, "days": args.days, **counts,
                     "snapshot_rows": snap.get("rows"), "train_positives": snap.get("train_positives"),
                     "holdout_rows": snap.get("holdout_rows"),
                     "holdout_positives": snap.get("holdout_positives")},
            "setup_seconds": {"produce": round(produce_s, 1), "first_champion": round(champion_s, 1)},
            "outcome": final.event if final else result_json.get("outcome", "no event"),
            "policy": {"file": "shipped" if policy_path is None else "shipped, with override",
                       "max_alert_volume_change": policy.gates.max_alert_volume_change,
                       "sha256": policy.source_sha256},
            "failed_gates": result_json.get("failed", []),
            "seconds": {
                "controller_decision": round(decided["retrain"] - t_drift, 2) if "retrain" in decided
                else None,
                **stages,
                "shadow": None,
                "process_overhead": (round(total - (decided.get("retrain", t_drift) - t_drift)
                                           - sum(stages.values()), 2) if total else None),
                "drift_to_model_event": round(total, 2) if total else None,
            },
            "gates": [{"name": g.name, "passed": g.passed, "value": g.value} for g in final.gate_results]
            if final else [],
            "audit_intact": verify(Paths(home).audit).ok,
            "notes": "drift_to_model_event: drift event published -> the job's promoted (or "
                     "rejected) ModelEvent read back from txmon.models. shadow is a live-traffic "
                     "period set by policy (require_shadow: false here). process_overhead = job "
                     "process start-up (imports, MLflow) + event delivery.",
        }
        path = write_result("retrain", out)
        print(json.dumps(out["seconds"], indent=2), "\n->", path)


if __name__ == "__main__":
    main()
