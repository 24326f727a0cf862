"""Measure a candidate and the champion on a snapshot's holdout: the arrays the gates decide on.

The adapter between :mod:`retrain.gates` (pure) and :mod:`models` (ONNX Runtime, torch). Both models
replay the *whole* snapshot, so a holdout transaction is scored with the account history that came
before it, exactly as the worker would have; only the holdout rows' scores are compared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.gates import Evaluation
from retrain.policy import GatePolicy

BATCH = 1024


@dataclass
class Holdout:
    """Which rows of the snapshot frame are evaluated, and their truth."""

    frame: pd.DataFrame      # the whole snapshot frame (history for the replay)
    rows: np.ndarray         # positions in ``frame`` of labelled holdout rows
    labels: np.ndarray       # bool per row in ``rows``


def holdout_rows(frame: pd.DataFrame, holdout_start: pd.Timestamp) -> Holdout:
    from models.dataset import label_outcome

    outcome = label_outcome(frame["label"])
    mask = (frame["event_time"] >= holdout_start) & outcome.notna()
    rows = np.flatnonzero(mask.to_numpy())
    return Holdout(frame=frame, rows=rows, labels=(outcome.to_numpy()[rows] > 0.5))


def _replay(frame: pd.DataFrame, spec: Any, max_len: int) -> Any:
    from models.dataset import label_outcome, replay

    available = pd.to_datetime(frame["label_time"], utc=True)
    return replay(frame, spec, max_len, label_outcome(frame["label"]), available)


def onnx_scores(scorer: Any, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    data = _replay(frame, scorer.encoder.spec, scorer.encoder.max_len)
    out = np.empty(len(rows), np.float64)
    for s in range(0, len(rows), BATCH):
        out[s:s + BATCH] = scorer.score(data.inputs(rows[s:s + BATCH]))[0]
    return out


def torch_scores(artifact_dir: Path, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    import torch

    from models.export import load_artifact_model

    model, spec = load_artifact_model(artifact_dir)
    data = _replay(frame, spec, model.config.max_len)
    out = np.empty(len(rows), np.float64)
    with torch.no_grad():
        for s in range(0, len(rows), BATCH):
            batch = data.inputs(rows[s:s + BATCH])
            numeric = torch.from_numpy(batch["numeric"]) if model.config.numeric_size else None
            out[s:s + BATCH] = model(torch.from_numpy(batch["tokens"]), numeric)[0].numpy()
    return out


def single_row_latencies(scorer: Any, frame: pd.DataFrame, rows: np.ndarray, n: int = 300) -> np.ndarray:
    """Milliseconds per one-transaction ``score`` call: the worker's worst case (a batch of one)."""
    data = _replay(frame, scorer.encoder.spec, scorer.encoder.max_len)
    pick = rows[:n] if len(rows) else np.arange(min(n, len(frame)))
    for r in pick[:10]:  # warm-up: first calls allocate
        scorer.score(data.inputs(np.array([r])))
    out = []
    for r in pick:
        one = data.inputs(np.array([r]))
        t0 = time.perf_counter()
        scorer.score(one)
        out.append((time.perf_counter() - t0) * 1000)
    return np.array(out)


def perturbations(frame: pd.DataFrame, rows: np.ndarray, p: GatePolicy) -> list[pd.DataFrame]:
    """Copies of the frame whose evaluated rows have amounts nudged by ±rel and times by ±minutes."""
    out = []
    idx = frame.index[rows]
    for sign in (1, -1):
        f = frame.copy()
        f.loc[idx, "amount"] = f.loc[idx, "amount"] * (1 + sign * p.robustness_amount_rel)
        out.append(f)
        g = frame.copy()
        g.loc[idx, "event_time"] = g.loc[idx, "event_time"] + pd.Timedelta(
            minutes=sign * p.robustness_time_minutes)
        out.append(g)
    return out


def evaluate(candidate_dir: Path, champion_dir: Path, holdout: Holdout, p: GatePolicy,
             verifier: Any = None, drift_triggered: bool = False,
             champion_threshold: float | None = None) -> Evaluation:
    """Every measurement the offline gates need, on the same holdout for both models."""
    from models.scorer import Scorer

    cand = Scorer.load(candidate_dir, verifier=verifier, intra_op_threads=1)
    champ = Scorer.load(champion_dir, verifier=verifier, intra_op_threads=1)
    f, rows = holdout.frame, holdout.rows
    segments = f.iloc[rows][[c for c in p.segment_columns if c in f.columns]].reset_index(drop=True)
    return Evaluation(
        labels=holdout.labels, champion=onnx_scores(champ, f, rows),
        candidate=onnx_scores(cand, f, rows), segments=segments,
        champion_threshold=champion_threshold,
        perturbed=[onnx_scores(cand, g, rows) for g in perturbations(f, rows, p)],
        reference=torch_scores(candidate_dir, f, rows),
        latencies_ms=single_row_latencies(cand, f, rows), drift_triggered=drift_triggered)
