"""The model registry client: MLflow model versions, aliases ``champion`` / ``challenger``, history.

Every candidate becomes a version of one registered model (``txmon-scorer``) whose source is the
artifact directory (model.onnx + manifest.json) logged to an MLflow run; metrics, gate results and
lineage travel as version tags. The ``champion`` alias is what workers serve; the registered model's
``champion_history`` tag remembers earlier champions so a rollback is one step.

Default store: sqlite and local artifacts under ``settings.home / "mlflow"``; set
``TXMON_MLFLOW_TRACKING_URI`` for a tracking server. MLflow is imported lazily: workers that only
read ``txmon.models`` never pay for it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

MODEL_NAME = "txmon-scorer"
EXPERIMENT = "txmon-retraining"
CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"
ARTIFACT_PATH = "artifact"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done: unknown version, nothing to roll back to."""


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, as the CLI and the promotion step see it."""

    version: str
    source: str
    run_id: str | None
    created_ms: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.tags.get("status", "candidate")

    @property
    def artifact_sha256(self) -> str | None:
        return self.tags.get("artifact_sha256")

    @property
    def gate_results(self) -> list[dict[str, Any]]:
        return json.loads(self.tags.get("gate_results", "[]"))


def default_tracking_uri(settings: Any) -> str:
    if getattr(settings, "mlflow_tracking_uri", None):
        return settings.mlflow_tracking_uri
    root = Path(settings.home) / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def _tag(value: Any) -> str:
    # MLflow tag values are strings of bounded length; structured values go as compact JSON.
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text[:5000]


class Registry:
    """Thin adapter over :class:`mlflow.MlflowClient` for txmon's one registered model."""

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None,
                 model_name: str = MODEL_NAME):
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._artifact_root = artifact_root
        self._experiment_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> Registry:
        uri = default_tracking_uri(settings)
        root = None if settings.mlflow_tracking_uri else Path(settings.home) / "mlflow" / "artifacts"
        return cls(uri, artifact_root=root)

    def _experiment(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            if exp is not None:
                self._experiment_id = exp.experiment_id
            else:
                location = self._artifact_root.resolve().as_uri() if self._artifact_root else None
                self._experiment_id = self.client.create_experiment(EXPERIMENT,
                                                                    artifact_location=location)
        return self._experiment_id

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            self.client.create_registered_model(
                self.model_name, description="txmon transaction-sequence scorer (ONNX)")

    def register(self, artifact_dir: Path, *, artifact_sha256: str, metrics: dict[str, float],
                 params: dict[str, Any], tags: dict[str, Any], run_name: str | None = None) -> VersionInfo:
        """Log the artifact, metrics and params to a run; make it a model version with ``tags``."""
        self._ensure_model()
        run = self.client.create_run(self._experiment(), run_name=run_name,
                                     tags={"artifact_sha256": artifact_sha256})
        rid = run.info.run_id
        try:
            self.client.log_artifacts(rid, str(artifact_dir), ARTIFACT_PATH)
            for k, v in metrics.items():
                if v is not None and v == v:
                    self.client.log_metric(rid, k, float(v))
            for k, v in params.items():
                self.client.log_param(rid, k, _tag(v)[:500])
            self.client.set_terminated(rid)
        except Exception:
            self.client.set_terminated(rid, status="FAILED")
            raise
        source = f"{self.client.get_run(rid).info.artifact_uri}/{ARTIFACT_PATH}"
        all_tags = {k: _tag(v) for k, v in tags.items()} | {"artifact_sha256": artifact_sha256}
        mv = self.client.create_model_version(self.model_name, source=source, run_id=rid,
                                              tags=all_tags)
        return self.get(mv.version)

    def set_tags(self, version: str, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), k, _tag(v))

    def get(self, version: str) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(self.model_name, str(version))
        except MlflowException:
            raise RegistryError(f"no version {version} of {self.model_name}") from None
        metrics: dict[str, float] = {}
        if mv.run_id:
            metrics = dict(self.client.get_run(mv.run_id).data.metrics)
        return VersionInfo(version=str(mv.version), source=mv.source, run_id=mv.run_id,
                           created_ms=int(mv.creation_timestamp or 0), tags=dict(mv.tags or {}),
                           aliases=tuple(mv.aliases or ()), metrics=metrics)

    def versions(self) -> list[VersionInfo]:
        self._ensure_model()
        found = self.client.search_model_versions(f"name='{self.model_name}'")
        return sorted((self.get(mv.version) for mv in found), key=lambda v: int(v.version))

    def alias(self, alias: str) -> VersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None
        return self.get(mv.version)

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def clear_alias(self, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        with contextlib.suppress(MlflowException):
            self.client.delete_registered_model_alias(self.model_name, alias)

    def history(self) -> list[str]:
        """Champion versions, oldest first; the last one is the current champion."""
        self._ensure_model()
        tags = self.client.get_registered_model(self.model_name).tags or {}
        return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]

    def make_champion(self, version: str) -> str | None:
        """Point ``champion`` at ``version``; returns the previous champion's version."""
        self.get(version)  # raises for an unknown version
        previous = self.alias(CHAMPION)
        self.set_alias(CHAMPION, version)
        hist = [*self.history(), str(version)]
        self.client.set_registered_model_tag(self.model_name, HISTORY_TAG, ",".join(hist[-50:]))
        if (challenger := self.alias(CHALLENGER)) and challenger.version == str(version):
            self.clear_alias(CHALLENGER)
        return previous.version if previous else None

    def rollback_target(self) -> tuple[str, str]:
        """``(from_version, to_version)`` a rollback would move ``champion`` between; raises
        :class:`RegistryError` if there is none or either end was deleted from the registry."""
        hist = self.history()
        current = self.alias(CHAMPION)
        if current is None and hist and not self._exists(hist[-1]):
            # MLflow drops an alias with its version; the history still names the deleted champion.
            raise RegistryError(f"the champion alias points at nothing: version {hist[-1]} was "
                                "deleted from the registry; promote a version explicitly")
        if current is None or len(hist) < 2:
            raise RegistryError("no earlier champion to roll back to")
        to = hist[-2]
        if not self._exists(to):
            raise RegistryError(f"the previous champion, version {to}, was deleted from the registry; "
                                f"champion stays version {current.version}")
        return current.version, to

    def _exists(self, version: str) -> bool:
        try:
            self.get(version)
        except RegistryError:
            return False
        return True

    def rollback(self) -> tuple[str, str]:
        """Restore the previous champion; returns ``(from_version, to_version)``."""
        current, to = self.rollback_target()
        hist = self.history()
        self.set_alias(CHAMPION, to)
        self.client.set_registered_model_tag(self.model_name, HISTORY_TAG, ",".join(hist[:-1]))
        return current, to

    def local_dir(self, version: str, cache: Path | None = None) -> Path:
        """A local directory holding the version's artifact files (downloaded if remote)."""
        info = self.get(version)
        parsed = urlparse(info.source)
        if parsed.scheme in ("", "file"):
            return Path(unquote(parsed.path))
        import mlflow.artifacts

        target = Path(cache or tempfile.mkdtemp(prefix="txmon-model-")) / f"v{version}"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=str(target),
                                            tracking_uri=self.tracking_uri)
        return target / ARTIFACT_PATH if (target / ARTIFACT_PATH).is_dir() else target
