"""Probe: a transactional relay's end-to-end latency by its CONCURRENT_TRANSACTIONS backoff.

    .venv/bin/python bench/probe_txn_backoff.py [--backoffs 20 5 2 1] [--rate 1800] [--seconds 12]

A paced producer publishes ``--rate`` records/s to a 6-partition topic; a relay process (the
worker's consume -> transaction -> produce loop, no scoring: batches of 256 within 20 ms, one
transaction per batch with the consumed offsets) copies each record to an output topic, stamping
when it received it; a read_committed consumer in the producer's process sees it. Clocks are the
same monotonic clock across processes. Per backoff (``streams.txn_backoff``; aiokafka's own is a
fixed 20 ms): end-to-end latency, its two halves (publish -> relay received, relay received ->
visible to read_committed), and the relay's transaction time. The first 2,000 records are warm-up.
Writes ``bench/results/txn_backoff.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import command_line, create_topics, machine, percentiles, private_broker, write_result

WARMUP = 2_000


def relay(bootstrap: str, tag: str, backoff_ms: float, stop: Any, out: Any) -> None:
    """The worker's transactional loop without the work, until ``stop``; puts its transaction
    durations (ms) on ``out``."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from streams.txn_backoff import set_concurrent_transactions_backoff

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    set_concurrent_transactions_backoff(backoff_ms)

    async def main() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"relay-{tag}",
                             enable_idempotence=True, acks="all", linger_ms=2, retry_backoff_ms=5)
        c = AIOKafkaConsumer(f"in-{tag}", bootstrap_servers=bootstrap, group_id=f"relay-{tag}",
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             isolation_level="read_committed", max_poll_records=256,
                             fetch_max_wait_ms=20)
        await p.start()
        await c.start()
        times = []
        while not stop.is_set():
            batches = await c.getmany(timeout_ms=20, max_records=256)
            if not batches:
                continue
            received = b"|%.6f" % time.monotonic()
            t0 = time.perf_counter()
            async with p.transaction():
                offsets = {}
                for tp, recs in batches.items():
                    for r in recs:
                        await p.send(f"out-{tag}", r.value + received, key=r.key)
                    offsets[tp] = recs[-1].offset + 1
                await p.send_offsets_to_transaction(offsets, f"relay-{tag}")
            times.append((time.perf_counter() - t0) * 1000)
        out.put(times)
        await c.stop()
        await p.stop()

    asyncio.run(main())


async def drive(bootstrap: str, tag: str, rate: float, n: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    c = AIOKafkaConsumer(f"out-{tag}", bootstrap_servers=bootstrap, group_id=None,
                         auto_offset_reset="earliest", isolation_level="read_committed",
                         fetch_max_wait_ms=50)
    await p.start()
    await c.start()
    to_relay: list[float] = []
    to_visible: list[float] = []

    async def receive() -> None:
        while len(to_relay) < n:
            got = await c.getmany(timeout_ms=100)
            now = time.monotonic()
            for recs in got.values():
                for r in recs:
                    sent, received = (float(x) for x in r.value.split(b"|"))
                    to_relay.append((received - sent) * 1000)
                    to_visible.append((now - received) * 1000)

    receiver = asyncio.create_task(receive())
    t0, i = time.monotonic(), 0
    while i < n:
        due = min(n, int((time.monotonic() - t0) * rate) + 1)
        while i < due:
            await p.send(f"in-{tag}", b"%.6f" % time.monotonic(), key=b"k%d" % (i % 997))
            i += 1
        await asyncio.sleep(0.002)
    await asyncio.wait_for(receiver, 60)
    await p.stop()
    await c.stop()
    a, b = to_relay[WARMUP:], to_visible[WARMUP:]
    return {"e2e_ms": percentiles([x + y for x, y in zip(a, b, strict=True)], (50, 95, 99)),
            "publish_to_relay_ms": percentiles(a, (50, 95, 99)),
            "relay_to_visible_ms": percentiles(b, (50, 95, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backoffs", type=float, nargs="+", default=[20, 5, 2, 1])
    ap.add_argument("--rate", type=float, default=1800)
    ap.add_argument("--seconds", type=float, default=12)
    args = ap.parse_args()
    n = int(args.rate * args.seconds) + WARMUP
    before, runs = machine(), []
    with private_broker() as (bootstrap, _):
        tags = [str(i) for i in range(len(args.backoffs))]
        create_topics(bootstrap, [f"{d}-{t}" for t in tags for d in ("in", "out")], 6)
        for tag, backoff in zip(tags, args.backoffs, strict=True):
            stop, out = mp.Event(), mp.Queue()
            proc = mp.Process(target=relay, args=(bootstrap, tag, backoff, stop, out), daemon=True)
            proc.start()
            time.sleep(3)  # joined its group
            row = {"backoff_ms": backoff, **asyncio.run(drive(bootstrap, tag, args.rate, n))}
            stop.set()
            txn = out.get(timeout=60)
            proc.join(30)
            row["relay_transaction_ms"] = percentiles(txn[len(txn) // 6:], (50, 90, 99))
            runs.append(row)
            print(row, flush=True)
    path = write_result("txn_backoff", {
        "command": command_line(), "what": __doc__.split("\n\n")[0], "rate_per_s": args.rate,
        "records_per_run": n, "warmup_records": WARMUP, "relay": {"batch": 256, "max_wait_ms": 20},
        "runs": runs, "machine_before": before, "machine_after": machine()})
    print(path)


if __name__ == "__main__":
    main()
