"""Drift benchmark on the simulator's drift schedule, with the real model and the real feature code.

    .venv/bin/python bench/bench_drift_sim.py [--accounts 2000] [--history-days 63] [--live-days 21]
        [--drift-after-days 7] [--drift-monitor '{"ert_events": 5e6, "block_events": 1000}']
        [--scenarios stationary,new_region_and_fraud,...] [--out bench/results/drift_sim.json]

One simulated bank, one seed: every scenario shares the same history (the simulator's pre-drift
rows do not depend on the schedule), and differs only from ``drift_after_days`` into the live period.
The history is 63 days by default: the simulator starts every account with no history, and an
account's share of new counterparties falls for about seven weeks while its memory of them fills
(0.71 in the first week, 0.32 in the fourth, 0.23 from the eighth on), so the reference window (the
history's last 14 days) must come after that, as a production bank's mature accounts are, or the
live period reads as a trend.
A champion is trained once on the history with the labels known at the live start (the demo's
recipe, ``models.finetune.build_champion``) and ships its drift reference, built from its validation
window (``streams.drift.shipped``). Per scenario, the whole frame is replayed through the streaming
feature code (``models.dataset.replay``: the worker's features, with warm per-account state), the
live rows are scored with the artifact's ONNX graph (``models.scorer.Scorer``), and fed in time order
to ``DriftMonitor`` in micro-batches; labels reach ADWIN when their ``label_time`` has passed. river's
ADWIN and PageHinkley run on the same score stream for comparison.

Per detector and scenario: detected or not, delay from the true drift start in events and in
simulated hours, and false alarms before the drift (in ``stationary``: over the whole live period).
Every detection counts (no muting after one). Before the drift every scenario sees the same traffic
as ``stationary``; a detection after the drift at the same block as one in ``stationary`` is a false
alarm there too and is not credited to the drift (it is in ``detections``).
``block_dependence_before_drift``: per binary signal, how far its consecutive blocks are from
independent (:func:`block_dependence`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import command_line, machine, write_result
from models.artifact import read_manifest
from models.dataset import label_outcome, replay
from models.finetune import TrainConfig, build_champion
from models.pretrain import PretrainConfig
from models.scorer import Scorer
from streams.drift import DriftConfig, DriftMonitor, shipped
from streams.drift.cusum import tradeoff
from txmon.settings import default_home
from txmon.sim import DriftEvent, LabelConfig, SimConfig, simulate

START = datetime(2026, 1, 5, tzinfo=UTC)
TARGET_DELAY_EVENTS = 5_000  # issue 6: a drift that changes the fraud pattern, within 5,000 events


def scenarios(drift_start: datetime) -> dict[str, tuple[DriftEvent, ...]]:
    """The schedule of each scenario; ``changes_fraud`` below says which change the fraud pattern."""
    def ev(**kw: Any) -> DriftEvent:
        return DriftEvent(start=drift_start, **kw)

    return {
        "stationary": (),
        # The demo's drift: a new region, and an account-takeover wave through wallets there.
        "new_region_and_fraud": (
            ev(name="new-region-LT", kind="new_region", country="LT", share=0.2),
            ev(name="ato-wave-in-LT", kind="fraud_pattern", scenario="account_takeover", rate=600,
               country="LT", channel="wallet")),
        "fraud_pattern_ato_wallet": (
            ev(name="ato-wave-via-wallets", kind="fraud_pattern", scenario="account_takeover",
               rate=600, channel="wallet", country="RO"),),
        "new_region_lt": (ev(name="baltic-expansion", kind="new_region", country="LT", share=0.08),),
        "channel_mix_ecommerce": (ev(name="online-shift", kind="channel_mix", channel="ecommerce",
                                     share=0.3),),
        "amount_inflation": (ev(name="price-rise", kind="amount_inflation", factor=1.15),),
    }


CHANGES_FRAUD = {"new_region_and_fraud", "fraud_pattern_ato_wallet"}


def sim_config(args: argparse.Namespace, drift: tuple[DriftEvent, ...]) -> SimConfig:
    labels = LabelConfig(unlabelled_share=0.1, chargeback_days=(0.5, 3.0), legit_days=(0.5, 3.0),
                         aml_days=(2.0, 6.0))  # the demo's: labels within days
    return SimConfig(accounts=args.accounts, days=args.history_days + args.live_days, seed=args.seed,
                     start=START, drift=drift, labels=labels)


def train_champion(frame: pd.DataFrame, live_start: pd.Timestamp, out: Path, drift: dict[str, Any],
                   cache: Path, threads: int) -> dict[str, Any]:
    history = frame[frame["event_time"] < live_start].copy()
    late = history["label_time"].isna() | (history["label_time"] >= live_start)
    history.loc[late, ["label", "label_time"]] = [None, pd.NaT]
    cfg = TrainConfig(show_progress=False, threads=threads, drift_reference=drift,
                      drift_threshold_cache=str(cache))
    cfg.pretrain = PretrainConfig(**{**cfg.pretrain.__dict__, "epochs": 1})
    cfg.finetune.epochs = 3
    t = time.perf_counter()
    metrics = build_champion(history, out, "sim-v1", cfg)
    return {"rows": len(history), "seconds": round(time.perf_counter() - t, 1),
            **{k: metrics.get(k) for k in ("val_average_precision", "drift_reference_events",
                                           "drift_reference_seconds", "drift_reference_bootstraps")}}


def run_scenario(frame: pd.DataFrame, scorer: Scorer, reference: Any, config: DriftConfig,
                 live_start: pd.Timestamp, drift_start: pd.Timestamp | None, batch: int,
                 alert_quantile: float, stationary: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Feed one scenario's live traffic. ``stationary``: the detections (positions) of the same
    run without drift; a detection at the same position there is not credited to the drift."""
    from river import drift as rdrift

    outcome = label_outcome(frame["label"])
    label_time = pd.to_datetime(frame["label_time"], utc=True)
    records: dict[int, dict] = {}
    event_time = pd.to_datetime(frame["event_time"], utc=True)
    live_mask = (event_time >= live_start).to_numpy()
    naive = {"event": event_time.dt.tz_convert(None).to_numpy(),  # datetime64, UTC
             "label": label_time.dt.tz_convert(None).to_numpy()}

    def keep(i: int, rec: dict) -> None:
        if live_mask[i]:
            records[i] = rec

    t = time.perf_counter()
    data = replay(frame, scorer.encoder.spec, int(scorer.encoder.max_len), outcome, label_time,
                  on_record=keep)
    replay_s = time.perf_counter() - t
    live = np.flatnonzero(live_mask)
    live = live[np.lexsort((frame["tx_id"].to_numpy()[live], data.ts[live]))]  # replay's order
    t = time.perf_counter()
    scores, embs = [], []
    for s in range(0, len(live), 2048):
        sc, em = scorer.score(data.inputs(live[s:s + 2048]))
        scores.append(np.clip(sc, 0, 1))
        embs.append(em)
    score, emb = np.concatenate(scores), np.concatenate(embs)
    score_s = time.perf_counter() - t
    times = naive["event"][live]
    threshold = float(np.quantile(score[: min(len(score), 10_000)], alert_quantile))
    # Labels in the order they arrive: (label time, live position).
    lt = naive["label"][live]
    y = outcome.to_numpy()[live]
    arrivals = sorted((lt[k], k) for k in range(len(live)) if not pd.isna(lt[k]) and not np.isnan(y[k]))
    # rearm_blocks=0: every detection is counted (the worker mutes a group for a while after one).
    monitor = DriftMonitor(reference, config, Path(tempfile.mkdtemp()), "sim-v1", rearm_blocks=0)
    adwin, ph = rdrift.ADWIN(), rdrift.PageHinkley()
    hits: dict[str, list[int]] = {}
    events: list[dict[str, Any]] = []  # every detection, for the record
    nxt, spent = 0, 0.0
    onset = (None if drift_start is None
             else int(np.searchsorted(times, np.datetime64(drift_start.tz_convert(None)))))
    # Closest approach of each block detector to its threshold, before and after the onset: how
    # far a detector that stays silent was from firing.
    peak: dict[str, list[float]] = {}
    for s in range(0, len(live), batch):
        e = min(s + batch, len(live))
        rows = live[s:e]
        feats, binary = _columns([records[int(i)] for i in rows], score[s:e] >= threshold)
        t = time.perf_counter()
        for d in monitor.observe_batch(emb[s:e], feats, binary, score[s:e],
                                       pd.DatetimeIndex(times[s:e])):
            hits.setdefault(d.detector, []).append(e)
            events.append(_detection(d, e))
        spent += time.perf_counter() - t
        after = onset is not None and e > onset
        for name, last in monitor._last.items():
            stat, thr = last.get("statistic"), last.get("threshold")
            if stat is not None and thr and np.isfinite(stat) and name != "adwin.loss":
                p = peak.setdefault(name, [0.0, 0.0])
                p[after] = max(p[after], stat / thr)
        now = times[e - 1]
        while nxt < len(arrivals) and arrivals[nxt][0] <= now:
            k = arrivals[nxt][1]
            if monitor.observe_outcome(float(score[k]), bool(y[k] > 0.5), bool(score[k] >= threshold),
                                       pd.Timestamp(arrivals[nxt][0], tz="UTC").to_pydatetime()):
                hits.setdefault("adwin.loss", []).append(e)
                events.append({"detector": "adwin.loss", "position": e})
            nxt += 1
        for k in range(s, e):
            adwin.update(float(score[k]))
            ph.update(float(score[k]))
            if adwin.drift_detected:
                hits.setdefault("river.adwin(score)", []).append(k + 1)
            if ph.drift_detected:
                hits.setdefault("river.pagehinkley(score)", []).append(k + 1)
    detectors = {}
    names = [f"{d['detector']}" for d in monitor.status()]
    for name in sorted(set(names) | set(hits)):
        idx = hits.get(name, [])
        before = [i for i in idx if onset is None or i <= onset]
        also = set((stationary or {}).get(name, []))
        after = [i for i in idx if onset is not None and i > onset and i not in also]
        row: dict[str, Any] = {"false_alarms": len(before)}
        if name in peak:
            row["peak_statistic_over_threshold"] = round(peak[name][0], 3)
            if onset is not None:
                row["peak_statistic_over_threshold_after_onset"] = round(peak[name][1], 3)
        if onset is not None:
            first = after[0] if after else None
            row |= {"detected": first is not None,
                    "delay_events": None if first is None else first - onset,
                    "delay_hours": None if first is None else round(
                        float((times[first - 1] - times[onset]) / np.timedelta64(1, "h")), 1),
                    "within_5000_events": first is not None and first - onset <= TARGET_DELAY_EVENTS}
        detectors[name] = row
    pre = onset if onset is not None else len(live)
    pre_records = [records[int(i)] for i in live[:pre]]
    _, pre_binary = _columns(pre_records, score[:pre] >= threshold)
    pre_binary["foreign (not watched)"] = np.asarray([bool(r.get("foreign")) for r in pre_records])
    return {"live_events": len(live), "events_before_drift": pre,
            "events_after_drift": None if onset is None else len(live) - onset,
            "live_hours": round(float((times[-1] - times[0]) / np.timedelta64(1, "h")), 1),
            "drift_onset_position": onset, "detectors": detectors, "detections": events,
            "block_dependence_before_drift": block_dependence(pre_binary, times[:pre],
                                                              config.block_events),
            "score_drops_not_reported": next((r.get("drops_not_reported") for r in monitor.status()
                                              if r["detector"] == "cvm.score"), None),
            "hits": hits,
            "replay_s": round(replay_s, 1), "score_s": round(score_s, 1),
            "observe_batch_us_per_event": round(1e6 * spent / len(live), 2)}


def block_dependence(binary: dict[str, np.ndarray], times: np.ndarray, block: int,
                     span: int = 10, min_groups: int = 8) -> dict[str, float]:
    """Per binary column: the variance of means of ``span`` consecutive blocks over what
    independent blocks would give (about 1 when they are independent; the hour-of-week cycle,
    estimated on the same events, is removed first, as the monitor's weekly profile does). A
    column that is a lasting state (``foreign``: a trip of days) reads well above 1: the CVM block
    thresholds assume independent blocks and alarm more often than the ERT says on it. A trend
    reads above 1 too. Needs ``min_groups`` means (8: the ratio is known to about ±50%)."""
    how = times.astype("datetime64[h]").astype(np.int64) % 168
    width = block * span
    out = {}
    for name, values in sorted(binary.items()):
        v = np.asarray(values, dtype=np.float64)
        n = len(v) // width * width
        p = float(v.mean()) if len(v) else 0.0
        if n < min_groups * width or not 0 < p < 1:
            continue
        profile = np.bincount(how, v, 168) / np.maximum(np.bincount(how, minlength=168), 1)
        means = (v - profile[how])[:n].reshape(-1, width).mean(axis=1)
        out[name] = round(float(means.var() / (p * (1 - p) / width)), 2)
    return out


def _detection(d: Any, position: int) -> dict[str, Any]:
    top = d.evidence[0] if d.evidence else None
    return {"detector": d.detector, "position": position, "at": d.detected_at.isoformat(),
            "weekday": d.detected_at.strftime("%a"), "statistic": round(d.statistic, 3),
            "threshold": round(d.threshold, 3),
            "top_feature": None if top is None else top.feature,
            "top_reference_mean": None if top is None else top.reference_mean,
            "top_current_mean": None if top is None else top.current_mean}


def _columns(recs: list[dict], alerted: np.ndarray) -> tuple[dict, dict]:
    from streams.drift.columns import record_columns

    return record_columns(recs, alerted=alerted)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--history-days", type=int, default=63)
    ap.add_argument("--live-days", type=int, default=21)
    ap.add_argument("--drift-after-days", type=float, default=7)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=500, help="micro-batch size fed to the monitor")
    ap.add_argument("--alert-quantile", type=float, default=0.99)
    ap.add_argument("--drift-monitor", default="{}", help="DriftConfig arguments (JSON)")
    ap.add_argument("--scenarios", default=",".join(scenarios(START)))
    ap.add_argument("--threshold-cache", type=Path, default=default_home() / "drift" / "thresholds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--artifact", type=Path, default=None,
                    help="reuse a champion an earlier run trained (same simulation arguments)")
    ap.add_argument("--out", default="drift_sim")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    drift_kw = {"checkpoint_every_blocks": 0, **json.loads(args.drift_monitor)}
    config = DriftConfig(**drift_kw)
    live_start = pd.Timestamp(START + timedelta(days=args.history_days))
    drift_start = live_start + pd.Timedelta(days=args.drift_after_days)
    plan = scenarios(drift_start.to_pydatetime())

    work = Path(tempfile.mkdtemp(prefix="bench-drift-sim-"))
    t = time.perf_counter()
    base = simulate(sim_config(args, ())).frame
    sim_s = time.perf_counter() - t
    print(f"simulated {len(base):,} rows in {sim_s:.0f} s", flush=True)
    artifact = args.artifact or work / "sim-v1"
    champion: dict[str, Any] = {"artifact": str(artifact)}
    if args.artifact is None:
        champion |= train_champion(base, live_start, artifact, drift_kw, args.threshold_cache,
                                   args.threads)
    print(json.dumps(champion), flush=True)
    scorer = Scorer.load(artifact, intra_op_threads=1)
    reference = shipped.load(artifact, config, read_manifest(artifact).artifact_sha256)
    assert reference is not None, "the artifact must ship a reference for this drift config"

    results: dict[str, Any] = {}
    names = args.scenarios.split(",")
    if any(plan[n] for n in names) and "stationary" not in names:
        names.insert(0, "stationary")  # the drift scenarios are judged against it
    for name in sorted(names, key=lambda n: n != "stationary"):
        schedule = plan[name]
        frame = base if not schedule else simulate(sim_config(args, schedule)).frame
        print(f"scenario {name}: {len(frame):,} rows", flush=True)
        results[name] = {"schedule": [e.model_dump(mode="json", exclude_none=True) for e in schedule],
                         "changes_fraud_pattern": name in CHANGES_FRAUD,
                         **run_scenario(frame, scorer, reference, config, live_start,
                                        drift_start if schedule else None, args.batch,
                                        args.alert_quantile,
                                        results.get("stationary", {}).get("hits"))}
        print(json.dumps(results[name]["detectors"], indent=1), flush=True)
    out = {"command": command_line(), "machine": machine(), "config": json.loads(config.model_dump_json()),
           "total_ert_events": config.total_ert_events, "accounts": args.accounts,
           "history_days": args.history_days, "live_days": args.live_days,
           "drift_start": drift_start.isoformat(), "reference": reference.source,
           "seasonal_profile": reference.seasonal is not None,
           "tail_cusum": None if reference.tail() is None else {
               "score_threshold": reference.tail()[0], **reference.tail()[1].__dict__,
               "tradeoff": tradeoff(reference.tail()[1])},
           "adwin": None if reference.adwin() is None else reference.adwin().__dict__,
           "champion": champion, "simulate_s": round(sim_s, 1), "scenarios": results}
    print(f"wrote {write_result(args.out, out)}")


if __name__ == "__main__":
    main()
