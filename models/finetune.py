"""Fine-tuning: from the pre-trained base or from the current champion, on labelled transactions.

Class imbalance: every positive is used every epoch with a sample of ``negatives_per_positive``
negatives; the log of the sampling rate is stored as ``logit_offset`` so exported scores are back on
the population's scale. Early stopping on validation average precision (the last ``val_fraction`` of
the training window, by time), seeded, CPU, rich progress bars.

Entry points:

* :func:`build_champion` — fit vocabularies, pre-train, fine-tune and export a first artifact
  (what ``txmon train`` and the demo call).
* :func:`finetune` — fine-tune from a champion artifact (or from scratch) on a labelled frame and
  export a new, signed artifact (what the governed retrain job calls).
* :func:`train` — the in-memory part shared by both and by the backtest.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from models.configuration import TxmonConfig
from models.dataset import Replayed, _seconds, fit_spec, label_outcome, replay
from models.metrics import average_precision
from models.modeling import TxmonModel
from models.numeric import NUMERIC
from models.pretrain import PretrainConfig, pretrain
from models.progress import progress_bar
from models.tokenise import FeatureSpec


@dataclass
class FinetuneConfig:
    """Defaults measured on the simulator (1,000 accounts, 45 days, ~100 known positives): every
    positive several times per epoch against a small fresh negative sample beats many negatives
    per epoch (AP 0.46-0.52 vs 0.14-0.32 at equal or higher cost)."""

    epochs: int = 4
    batch_size: int = 256
    learning_rate: float = 2e-3
    # From a champion: a smaller step keeps what it knows while it learns the new window (on the
    # default demo's drift snapshot, 2e-3 lost 0.06-0.19 holdout AP to the champion, 5e-4 gained 0.035).
    champion_learning_rate: float = 5e-4
    weight_decay: float = 0.01
    negatives_per_positive: int = 30  # per positive instance, fresh each epoch
    positive_repeats: int = 4  # every positive this often per epoch: more signal per epoch
    max_negatives: int = 150_000  # per epoch
    patience: int = 2  # epochs without improvement of the smoothed validation AP
    smoothing: float = 0.5  # weight of the newest epoch in the smoothed validation AP
    val_fraction: float = 0.15
    max_val_rows: int = 100_000
    seed: int = 0


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults fit a demo-sized frame in a few minutes on 2 cores."""

    max_len: int = 8  # with the numeric aggregates, K=8 scored as well as 16 at twice the speed
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    min_count: int = 20
    label_delay: str = "7D"  # when a label arrived, for rows without a label_time
    label_maturity: str = "7D"  # an unlabelled transaction this old counts as legitimate
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    numeric: bool = True  # numeric per-transaction aggregates beside the tokens (models.numeric)
    threads: int | None = None
    show_progress: bool = True
    quantize: bool = False
    # Ship a drift reference in the artifact (streams.drift.shipped): the validation window's
    # embeddings, scores and feature columns, thresholds simulated for this drift configuration
    # (streams.drift.DriftConfig arguments; it must equal the worker's TXMON_WORKER__DRIFT_MONITOR
    # or the worker ignores it and warms up). None: no reference. The simulation takes seconds to
    # minutes depending on the ERT (README, "Drift").
    drift_reference: dict[str, Any] | None = None
    # The validation window, extended back to this many days when it is shorter: traffic has weekly
    # cycles, and a reference of weekdays only reads every weekend as drift.
    drift_reference_days: float = 14.0
    # Distribution-free CVM thresholds kept across builds (streams.drift.reference); None: none.
    drift_threshold_cache: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trained:
    model: TxmonModel
    spec: FeatureSpec
    metrics: dict[str, float]


def set_seed(seed: int, threads: int | None = None) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    if threads:
        torch.set_num_threads(threads)


def label_availability(frame: pd.DataFrame, label_delay: str | pd.Timedelta) -> pd.Series:
    """When each row's label becomes known: ``label_time`` if the frame has it, never earlier than
    ``event_time + label_delay``."""
    due = pd.to_datetime(frame["event_time"], utc=True) + pd.Timedelta(label_delay)
    if "label_time" in frame.columns:
        lt = pd.to_datetime(frame["label_time"], utc=True)
        due = lt.where(lt.notna() & (lt > due), due)
    return due


def label_arrival(frame: pd.DataFrame, label_delay: str | pd.Timedelta) -> pd.Series:
    """When each row's label arrived: its ``label_time``, as the worker sees it on txmon.labels;
    ``event_time + label_delay`` for rows without one (a file with no label times)."""
    due = pd.to_datetime(frame["event_time"], utc=True) + pd.Timedelta(label_delay)
    if "label_time" not in frame.columns:
        return due
    lt = pd.to_datetime(frame["label_time"], utc=True)
    return lt.where(lt.notna(), due)


def model_inputs(model: TxmonModel, data: Replayed, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
    """The tensors ``model`` takes for rows ``idx``: tokens, plus numeric inputs if it has them."""
    tokens = torch.from_numpy(data.batch(idx))
    if not model.config.numeric_size:
        return (tokens,)
    return tokens, torch.from_numpy(data.numeric(idx))


def predict(model: TxmonModel, data: Replayed, idx: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """Torch-eager scores for rows ``idx`` (training-time evaluation; serving uses ONNX)."""
    model.eval()
    out = np.empty(len(idx), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(idx), batch_size):
            out[s:s + batch_size] = model(*model_inputs(model, data, idx[s:s + batch_size]))[0].numpy()
    return out


def score_and_embed(model: TxmonModel, data: Replayed, idx: np.ndarray,
                    batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Torch-eager (scores, pooled embeddings) for rows ``idx``."""
    model.eval()
    scores, embs = [], []
    with torch.no_grad():
        for s in range(0, len(idx), batch_size):
            score, emb = model(*model_inputs(model, data, idx[s:s + batch_size]))
            scores.append(score.numpy())
            embs.append(emb.numpy())
    return np.concatenate(scores), np.concatenate(embs).astype(np.float32)


def reference_rows(ts: np.ndarray, validation: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Rows of the drift reference, in time order: the whole validation window, or the last
    ``drift_reference_days`` if that is longer. Contiguous, because the tail CUSUM measures how
    high scores cluster over hours (:mod:`streams.drift.cusum`); the block detectors draw their
    reference blocks from it (:func:`streams.drift.blocks.block_starts`)."""
    if not len(ts):
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(ts, kind="stable")
    start = ts.max() - config.drift_reference_days * 86_400
    if len(validation):
        start = min(start, ts[validation].min())
    return order[int(np.searchsorted(ts[order], start)):]


def drift_reference(model: TxmonModel, data: Replayed, rows: np.ndarray, records: dict[int, dict],
                    config: TrainConfig, version: str,
                    labels: np.ndarray | None = None) -> tuple[Any, dict[str, Any]]:
    """The drift reference of the validation ``rows`` (scored here, thresholds simulated), and
    what building it cost. ``labels`` (per row of ``rows``, NaN when not known) calibrate ADWIN."""
    from streams.drift import DriftConfig, shipped

    drift = DriftConfig(**(config.drift_reference or {}))
    start = time.perf_counter()
    scores, embeddings = score_and_embed(model, data, rows)
    ts = data.ts[rows]
    source = (f"validation window of {version} (at least {config.drift_reference_days:g} days): "
              f"{len(rows):,} events, "
              f"{pd.Timestamp(ts.min(), unit='s')} to {pd.Timestamp(ts.max(), unit='s')}")
    cache = Path(config.drift_threshold_cache) if config.drift_threshold_cache else None
    reference = shipped.build(embeddings, scores, [records[int(i)] for i in rows], drift, source,
                              threshold_cache=cache, labels=labels)
    cost = {"drift_reference_events": len(rows),
            "drift_reference_seconds": round(time.perf_counter() - start, 1),
            "drift_reference_bootstraps": dict(reference.n_bootstraps),
            "drift_reference_ert_events": drift.total_ert_events}
    return reference, cost


def numeric_scaling(data: Replayed, idx: np.ndarray, max_rows: int = 200_000,
                    seed: int = 0) -> tuple[list[float], list[float]]:
    """Mean and standard deviation (floored) of the numeric inputs over (a sample of) rows ``idx``."""
    if len(idx) > max_rows:
        idx = np.random.default_rng(seed).choice(idx, max_rows, replace=False)
    x = data.numeric(np.sort(idx)).astype(np.float64) if len(idx) else np.zeros((1, len(NUMERIC)))
    return x.mean(0).round(6).tolist(), np.maximum(x.std(0), 1e-3).round(6).tolist()


def fit_classifier(model: TxmonModel, data: Replayed, train_idx: np.ndarray, y_train: np.ndarray,
                   val_idx: np.ndarray, y_val: np.ndarray, config: FinetuneConfig,
                   show_progress: bool = True) -> dict[str, float]:
    """Fine-tune ``model`` in place; keeps the weights of the epoch with the best validation AP."""
    rng = np.random.default_rng(config.seed)
    pos = train_idx[y_train > 0.5]
    neg = train_idx[y_train <= 0.5]
    if len(pos) == 0:
        raise ValueError("no positive labels in the training window: nothing to fine-tune on")
    repeats = max(int(config.positive_repeats), 1)
    n_neg = min(len(neg), config.negatives_per_positive * len(pos) * repeats, config.max_negatives)
    rate = n_neg / max(len(neg), 1)
    if len(val_idx) > config.max_val_rows:
        keep = rng.choice(len(val_idx), config.max_val_rows, replace=False)
        val_idx, y_val = val_idx[keep], y_val[keep]
    model.config.logit_offset = 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    best, best_state, best_epoch, stale, smooth = -math.inf, None, 0, 0, math.nan
    history = []
    for epoch in range(config.epochs):
        idx = np.concatenate([np.tile(pos, repeats), rng.choice(neg, n_neg, replace=False)])
        y = np.concatenate([np.ones(len(pos) * repeats), np.zeros(n_neg)]).astype(np.float32)
        perm = rng.permutation(len(idx))
        idx, y = idx[perm], y[perm]
        model.train()
        steps = range(0, len(idx), config.batch_size)
        with progress_bar(f"fine-tune epoch {epoch + 1}/{config.epochs}", len(steps), show_progress) as adv:
            for s in steps:
                logit, _ = model.logits(*model_inputs(model, data, idx[s:s + config.batch_size]))
                loss = F.binary_cross_entropy_with_logits(logit, torch.from_numpy(y[s:s + config.batch_size]))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                adv(1)
        ap = average_precision(y_val, predict(model, data, val_idx)) if len(val_idx) else math.nan
        history.append(ap)
        # AP over the few positives of a validation window jumps from epoch to epoch; a smoothed
        # value keeps one lucky early epoch from ending training (and from being kept).
        smooth = ap if math.isnan(smooth) else config.smoothing * ap + (1 - config.smoothing) * smooth
        if math.isnan(smooth) or smooth > best:  # nan (no validation) keeps the latest
            best, best_state, best_epoch, stale = smooth, copy.deepcopy(model.state_dict()), epoch + 1, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    # Scores back on the population's scale: negatives were kept at ``rate``, positives ``repeats``x.
    model.config.logit_offset = float(math.log(rate / repeats)) if rate > 0 else 0.0
    model.eval()
    return {"val_average_precision": float(history[best_epoch - 1]) if best_epoch else math.nan,
            "val_average_precision_smoothed": float(best), "best_epoch": best_epoch,
            "epochs_run": len(history), "negative_sampling_rate": rate, "positive_repeats": repeats,
            "train_positives": len(pos), "train_rows": len(train_idx)}


def time_split(ts: np.ndarray, idx: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split rows ``idx`` by time: the latest ``val_fraction`` of them validate."""
    order = idx[np.argsort(ts[idx], kind="stable")]
    cut = int(len(order) * (1 - val_fraction))
    return order[:cut], order[cut:]


def train(data: Replayed, spec: FeatureSpec, train_idx: np.ndarray, y: np.ndarray,
          config: TrainConfig, base: TxmonModel | None = None) -> Trained:
    """Pre-train (unless starting from ``base``) and fine-tune on rows ``train_idx`` of ``data``;
    ``y`` holds the labels known at training time for every row of ``data``."""
    set_seed(config.finetune.seed, config.threads)
    start = time.perf_counter()
    metrics: dict[str, float] = {}
    if base is None:
        model = TxmonModel(TxmonConfig(
            vocab_sizes=spec.vocab_sizes, max_len=config.max_len, hidden_size=config.hidden_size,
            num_layers=config.num_layers, num_heads=config.num_heads,
            intermediate_size=config.intermediate_size,
            numeric_size=len(NUMERIC) if config.numeric else 0))
        if config.numeric:
            model.set_numeric_scaling(*numeric_scaling(data, train_idx))
        if config.pretrain.epochs > 0:
            metrics |= pretrain(model, data, train_idx, config.pretrain, config.show_progress)
    else:
        model = base
    fit_idx, val_idx = time_split(data.ts, train_idx, config.finetune.val_fraction)
    fc = config.finetune if base is None else replace(
        config.finetune, learning_rate=config.finetune.champion_learning_rate)
    metrics |= fit_classifier(model, data, fit_idx, y[fit_idx], val_idx, y[val_idx], fc,
                              config.show_progress)
    metrics["train_seconds"] = round(time.perf_counter() - start, 1)
    return Trained(model=model, spec=spec, metrics=metrics)


def known_labels(frame: pd.DataFrame, config: TrainConfig, label_column: str = "label",
                 cutoff: pd.Timestamp | None = None) -> tuple[pd.Series, pd.Series, np.ndarray, np.ndarray]:
    """``(outcome, arrival, y, usable)`` with the labels that arrived by ``cutoff`` (default: all).

    A transaction whose label arrived is usable with that label. One without a label counts as
    legitimate only once it is ``label_maturity`` older than the newest transaction (chargebacks and
    case outcomes have had time to arrive); a younger one is left out of fitting and validation,
    because much of the newest fraud is not labelled yet and would be learnt as legitimate. Every row
    still serves as history and context for the others. Age is measured on the data's own clock,
    so a replayed or time-compressed stream is judged by its own time.
    """
    outcome = label_outcome(frame[label_column]) if label_column in frame.columns else \
        pd.Series(np.nan, index=frame.index)
    arrival = label_arrival(frame, config.label_delay)
    event_time = pd.to_datetime(frame["event_time"], utc=True)
    known = outcome.notna() & (arrival <= cutoff if cutoff is not None else True)
    mature = event_time + pd.Timedelta(config.label_maturity) <= event_time.max()
    y = np.where(known & (outcome > 0.5), 1.0, 0.0).astype(np.float32)
    return outcome, arrival.where(known), y, (known | mature).to_numpy()


def build_champion(frame: pd.DataFrame, out_dir: Path, version: str, config: TrainConfig | None = None,
                   label_column: str = "label", signer: Any = None) -> dict[str, Any]:
    """Fit vocabularies, pre-train, fine-tune on every label in ``frame``, export an artifact."""
    return finetune(frame, None, out_dir, version, config, label_column=label_column, signer=signer)


def finetune(frame: pd.DataFrame, base_artifact: Path | None, out_dir: Path, version: str,
             config: TrainConfig | None = None, label_column: str = "label",
             signer: Any = None, labels_known_at: pd.Timestamp | None = None) -> dict[str, Any]:
    """Fine-tune from ``base_artifact`` (its vocabularies and weights; None = pre-train a new base)
    on the labelled ``frame`` and export a signed artifact to ``out_dir``. Returns the metrics
    (also in ``metrics.json`` of the artifact) with ``artifact_sha256``."""
    from models.export import export_artifact, load_artifact_model

    config = config or TrainConfig()
    if base_artifact is not None:
        base, spec = load_artifact_model(Path(base_artifact))
        config.max_len = base.config.max_len
    else:
        base, spec = None, fit_spec(frame, config.min_count)
    outcome, available, y, usable = known_labels(frame, config, label_column, labels_known_at)
    rows = np.flatnonzero(usable)
    # The validation window is a split by time, known before the replay: only the feature records
    # of the drift reference's rows are kept.
    ts = _seconds(frame["event_time"])
    _, holdout = time_split(ts, rows, config.finetune.val_fraction)
    ref_rows = reference_rows(ts, holdout, config) if config.drift_reference is not None else None
    records: dict[int, dict] = {}
    keep = set() if ref_rows is None else set(ref_rows.tolist())

    def on_record(i: int, rec: dict) -> None:
        if i in keep:
            records[i] = rec

    data = replay(frame, spec, config.max_len, outcome, available,
                  on_record=on_record if keep else None)
    trained = train(data, spec, rows, y, config, base)
    metrics = dict(trained.metrics) | {"base": str(base_artifact) if base_artifact else "pretrained",
                                       "rows": len(frame), "rows_with_known_outcome": len(rows)}
    reference = None
    if ref_rows is not None:
        # Labels known by training time: the validation losses ADWIN's delta is calibrated on.
        known = outcome.where(available.notna()).to_numpy(dtype=np.float64)
        reference, cost = drift_reference(trained.model, data, ref_rows, records, config, version,
                                          labels=known[ref_rows])
        metrics |= cost
    manifest = export_artifact(trained.model, spec, Path(out_dir), version, metrics=metrics,
                               sample_tokens=data.inputs(holdout[:2048]), eval_labels=y[holdout[:2048]],
                               signer=signer, quantize=config.quantize,
                               training={"config": config.to_dict()}, drift_reference=reference)
    return metrics | {"artifact_sha256": manifest.artifact_sha256, "version": version}
