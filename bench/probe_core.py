"""Probe: the worker's CPU per transaction without Kafka — :class:`streams.scoring.ScoringCore` on
the benchmark's transactions, in this process, against scoring alone on the same transactions.

    .venv/bin/python bench/probe_core.py [--transactions 15000] [--batch-size 256] [--profile]

The same inputs as ``bench/bench_worker.py`` (simulated history then measured transactions, the
untrained production-sized model, its cached drift reference). The measured transactions go
through ``ScoringCore.process`` in batches of ``--batch-size`` as records of the transactions topic,
and each output is handed to a Kafka ``BatchBuilder`` the way :mod:`streams.sender` does, so what is
left out is only the network and the transaction protocol. Reports CPU µs per transaction in total
and per phase (``BatchResult.phases``), and the share of scoring alone (encode + ONNX), the ratio
the issue-5 throughput target is about. A fast loop for work on the record path; the benchmark of
record is ``bench_worker.py``. Writes ``bench/results/core_probe.json`` (or ``--out``).

``PROBE_LINES=streams.scoring:ScoringCore._transaction,...`` prints a line profile of those
functions (needs ``pip install line_profiler``, which the project does not install).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import command_line, machine, write_result
from bench.bench_worker import (
    DRIFT_WARMUP,
    GROUP,
    build_artifact,
    code_version,
    drift_reference,
    measure_scoring,
    payloads,
    simulated_frame,
)


class _Producer:
    """The part of ``AIOKafkaProducer`` that :class:`streams.sender.BatchSender` uses, minus the
    network: real ``BatchBuilder``s (the same encoding CPU), handed to no one."""

    def __init__(self, partitions: int):
        from aiokafka.producer.message_accumulator import BatchBuilder

        self._new = lambda: BatchBuilder(256 * 1024, 0, is_transactional=True,
                                         key_serializer=None, value_serializer=None)
        self.partitions = partitions

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> Any:
        return self._new()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        batch._builder.build()  # what the sender does when it drains the batch
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


WARM = 5_000  # past the longest CVM window (8 blocks of 500): its numba JIT runs here


def core_run(artifact: Path, threshold: float, references: Path | None, history: list[Any],
             items: list[Any], batch_size: int, warmup: int, profile: Path | None) -> dict[str, Any]:
    import models.features as features
    from models.scorer import Scorer
    from streams.config import PolicyConfig, WorkerConfig
    from streams.drift import DriftConfig
    from streams.observer import DriftFeed
    from streams.policy import AlertPolicy
    from streams.scoring import Record, ScoringCore, Topics
    from streams.sender import BatchSender
    from streams.tables import AccountTable, CounterpartyRisk
    from streams.worker import SETTLE_EVERY_BATCHES, settle_heap
    from txmon.settings import Settings

    scorer = Scorer.load(artifact, intra_op_threads=1)
    wc = WorkerConfig(instance_id="probe", policy=PolicyConfig(threshold=threshold))
    topics = Topics.from_settings(Settings(), GROUP)
    core = ScoringCore(topics, wc, features,
                       AccountTable(features.new_account_state, AlertPolicy.new_state),
                       CounterpartyRisk(features.new_counterparty_risk,
                                        features.update_counterparty_risk),
                       AlertPolicy(wc.policy, 1), None)
    src = topics.transactions
    for i in range(0, len(history), 256):  # untimed: account state as the worker has it
        core.process([Record(src, 0, j, p.key, p.value, 0)
                      for j, p in enumerate(history[i:i + 256], start=i)], scorer)
    with tempfile.TemporaryDirectory() as state:
        if references is not None:
            core.observer = DriftFeed(DriftConfig(), Path(state), references, warmup_events=warmup,
                                      background=False, alert_threshold=threshold)
        loop = asyncio.new_event_loop()
        sender = BatchSender(_Producer(6))
        phases: dict[str, float] = {}
        outputs = scored = 0
        prof = cProfile.Profile() if profile else None
        lines = None
        if os.environ.get("PROBE_LINES"):  # e.g. streams.scoring:ScoringCore._transaction,...
            import importlib

            from line_profiler import LineProfiler

            lines = LineProfiler()
            for spec in os.environ["PROBE_LINES"].split(","):
                mod, _, attr = spec.partition(":")
                obj: Any = importlib.import_module(mod)
                for part in attr.split("."):
                    obj = getattr(obj, part)
                lines.add_function(obj)
            lines.enable_by_count()
        base = len(history)
        warm, items = items[:WARM], items[WARM:]  # untimed: the monitor's start (imports, restore)
        core.process([Record(src, 0, j, p.key, p.value, 0) for j, p in enumerate(warm, start=base)],
                     scorer)
        base += WARM
        settle_heap()  # as the worker does after start-up, and every SETTLE_EVERY_BATCHES below
        c0, t0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        for batches, i in enumerate(range(0, len(items), batch_size), start=1):
            now_ms = int(time.time() * 1000)
            res = core.process([Record(src, 0, j, p.key, p.value, now_ms)
                                for j, p in enumerate(items[i:i + batch_size], start=base + i)],
                               scorer)
            loop.run_until_complete(sender.send(res.outputs))
            if not batches % SETTLE_EVERY_BATCHES:
                settle_heap(young=True)
            outputs += len(res.outputs)
            scored += res.scored
            for k, v in res.phases.items():
                phases[k] = phases.get(k, 0.0) + v
        if lines is not None:
            lines.disable_by_count()
            lines.print_stats(output_unit=1e-6)
        if prof:
            prof.disable()
            prof.dump_stats(str(profile))
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        drift_state = core.observer.state if core.observer is not None else "off"
        loop.close()
    n = len(items)
    return {"transactions": n, "scored": scored, "outputs": outputs, "batch_size": batch_size,
            "drift": drift_state, "cpu_us_per_tx": round(cpu / n * 1e6, 1),
            "wall_us_per_tx": round(wall / n * 1e6, 1),
            "phase_us_per_tx": {k: round(v / n * 1e6, 1) for k, v in sorted(phases.items())},
            "outputs_per_tx": round(outputs / n, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transactions", type=int, default=15_000)
    ap.add_argument("--batch-size", type=int, action="append",
                    help="repeatable (default: 256 and 45, the drain's and the paced run's)")
    ap.add_argument("--no-drift", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the first batch size's run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alert-rate", type=float, default=0.005)
    ap.add_argument("--out", default="core_probe")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "txmon" / "probe-core")
    args = ap.parse_args()
    sizes = args.batch_size or [256, 45]
    n = args.transactions
    frame, h = simulated_frame(n, args.seed)
    hist_txs, history = payloads(frame, 0, h)
    txs, items = payloads(frame, h, n)
    artifact = args.cache / f"artifact-{n}-{args.seed}"
    if not (artifact / "manifest.json").is_file():
        artifact.parent.mkdir(parents=True, exist_ok=True)
        build_artifact(frame.iloc[:n], artifact)
    scoring = measure_scoring(artifact, hist_txs, txs, 256, args.alert_rate)
    threshold = scoring["threshold_for_alert_rate"]
    warmup = min(DRIFT_WARMUP, h // 2)
    references = None
    if not args.no_drift:
        references, _ = drift_reference(artifact, history, threshold, warmup,
                                        args.cache / "references")
    runs = {}
    for k, size in enumerate(sizes):
        prof = Path(tempfile.gettempdir()) / "core_probe.prof" if args.profile and not k else None
        runs[str(size)] = run = core_run(artifact, threshold, references, history, items, size,
                                         warmup, prof)
        run["share_of_scoring_alone"] = round(scoring["cpu_us_per_tx"] / run["cpu_us_per_tx"], 3)
        print(f"batch {size}: {run['cpu_us_per_tx']} us/tx CPU "
              f"({run['share_of_scoring_alone']:.0%} of scoring alone's "
              f"{scoring['cpu_us_per_tx']}), phases {run['phase_us_per_tx']}")
        if prof:
            pstats.Stats(str(prof)).sort_stats("tottime").print_stats(30)
    write_result(args.out, {"command": command_line(), "code": code_version(),
                            "machine": machine(), "scoring_alone": scoring, "core": runs})


if __name__ == "__main__":
    main()
