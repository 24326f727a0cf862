"""The governed job end to end with the real model (torch fine-tune, ONNX export, ONNX Runtime
gates), an MLflow sqlite registry and the audit log; Kafka is replaced by a snapshot built from the
same bytes a producer would have written and an in-memory model-event publisher (the Kafka path is
tests/integration/test_retrain_kafka.py).

World: the toy frame (night-time card-not-present bursts to new merchants abroad are fraud). The
champion is trained on the first 17 days; the drift-triggered job fine-tunes it on 30 days.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import SecretStr

from models.artifact import ArtifactError, HmacSigner, read_manifest
from models.registry import CHAMPION, Registry
from retrain.audit import AuditLog, check_anchors, verify
from retrain.job import Paths, run_job
from retrain.policy import Policy, load_policy
from retrain.promotion import Governance, MemoryPublisher, PromotionError
from retrain.pseudonymise import Pseudonymiser
from retrain.snapshot import build_snapshot
from txmon.frames import to_label, to_transaction
from txmon.settings import Settings

pytestmark = pytest.mark.slow

SIGN, PSEUDO = "s" * 32, "p" * 32
SNAPSHOT_TIME = pd.Timestamp("2026-02-04", tz="UTC")
RAW_ID = re.compile(r"\bacc\d+\b")


def _config():
    from models.finetune import TrainConfig

    return TrainConfig(min_count=5, show_progress=False, threads=1)


def _policy() -> Policy:
    base = load_policy()
    return Policy.model_validate(base.model_dump() | {
        "snapshot": {"window_days": 30, "holdout_days": 7, "min_positives": 10,
                     "min_holdout_positives": 5, "max_duplicate_fraction": 0.0},
        "gates": base.gates.model_dump() | {"alert_budget": 0.02, "min_segment_positives": 5}})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from models.finetune import build_champion
    from models.toy import toy_frame

    torch.set_num_threads(1)
    frame = toy_frame(accounts=300, days=30, seed=1, fraud_rate=0.3)
    root = tmp_path_factory.mktemp("champion")
    early = Pseudonymiser(PSEUDO.encode()).frame(
        frame[frame["event_time"] < pd.Timestamp("2026-01-22", tz="UTC")])
    build_champion(early, root / "m0", "m0", _config(), signer=HmacSigner(SIGN.encode()))
    return {"frame": frame, "champion_dir": root / "m0"}


def _environment(tmp: Path, world: dict, policy: Policy | None = None) -> dict:
    settings = Settings(home=tmp, signing_key=SecretStr(SIGN), pseudonym_key=SecretStr(PSEUDO))
    registry = Registry.from_settings(settings)
    publisher = MemoryPublisher()
    policy = policy or _policy()
    gov = Governance(registry, AuditLog(Paths(tmp).audit), publisher, policy,
                     verifier=HmacSigner(SIGN.encode()), cards_dir=Paths(tmp).cards)
    m = read_manifest(world["champion_dir"])
    first = registry.register(world["champion_dir"], artifact_sha256=m.artifact_sha256, metrics={},
                              params={}, tags={"model_version": m.version})
    gov.promote(first.version, by="bootstrap")
    return {"settings": settings, "registry": registry, "publisher": publisher, "gov": gov,
            "policy": policy, "first": first.version}


def _snapshot(frame: pd.DataFrame, policy: Policy):
    txs = [(0, to_transaction(r).to_bytes()) for r in frame.to_dict("records")]
    labels = [(0, lab.to_bytes()) for r in frame.to_dict("records")
              if (lab := to_label(r)) is not None and lab.label_time <= SNAPSHOT_TIME]
    t = SNAPSHOT_TIME.to_pydatetime()
    return build_snapshot(txs, labels, t - timedelta(days=policy.snapshot.window_days), t,
                          policy.snapshot, Pseudonymiser(PSEUDO.encode()))


def _run(env: dict, frame: pd.DataFrame, trigger: dict):
    return run_job(trigger, env["settings"], env["policy"], registry=env["registry"],
                   publisher=env["publisher"], snapshot=_snapshot(frame, env["policy"]),
                   train_config=_config())


DRIFT = {"kind": "drift", "scope": "performance", "detector": "adwin", "severity": "high"}


@pytest.fixture(scope="module")
def promoted(world: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    env = _environment(tmp_path_factory.mktemp("home"), world)
    env["result"] = _run(env, world["frame"], DRIFT)
    return env


def test_better_candidate_is_promoted_and_loadable_by_a_worker(promoted: dict) -> None:
    from models.scorer import Scorer

    r, registry = promoted["result"], promoted["registry"]
    assert r.outcome == "promoted", (r.failed, registry.get(r.version).gate_results)
    assert registry.alias(CHAMPION).version == r.version
    assert set(r.stages) == {"snapshot", "finetune_export", "gates", "register", "promotion"}
    event = promoted["publisher"].events[-1]
    assert event.event == "promoted" and event.version == r.model_version
    assert event.artifact_sha256 == registry.get(r.version).artifact_sha256
    assert {g.name for g in event.gate_results} >= {"average_precision", "segment_parity"}
    # What the worker does with the event: verify sha256 + HMAC, then load.
    scorer = Scorer.load(event.artifact_uri, expected_sha256=event.artifact_sha256,
                         verifier=HmacSigner(SIGN.encode()))
    assert scorer.version == r.model_version
    with pytest.raises(ArtifactError):
        Scorer.load(event.artifact_uri, expected_sha256=event.artifact_sha256,
                    verifier=HmacSigner(b"x" * 32))


def test_lineage_card_and_audit(promoted: dict) -> None:
    r, registry = promoted["result"], promoted["registry"]
    v = registry.get(r.version)
    assert v.tags["parent_version"] == promoted["first"]
    assert json.loads(v.tags["snapshot"])["content_sha256"] == r.snapshot["content_sha256"]
    assert v.tags["policy_sha256"] == promoted["policy"].source_sha256
    card = (Paths(promoted["settings"].home).cards / f"model-card-v{r.version}.md").read_text()
    assert r.snapshot["content_sha256"] in card and "bootstrap" not in card
    assert "promotion by policy:auto" in card
    log = Paths(promoted["settings"].home).audit
    kinds = [e["kind"] for e in AuditLog(log).entries()]
    assert {"snapshot", "candidate", "gates", "promotion"} <= set(kinds)
    assert verify(log).ok
    anchors = promoted["gov"].audit_anchors()
    assert anchors and check_anchors(log, anchors).ok


def test_no_raw_account_identifier_in_artifacts_registry_or_cards(promoted: dict, world: dict) -> None:
    home = Path(promoted["settings"].home)
    raw = set(world["frame"]["account_id"]) | set(world["frame"]["counterparty_id"])
    assert RAW_ID.search(" ".join(sorted(raw)))  # the pattern does find raw ids
    texts = []
    for path in home.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".jsonl", ".txt", ".yaml", ".parquet"):
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    registry = promoted["registry"]
    for v in registry.versions():
        texts.append(json.dumps(v.tags))
        if v.run_id:
            texts.append(json.dumps(registry.client.get_run(v.run_id).data.params))
    texts.append((Path(registry.local_dir(promoted["result"].version)) / "model.onnx")
                 .read_bytes().decode("latin-1"))
    found = {m for t in texts for m in RAW_ID.findall(t)}
    assert not found & raw


def test_tampered_artifact_cannot_be_promoted(promoted: dict) -> None:
    registry, gov = promoted["registry"], promoted["gov"]
    version = promoted["result"].version
    path = registry.local_dir(version) / "metrics.json"
    original = path.read_bytes()
    path.write_bytes(original + b" ")
    try:
        with pytest.raises(ArtifactError, match="sha256"):
            gov.promote(version, by="mallory")
    finally:
        path.write_bytes(original)


def test_rollback_restores_previous_champion(promoted: dict) -> None:
    registry, gov, pub = promoted["registry"], promoted["gov"], promoted["publisher"]
    new = promoted["result"].version
    assert gov.rollback(by="ops-oncall", reason="alert spike") == (new, promoted["first"])
    assert registry.alias(CHAMPION).version == promoted["first"]
    assert [e.event for e in pub.events[-2:]] == ["rolled_back", "promoted"]
    assert pub.events[-1].version == "m0"
    assert registry.get(new).status == "rolled_back"
    assert verify(Paths(promoted["settings"].home).audit).ok


def _poison(frame: pd.DataFrame, until: pd.Timestamp, seed: int = 0) -> pd.DataFrame:
    """An attacker with write access to the label feed relabels every fraud in the training
    period as legitimate, and as many random legitimate transactions as fraud, so the counts of
    positives (and the data checks) look normal."""
    rng = np.random.default_rng(seed)
    f = frame.copy()
    train = f["event_time"] < until
    fraud = train & (f["label"] == "fraud")
    legit_idx = f.index[train & (f["label"] == "legit")]
    decoys = rng.choice(legit_idx, int(fraud.sum()), replace=False)
    f.loc[fraud, "label"] = "legit"
    f.loc[decoys, "label"] = "fraud"
    return f


def test_label_poisoned_candidate_is_rejected(world: dict, tmp_path: Path) -> None:
    env = _environment(tmp_path, world)
    poisoned = _poison(world["frame"], pd.Timestamp("2026-01-24", tz="UTC"))
    r = _run(env, poisoned, DRIFT)
    assert r.outcome == "rejected" and r.failed
    assert env["registry"].alias(CHAMPION).version == env["first"]
    v = env["registry"].get(r.version)
    assert v.status == "rejected" and set(v.tags["gates_failed"].split(",")) == set(r.failed)
    event = env["publisher"].events[-1]
    assert event.event == "rejected" and all(name in event.reason for name in r.failed)
    rejection = [e for e in AuditLog(Paths(tmp_path).audit).entries() if e["kind"] == "rejection"]
    assert rejection[-1]["details"]["failed"] == r.failed
    with pytest.raises(PromotionError):
        env["gov"].approve(r.version, by="alice")


def test_manual_job_waits_for_a_named_approval(world: dict, tmp_path: Path) -> None:
    env = _environment(tmp_path, world)
    r = _run(env, world["frame"], {"kind": "manual", "reason": "new mule typology",
                                   "requested_by": "alice"})
    assert r.outcome == "awaiting_approval", r.failed
    assert env["registry"].alias(CHAMPION).version == env["first"]
    env["gov"].approve(r.version, by="bob", note="reviewed gate report")
    assert env["registry"].alias(CHAMPION).version == r.version
    assert env["registry"].get(r.version).tags["approved_by"] == "bob"
    kinds = [(e["kind"], e["actor"]) for e in AuditLog(Paths(tmp_path).audit).entries()]
    assert ("approval", "bob") in kinds and ("promotion", "bob") in kinds
