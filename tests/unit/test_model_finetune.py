"""Fine-tuning: positives repeated and negatives sampled per epoch; the model learns and the prior shift
of that sampling is undone in the exported logit."""

from __future__ import annotations

import math

import numpy as np
import torch

from models.dataset import fit_spec, label_outcome, replay
from models.finetune import FinetuneConfig, TrainConfig, predict, train
from models.pretrain import PretrainConfig
from models.toy import toy_frame

torch.set_num_threads(1)


def test_positive_repeats_and_negative_sampling_are_undone_in_the_scores() -> None:
    frame = toy_frame(accounts=60, days=12, seed=5, fraud_rate=0.35)
    spec = fit_spec(frame, min_count=1)
    y = label_outcome(frame["label"]).fillna(0.0).to_numpy().astype(np.float32)
    data = replay(frame, spec, 4)
    rows = np.arange(len(frame))
    cfg = TrainConfig(max_len=4, hidden_size=32, num_heads=2, intermediate_size=64, min_count=1,
                      threads=1, show_progress=False, pretrain=PretrainConfig(epochs=0),
                      finetune=FinetuneConfig(epochs=8, batch_size=64, negatives_per_positive=3,
                                              positive_repeats=3,
                                              patience=8, val_fraction=0.0))
    trained = train(data, spec, rows, y, cfg)
    m = trained.metrics
    assert m["positive_repeats"] == 3 and 0 < m["negative_sampling_rate"] < 1
    assert trained.model.config.numeric_size > 0
    # Positives were seen 3x and negatives at ``rate``: the logit moves by log(rate / 3).
    assert math.isclose(trained.model.config.logit_offset, math.log(m["negative_sampling_rate"] / 3))
    s = predict(trained.model, data, rows)
    assert s[y > 0.5].mean() > 10 * s[y <= 0.5].mean()  # the planted fraud pattern is learnt
    # Trained on ~1 positive in 4 rows, the scores still average near the real prevalence.
    assert abs(s.mean() - y.mean()) < 0.5 * y.mean()


def test_unlabelled_recent_transactions_are_left_out_and_labels_count_when_they_arrive() -> None:
    import pandas as pd

    from models.finetune import known_labels

    t0 = pd.Timestamp("2026-03-01", tz="UTC")
    frame = pd.DataFrame({
        "event_time": [t0, t0, t0 + pd.Timedelta(days=9), t0 + pd.Timedelta(days=9),
                       t0 + pd.Timedelta(days=10)],
        "label": ["fraud", None, "fraud", None, "legit"],
        "label_time": [t0 + pd.Timedelta(days=1), pd.NaT, t0 + pd.Timedelta(days=12), pd.NaT,
                       t0 + pd.Timedelta(days=10, hours=2)],
    })
    cfg = TrainConfig(label_maturity="7D")
    _, arrival, y, usable = known_labels(frame, cfg, cutoff=t0 + pd.Timedelta(days=11))
    # old fraud: known; old unlabelled: mature, so legitimate; fraud labelled after the cutoff and a
    # recent unlabelled one: unknown, left out; a label that arrived 2 h after its transaction: known
    # then (not held back by a fixed label delay).
    assert usable.tolist() == [True, True, False, False, True]
    assert y.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert arrival.isna().tolist() == [False, True, True, True, False]
