"""Probe: are consecutive blocks of a binary drift signal independent on the simulator?

    .venv/bin/python bench/probe_drift_onset.py [--accounts 2000] [--days 98] [--from-day 42]
        [--seed 7] [--out drift_sim_onset_probe]

The CVM block detectors assume independent blocks. One stationary world is replayed through the
streaming feature code; for each candidate signal, from ``--from-day`` on (mature accounts), the
variance of means of 5, 10 and 25 consecutive blocks of 1,000 is divided by what independent
blocks would give (``bench_drift_sim.block_dependence``: about 1 when independent; hour-of-week
cycle removed), raw and with a linear trend removed too (account maturity is a trend, not a
dependence). Candidates: ``foreign`` (the account is abroad: a state lasting a trip),
``new_country`` (``nctry``, what the monitor watches), a country other than the previous row's
(the simpler onset, computed here only), ``cross_border`` and ``new_counterparty``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models.dataset as dataset
from bench._common import command_line, machine, write_result
from bench.bench_drift_sim import START, block_dependence
from models.features import Observation, observe
from txmon.sim import SimConfig, simulate

SIGNALS = {"foreign": "foreign", "new_country": "nctry", "country_not_previous_row": "_prev",
           "cross_border": "cp_foreign", "new_counterparty": "ncp"}


def _observe_with_previous(state: dict[str, Any], o: Observation) -> dict[str, Any]:
    rec = observe(state, o)
    last = state["h"][-1]["ctry"] if state["h"] else None
    rec["_prev"] = o.ctry is not None and last is not None and o.ctry != last
    return rec


def _detrended(values: np.ndarray) -> np.ndarray:
    x = np.arange(len(values), dtype=np.float64)
    slope, intercept = np.polyfit(x, values, 1)
    return values - (slope * x + intercept) + values.mean()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--days", type=int, default=98)
    ap.add_argument("--from-day", type=int, default=42)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="drift_sim_onset_probe")
    args = ap.parse_args()
    frame = simulate(SimConfig(accounts=args.accounts, days=args.days, seed=args.seed, start=START)).frame
    event_time = pd.to_datetime(frame["event_time"], utc=True)
    keep = (event_time >= pd.Timestamp(START + timedelta(days=args.from_day))).to_numpy()
    records: dict[int, dict] = {}
    dataset.observe = _observe_with_previous  # replay calls it by this name
    dataset.replay(frame, dataset.fit_spec(frame.iloc[:20_000]), 2,
                   on_record=lambda i, r: records.__setitem__(i, r) if keep[i] else None)
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((frame["tx_id"].to_numpy()[rows], event_time.to_numpy()[rows]))]
    times = event_time.dt.tz_convert(None).to_numpy()[rows]
    signals = {name: np.asarray([bool(records[int(i)].get(key)) for i in rows], dtype=np.float64)
               for name, key in SIGNALS.items()}
    out: dict[str, Any] = {"command": command_line(), "machine": machine(), "events": len(rows),
                           "rates": {k: round(float(v.mean()), 4) for k, v in signals.items()}}
    for span in (5, 10, 25):
        out[f"blocks_{span}"] = block_dependence(signals, times, 1000, span)
        out[f"blocks_{span}_detrended"] = block_dependence(
            {k: _detrended(v) for k, v in signals.items()}, times, 1000, span)
    print(out)
    print(f"wrote {write_result(args.out, out)}")


if __name__ == "__main__":
    main()
