"""The controller as a service: consume ``txmon.drift`` and ``txmon.labels``, decide, launch jobs.

A thin consumer loop around :class:`retrain.controller.Controller`. Offsets are committed only
after the controller has saved its state and audited its decision, so a crash replays at most the
last batch (and a replayed drift event meets the cooldown it itself started). Starts at the latest
offsets the first time: a controller deployed today does not act on last month's drift.

The long-running consumer uses aiokafka, as the Faust workers do: its ``getmany`` and ``commit``
are bounded awaitables on one event loop, where kafka-python 3.x's blocking calls have a reported
class of waits that ignore their timeouts (dpkp/kafka-python#3121, ``commit``), which a service
that must never silently stop listening should not depend on. The snapshot's bounded reads stay on
kafka-python (``offsets_for_times``), inside the job process, where the job timeout covers them.
"""

from __future__ import annotations

import asyncio
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


def handle(controller: Controller, topic: str, label_topic: str, value: bytes | None,
           on_decision: Callable[[Drift, Decision], None]) -> None:
    """One record. Undecodable events are logged and skipped (the worker's DLQ has the originals;
    the controller must not stop on one bad record)."""
    try:
        if topic == label_topic:
            controller.on_label(decode(Label, value))
        else:
            event = decode(Drift, value)
            on_decision(event, controller.on_drift(event))
    except ContractError as exc:
        log.warning("skipping a record on %s: %s", topic, exc)


async def serve_async(settings: Any, controller: Controller, stop: threading.Event,
                      on_decision: Callable[[Drift, Decision], None] = lambda _e, _d: None,
                      poll_ms: int = 1000, offset_reset: str = "latest",
                      watch: Any = None) -> None:
    from aiokafka import AIOKafkaConsumer

    drift_topic, label_topic = settings.topic("drift"), settings.topic("labels")
    consumer = AIOKafkaConsumer(drift_topic, label_topic, **settings.kafka.aiokafka_config(),
                                group_id=GROUP, enable_auto_commit=False,
                                auto_offset_reset=offset_reset)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=poll_ms, max_records=5000)
            # Labels first: a drift event is judged with every label that had arrived with it.
            for tp, records in sorted(batch.items(), key=lambda kv: kv[0].topic != label_topic):
                for r in records:
                    handle(controller, tp.topic, label_topic, r.value, on_decision)
            controller.tick()
            if watch is not None:
                try:  # a shadow check that fails must not stop the controller
                    await asyncio.to_thread(watch.check)
                except Exception:
                    log.exception("shadow check failed; will retry")
            if batch:
                controller.save()
                await consumer.commit()
    finally:
        controller.save()
        await consumer.stop()


def serve(settings: Any, controller: Controller, stop: threading.Event | None = None,
          on_decision: Callable[[Drift, Decision], None] = lambda _e, _d: None,
          poll_ms: int = 1000, offset_reset: str = "latest", watch: Any = None) -> None:
    """Run until ``stop`` is set (blocking; run it in a thread to stop it from outside).
    ``watch`` (a :class:`retrain.shadow_watch.ShadowWatch`) records shadow gates as evidence
    arrives."""
    asyncio.run(serve_async(settings, controller, stop or threading.Event(), on_decision, poll_ms,
                            offset_reset, watch))
