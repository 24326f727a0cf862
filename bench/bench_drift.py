"""Drift benchmark: detection delay and false alarms on river's synthetic concept-drift streams,
txmon's block detectors side by side with river's ADWIN and PageHinkley on the same score stream;
plus the per-event cost of ``DriftMonitor.observe_batch``. Writes bench/results/drift.json.

    .venv/bin/python bench/bench_drift.py [--ert-events 5000000] [--block-events 1000]
        [--stationary 500000] [--scenarios stationary,...] [--out bench/results/drift.json]

Streams: river.datasets.synth.Agrawal (9 loan-applicant attributes, a label function), wrapped in
ConceptDriftStream with a known drift position. A fixed logistic model scores each event; its
"embedding" is a fixed random tanh projection of the standardised attributes (d=64). Labels reach
the performance detector ``label_delay`` events after the transaction.

Thresholds: the CVM ones are distribution-free and cached (``--threshold-cache``, default
``$TXMON_HOME/drift/thresholds``); ``reference_build_s`` says whether the cache was cold.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch
from river import drift as rdrift
from river.datasets import synth
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import command_line, machine
from streams.drift import DriftConfig, DriftMonitor, DriftReference
from txmon.settings import default_home

NUMERIC = ("salary", "commission", "age", "hvalue", "loan")
RATE_PER_S = 100.0  # benchmark traffic rate (transactions per second)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def take(stream, n: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.empty((n, len(NUMERIC) + 4)), np.empty(n, dtype=bool)
    for i, (x, y) in enumerate(stream.take(n)):
        xs[i] = [x[k] for k in NUMERIC] + [x["elevel"], x["car"], x["zipcode"], x["hyears"]]
        ys[i] = bool(y)
    return xs, ys


class Model:
    """The stand-in champion: logistic regression, and a tanh projection as its embedding."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-9
        self.clf = LogisticRegression(max_iter=500).fit(self._z(x), y)
        self.w = np.random.default_rng(0).normal(size=(x.shape[1], 64)) / np.sqrt(x.shape[1])

    def _z(self, x):
        return (x - self.mu) / self.sd

    def __call__(self, x: np.ndarray):
        z = self._z(x)
        scores = self.clf.predict_proba(z)[:, 1]
        emb = np.tanh(z @ self.w).astype(np.float32)
        feats = {"log_salary": np.log1p(x[:, 0]), "log_commission": np.log1p(x[:, 1]),
                 "age": x[:, 2], "log_loan": np.log1p(x[:, 4])}
        return emb, feats, scores


def run(monitor: DriftMonitor, model: Model, x: np.ndarray, y: np.ndarray, threshold: float,
        label_delay: int, batch: int = 500) -> dict:
    """Feed a stream; returns the event index of every detection per detector, and timings."""
    hits: dict[str, list[int]] = {}
    adwin, ph = rdrift.ADWIN(), rdrift.PageHinkley()
    spent = 0.0
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        emb, feats, scores = model(xb)
        alerted = scores > threshold
        times = T0 + np.arange(start, start + len(xb)) * timedelta(seconds=1 / RATE_PER_S)
        t = time.perf_counter()
        out = monitor.observe_batch(emb, feats, {"alerted": alerted}, scores, times)
        spent += time.perf_counter() - t
        for d in out:
            hits.setdefault(d.detector, []).append(start + len(xb))
        lo = start - label_delay  # labels for events that happened label_delay events ago
        if lo >= 0:
            _, _, s_lab = model(x[lo:lo + batch])
            for s, pos in zip(s_lab, y[lo:lo + batch], strict=True):
                if monitor.observe_outcome(float(s), bool(pos), bool(s > threshold), label_time=T0):
                    hits.setdefault("adwin.loss", []).append(start + len(xb))
        for i, s in enumerate(scores):
            adwin.update(float(s))
            ph.update(float(s))
            if adwin.drift_detected:
                hits.setdefault("river.adwin(score)", []).append(start + i)
            if ph.drift_detected:
                hits.setdefault("river.pagehinkley(score)", []).append(start + i)
    return {"hits": hits, "observe_batch_us_per_event": 1e6 * spent / len(x)}


def summarise(hits: dict[str, list[int]], position: int | None, n: int) -> dict:
    rows = {}
    for det, idx in sorted(hits.items()):
        before = [i for i in idx if position is None or i < position]
        after = [i for i in idx if position is not None and i >= position]
        stationary = position if position is not None else n
        delay = after[0] - position if after else None
        rows[det] = {"false_alarms": len(before),
                     "false_alarms_per_100k": round(1e5 * len(before) / stationary, 3),
                     "delay_events": delay,
                     "delay_minutes": None if delay is None else round(delay / RATE_PER_S / 60, 2)}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ert-events", type=float, default=DriftConfig().total_ert_events)
    ap.add_argument("--block-events", type=int, default=DriftConfig().block_events)
    ap.add_argument("--stationary", type=int, default=500_000)
    ap.add_argument("--label-delay", type=int, default=2_000)
    ap.add_argument("--scenarios", default="concept_agrawal_f0_to_f2,covariate_agrawal_perturbed,"
                                           "stationary")
    ap.add_argument("--threshold-cache", type=Path, default=default_home() / "drift" / "thresholds")
    ap.add_argument("--out", type=Path, default=Path("bench/results/drift.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = DriftConfig(ert_events=args.ert_events, block_events=args.block_events,
                         checkpoint_every_blocks=0)
    cached = len(list(args.threshold_cache.glob("cvm-*.npy"))) if args.threshold_cache.is_dir() else 0

    x_train, y_train = take(synth.Agrawal(classification_function=0, seed=1), 20_000)
    model = Model(x_train, y_train)
    # As many validation events as the reference's non-overlapping blocks need.
    x_val, y_val = take(synth.Agrawal(classification_function=0, seed=2),
                        config.reference_blocks * config.block_events)
    emb, feats, scores = model(x_val)
    threshold = float(np.quantile(scores, 0.95))
    t = time.perf_counter()
    reference = DriftReference.build(emb, feats, {"alerted": scores > threshold}, scores, config,
                                     progress=print, source="agrawal f0 validation window",
                                     threshold_cache=args.threshold_cache,
                                     labels=y_val.astype(np.float64))  # ADWIN's calibration
    build_s = time.perf_counter() - t
    ref_dir = reference.save(Path(tempfile.mkdtemp()) / "reference")
    t = time.perf_counter()
    DriftReference.load(ref_dir, config).detectors(config)
    load_s = time.perf_counter() - t

    scenarios = {
        # P(y|x) changes, inputs do not: only the loss on delayed labels can see it.
        "concept_agrawal_f0_to_f2": (synth.ConceptDriftStream(
            synth.Agrawal(0, seed=3), synth.Agrawal(2, seed=4), position=100_000, width=1_000, seed=5),
            100_000, 200_000),
        # Inputs are perturbed (10% noise on every attribute) and the label function changes.
        "covariate_agrawal_perturbed": (synth.ConceptDriftStream(
            synth.Agrawal(0, seed=6), synth.Agrawal(1, seed=7, perturbation=0.1), position=100_000,
            width=1_000, seed=8), 100_000, 150_000),
        "stationary": (synth.Agrawal(0, seed=9), None, args.stationary),
    }
    results = {}
    for name, (stream, position, n) in scenarios.items():
        if name not in args.scenarios.split(","):
            continue
        print(f"scenario {name}: {n:,} events")
        xs, ys = take(stream, n)
        # rearm_blocks=0: every detection is counted (the worker mutes a group after one).
        m = DriftMonitor(reference, config, Path(tempfile.mkdtemp()), "bench-v1", rearm_blocks=0)
        r = run(m, model, xs, ys, threshold, args.label_delay)
        results[name] = {"events": n, "drift_position": position,
                         "detectors": summarise(r["hits"], position, n),
                         "observe_batch_us_per_event": round(r["observe_batch_us_per_event"], 2)}
        print(json.dumps(results[name], indent=1))
    cost = max(r["observe_batch_us_per_event"] for r in results.values())
    out = {"command": command_line(), "machine": machine(),
           "config": json.loads(config.model_dump_json()), "rate_per_s": RATE_PER_S,
           "total_ert_events": config.total_ert_events,
           "expected_false_alarms_in_stationary_run": args.stationary / config.total_ert_events,
           "p_no_false_alarm_in_stationary_run": round(float(np.exp(-args.stationary
                                                                    / config.total_ert_events)), 3),
           "adwin": None if reference.adwin() is None else reference.adwin().__dict__,
           "n_bootstraps": reference.n_bootstraps, "reference_build_s": round(build_s, 1),
           "cvm_threshold_files_cached_before": cached,
           "reference_load_and_detectors_s": round(load_s, 3),
           "observe_batch_us_per_event": cost,
           "cpu_share_of_one_core_at_rate": round(cost * RATE_PER_S / 1e6, 5),
           "label_delay_events": args.label_delay, "scenarios": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
