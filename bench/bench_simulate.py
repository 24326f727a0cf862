"""Benchmark: simulate about 1M transactions and write them to Parquet.

    .venv/bin/python bench/bench_simulate.py [--accounts 17000] [--days 30]

Writes bench/results/simulate.json (rows, seconds to simulate, seconds to write, rows/s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from txmon.sim import SimConfig, simulate
from txmon.sim.output import write


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=17_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = simulate(SimConfig(accounts=args.accounts, days=args.days, seed=args.seed))
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "sim.parquet"
        write(result, out)
        t2 = time.perf_counter()
        size = out.stat().st_size
    rows = len(result.frame)
    res = {"rows": rows, "accounts": args.accounts, "days": args.days,
           "simulate_seconds": round(t1 - t0, 2), "write_seconds": round(t2 - t1, 2),
           "total_seconds": round(t2 - t0, 2), "rows_per_second": round(rows / (t2 - t0)),
           "parquet_bytes": size, "cpus": os.cpu_count(), "python": platform.python_version()}
    path = Path(__file__).parent / "results" / "simulate.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
