"""Backtest: train on [T0, T1] with only the labels known by T1 + label delay, then replay the test
period in time order (labels arriving as their delay passes) and compare the transformer (scored
through its exported ONNX graph, as in production) with LightGBM and the rules side by side.

The AML section compares false-positive alerts at the rules' recall on AML typologies (rows whose
``scenario`` is an AML typology, or labelled ``sar``), card-fraud rows excluded from both sides.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.baselines import LightGBMBaseline, RulesBaseline
from models.dataset import fit_spec, label_outcome, replay
from models.finetune import TrainConfig, label_availability, time_split, train
from models.metrics import false_positives_at_recall, report
from models.progress import progress_bar

AML_SCENARIOS = frozenset({"structuring", "fan_in", "fan_out", "rapid_pass_through", "round_tripping"})


@dataclass
class BacktestConfig:
    train_from: pd.Timestamp
    train_until: pd.Timestamp
    test_from: pd.Timestamp
    test_until: pd.Timestamp | None = None
    label_column: str = "label"
    label_delay: str = "7D"
    daily_budget: int = 100
    top_k: int = 20
    train: TrainConfig = field(default_factory=TrainConfig)
    artifact_dir: Path | None = None  # keep the trained artifact here (else a temp dir)


def _utc(t: Any) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def run(frame: pd.DataFrame, config: BacktestConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(scores: one row per test transaction ``tx_id, score``, report dict)."""
    from models.export import export_artifact
    from models.scorer import Scorer

    started = time.perf_counter()
    t0, t1, t2 = _utc(config.train_from), _utc(config.train_until), _utc(config.test_from)
    t3 = _utc(config.test_until) if config.test_until is not None else None
    et = pd.to_datetime(frame["event_time"], utc=True)
    keep = (et >= t0) & ((et <= t3) if t3 is not None else True)
    frame = frame.loc[keep].reset_index(drop=True)
    et = et[keep].reset_index(drop=True)
    if config.label_column not in frame.columns:
        raise ValueError(f"no label column {config.label_column!r} in the file")
    outcome = label_outcome(frame[config.label_column])
    available = label_availability(frame, config.label_delay)
    in_train = ((et >= t0) & (et <= t1)).to_numpy()
    in_test = (et >= t2).to_numpy()
    if not in_train.any() or not in_test.any():
        raise ValueError("the train or the test window holds no transactions")
    known_by = t1 + pd.Timedelta(config.label_delay)
    y_known = ((outcome > 0.5) & (available <= known_by)).to_numpy().astype(np.float32)
    y_true = (outcome > 0.5).to_numpy().astype(np.float32)

    tc = config.train
    timings: dict[str, float] = {}
    t = time.perf_counter()
    spec = fit_spec(frame.loc[in_train], tc.min_count)
    with progress_bar("replay (features)", len(frame), tc.show_progress) as adv:
        last = [0]

        def tick(step: int) -> None:
            adv(step - last[0])
            last[0] = step

        data = replay(frame, spec, tc.max_len, outcome, available, progress=tick)
    timings["replay_seconds"] = time.perf_counter() - t
    train_idx = np.flatnonzero(in_train)
    test_idx = np.flatnonzero(in_test)

    t = time.perf_counter()
    trained = train(data, spec, train_idx, y_known, tc)
    timings["transformer_train_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    out = Path(config.artifact_dir) if config.artifact_dir else Path(tempfile.mkdtemp()) / "artifact"
    _, holdout = time_split(data.ts, train_idx, tc.finetune.val_fraction)
    manifest = export_artifact(trained.model, spec, out, "backtest", metrics=trained.metrics,
                               sample_tokens=data.inputs(holdout[:2048]), eval_labels=y_known[holdout[:2048]],
                               quantize=tc.quantize, training={"config": tc.to_dict()})
    scorer = Scorer.load(out, manifest.artifact_sha256, intra_op_threads=tc.threads)
    s_tx = np.empty(len(test_idx), dtype=np.float32)
    with progress_bar("score test period (ONNX)", len(test_idx), tc.show_progress) as adv:
        for s in range(0, len(test_idx), 1024):
            s_tx[s:s + 1024] = scorer.score(data.inputs(test_idx[s:s + 1024]))[0]
            adv(min(1024, len(test_idx) - s))
    timings["transformer_score_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    fit_idx, val_idx = time_split(data.ts, train_idx, tc.finetune.val_fraction)
    lgbm = LightGBMBaseline(seed=tc.finetune.seed, threads=tc.threads or 2).fit(
        data.agg[fit_idx], y_known[fit_idx], data.agg[val_idx], y_known[val_idx])
    s_lgbm = lgbm.score(data.agg[test_idx])
    timings["lightgbm_seconds"] = time.perf_counter() - t
    rules = RulesBaseline()
    s_rules = rules.score(data.agg[test_idx])

    y, ts, acc = y_true[test_idx], data.ts[test_idx], data.account_id[test_idx]
    models = {"transformer": s_tx, "lightgbm": s_lgbm, "rules": s_rules}
    result: dict[str, Any] = {
        "windows": {"train_from": str(t0), "train_until": str(t1), "test_from": str(t2),
                    "test_until": str(t3) if t3 is not None else None,
                    "label_delay": config.label_delay, "labels_known_by": str(known_by)},
        "rows": {"total": len(frame), "train": int(in_train.sum()), "test": int(in_test.sum()),
                 "train_positives_known": int(y_known[train_idx].sum()),
                 "test_positives": int(y.sum())},
        "daily_budget": config.daily_budget, "top_k": config.top_k,
        "models": {name: report(y, s, ts, acc, config.daily_budget, config.top_k)
                   for name, s in models.items()},
        "transformer": {"artifact_sha256": manifest.artifact_sha256, "providers": scorer.providers,
                        **{k: v for k, v in trained.metrics.items() if not isinstance(v, str)}},
        "fields_present": [c for c in frame.columns if c in set(spec.fields) | {
            "currency", "channel", "tx_type", "direction", "mcc", "country", "counterparty_country",
            "device_id"}],
    }
    result["aml"] = _aml(frame.iloc[test_idx], y, models, rules.alerts(data.agg[test_idx]))
    timings["total_seconds"] = time.perf_counter() - started
    result["timings"] = {k: round(v, 1) for k, v in timings.items()}
    scores = pd.DataFrame({"tx_id": data.tx_id[test_idx], "score": s_tx})
    return scores, result


def _aml(test: pd.DataFrame, y: np.ndarray, models: dict[str, np.ndarray],
         rule_alerts: np.ndarray) -> dict[str, Any] | None:
    if "scenario" in test.columns:
        aml = test["scenario"].isin(AML_SCENARIOS).to_numpy()
    else:
        aml = test["label"].astype(str).eq("sar").to_numpy() if "label" in test.columns else None
    if aml is None or not aml.any():
        return None
    population = aml | (y < 0.5)  # AML positives against true negatives; card fraud left out
    ya = aml[population].astype(np.float32)
    alerts = rule_alerts[population]
    tp = int((alerts & (ya > 0)).sum())
    recall = tp / ya.sum()
    out: dict[str, Any] = {"positives": int(ya.sum()), "rules_recall": recall,
                           "rules_false_positives": int((alerts & (ya == 0)).sum())}
    for name in ("transformer", "lightgbm"):
        fp, _ = false_positives_at_recall(ya, models[name][population], recall)
        out[f"{name}_false_positives_at_rules_recall"] = fp
        rfp = out["rules_false_positives"]
        out[f"{name}_fp_reduction_vs_rules"] = (1 - fp / rfp) if rfp else math.nan
    return out
