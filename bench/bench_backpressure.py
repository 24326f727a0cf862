"""Benchmark: back-pressure — publishers at three times the worker's capacity, then quiet: the lag
grows, drains, and nothing is lost, duplicated, or held in memory.

    .venv/bin/python bench/bench_backpressure.py [--seconds 120] [--overload 3]

On a private Kafka 4.1 broker, one ``txmon worker`` (its defaults: drift on; untrained
production-sized model):

1. **capacity** — the worker drains ``--capacity-sample`` pre-loaded transactions; capacity = committed
   scores per second between 20% and 90% of them.
2. **overload** — transactions published at ``--overload`` × capacity for ``--seconds``, then nothing;
   the run ends when the consumer group has no lag left.

Every two seconds: the group's lag on the transactions topic (end offsets minus committed offsets)
and the worker's RSS. Writes ``bench/results/backpressure.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import command_line, guard_children, machine, private_cluster, write_result
from bench._reliability import (
    LagProbe,
    Slot,
    Tally,
    code_version,
    group_churn,
    input_records,
    produce,
    rss_mb,
    rss_summary,
    settings_for,
    simulated_payloads,
    supervise,
    worker_command,
    workload,
)


async def run(cluster: Any, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from txmon.broker.topics import ensure_topics

    w = workload(args.capacity_sample, work, seed=args.seed)
    s = settings_for(cluster.bootstrap_servers, "bp.", work / "bp-home")
    await asyncio.to_thread(ensure_topics, s)
    args.logs.mkdir(parents=True, exist_ok=True)
    slot = Slot("w1", worker_command(s, w, "w1", drift_warmup=args.drift_warmup,
                                     extra=["--log-level", "INFO", *args.worker_arg]),
                args.logs / "backpressure-w1.log")
    tally = Tally(s, dlq=False)
    await tally.start()
    acks = await asyncio.to_thread(produce, s, w.items)
    assert all(m is not None for m in acks), "pre-load not acknowledged"
    slot.start()
    sup = asyncio.create_task(supervise([slot]))
    t0 = time.monotonic()

    # 1. capacity
    n = len(w.items)
    marks = {}
    for share in (0.2, 0.9):
        if not await tally.until(lambda share=share: tally.scored >= n * share, args.timeout):
            raise RuntimeError(f"capacity phase: {tally.scored} of {n} scored")
        marks[share] = (time.monotonic(), tally.scored)
    (ta, ca), (tb, cb) = marks[0.2], marks[0.9]
    capacity = (cb - ca) / (tb - ta)
    await tally.until(lambda: tally.scored >= n, args.timeout)

    # 2. overload
    rate = args.overload * capacity
    live_n = int(rate * args.seconds)
    # The same accounts, later in time: memory then measures the backlog, not new accounts.
    from datetime import timedelta

    from txmon.contracts import Transaction, decode

    last = max(decode(Transaction, p.value).event_time for p in w.items[-50:])
    _, live = simulated_payloads(live_n, seed=args.seed + 1, accounts=max(50, n // 33), id_prefix="L",
                                 start=(last + timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                                          microsecond=0))
    seen = {p.tx_id for p in w.items}
    live = [p for p in live if p.tx_id not in seen]
    sent = [p.tx_id for p in w.items] + [p.tx_id for p in live]
    probe = await asyncio.to_thread(LagProbe, s)
    samples: list[dict[str, Any]] = []
    rss: list[tuple[float, float]] = []
    start = time.monotonic()

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            lag = await asyncio.to_thread(probe.lag)
            mb = rss_mb(slot.pid)
            now = round(time.monotonic() - start, 1)
            if mb is not None:
                rss.append((now, mb))
            samples.append({"t": now, "lag": lag, "scored": tally.scored - n,
                            "rss_mb": None if mb is None else round(mb, 1)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)

    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(stop))
    live_acks: list[Any] = []
    producer = threading.Thread(target=lambda: live_acks.extend(produce(s, live, rate=rate)),
                                daemon=True)
    producer.start()
    while producer.is_alive():
        await tally.poll()
    published_s = time.monotonic() - start
    lag_at_stop = await asyncio.to_thread(probe.lag)
    total = n + len(live)
    drained = await tally.until(lambda: tally.scored >= total, args.timeout)
    drain_s = time.monotonic() - start - published_s
    # The lag, not only the scores: committed offsets catch up with the end of the topic.
    deadline = time.monotonic() + 60
    while drained and time.monotonic() < deadline and await asyncio.to_thread(probe.lag) != 0:
        await tally.poll()
    stop.set()
    await sampler
    samples.append({"t": round(time.monotonic() - start, 1), "lag": await asyncio.to_thread(probe.lag),
                    "scored": tally.scored - n, "rss_mb": rss_mb(slot.pid)})
    sup.cancel()
    slot.stop()
    await tally.to_end()
    await tally.stop()
    probe.close()
    lags = [x["lag"] for x in samples if x["lag"] is not None]
    peak = max(samples, key=lambda x: x["lag"] or 0) if samples else {}
    overload_scored = [x for x in samples if x["t"] <= published_s]
    return {
        "capacity_per_s": round(capacity), "capacity_sample": n,
        "offered_rate_per_s": round(rate), "achieved_publish_rate_per_s": round(len(live) / published_s),
        "published": len(live), "acknowledged": sum(m is not None for m in live_acks),
        "publish_seconds": round(published_s, 1),
        "scored_per_s_while_overloaded": round(overload_scored[-1]["scored"] / overload_scored[-1]["t"])
        if overload_scored and overload_scored[-1]["t"] else None,
        "lag_at_publish_stop": lag_at_stop, "lag_peak": peak.get("lag"), "lag_peak_at_s": peak.get("t"),
        "lag_end": lags[-1] if lags else None, "drained": drained and bool(lags) and lags[-1] == 0,
        "seconds_to_drain_after_publishing": round(drain_s, 1),
        **tally.account(sent), "input_records": input_records(s),
        "worker": slot.summary() | group_churn(slot.log),
        "rss": rss_summary(rss), "samples": samples[:: max(1, len(samples) // 150)],
        "seconds": round(time.monotonic() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="overload duration")
    ap.add_argument("--overload", type=float, default=3.0, help="times the measured capacity")
    ap.add_argument("--capacity-sample", type=int, default=20_000)
    ap.add_argument("--drift-warmup", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker-arg", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--logs", type=Path, default=Path("/tmp/txmon-bench-backpressure"))
    ap.add_argument("--out", default="backpressure")
    args = ap.parse_args()

    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    guard_children()
    before = machine()
    t0 = time.monotonic()
    with private_cluster() as (cluster, work):
        r = asyncio.run(run(cluster, work, args))
    ok = (r["lost"] == 0 and r["duplicated"] == 0 and r["drained"]
          and r["lag_at_publish_stop"] is not None and r["lag_at_publish_stop"] > 0)
    report = {"command": command_line(),
              "what": "one txmon worker on a private one-node Kafka 4.1, offered "
                      f"{args.overload:g}x its measured capacity for {args.seconds:g} s",
              "parameters": {"seconds": args.seconds, "overload": args.overload,
                             "capacity_sample": args.capacity_sample,
                             "drift_warmup": args.drift_warmup, "worker_args": args.worker_arg,
                             "partitions": 6},
              "code": code_version(),
              "lag_grew_then_drained_nothing_lost_or_duplicated": ok, **r,
              "notes": ["lag: sum over partitions of end offset minus the group's committed offset "
                        "(kafka-python admin), sampled every 2 s; t counts from the overload start.",
                        "Every process shares a 2-core machine; see load_average."],
              "seconds_total": round(time.monotonic() - t0, 1),
              "machine_before": before, "machine_after": machine()}
    path = write_result(args.out, report)
    print(json.dumps({"ok": ok, "capacity": r["capacity_per_s"], "lag_peak": r["lag_peak"],
                      "rss": r["rss"], "results": path.as_posix()}))


if __name__ == "__main__":
    main()
