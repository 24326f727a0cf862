"""The MLflow registry client on a sqlite store: versions, tags, aliases, history, rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.artifact import write_manifest
from models.registry import CHALLENGER, CHAMPION, Registry, RegistryError


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("mlflow")
    return Registry(f"sqlite:///{root / 'm.db'}", artifact_root=root / "artifacts")


def _artifact(tmp: Path, name: str, payload: bytes) -> tuple[Path, str]:
    d = tmp / name
    d.mkdir()
    (d / "model.onnx").write_bytes(payload)
    return d, write_manifest(d, version=name).artifact_sha256


def test_register_tags_aliases_and_rollback(registry: Registry, tmp_path: Path) -> None:
    a_dir, a_sha = _artifact(tmp_path, "a", b"graph-a")
    a = registry.register(a_dir, artifact_sha256=a_sha, metrics={"ap": 0.4}, params={"lr": 1e-4},
                          tags={"status": "promoted", "lineage": {"parent": None}})
    assert a.artifact_sha256 == a_sha and a.metrics["ap"] == pytest.approx(0.4)
    assert (registry.local_dir(a.version) / "model.onnx").read_bytes() == b"graph-a"
    assert registry.make_champion(a.version) is None

    b_dir, b_sha = _artifact(tmp_path, "b", b"graph-b")
    b = registry.register(b_dir, artifact_sha256=b_sha, metrics={"ap": 0.5}, params={},
                          tags={"status": "validated",
                                "gate_results": [{"name": "average_precision", "passed": True}]})
    registry.set_alias(CHALLENGER, b.version)
    assert registry.alias(CHALLENGER).version == b.version
    assert registry.get(b.version).gate_results[0]["name"] == "average_precision"

    assert registry.make_champion(b.version) == a.version
    assert registry.alias(CHAMPION).version == b.version and registry.alias(CHALLENGER) is None
    assert registry.history()[-2:] == [a.version, b.version]

    assert registry.rollback() == (b.version, a.version)
    assert registry.alias(CHAMPION).version == a.version
    assert [v.version for v in registry.versions()][-2:] == [a.version, b.version]


def test_errors(registry: Registry) -> None:
    with pytest.raises(RegistryError):
        registry.get("999")
    with pytest.raises(RegistryError):
        registry.make_champion("999")


def test_rollback_without_history(tmp_path: Path) -> None:
    r = Registry(f"sqlite:///{tmp_path / 'm.db'}", artifact_root=tmp_path / "art")
    with pytest.raises(RegistryError, match="no earlier champion"):
        r.rollback()
