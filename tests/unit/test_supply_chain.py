"""Model supply chain: a registry version deleted after it was promoted (its files with it).

Governance refuses to roll back or promote to it (audit ``refusal``, alias unmoved, no event for
workers); a running worker refuses its ``promoted`` event and keeps the old model; a restarting
worker that finds it last in ``txmon.models`` dead-letters it and falls back to the champion before.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from models.artifact import write_manifest
from models.registry import CHAMPION, Registry, RegistryError
from retrain.audit import AuditLog
from retrain.policy import load_policy
from retrain.promotion import Governance, MemoryPublisher
from streams.hotswap import ModelSlot


@dataclass(frozen=True)
class Served:
    version: str


def loader(directory: Path, expected_sha256: str | None) -> Served:
    """The worker's real verification (models.scorer.Scorer.load); serves a stand-in for the graph."""
    from models.artifact import verify

    return Served(verify(directory, expected_sha256=expected_sha256).version)


@pytest.fixture
def world(tmp_path: Path):
    registry = Registry(f"sqlite:///{tmp_path / 'm.db'}", artifact_root=tmp_path / "artifacts")
    pub = MemoryPublisher()
    gov = Governance(registry, AuditLog(tmp_path / "audit.jsonl"), pub, load_policy())
    numbers = {}
    for name in ("a", "b", "c"):
        d = tmp_path / "src" / name
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(f"graph {name}".encode())
        sha = write_manifest(d, version=name).artifact_sha256
        numbers[name] = registry.register(d, artifact_sha256=sha, metrics={}, params={},
                                          tags={"status": "validated"}).version
        gov.promote(numbers[name], by="alice")
    return registry, gov, pub, numbers


def delete_version(registry: Registry, number: str) -> None:
    """What an operator or a retention job does: the registry entry and the logged files go."""
    files = registry.local_dir(number)
    registry.client.delete_model_version(registry.model_name, number)
    shutil.rmtree(files)


def offer_all(slot: ModelSlot, events, start: int = 0) -> None:
    for i, ev in enumerate(events):
        asyncio.run(slot.offer(ev.to_bytes(), "txmon.models", 0, start + i))


def test_rollback_refused_when_the_previous_champion_lost_its_files_or_was_deleted(world) -> None:
    registry, gov, pub, v = world
    published = len(pub.events)
    files = registry.local_dir(v["b"])
    shutil.rmtree(files)  # the registry entry stays; its artifact does not
    with pytest.raises(Exception, match="manifest"):
        gov.rollback(by="ops", reason="alert spike")
    assert registry.alias(CHAMPION).version == v["c"] and registry.history()[-1] == v["c"]
    registry.client.delete_model_version(registry.model_name, v["b"])
    with pytest.raises(RegistryError, match=f"version {v['b']}, was deleted from the registry"):
        gov.rollback(by="ops", reason="alert spike")
    assert registry.alias(CHAMPION).version == v["c"]  # the alias never moved
    assert len(pub.events) == published  # nothing for workers to act on
    refusals = [e["details"] for e in gov.audit.entries() if e["kind"] == "refusal"]
    assert [(r["action"], "manifest" in r["reason"], "deleted" in r["reason"]) for r in refusals] == [
        ("rollback", True, False), ("rollback", False, True)]


def test_a_deleted_champion_is_refused_by_workers_and_governance(world) -> None:
    registry, gov, pub, v = world
    promoted = [e for e in pub.events if e.event == "promoted"]
    running = ModelSlot(loader)
    offer_all(running, promoted[:2])  # a, then b: serving b
    running.for_next_batch()
    assert running.version == "b"

    delete_version(registry, v["c"])
    assert registry.alias(CHAMPION) is None  # MLflow drops the alias with the version

    # A running worker: c's promoted event arrives after its files were deleted.
    offer_all(running, promoted[2:], start=2)
    running.for_next_batch()
    assert running.version == "b"
    [refusal] = running.drain_refusals()
    assert (refusal.version, refusal.letter.stage, refusal.letter.offset) == ("c", "model_load", 2)
    assert "manifest" in refusal.reason

    # A restarting worker finds c last in the topic: dead-letters it, falls back to b.
    restarted = ModelSlot(loader)
    restarted.begin_catch_up()
    offer_all(restarted, promoted)
    asyncio.run(restarted.finish_catch_up())
    restarted.for_next_batch()
    assert restarted.version == "b"
    assert [r.version for r in restarted.drain_refusals()] == ["c"]

    # ... unless it was given a model of its own (--model): that one goes on serving.
    given = ModelSlot(loader)
    given.install(Served("given"))
    given.begin_catch_up()
    offer_all(given, promoted)
    asyncio.run(given.finish_catch_up())
    given.for_next_batch()
    assert given.version == "given" and [r.version for r in given.drain_refusals()] == ["c"]

    # Governance says why it cannot act on the alias any more.
    with pytest.raises(RegistryError, match="points at nothing"):
        gov.rollback(by="ops")
    with pytest.raises(RegistryError):
        gov.promote(v["c"], by="ops")
    assert [e["kind"] for e in gov.audit.entries()][-2:] == ["refusal", "refusal"]
