"""Benchmark: the worker's memory over a long run — RSS levels off once per-account state is full.

    .venv/bin/python bench/bench_memory.py [--transactions 300000] [--accounts 600]

One ``txmon worker`` subprocess (drift monitor on, its reference pre-built as after a restart;
production-sized untrained ONNX model) drains ``--transactions`` simulated transactions pre-loaded
on a private one-node Kafka; its VmRSS (``/proc/<pid>/status``) is sampled every
``--sample-seconds`` with the number of committed scores at that moment.

What a worker holds per account is bounded: the feature history (``models.features.HISTORY_MAX``
records, seen-counterparty and device sets) and the label-join index (``label_index_size`` items,
none older than ``label_index_days`` of event time, default 120). The default ``--accounts 600``
makes the run span ~230 days of the simulator's ~2.2 transactions per account-day, so the index
reaches its age bound (~260 items per account) around the middle of the run, with the worker's
defaults: the second half should be flat. Writes ``bench/results/memory.json`` (samples included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import command_line, guard_children, machine, private_cluster, write_result
from bench._reliability import (
    Slot,
    Tally,
    code_version,
    log_tail,
    produce,
    rss_mb,
    rss_summary,
    settings_for,
    worker_command,
    workload,
)


def by_progress(samples: list[dict[str, Any]], n: int, parts: int = 10) -> list[dict[str, Any]]:
    """Max RSS in each tenth of the transactions scored: growth per transaction, not per second."""
    out = []
    for i in range(parts):
        lo, hi = n * i // parts, n * (i + 1) // parts
        got = [s["rss_mb"] for s in samples if lo <= s["scored"] < hi and s["rss_mb"] is not None]
        out.append({"scored_from": lo, "scored_to": hi,
                    "max_rss_mb": round(max(got), 1) if got else None})
    return out


async def drain(settings: Any, slot: Slot, n: int, every: float, timeout: float) -> dict[str, Any]:
    tally = Tally(settings, dlq=False)
    await tally.start()
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    slot.start()
    last = 0.0
    try:
        while tally.scored < n:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{tally.scored} of {n} scored in {timeout:.0f} s: {log_tail(slot.log)}")
            if slot.proc is not None and slot.proc.poll() is not None:
                raise RuntimeError(f"the worker exited ({slot.proc.returncode}): {log_tail(slot.log)}")
            await tally.poll()
            if time.monotonic() - last >= every:
                last = time.monotonic()
                samples.append({"seconds": round(last - t0, 1), "scored": tally.scored,
                                "rss_mb": rss_mb(slot.pid)})
        seconds = time.monotonic() - t0
        samples.append({"seconds": round(time.monotonic() - t0, 1), "scored": tally.scored,
                        "rss_mb": rss_mb(slot.pid)})
        slot.stop()
        await tally.to_end()
    finally:
        await tally.stop()
    return {"seconds": round(seconds, 1), "tally": tally, "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transactions", type=int, default=300_000)
    ap.add_argument("--accounts", type=int, default=600)
    ap.add_argument("--sample-seconds", type=float, default=2.0)
    ap.add_argument("--drift-warmup", type=int, default=20_000, help="the worker's default")
    ap.add_argument("--worker-arg", action="append", default=[],
                    help="extra argument for `txmon worker` (repeatable), e.g. --worker-arg=--no-drift")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra worker environment, e.g. TXMON_WORKER__LABEL_INDEX_DAYS=0")
    ap.add_argument("--reference-cache", type=Path,
                    default=Path.home() / ".cache" / "txmon" / "bench-drift-references")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--logs", type=Path, default=Path("/tmp/txmon-bench-memory"))
    ap.add_argument("--out", default="memory")
    args = ap.parse_args()

    import logging

    from bench.bench_worker import drift_reference
    from txmon.broker.topics import ensure_topics

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    guard_children()
    args.logs.mkdir(parents=True, exist_ok=True)
    before = machine()
    t0 = time.monotonic()
    with private_cluster() as (cluster, work):
        w = workload(args.transactions, work, accounts=args.accounts)
        settings = settings_for(cluster.bootstrap_servers, "memory.", work / "home")
        drift = "--no-drift" not in args.worker_arg
        reference: dict[str, Any] = {"pre_built": False}
        if drift:
            refs, reference = drift_reference(w.artifact, w.items, w.threshold, args.drift_warmup,
                                              args.reference_cache)
            reference["pre_built"] = refs is not None
            if refs is not None:  # as a restarted worker finds its champion's reference
                shutil.copytree(refs, Path(settings.home) / "drift" / "references", dirs_exist_ok=True)
        print(f"{len(w.items)} transactions of {args.accounts} accounts; drift reference {reference}",
              file=sys.stderr)
        ensure_topics(settings)
        acks = produce(settings, w.items)
        if sum(m is not None for m in acks) != len(acks):
            raise RuntimeError("the broker did not acknowledge every transaction")
        cmd, env = worker_command(settings, w, "mem", drift_warmup=args.drift_warmup,
                                  extra=args.worker_arg)
        env |= dict(e.split("=", 1) for e in args.worker_env)
        slot = Slot("mem", (cmd, env), args.logs / "worker.log")
        run = asyncio.run(drain(settings, slot, len(w.items), args.sample_seconds, args.timeout))
    tally, samples = run["tally"], run["samples"]
    account = tally.account([p.tx_id for p in w.items])
    # From the first committed score: before it the process is still importing and restoring.
    series = [(s["seconds"], s["rss_mb"]) for s in samples if s["rss_mb"] is not None and s["scored"]]
    deciles = by_progress(samples, len(w.items))
    half = [d["max_rss_mb"] for d in deciles[5:] if d["max_rss_mb"] is not None]
    report = {
        "command": command_line(),
        "what": "one txmon worker draining pre-loaded simulated transactions; VmRSS sampled",
        "parameters": {"transactions": len(w.items), "accounts": args.accounts,
                       "days_simulated": round(_days(w.items), 1),
                       "drift": drift, "drift_warmup": args.drift_warmup,
                       "drift_reference": reference, "worker_args": args.worker_arg,
                       "worker_env": args.worker_env, "sample_seconds": args.sample_seconds,
                       "partitions": 6, "model": "untrained, production-sized (TrainConfig)"},
        "code": code_version(),
        **account,
        "seconds": run["seconds"], "throughput_per_s": round(len(w.items) / run["seconds"]),
        "rss": rss_summary(series),
        "rss_by_progress": deciles,
        "second_half_rss_range_mb": round(max(half) - min(half), 1) if half else None,
        "samples": samples,
        "notes": ["rss_by_progress: max RSS while each tenth of the transactions was being scored.",
                  "Every process shares a 2-core machine; see load_average."],
        "bench_seconds": round(time.monotonic() - t0, 1),
        "machine_before": before, "machine_after": machine(),
    }
    path = write_result(args.out, report)
    print(json.dumps({k: report[k] for k in ("lost", "duplicated", "rss", "second_half_rss_range_mb")}
                     | {"results": path.as_posix()}))


def _days(items: list[Any]) -> float:
    """Event-time span of the run in days."""
    from txmon.contracts import Transaction, decode

    first, last = decode(Transaction, items[0].value), decode(Transaction, items[-1].value)
    return (last.event_time - first.event_time).total_seconds() / 86400


if __name__ == "__main__":
    main()
