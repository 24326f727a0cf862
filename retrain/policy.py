"""The retraining policy: controller rules, snapshot sizes, gate thresholds, shadow and promotion.

A YAML file (default: ``retrain/policy.yaml``, shipped with the package) parsed into frozen pydantic
models, so a typo in a key is an error at load time rather than a silently ignored gate.

>>> p = load_policy()
>>> p.gates.alert_budget, p.controller.default_action
(0.01, 'watch')
>>> p.controller.action_for("performance", "high")
'retrain'
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

Action = Literal["ignore", "watch", "retrain"]
Scope = Literal["feature", "embedding", "score", "performance", "*"]
Severity = Literal["low", "medium", "high", "critical"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict):
    scope: Scope
    severity: list[Severity] = Field(default_factory=lambda: ["low", "medium", "high", "critical"])
    action: Action

    def matches(self, scope: str, severity: str) -> bool:
        return self.scope in ("*", scope) and severity in self.severity


class ControllerPolicy(_Strict):
    rules: list[Rule] = Field(default_factory=list)
    default_action: Action = "watch"
    cooldown_hours: float = Field(24, ge=0)
    max_jobs_per_day: int = Field(2, ge=0)
    min_new_labels: int = Field(200, ge=0)
    # Labels arrive late: a drift-triggered job waits until this many labels have arrived *after*
    # the drift, so its snapshot holds labelled examples of the drifted world (0: start at once).
    labels_after_drift: int = Field(0, ge=0)
    # ... and this many of them positive (fraud, SAR): a new pattern is learnt from its positives,
    # and early labels after a drift are mostly of transactions from before it.
    positives_after_drift: int = Field(0, ge=0)
    max_job_minutes: float = Field(240, gt=0)  # a job running longer is killed

    def action_for(self, scope: str, severity: str) -> Action:
        """What the first matching rule says about a drift event of this scope and severity."""
        for rule in self.rules:
            if rule.matches(scope, severity):
                return rule.action
        return self.default_action


class SnapshotPolicy(_Strict):
    window_days: float = Field(28, gt=0)
    holdout_days: float = Field(7, gt=0)
    min_positives: int = Field(30, ge=1)
    min_holdout_positives: int = Field(20, ge=1)
    max_duplicate_fraction: float = Field(0.001, ge=0, le=1)


class GatePolicy(_Strict):
    alert_budget: float = Field(0.01, gt=0, lt=1)
    ap_tolerance: float = Field(0.01, ge=0)
    recall_tolerance: float = Field(0.02, ge=0)
    drift_required_gain: float = 0.0
    # None: not gated (a worker that alerts by daily budget has its volume set by the budget).
    max_alert_volume_change: float | None = Field(0.5, ge=0)
    # The worker's fixed alert threshold; None: the champion's threshold at the alert budget.
    alert_threshold: float | None = Field(None, ge=0, le=1)
    segment_columns: list[str] = Field(default_factory=lambda: ["channel", "country", "segment"])
    max_segment_recall_drop: float = Field(0.10, ge=0)
    min_segment_positives: int = Field(10, ge=1)
    max_ece: float = Field(0.05, ge=0)
    robustness_amount_rel: float = Field(0.01, ge=0)
    robustness_time_minutes: float = Field(5, ge=0)
    max_robustness_delta: float = Field(0.10, ge=0)
    onnx_parity_atol: float = Field(1e-3, ge=0)
    max_p99_latency_ms: float = Field(50.0, gt=0)


class ShadowPolicy(_Strict):
    min_events: int = Field(5000, ge=0)
    min_hours: float = Field(0, ge=0)
    min_labelled: int = Field(50, ge=0)
    min_positives: int = Field(1, ge=1)
    ap_tolerance: float = Field(0.02, ge=0)
    # How the AP gap is judged, on bootstrap bounds at ``confidence`` (retrain/bootstrap.py):
    # "non_inferiority" passes only when the challenger is shown to be no worse than the tolerance
    # (needs many labelled positives); "no_regression" fails only when it is shown to be worse.
    decision: Literal["non_inferiority", "no_regression"] = "non_inferiority"
    confidence: float = Field(0.95, gt=0.5, lt=1)
    bootstraps: int = Field(1000, ge=100)
    # None: not gated (a worker that alerts by daily budget has its volume set by the budget).
    max_alert_volume_change: float | None = Field(0.5, ge=0)


class PromotionPolicy(_Strict):
    auto_promote: bool = True
    manual_jobs_need_approval: bool = True
    require_shadow: bool = False


class ExportPolicy(_Strict):
    # Ship a drift reference built on the candidate's validation window (streams.drift.shipped),
    # calibrated for the worker's drift configuration as the job sees it (TXMON_WORKER__DRIFT_MONITOR);
    # off: a new champion's reference comes from its first scored events (the worker's warm-up).
    drift_reference: bool = False


class Policy(_Strict):
    controller: ControllerPolicy = ControllerPolicy()
    snapshot: SnapshotPolicy = SnapshotPolicy()
    gates: GatePolicy = GatePolicy()
    shadow: ShadowPolicy = ShadowPolicy()
    promotion: PromotionPolicy = PromotionPolicy()
    export: ExportPolicy = ExportPolicy()
    source_sha256: str = ""  # of the YAML it came from, so every decision names its policy

    def model_post_init(self, _context: object) -> None:
        if self.snapshot.holdout_days >= self.snapshot.window_days:
            raise ValueError("snapshot.holdout_days must be shorter than snapshot.window_days")


def parse_policy(text: str) -> Policy:
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError("a policy file is a YAML mapping")
    return Policy.model_validate({**data, "source_sha256": hashlib.sha256(text.encode()).hexdigest()})


POLICY_FILE = resources.files("retrain").joinpath("policy.yaml")


def load_policy(path: Path | None = None) -> Policy:
    """The policy at ``path``, or the one shipped with txmon."""
    return parse_policy((POLICY_FILE if path is None else Path(path)).read_text())
