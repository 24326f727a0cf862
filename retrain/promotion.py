"""Promotion, approval and rollback: the only code that moves the ``champion`` alias.

Every transition is recorded three ways — registry tags, the audit log and a
:class:`~txmon.contracts.ModelEvent` on ``txmon.models`` — and regenerates the version's model card.
Workers swap on a ``promoted`` event only after verifying the artifact's sha256 and signature, so a
rollback publishes ``rolled_back`` for the demoted version *and* ``promoted`` for the restored one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from models.artifact import Signer, read_manifest, verify
from models.registry import CHALLENGER, Registry, RegistryError, VersionInfo
from retrain import modelcard
from retrain.audit import AuditLog
from retrain.policy import Policy
from txmon.contracts import GateResult, ModelEvent

Outcome = Literal["rejected", "promoted", "awaiting_approval", "awaiting_shadow"]


class PromotionError(RuntimeError):
    """A promotion or approval the policy does not allow."""


class Publisher(Protocol):
    def publish(self, event: ModelEvent) -> None: ...


class KafkaPublisher:
    """Publishes model events to ``txmon.models`` (keyed by version) with kafka-python."""

    def __init__(self, settings: Any):
        from kafka import KafkaProducer

        self.topic = settings.topic("models")
        self._producer = KafkaProducer(**settings.kafka.kafka_python_config(), acks="all",
                                       retries=5)

    def publish(self, event: ModelEvent) -> None:
        self._producer.send(self.topic, key=event.version.encode(), value=event.to_bytes()).get(30)

    def close(self) -> None:
        self._producer.close()


class MemoryPublisher:
    """Keeps events in a list (tests, dry runs)."""

    def __init__(self) -> None:
        self.events: list[ModelEvent] = []

    def publish(self, event: ModelEvent) -> None:
        self.events.append(event)


@dataclass
class Governance:
    """Registry + audit + publisher + policy: the promotion state machine."""

    registry: Registry
    audit: AuditLog
    publisher: Publisher
    policy: Policy
    verifier: Signer | None = None
    cards_dir: Path | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    # -- events -----------------------------------------------------------------------------
    def _event(self, kind: str, v: VersionInfo, reason: str = "",
               gates: Sequence[GateResult] | None = None) -> ModelEvent:
        directory = self.registry.local_dir(v.version)
        manifest = read_manifest(directory)
        gate_results = list(gates) if gates is not None else [
            GateResult.model_validate(g) for g in v.gate_results]
        event = ModelEvent(event=kind, version=manifest.version, artifact_sha256=manifest.artifact_sha256,
                           signature=manifest.signature, artifact_uri=str(directory),
                           gate_results=gate_results[:64], reason=reason[:2048],
                           created_at=self.clock())
        self.publisher.publish(event)
        return event

    # -- after the offline gates --------------------------------------------------------------
    def after_gates(self, version: str, gates: Sequence[GateResult], trigger: dict[str, Any],
                    actor: str = "retrain-job") -> Outcome:
        """Reject, promote, or park the candidate for shadow / approval, as the policy says."""
        v = self.registry.get(version)
        failed = [g.name for g in gates if not g.passed]
        self.registry.set_tags(version, {"gate_results": [g.model_dump() for g in gates],
                                         "gates_failed": ",".join(failed)})
        self.audit.append("gates", actor=actor, version=version, model_version=v.tags.get("model_version"),
                          passed=not failed, failed=failed,
                          results=[g.model_dump() for g in gates])
        if failed:
            self.registry.set_tags(version, {"status": "rejected"})
            self.audit.append("rejection", actor=actor, version=version, failed=failed)
            self._event("rejected", self.registry.get(version),
                        f"failed gates: {', '.join(failed)}", gates)
            self.write_card(version)
            return "rejected"
        self.registry.set_tags(version, {"status": "validated"})
        self.registry.set_alias(CHALLENGER, version)
        self._event("validated", self.registry.get(version), "passed the offline gates", gates)
        if self.policy.promotion.require_shadow:
            self.registry.set_tags(version, {"status": "awaiting_shadow"})
            self.write_card(version)
            return "awaiting_shadow"
        return self._auto_or_wait(version, trigger)

    def _auto_or_wait(self, version: str, trigger: dict[str, Any]) -> Outcome:
        p = self.policy.promotion
        manual = trigger.get("kind") == "manual"
        if p.auto_promote and not (manual and p.manual_jobs_need_approval):
            self.promote(version, by="policy:auto")
            return "promoted"
        self.registry.set_tags(version, {"status": "awaiting_approval"})
        self.write_card(version)
        return "awaiting_approval"

    def record_shadow(self, version: str, gate: GateResult, summary: dict[str, Any],
                      trigger: dict[str, Any] | None = None) -> Outcome:
        """The shadow comparison is in: one more gate, then promotion or rejection."""
        v = self.registry.get(version)
        gates = [*[GateResult.model_validate(g) for g in v.gate_results if g["name"] != "shadow"], gate]
        self.registry.set_tags(version, {"gate_results": [g.model_dump() for g in gates],
                                         "shadow": summary})
        self.audit.append("shadow", actor="retrain-shadow", version=version, passed=gate.passed,
                          detail=gate.detail, summary=summary)
        if not gate.passed:
            self.registry.set_tags(version, {"status": "rejected", "gates_failed": "shadow"})
            self.registry.clear_alias(CHALLENGER)
            self.audit.append("rejection", actor="retrain-shadow", version=version, failed=["shadow"])
            self._event("rejected", self.registry.get(version), f"shadow: {gate.detail}", gates)
            self.write_card(version)
            return "rejected"
        return self._auto_or_wait(version, trigger or json.loads(v.tags.get("trigger", "{}")))

    # -- people -------------------------------------------------------------------------------
    def approve(self, version: str, by: str, note: str = "") -> None:
        """A named person approves a validated candidate; promotion follows at once."""
        v = self.registry.get(version)
        if v.status not in ("validated", "awaiting_approval"):
            raise PromotionError(f"version {version} is {v.status}; only a validated candidate "
                                 "awaiting approval can be approved")
        if self.policy.promotion.require_shadow and not any(
                g["name"] == "shadow" and g["passed"] for g in v.gate_results):
            raise PromotionError(f"version {version} has not passed its shadow period")
        self.registry.set_tags(version, {"approved_by": by, "approval_note": note})
        self.audit.append("approval", actor=by, version=version, note=note)
        self.promote(version, by=by)

    def _verified(self, version: str, action: str, by: str) -> tuple[VersionInfo, Any]:
        """The version and its verified manifest; or a refusal — recorded in the audit log, the
        error re-raised, nothing moved or published, so workers keep serving what they serve."""
        try:
            v = self.registry.get(version)
            return v, verify(self.registry.local_dir(version), expected_sha256=v.artifact_sha256,
                             verifier=self.verifier)
        except Exception as exc:  # RegistryError, ArtifactError, an MLflow download error: all refuse
            self.audit.append("refusal", actor=by, action=action, version=version,
                              reason=f"{type(exc).__name__}: {exc}")
            raise

    def promote(self, version: str, by: str) -> ModelEvent:
        """Verify the artifact, move ``champion``, publish ``promoted``. Raises if it does not verify."""
        v, manifest = self._verified(version, "promotion", by)
        if v.status == "rejected":
            raise PromotionError(f"version {version} was rejected by its gates and cannot be promoted")
        previous = self.registry.make_champion(version)
        if previous and previous != version:
            self.registry.set_tags(previous, {"status": "retired"})
        self.registry.set_tags(version, {"status": "promoted", "promoted_by": by,
                                         "promoted_at": self.clock().isoformat()})
        entry = self.audit.append("promotion", actor=by, version=version,
                                  model_version=manifest.version,
                                  artifact_sha256=manifest.artifact_sha256, previous=previous)
        self._anchor(version, entry)
        event = self._event("promoted", self.registry.get(version),
                            f"promoted by {by}" + (f", replacing {previous}" if previous else ""))
        self.write_card(version)
        return event

    def rollback(self, by: str, reason: str = "") -> tuple[str, str]:
        """Restore the previous champion in one step; returns ``(from_version, to_version)``.

        Refused (``RegistryError`` or ``ArtifactError``, an audit ``refusal``, the alias unmoved)
        when the previous champion was deleted from the registry or its artifact no longer verifies.
        """
        try:
            _, target = self.registry.rollback_target()
        except RegistryError as exc:
            self.audit.append("refusal", actor=by, action="rollback", reason=str(exc))
            raise
        _, manifest = self._verified(target, "rollback", by)  # before the alias moves
        demoted, restored = self.registry.rollback()
        self.registry.set_tags(demoted, {"status": "rolled_back", "rolled_back_by": by})
        self.registry.set_tags(restored, {"status": "promoted"})
        entry = self.audit.append("rollback", actor=by, from_version=demoted, to_version=restored,
                                  to_model_version=manifest.version, reason=reason)
        self._anchor(restored, entry)
        self._event("rolled_back", self.registry.get(demoted), f"rolled back by {by}: {reason}")
        self._event("promoted", self.registry.get(restored), f"restored by rollback from {demoted}")
        self.write_card(demoted)
        self.write_card(restored)
        return demoted, restored

    def _anchor(self, version: str, entry: dict[str, Any]) -> None:
        """Keep the audit entry's hash outside the log too (see :func:`retrain.audit.check_anchors`)."""
        anchors = json.loads(self.registry.get(version).tags.get("audit_anchors", "{}"))
        anchors[str(entry["seq"])] = entry["hash"]
        self.registry.set_tags(version, {"audit_anchors": anchors})

    def audit_anchors(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for v in self.registry.versions():
            out |= {int(k): h for k, h in json.loads(v.tags.get("audit_anchors", "{}")).items()}
        return out

    # -- model card ----------------------------------------------------------------------------
    def card(self, version: str) -> str:
        v = self.registry.get(version)
        t = v.tags

        def js(key: str) -> Any:
            try:
                return json.loads(t[key]) if key in t else None
            except ValueError:
                return t[key]

        people = [{"at": e["at"], "kind": e["kind"], "actor": e["actor"],
                   "note": e["details"].get("note") or e["details"].get("reason", "")}
                  for e in self.audit.entries()
                  if e["kind"] in ("approval", "promotion", "rollback", "rejection")
                  and str(version) in (str(e["details"].get("version")),
                                       str(e["details"].get("from_version")),
                                       str(e["details"].get("to_version")))]
        return modelcard.render({
            "version": v.version, "model_version": t.get("model_version"), "status": v.status,
            "artifact_sha256": v.artifact_sha256, "signature_algorithm": t.get("signature_algorithm"),
            "parent_version": t.get("parent_version"), "job_id": t.get("job_id"),
            "policy_sha256": t.get("policy_sha256"), "trigger": js("trigger"),
            "snapshot": js("snapshot"), "metrics": v.metrics, "gates": v.gate_results,
            "approvals": people})

    def write_card(self, version: str) -> Path | None:
        if self.cards_dir is None:
            return None
        self.cards_dir.mkdir(parents=True, exist_ok=True)
        path = self.cards_dir / f"model-card-v{version}.md"
        path.write_text(self.card(version))
        return path
