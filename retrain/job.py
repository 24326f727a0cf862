"""One governed retraining job: snapshot -> fine-tune from the champion -> export -> gates ->
registry -> promotion (or rejection, or a wait for shadow / approval).

Runs in its own process (``python -m retrain.job --trigger FILE``, started by the controller or by
``txmon retrain``), so a crash here never takes the controller down. Every stage is timed; every
decision is in the audit log, the registry and on ``txmon.models``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from models.artifact import HmacSigner, Signer, read_manifest, verify
from models.registry import CHAMPION, Registry
from retrain.audit import AuditLog
from retrain.gates import failed as failed_gates
from retrain.gates import run_gates
from retrain.policy import Policy, load_policy
from retrain.promotion import Governance, Publisher
from retrain.pseudonymise import from_settings
from retrain.snapshot import Snapshot, take_snapshot


@dataclass
class JobResult:
    job_id: str
    outcome: str  # rejected | promoted | awaiting_approval | awaiting_shadow | snapshot_rejected
    version: str | None = None
    model_version: str | None = None
    failed: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    snapshot: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Paths:
    home: Path

    @property
    def audit(self) -> Path:
        return self.home / "audit" / "audit.jsonl"

    @property
    def cards(self) -> Path:
        return self.home / "model-cards"

    def snapshot(self, job_id: str) -> Path:
        return self.home / "snapshots" / job_id

    def candidate(self, job_id: str) -> Path:
        return self.home / "candidates" / job_id

    @property
    def controller_state(self) -> Path:
        return self.home / "retrain" / "controller-state.json"

    @property
    def job_logs(self) -> Path:
        return self.home / "retrain" / "jobs"


def signer_from_settings(settings: Any) -> Signer | None:
    key = getattr(settings, "signing_key", None)
    return HmacSigner(key.get_secret_value().encode()) if key else None


class _Stages:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 3)


def _numeric(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v}


def drift_export(policy: Policy, home: Path) -> dict[str, Any]:
    """TrainConfig options that ship a drift reference in the candidate, if the policy asks."""
    if not policy.export.drift_reference:
        return {}
    from streams.config import WorkerConfig

    return {"drift_reference": dict(WorkerConfig().drift_monitor),
            "drift_threshold_cache": str(home / "drift" / "thresholds")}


def run_job(trigger: dict[str, Any], settings: Any, policy: Policy, *,
            registry: Registry, publisher: Publisher, snapshot: Snapshot | None = None,
            train_config: Any = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
            progress: Callable[[str], None] = lambda _stage: None) -> JobResult:
    """The whole job. ``snapshot`` may be passed in (tests, backfills); otherwise read from Kafka."""
    from models.finetune import TrainConfig, finetune
    from retrain.evaluate import evaluate, holdout_rows

    paths = Paths(Path(settings.home))
    job_id = trigger.get("job_id") or f"job-{clock():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    audit = AuditLog(paths.audit, clock=clock)
    signer = signer_from_settings(settings)
    gov = Governance(registry, audit, publisher, policy, verifier=signer, cards_dir=paths.cards,
                     clock=clock)
    stage = _Stages()
    result = JobResult(job_id=job_id, outcome="failed")
    audit.append("job", actor="retrain-job", job_id=job_id, outcome="started", trigger=trigger)

    progress("snapshot")
    with stage("snapshot"):
        if snapshot is None:
            snapshot = take_snapshot(settings, policy.snapshot, from_settings(settings), clock())
        snapshot.save(paths.snapshot(job_id))
    summary = snapshot.summary()
    result.snapshot = summary
    audit.append("snapshot", actor="retrain-job", job_id=job_id, **summary)
    if not snapshot.passed:
        result.outcome, result.stages = "snapshot_rejected", stage.seconds
        result.failed = [c.name for c in snapshot.checks if not c.passed]
        audit.append("job", actor="retrain-job", job_id=job_id, outcome="snapshot_rejected",
                     failed=result.failed)
        return result

    champion = registry.alias(CHAMPION)
    if champion is None:
        raise RuntimeError("no champion in the registry: register and promote a first model "
                           "(`txmon models register DIR --promote`)")
    champion_dir = registry.local_dir(champion.version)
    parent = verify(champion_dir, expected_sha256=champion.artifact_sha256, verifier=signer)
    model_version = f"m{clock():%Y%m%d%H%M%S}-{job_id[-6:]}"
    out_dir = paths.candidate(job_id) / model_version

    progress("fine-tune + export")
    with stage("finetune_export"):
        config = train_config or TrainConfig(show_progress=False,
                                             **drift_export(policy, Path(settings.home)))
        metrics = finetune(snapshot.train, champion_dir, out_dir, model_version, config,
                           signer=signer, labels_known_at=pd.Timestamp(snapshot.snapshot_time))
    manifest = read_manifest(out_dir)

    progress("gates")
    with stage("gates"):
        holdout = holdout_rows(snapshot.frame, pd.Timestamp(snapshot.holdout_start))
        evaluation = evaluate(out_dir, champion_dir, holdout, policy.gates, verifier=signer,
                              drift_triggered=trigger.get("kind") == "drift",
                              champion_threshold=policy.gates.alert_threshold)
        gates = run_gates(evaluation, policy.gates)

    progress("register")
    with stage("register"):
        tags = {"status": "candidate", "model_version": model_version, "job_id": job_id,
                "trigger": trigger, "parent_version": champion.version,
                "parent_model_version": parent.version, "parent_sha256": parent.artifact_sha256,
                "snapshot": summary, "snapshot_sha256": snapshot.content_sha256,
                "policy_sha256": policy.source_sha256,
                "signature_algorithm": manifest.signature_algorithm or "none"}
        gate_metrics = {f"gate_{g.name}": g.value for g in gates if g.value is not None}
        info = registry.register(out_dir, artifact_sha256=manifest.artifact_sha256,
                                 metrics=_numeric(metrics) | _numeric(gate_metrics),
                                 params={"window_days": policy.snapshot.window_days,
                                         "holdout_days": policy.snapshot.holdout_days,
                                         "alert_budget": policy.gates.alert_budget,
                                         **{k: v for k, v in config.to_dict().items()
                                            if not isinstance(v, dict)}},
                                 tags=tags, run_name=job_id)
        audit.append("candidate", actor="retrain-job", job_id=job_id, version=info.version,
                     model_version=model_version, artifact_sha256=manifest.artifact_sha256,
                     parent_version=champion.version, snapshot_sha256=snapshot.content_sha256)

    progress("promotion")
    with stage("promotion"):
        outcome = gov.after_gates(info.version, gates, trigger)
    result.outcome, result.version, result.model_version = outcome, info.version, model_version
    result.failed, result.stages = failed_gates(gates), stage.seconds
    audit.append("job", actor="retrain-job", job_id=job_id, outcome=outcome, version=info.version,
                 stages=stage.seconds)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of the job process: ``python -m retrain.job --trigger FILE [--policy FILE]``."""
    from txmon.settings import get_settings

    ap = argparse.ArgumentParser(prog="retrain.job")
    ap.add_argument("--trigger", required=True, type=Path)
    ap.add_argument("--policy", type=Path, default=None)
    args = ap.parse_args(argv)
    trigger = json.loads(args.trigger.read_text())
    settings = get_settings()
    with job_lock(Paths(Path(settings.home))) as held:
        if not held:
            AuditLog(Paths(Path(settings.home)).audit).append(
                "job", actor="retrain-job", job_id=trigger.get("job_id"), outcome="refused",
                error="another job is running")
            print("another retrain job is running; one at a time", file=sys.stderr)
            return BUSY
        return _main(trigger, settings, args.policy)


BUSY = 75  # EX_TEMPFAIL


@contextmanager
def job_lock(paths: Paths) -> Iterator[bool]:
    """One job at a time across processes (controller-launched or `txmon retrain`)."""
    import fcntl

    paths.job_logs.mkdir(parents=True, exist_ok=True)
    with open(paths.job_logs / "job.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _main(trigger: dict[str, Any], settings: Any, policy_path: Path | None) -> int:
    from retrain.promotion import KafkaPublisher

    publisher = KafkaPublisher(settings)
    try:
        result = run_job(trigger, settings, load_policy(policy_path),
                         registry=Registry.from_settings(settings), publisher=publisher,
                         progress=lambda s: print(f"[{datetime.now(UTC):%H:%M:%S}] {s}", flush=True))
    except Exception as exc:
        # The audit trail must show a job that died, not only the controller's exit code.
        AuditLog(Paths(Path(settings.home)).audit).append(
            "job", actor="retrain-job", job_id=trigger.get("job_id"), outcome="failed",
            error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        publisher.close()
    print(json.dumps(result.to_dict(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
