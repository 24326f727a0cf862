"""The controller as a service: consume ``txmon.drift`` and ``txmon.labels``, decide, launch jobs.

A thin kafka-python loop around :class:`retrain.controller.Controller`. Offsets are committed only
after the controller has saved its state and audited its decision, so a crash replays at most the
last batch (and a replayed drift event meets the cooldown it itself started). Starts at the latest
offsets the first time: a controller deployed today does not act on last month's drift.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrain.audit import AuditLog
from retrain.controller import Controller, Decision, Launcher, SubprocessLauncher
from retrain.job import Paths
from retrain.policy import Policy
from txmon.contracts import ContractError, Drift, Label, decode

log = logging.getLogger(__name__)
GROUP = "txmon-retrain-controller"


def controller_for(settings: Any, policy: Policy, policy_path: Path | None = None,
                   launcher: Launcher | None = None) -> Controller:
    paths = Paths(Path(settings.home))
    extra = ["--policy", str(policy_path)] if policy_path else []
    return Controller(policy.controller, AuditLog(paths.audit),
                      launcher or SubprocessLauncher(paths.job_logs, extra), paths.controller_state)


def serve(settings: Any, controller: Controller, stop: threading.Event | None = None,
          on_decision: Callable[[Drift, Decision], None] = lambda _e, _d: None,
          poll_ms: int = 1000, offset_reset: str = "latest") -> None:
    """Run until ``stop`` is set. Undecodable events are logged and skipped (the worker's DLQ has
    the originals; the controller must not crash on one bad record)."""
    from kafka import KafkaConsumer

    stop = stop or threading.Event()
    drift_topic, label_topic = settings.topic("drift"), settings.topic("labels")
    consumer = KafkaConsumer(drift_topic, label_topic, **settings.kafka.kafka_python_config(),
                             group_id=GROUP, enable_auto_commit=False,
                             auto_offset_reset=offset_reset)
    try:
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=poll_ms)
            for tp, records in batch.items():
                for r in records:
                    try:
                        if tp.topic == label_topic:
                            controller.on_label(decode(Label, r.value))
                        else:
                            event = decode(Drift, r.value)
                            on_decision(event, controller.on_drift(event))
                    except ContractError as exc:
                        log.warning("skipping %s@%d:%d: %s", tp.topic, tp.partition, r.offset, exc)
            controller.tick()
            if batch:
                controller.save()
                consumer.commit()
    finally:
        controller.save()
        consumer.close()
