"""Probe: what one Kafka transaction costs on this broker, by producer retry backoff.

    .venv/bin/python bench/probe_txn_latency.py [--backoffs 20 5 2] [--transactions 300]

A transactional aiokafka producer runs back-to-back transactions, each as small as the worker's at
a low rate (12 records over 6 partitions and the consumed offsets of 6 partitions), 10 ms apart,
on a private one-node Kafka; each backoff is measured twice, interleaved. The first produce of a
transaction often meets NOT_ENOUGH_REPLICAS (KIP-890: the broker cannot yet verify the partition
while the coordinator completes the previous transaction) and is retried after the backoff.
Writes ``bench/results/txn_latency.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import command_line, create_topics, machine, percentiles, private_broker, write_result


async def transactions(bootstrap: str, backoff: int, n: int, gap: float, tag: str) -> list[float]:
    from aiokafka import AIOKafkaProducer, TopicPartition

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"probe-{tag}",
                         enable_idempotence=True, acks="all", linger_ms=2, retry_backoff_ms=backoff)
    await p.start()
    times = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            async with p.transaction():
                futures = [await p.send("out", b"v" * 200, key=b"k%d" % j, partition=j % 6)
                           for j in range(12)]
                await p.send_offsets_to_transaction(
                    {TopicPartition("in", j): i + 1 for j in range(6)}, f"group-{tag}")
            await asyncio.gather(*futures)
            times.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(gap)
    finally:
        await p.stop()
    return times[20:]  # the producer's first transactions also look up the coordinator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backoffs", type=int, nargs="+", default=[20, 5, 2])
    ap.add_argument("--transactions", type=int, default=300)
    ap.add_argument("--gap-ms", type=float, default=10.0)
    args = ap.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the retried produce errors
    before = machine()
    runs = []
    with private_broker() as (bootstrap, _):
        create_topics(bootstrap, ["in", "out"], 6)
        for rep in range(2):
            for b in args.backoffs:
                ms = asyncio.run(transactions(bootstrap, b, args.transactions, args.gap_ms / 1000,
                                              f"{b}-{rep}"))
                row = {"retry_backoff_ms": b, "run": rep,
                       "transaction_ms": percentiles(ms, (50, 90, 99)) | {"max": round(max(ms), 1)}}
                runs.append(row)
                print(row, flush=True)
    path = write_result("txn_latency", {
        "command": command_line(), "what": __doc__.split("\n\n")[0],
        "transactions_per_run": args.transactions, "gap_ms": args.gap_ms, "runs": runs,
        "machine_before": before, "machine_after": machine()})
    print(path)


if __name__ == "__main__":
    main()
