"""Backtest benchmark on the simulator: transformer vs LightGBM vs rules, full-field and five-field logs.

    .venv/bin/python bench/bench_backtest.py [--accounts 2000 --days 60] -> bench/results/backtest.json

Train on the first 2/3 of the days, test on the rest; labels known only after their (simulated)
arrival time, never before ``--label-delay``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd

from models.backtest import BacktestConfig, run
from models.finetune import FinetuneConfig, TrainConfig
from models.pretrain import PretrainConfig
from txmon.frames import REQUIRED


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--label-delay", default="7D")
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: config's)")
    ap.add_argument("--pretrain-epochs", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=None, help="sequence length K (default: config's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results/backtest.json")
    ap.add_argument("--skip-five", action="store_true")
    args = ap.parse_args()

    from txmon.sim import SimConfig, simulate

    t = time.perf_counter()
    frame = simulate(SimConfig(accounts=args.accounts, days=args.days, seed=args.seed)).frame
    sim_seconds = time.perf_counter() - t
    start = frame["event_time"].min().normalize()
    split = start + pd.Timedelta(days=args.days * 2 // 3)
    results = {"command": "bench/bench_backtest.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (False, None)),
        "simulator": {"accounts": args.accounts, "days": args.days, "seed": args.seed,
                      "rows": len(frame), "seconds": round(sim_seconds, 1)},
        "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    variants = {"all_fields": frame}
    if not args.skip_five:
        variants["five_fields"] = frame[[*REQUIRED, "label", "label_time", "scenario"]]
    for name, f in variants.items():
        tc = TrainConfig(threads=args.threads, pretrain=PretrainConfig(epochs=args.pretrain_epochs),
                         finetune=FinetuneConfig())
        tc.max_len = args.max_len or tc.max_len
        tc.finetune.epochs = args.epochs or tc.finetune.epochs
        cfg = BacktestConfig(
            train_from=start, train_until=split - pd.Timedelta(seconds=1), test_from=split,
            label_delay=args.label_delay, train=tc)
        _, report = run(f, cfg)
        results[name] = report
        m = report["models"]
        print(name, {k: round(v["average_precision"], 4) for k, v in m.items()}, report.get("aml"),
              report["timings"])
    results["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
