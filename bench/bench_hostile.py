"""Benchmark: hostile input — every bad record dead-lettered with a reason, every good one scored,
the worker never down, its memory flat.

    .venv/bin/python bench/bench_hostile.py [--hostile 100000] [--valid 50000]

On a private Kafka 4.1 broker, ``--hostile`` records generated with hypothesis (:mod:`bench._hostile`:
wrong types, missing fields, huge strings, NaN/infinite amounts, far-past/far-future/naive/garbage
timestamps, unknown currencies and countries, JSON nested past the limit, invalid UTF-8, records up to
about 1 MB, non-objects, malformed amounts, wrong or hostile keys) are published raw to the
transactions topic, interleaved with ``--valid`` simulated transactions, while one ``txmon worker``
(defaults: drift on) consumes them. Its RSS is sampled every second.

Checked per record: each hostile one has exactly one dead letter naming its partition and offset
with a non-empty reason; each valid one exactly one committed score and no dead letter; the worker
never exited. Writes ``bench/results/hostile.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import command_line, guard_children, machine, private_cluster, write_result
from bench._reliability import (
    Slot,
    Tally,
    Workload,
    log_tail,
    produce,
    rss_mb,
    rss_summary,
    settings_for,
    supervise,
    worker_command,
    workload,
)


def interleave(hostile: list[Any], valid: list[Any]) -> list[tuple[str, Any]]:
    """Valid records spread evenly among the hostile ones."""
    out: list[tuple[str, Any]] = []
    step = len(hostile) / max(1, len(valid))
    j = 0
    for i, h in enumerate(hostile):
        while j < len(valid) and j * step <= i:
            out.append(("valid", valid[j]))
            j += 1
        out.append(("hostile", h))
    out.extend(("valid", v) for v in valid[j:])
    return out


async def run_hostile(cluster: Any, work: Path, w: Workload, hostile: list[Any], *, prefix: str = "",
                      logs: Path, timeout: float = 1800.0,
                      worker_args: list[str] | None = None) -> dict[str, Any]:
    from txmon.broker.topics import ensure_topics

    s = settings_for(cluster.bootstrap_servers, f"{prefix}hostile.", work / "hostile-home")
    await asyncio.to_thread(ensure_topics, s)
    logs.mkdir(parents=True, exist_ok=True)
    slot = Slot("w1", worker_command(s, w, "w1", drift_warmup=5_000, extra=worker_args or []),
                logs / f"{prefix}hostile-w1.log")
    records = interleave(hostile, w.items)
    tally = Tally(s)
    await tally.start()
    slot.start()
    sup = asyncio.create_task(supervise([slot]))
    rss: list[tuple[float, float]] = []
    t0 = time.monotonic()

    async def sample() -> None:
        while True:
            mb = rss_mb(slot.pid)
            if mb is not None:
                rss.append((time.monotonic() - t0, mb))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    acks: list[Any] = []
    producer = threading.Thread(target=lambda: acks.extend(produce(
        s, [(p.key, p.value) for _, p in records])), daemon=True)
    producer.start()
    await asyncio.to_thread(producer.join, timeout)
    produced_s = time.monotonic() - t0
    hostile_acked = [(kind, rec, m) for (kind, rec), m in zip(records, acks, strict=True)
                     if kind == "hostile" and m is not None]
    valid_ids = [p.tx_id for kind, p in records if kind == "valid"]
    n_hostile = len(hostile_acked)

    def done() -> bool:
        return tally.scored >= len(valid_ids) and len(tally.letters) >= n_hostile

    finished = await tally.until(done, timeout)
    seconds = time.monotonic() - t0
    sampler.cancel()
    sup.cancel()
    slot.stop()
    await tally.to_end()
    await tally.stop()

    letters: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for d in tally.letters:
        if d["source_topic"] == s.topic("transactions"):
            letters[(d["partition"], d["offset"])].append(d)
    by_cat: dict[str, dict[str, Any]] = {}
    missing = duplicated = no_reason = 0
    for _kind, h, m in hostile_acked:
        c = by_cat.setdefault(h.category, {"records": 0, "dead_lettered": 0, "reasons": Counter()})
        c["records"] += 1
        got = letters.get((m.partition, m.offset), [])
        if not got:
            missing += 1
            continue
        duplicated += len(got) - 1
        if not all(g["error"] for g in got):
            no_reason += 1
        c["dead_lettered"] += 1
        c["reasons"][f"{got[0]['stage']}:{got[0]['error_field']}"] += 1
    valid_meta = {(m.partition, m.offset) for (kind, _), m in zip(records, acks, strict=True)
                  if kind == "valid" and m is not None}
    acc = tally.account(valid_ids)
    examples = {}
    for (_p, _o), got in letters.items():
        key = f"{got[0]['stage']}:{got[0]['error_field']}"
        examples.setdefault(key, got[0]["error"][:160])
    return {
        "finished": finished,
        "hostile": {"generated": len(hostile), "acknowledged_by_broker": n_hostile,
                    "refused_by_broker": len(hostile) - n_hostile,
                    "dead_lettered": n_hostile - missing, "missing_from_dlq": missing,
                    "extra_dead_letters": duplicated, "dead_letters_without_reason": no_reason,
                    "by_category": {k: {**v, "reasons": dict(v["reasons"].most_common(6))}
                                    for k, v in sorted(by_cat.items())},
                    "reason_examples": dict(sorted(examples.items()))},
        "valid": {**acc, "valid_dead_lettered": sum(1 for k in letters if k in valid_meta)},
        "worker": slot.summary() | {"never_exited_unasked": not slot.unasked_exits,
                                    "log_tail_if_it_did": log_tail(slot.log, 1500)
                                    if slot.unasked_exits else ""},
        "rss": rss_summary(rss),
        "rss_samples_mb": [(round(t, 1), round(v, 1)) for t, v in rss[:: max(1, len(rss) // 120)]],
        "input_mb": round(sum(len(p.key or b"") + len(p.value or b"") for _, p in records) / 1e6, 1),
        "seconds_to_publish": round(produced_s, 1), "seconds": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hostile", type=int, default=100_000)
    ap.add_argument("--valid", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker-arg", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--logs", type=Path, default=Path("/tmp/txmon-bench-hostile"))
    ap.add_argument("--out", default="hostile")
    args = ap.parse_args()

    import logging

    from bench._hostile import generate

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    guard_children()
    before = machine()
    t0 = time.monotonic()
    t = time.monotonic()
    hostile = generate(args.hostile, seed=args.seed)
    generate_s = time.monotonic() - t
    print(f"{len(hostile)} hostile records generated in {generate_s:.0f} s", file=sys.stderr)
    with private_cluster() as (cluster, work):
        w = workload(args.valid, work, seed=args.seed)
        r = asyncio.run(run_hostile(cluster, work, w, hostile, logs=args.logs, timeout=args.timeout,
                                    worker_args=args.worker_arg))
    h, v = r["hostile"], r["valid"]
    ok = (r["finished"] and h["missing_from_dlq"] == 0 and h["extra_dead_letters"] == 0
          and h["dead_letters_without_reason"] == 0 and v["lost"] == 0 and v["duplicated"] == 0
          and v["valid_dead_lettered"] == 0 and r["worker"]["never_exited_unasked"])
    report = {"command": command_line(),
              "what": "hypothesis-generated hostile records interleaved with valid transactions, "
                      "published raw to a private one-node Kafka 4.1; one txmon worker",
              "parameters": {"hostile": args.hostile, "valid": args.valid, "seed": args.seed,
                             "worker_args": args.worker_arg, "partitions": 6},
              "all_checks_passed": ok, "generate_seconds": round(generate_s, 1), **r,
              "notes": ["refused_by_broker: records the broker itself refused (none expected: the "
                        "largest is under its default max.message.bytes); they never reach a worker.",
                        "rss: the worker's resident memory (VmRSS) sampled every second; slopes are "
                        "least-squares MB per minute."],
              "seconds_total": round(time.monotonic() - t0, 1),
              "machine_before": before, "machine_after": machine()}
    path = write_result(args.out, report)
    print(json.dumps({"all_checks_passed": ok, "rss": r["rss"], "results": path.as_posix()}))


if __name__ == "__main__":
    main()
