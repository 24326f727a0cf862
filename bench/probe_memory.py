"""Probe: which lines of the scoring state hold the heap that grows per transaction (tracemalloc).

    .venv/bin/python bench/probe_memory.py [--transactions 40000] [--accounts 600]

No Kafka: ``streams.scoring.ScoringCore`` with a one-layer model scores simulated transactions in
batches of 256, as the worker's loop does; heap snapshots are taken half way and at the end, and
the growth between them is reported per transaction and per allocating line. Slow (tracemalloc):
minutes for 40,000 transactions. With ``--root`` another checkout's ``streams``/``models`` are
measured (e.g. a commit before a fix, extracted with ``git archive``). Writes
``bench/results/memory_probe[_<label>].json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transactions", type=int, default=40_000)
    ap.add_argument("--accounts", type=int, default=600)
    ap.add_argument("--root", type=Path, default=HERE, help="the checkout whose code is measured")
    ap.add_argument("--label", default="")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    sys.path.insert(0, str(args.root.resolve()))  # the measured code (and its bench helpers)

    import models.features as features
    from bench._common import command_line, machine
    from bench._reliability import simulated_payloads, tiny_artifact
    from streams.config import WorkerConfig
    from streams.hotswap import load_scorer
    from streams.policy import AlertPolicy
    from streams.scoring import Record, ScoringCore, Topics
    from streams.tables import AccountTable, CounterpartyRisk
    from txmon.settings import Settings

    before = machine()
    n = args.transactions
    _, items = simulated_payloads(n, accounts=args.accounts)
    with tempfile.TemporaryDirectory() as d:
        frame, _ = simulated_payloads(min(n, 5000), accounts=args.accounts)
        model = load_scorer(tiny_artifact(frame, Path(d) / "a"), None, Settings(home=Path(d)), 1)
        cfg = WorkerConfig(instance_id="probe", drift=False)
        topics = Topics.from_settings(Settings(home=Path(d)), cfg.group_id)
        accounts = AccountTable(features.new_account_state, AlertPolicy.new_state)
        core = ScoringCore(topics, cfg, features, accounts,
                           CounterpartyRisk(features.new_counterparty_risk,
                                            features.update_counterparty_risk),
                           AlertPolicy(cfg.policy, 6))
        tracemalloc.start(1)
        snaps: list[tuple[int, tracemalloc.Snapshot]] = []
        batches = range(0, n, 256)
        marks = {batches[len(batches) // 2], batches[-1]}
        t0 = time.monotonic()
        for i in batches:
            part = items[i:i + 256]
            core.process([Record(topics.transactions, hash(p.key) % 6, i + j, p.key, p.value, 0)
                          for j, p in enumerate(part)], model)
            if i in marks:
                gc.collect()
                snaps.append((i + len(part), tracemalloc.take_snapshot()))
        seconds = time.monotonic() - t0
    (a, first), (b, last) = snaps
    span = b - a
    growth = sum(s.size for s in last.statistics("filename")) - sum(
        s.size for s in first.statistics("filename"))
    top = [{"bytes_per_tx": round(st.size_diff / span, 1), "count_diff": st.count_diff,
            "line": str(st.traceback[0]) if st.traceback else ""}
           for st in last.compare_to(first, "lineno")[:args.top]]
    report = {"command": command_line(), "root": str(args.root),
              "what": "tracemalloc heap growth of ScoringCore state between half way and the end",
              "transactions": n, "accounts": args.accounts, "window": [a, b],
              "heap_growth_bytes_per_tx": round(growth / span, 1), "top_lines": top,
              "seconds": round(seconds, 1), "machine_before": before, "machine_after": machine()}
    # Into this checkout's results, whichever checkout was measured.
    path = HERE / "bench" / "results" / ("memory_probe" + (f"_{args.label}" if args.label else "") + ".json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"heap_growth_bytes_per_tx": report["heap_growth_bytes_per_tx"],
                      "top": top[:5], "results": path.as_posix()}, indent=1))


if __name__ == "__main__":
    main()
