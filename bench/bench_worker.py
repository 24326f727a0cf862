"""Benchmark: the scoring worker end to end through a real broker, against two limits measured in the
same run on the same machine.

    .venv/bin/python bench/bench_worker.py [--quick] [--model ARTIFACT_DIR]

On a private Kafka 4.1 broker (one node, temp dir), with simulated transactions (:mod:`txmon.sim`):

1. **limit: scoring alone** — in this process, the artifact's :class:`models.scorer.Scorer` (one
   ONNX thread, as the worker) encodes each transaction against its account's history (with the
   worker's per-account token-row cache) and scores micro-batches of ``--batch-size``: no Kafka,
   no JSON.
2. **limit: Kafka alone** — a raw aiokafka consume -> produce loop in a subprocess, no decoding, no
   scoring: one output per input (the input bytes, same key), same topics, partitions, batch size and
   producer settings as the worker, and *transactional like the worker* (one Kafka transaction per
   micro-batch with ``send_offsets_to_transaction``). Throughput = drain of a pre-loaded topic.
3. **worker at max rate** — ``txmon worker --model DIR`` as a subprocess draining the same pre-loaded
   transactions; throughput over the steady middle (10%..90% of the scores committed).
4. **worker at half that rate** — a paced producer at 50% of (3) for ``--latency-seconds``;
   end-to-end latency = arrival of the ``read_committed`` score at a consumer in this process minus
   the moment this process handed the transaction to its producer (one clock).

5. **control** — the relay of (2) under the same paced load: the latency this machine and broker
   allow a transactional consume -> produce loop that does no work.

``--profile`` adds one more drain with the worker under cProfile and puts its hot spots in the JSON.
``--compare-code CHECKOUT`` is an A/B of the drain alone: this checkout's worker and CHECKOUT's
(say ``git worktree add /tmp/base HEAD~1``), ``--drains`` times each, in turn, on one broker.
CPU of the measured process is read from ``/proc/<pid>/stat`` (1.0 = one core). Targets from issue 5:
sustained throughput >= 70% of the lower limit; p99 end-to-end <= 50 ms at half the max rate.
Writes ``bench/results/worker.json`` (``--quick``: ``worker_quick.json`` unless ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    ROOT,
    CpuMeter,
    broker_pids,
    command_line,
    guard_children,
    kill,
    machine,
    percentiles,
    private_broker,
    spawn,
    write_result,
)

GROUP = "txmon-scorer"
TARGET_SHARE = 0.70
TARGET_P99_MS = 50.0


@dataclass(frozen=True)
class Payload:
    tx_id: str
    key: bytes
    value: bytes


# -- inputs ----------------------------------------------------------------------------------------

DRIFT_WARMUP = 20_000  # the worker's default drift_warmup_events
HISTORY_DAYS = 15  # about 33 transactions per account: past the 32 records an account state keeps


def simulated_frame(measured: int, seed: int) -> tuple[Any, int]:
    """Simulated transactions in event-time order and where the measured part starts.

    The first :data:`HISTORY_DAYS` days are history: every process under test works through them
    before the measured ``measured`` rows, so account states have their production size (full
    history, changelog records as big as they get) while it is measured. The days after serve the
    paced runs.
    """
    from txmon.sim import SimConfig, simulate

    # The simulator makes about 2.2 transactions per account-day.
    accounts = max(50, int(measured / (2.2 * HISTORY_DAYS)))
    frame = simulate(SimConfig(accounts=accounts, days=3 * HISTORY_DAYS, seed=seed)).frame
    history = int((frame["event_time"] < frame["event_time"].min().normalize()
                   + timedelta(days=HISTORY_DAYS)).sum())
    return frame, history


def payloads(frame: Any, start: int, n: int) -> tuple[list[Any], list[Payload]]:
    """Rows ``start..start+n`` as validated transactions and as the bytes a publisher sends."""
    from txmon.frames import to_transaction

    txs = [to_transaction(row) for row in frame.iloc[start:start + n].to_dict("records")]
    return txs, [Payload(t.tx_id, t.account_id.encode(), t.to_bytes()) for t in txs]


def build_artifact(frame: Any, out_dir: Path, hidden_size: int | None = None,
                   num_layers: int | None = None) -> Path:
    """An untrained transformer of the production size (TrainConfig defaults, or the given hidden
    size and depth, feed-forward twice as wide), exported to ONNX.

    Throughput and latency depend on the graph's shape, not on its weights; ``--model`` runs a
    trained artifact instead.
    """
    import torch

    from models.configuration import TxmonConfig
    from models.dataset import fit_spec
    from models.export import export_artifact
    from models.finetune import TrainConfig
    from models.modeling import TxmonModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tc = TrainConfig()
    spec = fit_spec(frame, min_count=tc.min_count)
    hidden = hidden_size or tc.hidden_size
    model = TxmonModel(TxmonConfig(vocab_sizes=spec.vocab_sizes, max_len=tc.max_len,
                                   hidden_size=hidden, num_layers=num_layers or tc.num_layers,
                                   num_heads=tc.num_heads,
                                   intermediate_size=2 * hidden if hidden_size else tc.intermediate_size))
    export_artifact(model, spec, out_dir, "bench-untrained")
    return out_dir


# -- limit 1: scoring alone ------------------------------------------------------------------------

def measure_scoring(artifact: Path, history: list[Any], txs: list[Any], batch_size: int,
                    alert_rate: float) -> dict[str, Any]:
    """Encode (with each account's history) + score in micro-batches, single-threaded ONNX."""
    import numpy as np

    import models.features as features
    from models.scorer import Scorer
    from streams.worker import settle_heap

    scorer = Scorer.load(artifact, intra_op_threads=1)
    enc = scorer.encoder
    states: dict[str, Any] = {}
    # Each account's history token rows, as the worker keeps them (streams.scoring): the limit
    # encodes as fast as the worker can.
    rows: dict[str, features.HistoryRows] = {}
    for tx in history:  # untimed: account states as the worker has them when the measure starts
        state = states.setdefault(tx.account_id, features.new_account_state())
        model_input = enc.encode(state, tx, None, rows.setdefault(tx.account_id,
                                                                   features.HistoryRows(enc.spec)))
        features.update_account_state(state, tx, record=model_input.records[-1])
    scores: list[np.ndarray] = []
    encode_s = score_s = encode_cpu = score_cpu = 0.0
    settle_heap()  # the worker's collector settings: the limit runs as fast as the worker can
    for i in range(0, len(txs), batch_size):
        t0, c0 = time.perf_counter(), time.process_time()
        inputs = []
        for tx in txs[i:i + batch_size]:
            state = states.setdefault(tx.account_id, features.new_account_state())
            inputs.append(enc.encode(state, tx, None, rows.setdefault(tx.account_id,
                                                                      features.HistoryRows(enc.spec))))
            features.update_account_state(state, tx, record=inputs[-1].records[-1])
        batch = enc.collate(inputs)
        t1, c1 = time.perf_counter(), time.process_time()
        s, _ = scorer.score(batch)
        t2, c2 = time.perf_counter(), time.process_time()
        encode_s += t1 - t0
        score_s += t2 - t1
        encode_cpu += c1 - c0
        score_cpu += c2 - c1
        scores.append(s)
    all_scores = np.concatenate(scores)
    n = len(txs)
    return {"transactions": n, "batch_size": batch_size, "onnx_threads": 1,
            "providers": scorer.providers, "model_version": scorer.version,
            "encode_seconds": round(encode_s, 3), "score_seconds": round(score_s, 3),
            "encode_and_score_per_s": round(n / (encode_s + score_s)),
            "score_only_per_s": round(n / score_s),
            "cpu_us_per_tx": round((encode_cpu + score_cpu) / n * 1e6, 1),
            "encode_cpu_us_per_tx": round(encode_cpu / n * 1e6, 1),
            "score_cpu_us_per_tx": round(score_cpu / n * 1e6, 1),
            "per_core_capacity_per_s": round(n / (encode_cpu + score_cpu)),
            "score_quantiles": {q: round(float(np.quantile(all_scores, q)), 4)
                                for q in (0.5, 0.99, 1 - alert_rate)},
            "threshold_for_alert_rate": float(np.quantile(all_scores, 1 - alert_rate))}


# -- the drift reference ---------------------------------------------------------------------------

def drift_reference(artifact: Path, history: list[Payload], threshold: float, warmup: int,
                    cache: Path) -> tuple[Path | None, dict[str, Any]]:
    """The worker's drift reference for this model, built as the worker builds it (streams.observer:
    ``warmup`` scored events, thresholds simulated), in this process, before anything is measured;
    cached by model digest, warm-up size and drift configuration.

    The warm-up is the *last* ``warmup`` events of the history (the earlier ones only build account
    state, as a worker's ``cold_events``): the history starts with new accounts, and a reference of
    their first events (new countries and counterparties everywhere) made the binary and score
    detectors alarm every few blocks on the measured traffic, which is not the steady state a
    production worker with mature accounts monitors in.

    The measured workers then load it from ``$TXMON_HOME/drift/references`` as a restarted worker
    does, so they are measured monitoring (steady state), not simulating thresholds in a background
    thread, which takes minutes of CPU once per champion and competed with scoring in earlier runs.
    """
    import models.features as features
    from models.scorer import Scorer
    from streams.config import PolicyConfig, WorkerConfig
    from streams.drift import DriftConfig, DriftReference, ReferenceError
    from streams.drift.columns import unmonitored
    from streams.observer import DriftFeed
    from streams.policy import AlertPolicy
    from streams.scoring import Record, ScoringCore, Topics
    from streams.tables import AccountTable, CounterpartyRisk
    from txmon.settings import Settings

    scorer = Scorer.load(artifact, intra_op_threads=1)
    config = DriftConfig()
    cold = len(history) - warmup
    root = cache / f"{scorer.sha256[:16]}-{warmup}-after-{cold}-{config.fingerprint()[:16]}"
    info: dict[str, Any] = {"warmup_events": warmup, "after_history_events": cold,
                            "drift_config": "DriftConfig() defaults", "cache": str(root)}
    try:
        if not unmonitored(DriftReference.load(root / scorer.version, config).columns):
            return root, info | {"built_here": False}
    except ReferenceError:
        pass
    if len(history) < warmup:
        return None, info | {"error": f"{len(history)} history events < warm-up {warmup}"}
    t0, c0 = time.monotonic(), time.process_time()
    with tempfile.TemporaryDirectory() as state:
        feed = DriftFeed(config, Path(state), root, warmup_events=warmup, background=False,
                         alert_threshold=threshold, threshold_cache=cache / "thresholds",
                         cold_events=cold)
        wc = WorkerConfig(instance_id="bench", policy=PolicyConfig(threshold=threshold))
        core = ScoringCore(Topics.from_settings(Settings(), GROUP), wc, features,
                           AccountTable(features.new_account_state, AlertPolicy.new_state),
                           CounterpartyRisk(features.new_counterparty_risk,
                                            features.update_counterparty_risk),
                           AlertPolicy(wc.policy, 1), feed)
        topic = core.topics.transactions
        for i in range(0, len(history), 256):
            core.process([Record(topic, 0, j, p.key, p.value, 0)
                          for j, p in enumerate(history[i:i + 256], start=i)], scorer)
        if feed.state != "monitoring":
            return None, info | {"error": f"the feed is {feed.state} after {warmup} events"}
    return root, info | {"built_here": True, "build_seconds": round(time.monotonic() - t0, 1),
                         "build_cpu_seconds": round(time.process_time() - c0, 1)}


# -- Kafka plumbing --------------------------------------------------------------------------------

def settings_for(bootstrap: str, prefix: str, home: Path, partitions: int) -> Any:
    from txmon.settings import KafkaSettings, Settings, TopicSettings

    return Settings(home=home, kafka=KafkaSettings(bootstrap_servers=bootstrap),
                    topics=TopicSettings(prefix=prefix, partitions=partitions))


def preload(settings: Any, items: list[Payload]) -> None:
    from kafka import KafkaProducer

    from txmon.broker.topics import ensure_topics

    ensure_topics(settings)
    p = KafkaProducer(**settings.kafka.kafka_python_config(), acks="all", linger_ms=5,
                      batch_size=256 * 1024)
    for item in items:
        p.send(settings.topic("transactions"), key=item.key, value=item.value)
    p.flush()
    p.close()


def _committed_consumer(settings: Any, topic: str) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(topic, **settings.kafka.aiokafka_config(), group_id=None,
                            isolation_level="read_committed", auto_offset_reset="earliest",
                            enable_auto_commit=False, fetch_max_wait_ms=50)


async def watch_drain(settings: Any, topic: str, history: int, n: int, proc: Any, timeout: float,
                      broker: list[int]) -> dict[str, Any]:
    """Count committed records on ``topic`` until ``history + n``; throughput, and CPU of ``proc``
    (or of a list of processes, summed) and of the broker, over the steady middle of the measured
    part: outputs ``history + 10% n`` to ``history + 90% n`` (start-up, history and the last
    partial batches left out)."""
    procs = proc if isinstance(proc, list) else [proc]
    consumer = _committed_consumer(settings, topic)
    await consumer.start()
    meters = [*(CpuMeter(p.pid) for p in procs), *(CpuMeter(pid) for pid in broker)]
    lo, hi, total = history + n // 10, history + n * 9 // 10, history + n
    t_lo = t_hi = None
    got = got_lo = got_hi = 0
    first = None
    deadline = time.monotonic() + timeout
    try:
        while got < total and time.monotonic() < deadline:
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"the measured process exited with {p.returncode}")
            batches = await consumer.getmany(timeout_ms=200)
            got += sum(len(v) for v in batches.values())
            now = time.monotonic()
            if got and first is None:
                first = now
            if t_lo is None and got >= lo:
                t_lo, got_lo = now, got
                for m in meters:
                    m.start()
            if t_hi is None and got >= hi:
                t_hi, got_hi = now, got
                for m in meters:
                    m.stop()
    finally:
        await consumer.stop()
    if t_lo is None or t_hi is None or t_hi <= t_lo:
        return {"outputs": got, "complete": False}
    own, broker_cpu = meters[:len(procs)], meters[len(procs):]
    steady, counted = t_hi - t_lo, got_hi - got_lo
    cpu_seconds = sum(m.cpu for m in own)
    broker_seconds = sum(m.cpu for m in broker_cpu)
    return {"history": history, "measured": n, "outputs": got, "complete": got >= total,
            "seconds_to_drain_all": round(now - first, 1) if first else None,
            "steady_seconds": round(steady, 2), "steady_throughput_per_s": round(counted / steady),
            "cpu_cores": round(cpu_seconds / steady, 2),
            "cpu_us_per_tx": round(cpu_seconds / counted * 1e6, 1),
            "page_faults_per_tx": round(sum(m.faults for m in own) / counted, 3),
            "per_core_capacity_per_s": round(counted / cpu_seconds) if cpu_seconds else None,
            "broker_cpu_cores": round(broker_seconds / steady, 2),
            "broker_cpu_us_per_tx": round(broker_seconds / counted * 1e6, 1)}


# -- limit 2: Kafka alone (runs in a child process) ------------------------------------------------

def run_relay() -> None:
    """A transactional consume -> produce loop with the worker's client settings; no scoring."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from streams.txn_backoff import set_concurrent_transactions_backoff

    env = os.environ
    source, sink = env["RELAY_SOURCE"], env["RELAY_SINK"]
    batch, max_wait = int(env["RELAY_BATCH"]), int(env["RELAY_MAX_WAIT_MS"])
    servers = env["RELAY_BOOTSTRAP"]
    backoff = int(env["RELAY_RETRY_BACKOFF_MS"])
    set_concurrent_transactions_backoff(float(env["RELAY_CONCURRENT_TXN_BACKOFF_MS"]))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        producer = AIOKafkaProducer(bootstrap_servers=servers, transactional_id="bench-relay",
                                    enable_idempotence=True, acks="all", linger_ms=2,
                                    max_batch_size=256 * 1024, retry_backoff_ms=backoff)
        consumer = AIOKafkaConsumer(source, bootstrap_servers=servers, group_id="bench-relay",
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    isolation_level="read_committed", max_poll_records=batch,
                                    fetch_max_wait_ms=min(max_wait, 500))
        await producer.start()
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=max_wait, max_records=batch)
                if not batches:
                    continue
                offsets: dict[TopicPartition, int] = {}
                async with producer.transaction():
                    futures = []
                    for tp, recs in batches.items():
                        for r in recs:
                            futures.append(await producer.send(sink, r.value, key=r.key))
                        offsets[tp] = recs[-1].offset + 1
                    await producer.send_offsets_to_transaction(offsets, "bench-relay")
                await asyncio.gather(*futures)
        finally:
            await consumer.stop()
            await producer.stop()

    asyncio.run(main())


def start_relay(settings: Any, args: argparse.Namespace, log: Path) -> Any:
    env = os.environ | {"RELAY_BOOTSTRAP": settings.kafka.bootstrap_servers,
                        "RELAY_SOURCE": settings.topic("transactions"),
                        "RELAY_SINK": settings.topic("scores"), "RELAY_BATCH": str(args.batch_size),
                        "RELAY_MAX_WAIT_MS": str(args.max_wait_ms),
                        "RELAY_RETRY_BACKOFF_MS": str(args.retry_backoff_ms),
                        "RELAY_CONCURRENT_TXN_BACKOFF_MS": str(args.concurrent_txn_backoff_ms)}
    return spawn([*pinned(args), sys.executable, str(Path(__file__).resolve()), "_relay"], env, log)


def pinned(args: argparse.Namespace, processes: int = 1) -> list[str]:
    """``taskset`` prefix of the process under test with ``--pin`` (core 0; one process only)."""
    return ["taskset", "-c", "0"] if getattr(args, "pin", False) and processes == 1 else []


def pin_rest(work: Path) -> None:
    """``--pin``: the broker (all its threads) and this process (load generator, consumers) on
    core 1, leaving core 0 to the worker or relay under test: how a deployment keeps them apart."""
    import subprocess

    for pid in [*broker_pids(work), os.getpid()]:
        subprocess.run(["taskset", "-a", "-p", "-c", "1", str(pid)], check=True,
                       stdout=subprocess.DEVNULL)


def measure_relay(bootstrap: str, work: Path, history: list[Payload], items: list[Payload],
                  args: argparse.Namespace) -> dict[str, Any]:
    s = settings_for(bootstrap, "relay.", work / "relay-home", args.partitions)
    preload(s, history + items)
    proc = start_relay(s, args, args.logs / "relay.log")
    try:
        out = asyncio.run(watch_drain(s, s.topic("scores"), len(history), len(items), proc,
                                      args.timeout, broker_pids(work)))
    finally:
        kill(proc, signal.SIGTERM)
    return {"transactional": True, "batch_size": args.batch_size, "max_wait_ms": args.max_wait_ms,
            "partitions": args.partitions, **out}


# -- the worker ------------------------------------------------------------------------------------

def start_worker(settings: Any, artifact: Path, threshold: float, args: argparse.Namespace,
                 log: Path, profile: Path | None = None, instance: str = "bench",
                 trace: Path | None = None, processes: int = 1, code: Path | None = None) -> Any:
    """``txmon worker`` on ``settings``; ``code``: the txmon checkout to run (default this one)."""
    env = os.environ | ({"TXMON_WORKER__BATCH_TRACE": str(trace)} if trace else {}) | {
                        "TXMON_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
                        "TXMON_TOPICS__PREFIX": settings.topics.prefix,
                        "TXMON_TOPICS__PARTITIONS": str(args.partitions),
                        "TXMON_HOME": str(settings.home), "TXMON_WORKER__INSTANCE_ID": instance,
                        "TXMON_WORKER__METRICS_PORT": "-1", "OMP_NUM_THREADS": "1",
                        "TXMON_WORKER__RETRY_BACKOFF_MS": str(args.retry_backoff_ms),
                        "TXMON_WORKER__CONCURRENT_TXN_BACKOFF_MS": str(args.concurrent_txn_backoff_ms)}
    env.pop("TXMON_SIGNING_KEY", None)  # the benchmark's artifact is unsigned
    if args.drift_references is not None:  # as a restarted worker finds its champion's reference
        shutil.copytree(args.drift_references, Path(settings.home) / "drift" / "references",
                        dirs_exist_ok=True)
    txmon = Path(sys.executable).with_name("txmon")
    # cProfile writes its stats when the worker returns from a SIGTERM (run_worker's clean stop).
    runner = [sys.executable, "-m", "cProfile", "-o", str(profile), str(txmon)] if profile else [str(txmon)]
    if code is not None:  # its packages come first on sys.path (the cwd), before the editable install
        runner = [sys.executable, "-c", "from txmon.cli import main; main()"]
    return spawn([*pinned(args, processes), *runner, "worker", "--model", str(artifact),
                  "--batch-size", str(args.batch_size), "--max-wait-ms", str(args.max_wait_ms),
                  "--threshold", f"{threshold:.6f}",
                  "--drift-warmup", str(args.drift_warmup), "--log-level", "WARNING",
                  *args.worker_arg], env, log, cwd=code or ROOT)


def trace_summary(path: Path, since: float) -> dict[str, Any]:
    """Where the paced worker's batches spent their time (its ``batch_trace``) from ``since``
    (epoch seconds: the paced part): all batches, and the slowest 1% (what the p99 waits behind)."""
    import numpy as np

    lines = path.read_text().splitlines() if path.is_file() else []
    rows = [r for r in map(json.loads, lines) if r["at"] >= since]
    if not rows:
        return {}
    span = rows[-1]["at"] - rows[0]["at"]
    s = np.asarray([r["s"] for r in rows])
    slow = [r for r in rows if r["s"] >= np.percentile(s, 99)]
    phases = sorted({k for r in rows for k in r} - {"at", "n", "s", "age"})

    def mean_ms(items: list[dict[str, Any]], key: str) -> float:
        return round(1000 * float(np.mean([r.get(key, 0.0) for r in items])), 2)

    return {"batches": len(rows), "records_per_batch": round(float(np.mean([r["n"] for r in rows])), 1),
            # Share of the wall time the event loop spent processing (commits overlap it).
            "processing_share": round(sum(r.get(k, 0.0) for r in rows for k in phases if k not in (
                "commit", "wait", "gc")) / span, 3) if span > 0 else None,
            "batch_ms": {k: round(1000 * float(np.percentile(s, q)), 1)
                         for k, q in (("p50", 50), ("p99", 99), ("max", 100))},
            "oldest_record_age_at_batch_start_ms": {
                k: round(1000 * float(np.percentile([r.get("age", 0.0) for r in rows], q)), 1)
                for k, q in (("p50", 50), ("p99", 99))},
            "mean_ms_by_phase": {k: mean_ms(rows, k) for k in phases},
            "slowest_1pct": {"batches": len(slow), "records_per_batch": round(
                float(np.mean([r["n"] for r in slow])), 1),
                "mean_ms_by_phase": {k: mean_ms(slow, k) for k in phases}}}


def banner(log: Path) -> str:
    """The worker's first line: its batch, policy, shadow and drift settings as it ran."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return " ".join(text.split("\n", 2)[:2]).strip()[:400]


def measure_worker_drain(bootstrap: str, work: Path, artifact: Path, threshold: float,
                         history: list[Payload], items: list[Payload], args: argparse.Namespace,
                         profile: Path | None = None, processes: int = 1,
                         code: Path | None = None, name: str | None = None) -> dict[str, Any]:
    """``processes`` workers (one consumer group, partitions shared out) drain the topic."""
    name = name or ("profile" if profile else ("drain" if processes == 1 else f"drain-{processes}"))
    s = settings_for(bootstrap, f"{name}.", work / f"{name}-home", args.partitions)
    preload(s, history + items)
    procs = [start_worker(s, artifact, threshold, args, args.logs / f"worker-{name}-{i}.log",
                          profile, instance=f"bench-{i}", processes=processes, code=code)
             for i in range(processes)]
    try:
        out = asyncio.run(watch_drain(s, s.topic("scores"), len(history), len(items), procs,
                                      args.timeout, broker_pids(work)))
    finally:
        for proc in procs:
            kill(proc, signal.SIGTERM, wait=60)
    return {"batch_size": args.batch_size, "max_wait_ms": args.max_wait_ms, "processes": processes,
            "worker": banner(args.logs / f"worker-{name}-0.log"), **out}


def compare_drains(bootstrap: str, work: Path, artifact: Path, threshold: float,
                   history: list[Payload], items: list[Payload], args: argparse.Namespace,
                   scoring: dict[str, Any], relay: dict[str, Any], console: Any) -> None:
    """``--compare-code``: the same drain, this checkout's worker (B) and another's (A), turn about.

    One drain against another moves by 5-10% between runs on this machine, more than most single
    changes are worth; alternating both sides in one run, on one broker, puts that drift on both.
    """
    import statistics

    sides = {"A": args.compare_code.resolve(), "B": ROOT}
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for i in range(args.drains):
        for side, code in sides.items():
            with console.status(f"drain {i + 1}/{args.drains}, {side} ({code})"):
                d = measure_worker_drain(bootstrap, work, artifact, threshold, history, items, args,
                                         code=code, name=f"drain-{side}{i}")
            console.log(f"{side}: {d.get('steady_throughput_per_s')}/s, {d.get('cpu_us_per_tx')} us/tx, "
                        f"{d.get('page_faults_per_tx')} page faults/tx")
            runs[side].append({k: d.get(k) for k in ("steady_throughput_per_s", "cpu_us_per_tx",
                                                     "page_faults_per_tx", "cpu_cores",
                                                     "broker_cpu_us_per_tx", "complete")})

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side] if r[key] is not None)

    summary = {side: {"code": str(code), "median_throughput_per_s": median(side, "steady_throughput_per_s"),
                      "median_cpu_us_per_tx": median(side, "cpu_us_per_tx"), "drains": runs[side]}
               for side, code in sides.items()}
    report = {"command": command_line(), "what": "A/B of the worker's max-rate drain: A = "
              "--compare-code, B = this checkout, alternating on one broker",
              "code": code_version(), "limit_scoring_alone": scoring,
              "limit_kafka_relay_alone": relay, "ab": summary, "machine_after": machine()}
    path = write_result(args.out or "worker_ab", report)
    print(json.dumps({side: {k: v for k, v in s.items() if k != "drains"}
                      for side, s in summary.items()} | {"results": path.as_posix()}, indent=2))


def hot_spots(profile: Path, top: int = 25) -> dict[str, list[dict[str, Any]]]:
    """Where the profiled worker spent its time: by own time (all code), and by cumulative time
    (txmon's own modules only, so the stages of a batch show)."""
    import pstats

    stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]

    def rows(items: Any) -> list[dict[str, Any]]:
        return [{"function": f"{Path(f).parent.name}/{Path(f).name}:{line}({fn})", "calls": nc,
                 "own_s": round(tt, 3), "cumulative_s": round(ct, 3)}
                for (f, line, fn), (_, nc, tt, ct, _) in items]

    ours = [kv for kv in stats.items() if str(ROOT) in kv[0][0] and "/.venv/" not in kv[0][0]]
    return {"by_own_time": rows(sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]),
            "txmon_by_cumulative_time":
                rows(sorted(ours, key=lambda kv: kv[1][3], reverse=True)[:top])}


async def paced_run(settings: Any, warmup: list[Payload], items: list[Payload], rate: float,
                    proc: Any, timeout: float) -> dict[str, Any]:
    """Warm the worker up, then publish ``items`` at ``rate``/s; e2e latency of every score."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**settings.kafka.aiokafka_config(), acks="all", linger_ms=1)
    consumer = _committed_consumer(settings, settings.topic("scores"))
    await producer.start()
    await consumer.start()
    topic = settings.topic("transactions")
    sent: dict[str, float] = {}
    e2e: list[float] = []
    worker_side: list[float] = []
    cpu = CpuMeter(proc.pid)

    async def receive(expected: set[str], until: float) -> None:
        while expected and time.monotonic() < until:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode}")
            batches = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for recs in batches.values():
                for r in recs:
                    score = json.loads(r.value)
                    tx_id = score["tx_id"]
                    if tx_id in expected:
                        expected.discard(tx_id)
                        if tx_id in sent:
                            e2e.append((now - sent[tx_id]) * 1000)
                            if "latency_ms" in score:  # a Score (the relay forwards transactions)
                                worker_side.append(score["latency_ms"])

    try:
        for item in warmup:  # model loaded, group joined, partitions assigned, code paths warm
            await producer.send(topic, item.value, key=item.key)
        pending_warmup = {i.tx_id for i in warmup}
        await receive(pending_warmup, time.monotonic() + timeout)
        if pending_warmup:
            raise RuntimeError(f"{len(pending_warmup)} warm-up transactions never scored")
        expected = {i.tx_id for i in items}
        receiver = asyncio.create_task(receive(expected, float("inf")))
        cpu.start()
        paced_from = time.time()  # wall clock, as the worker's batch trace
        t0 = time.monotonic()
        i = 0
        while i < len(items):
            due = min(len(items), int((time.monotonic() - t0) * rate) + 1)
            while i < due:
                item = items[i]
                sent[item.tx_id] = time.monotonic()
                await producer.send(topic, item.value, key=item.key)
                i += 1
            await asyncio.sleep(0.002)
        publish_s = time.monotonic() - t0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver, timeout)
        cpu.stop()
    finally:
        await producer.stop()
        await consumer.stop()
    return {"published": len(items), "scored": len(e2e), "missing": len(items) - len(e2e),
            "target_rate_per_s": round(rate), "achieved_rate_per_s": round(len(items) / publish_s),
            "seconds": round(publish_s, 1), "paced_from": paced_from,
            "e2e_latency_ms": percentiles(e2e, (50, 95, 99, 99.9))
            | ({"max": round(max(e2e), 1)} if e2e else {}),
            "worker_reported_latency_ms": percentiles(worker_side, (50, 95, 99)),
            "cpu_cores": round(cpu.cores, 2)}


def measure_latency(bootstrap: str, work: Path, name: str, start: Any, warmup: list[Payload],
                    items: list[Payload], rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """Paced run against the process ``start(settings, log)`` returns, on fresh topics."""
    from txmon.broker.topics import ensure_topics

    s = settings_for(bootstrap, f"{name}.", work / f"{name}-home", args.partitions)
    ensure_topics(s)
    log = args.logs / f"{name}.log"
    proc = start(s, log)
    try:
        return asyncio.run(paced_run(s, warmup, items, rate, proc, args.timeout))
    except RuntimeError as exc:
        tail = log.read_text(errors="replace")[-1000:] if log.exists() else ""
        raise RuntimeError(f"{exc} (log {log}: ...{tail})") from None
    finally:
        kill(proc, signal.SIGTERM)


# -- the run ---------------------------------------------------------------------------------------

def model_sizes() -> dict[str, int]:
    from models.finetune import TrainConfig

    tc = TrainConfig()
    return {k: getattr(tc, k) for k in ("max_len", "hidden_size", "num_layers", "num_heads",
                                        "intermediate_size")}


def code_version() -> dict[str, Any]:
    """The commit measured and whether the code under test had uncommitted changes (a shared tree)."""
    import subprocess

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    # Porcelain lines are "XY path": split, because strip() would eat the first line's blank X.
    dirty = git("status", "--porcelain", "--", "models", "streams", "txmon").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": [d.split(maxsplit=1)[-1] for d in dirty]}


def attempt(phase: Any) -> dict[str, Any]:
    """A later phase's result, or what stopped it: one failed phase keeps the others' figures."""
    try:
        return phase()
    except RuntimeError as exc:
        return {"error": str(exc)}


def per_core(scoring: dict[str, Any], relay: dict[str, Any], drain: dict[str, Any]) -> dict[str, Any]:
    limit = min(scoring["per_core_capacity_per_s"], relay.get("per_core_capacity_per_s") or 0)
    worker = drain.get("per_core_capacity_per_s") or 0
    return {"scoring_alone_per_s": scoring["per_core_capacity_per_s"],
            "kafka_relay_alone_per_s": relay.get("per_core_capacity_per_s"),
            "worker_per_s": worker, "worker_share_of_lower_limit":
                round(worker / limit, 3) if limit else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about 1-2 minutes instead of about 5")
    ap.add_argument("--transactions", type=int, help="pre-loaded for the drains (default 60000; "
                                                     "quick 15000)")
    ap.add_argument("--latency-seconds", type=float, help="paced run length (default 60; quick 20)")
    ap.add_argument("--batch-size", type=int, default=256, help="the worker's default")
    ap.add_argument("--max-wait-ms", type=int, default=20, help="the worker's default")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--alert-rate", type=float, default=0.005,
                    help="sets the alert threshold at this quantile of the limit run's scores")
    ap.add_argument("--model", type=Path, help="a (trained) artifact; default: untrained, "
                                               "production-sized, built here")
    ap.add_argument("--hidden-size", type=int, help="the built model's hidden size (default: "
                                                    "TrainConfig's); the share of the limit grows "
                                                    "with the model's cost")
    ap.add_argument("--num-layers", type=int, help="the built model's depth (default: TrainConfig's)")
    ap.add_argument("--timeout", type=float, default=300.0, help="per phase (seconds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker-arg", action="append", default=[],
                    help="extra argument for `txmon worker` (repeatable), e.g. --worker-arg=--no-drift")
    ap.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()) / "txmon-bench-worker",
                    help="where the worker and relay logs go (emptied first)")
    ap.add_argument("--retry-backoff-ms", type=int,
                    help="the producers' retry backoff, worker and relay alike (default: the "
                         "worker's)")
    ap.add_argument("--concurrent-txn-backoff-ms", type=float,
                    help="wait before re-adding partitions while the coordinator completes the last "
                         "transaction, worker and relay alike (default: the worker's; aiokafka's "
                         "own is a fixed 20)")
    ap.add_argument("--processes", type=int, default=1,
                    help="also drain with this many worker processes in one group (scaling out)")
    ap.add_argument("--profile", action="store_true",
                    help="drain once more with the worker under cProfile; its hot spots go in the JSON")
    ap.add_argument("--out", help="result name under bench/results (default worker / worker_quick)")
    ap.add_argument("--reference-cache", type=Path,
                    default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "txmon" / "bench-drift-references",
                    help="where the pre-built drift reference of the benchmark model is kept")
    ap.add_argument("--pin", action="store_true",
                    help="the worker (and the relay control) on core 0, the broker and this "
                         "process on core 1 (taskset; single-process runs only)")
    ap.add_argument("--compare-code", type=Path, metavar="CHECKOUT",
                    help="A/B mode: drains alternate between this checkout's worker and "
                         "CHECKOUT's (e.g. a git worktree of the last commit), --drains times "
                         "each; no latency runs")
    ap.add_argument("--drains", type=int, default=3, help="drains per side with --compare-code")
    ap.add_argument("--drift-build-in-worker", action="store_true",
                    help="no pre-built drift reference: each worker warms up and simulates "
                         "thresholds in a background thread while it is measured")
    args = ap.parse_args()
    from streams.config import WorkerConfig

    for name in ("retry_backoff_ms", "concurrent_txn_backoff_ms"):
        if getattr(args, name) is None:
            setattr(args, name, WorkerConfig.model_fields[name].default)
    shutil.rmtree(args.logs, ignore_errors=True)
    args.logs.mkdir(parents=True)
    n = args.transactions or (15_000 if args.quick else 60_000)
    latency_s = args.latency_seconds or (20.0 if args.quick else 60.0)
    warm_n = 500

    import logging

    from rich.console import Console

    # Fresh topics elect leaders while the clients start: aiokafka logs and retries; a real
    # failure shows up in the results as missing outputs.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    console = Console(stderr=True)
    guard_children()
    before = machine()
    t_start = time.monotonic()
    with private_broker() as (bootstrap, work):
        if args.pin:
            pin_rest(work)
        with console.status("simulating transactions"):
            frame, h = simulated_frame(n, args.seed)
            hist_txs, history = payloads(frame, 0, h)
            # The drift monitor's reference is built from a new champion's first events, once; keep
            # that inside the history so the measured part sees the monitor in its steady state.
            args.drift_warmup = min(DRIFT_WARMUP, h // 2)
            txs, items = payloads(frame, h, n)
            per_account = round((h + n) / frame.iloc[:h + n]["account_id"].nunique(), 1)
        console.log(f"{h} history + {n} measured transactions ({per_account} per account)")
        artifact = args.model
        if artifact is None:
            with console.status("exporting the benchmark model"):
                artifact = build_artifact(frame.iloc[:n], work / "artifact", args.hidden_size,
                                          args.num_layers)
        with console.status("limit 1: scoring alone"):
            scoring = measure_scoring(artifact, hist_txs, txs, args.batch_size, args.alert_rate)
        console.log(f"scoring alone: {scoring['encode_and_score_per_s']}/s encode+score, "
                    f"{scoring['score_only_per_s']}/s score only")
        threshold = scoring["threshold_for_alert_rate"]
        args.drift_references, reference = None, {"pre_built": False}
        if not args.drift_build_in_worker and "--no-drift" not in args.worker_arg:
            with console.status("drift reference of the benchmark model (cached after the first run)"):
                args.drift_references, reference = drift_reference(
                    artifact, history, threshold, args.drift_warmup, args.reference_cache)
            reference["pre_built"] = args.drift_references is not None
            console.log(f"drift reference: {reference}")
        with console.status("limit 2: transactional Kafka relay"):
            relay = measure_relay(bootstrap, work, history, items, args)
        console.log(f"kafka relay: {relay.get('steady_throughput_per_s')}/s steady")
        if args.compare_code is not None:
            compare_drains(bootstrap, work, artifact, threshold, history, items, args, scoring,
                           relay, console)
            return
        with console.status("worker: draining a pre-loaded topic"):
            drain = measure_worker_drain(bootstrap, work, artifact, threshold, history, items, args)
        console.log(f"worker drain: {drain.get('steady_throughput_per_s')}/s steady")
        scaled = None
        if args.processes > 1:
            with console.status(f"{args.processes} workers: draining a pre-loaded topic"):
                scaled = attempt(lambda: measure_worker_drain(
                    bootstrap, work, artifact, threshold, history, items, args,
                    processes=args.processes))
            console.log(f"{args.processes} workers: {scaled.get('steady_throughput_per_s')}/s steady")
        max_rate = drain.get("steady_throughput_per_s") or 100
        rate = 0.5 * max_rate
        paced_n = min(int(rate * latency_s), len(frame) - h - n - warm_n)
        _, warm = payloads(frame, h + n, warm_n)
        _, paced_items = payloads(frame, h + n + warm_n, paced_n)
        with console.status(f"worker: paced at {rate:.0f}/s for {paced_n / rate:.0f} s"):
            trace = work / "paced-batches.jsonl"
            paced = attempt(lambda: measure_latency(
                bootstrap, work, "paced", lambda s, log: start_worker(s, artifact, threshold, args, log,
                                                                      trace=trace),
                history + warm, paced_items, rate, args))
            if "paced_from" in paced:
                paced["batch_trace"] = trace_summary(trace, paced["paced_from"])
        console.log(f"worker at {rate:.0f}/s: e2e {paced.get('e2e_latency_ms', paced)}")
        # The same paced load through the relay: the latency the machine and broker alone allow.
        control_items = paced_items[: max(1, len(paced_items) // 2)]
        with console.status(f"kafka relay: paced at {rate:.0f}/s (latency control)"):
            relay_paced = attempt(lambda: measure_latency(bootstrap, work, "relay-paced",
                                                          lambda s, log: start_relay(s, args, log),
                                                          warm, control_items, rate, args))
        console.log(f"kafka relay at {rate:.0f}/s: e2e {relay_paced.get('e2e_latency_ms', relay_paced)}")
        profile = None
        if args.profile:
            with console.status("worker under cProfile: draining again"):
                # A slice is enough for where the time goes; cProfile slows the worker down a lot.
                profiled = attempt(lambda: measure_worker_drain(
                    bootstrap, work, artifact, threshold, history, items[:10_000], args,
                    profile=work / "worker.prof"))
                profile = (hot_spots(work / "worker.prof") if (work / "worker.prof").is_file()
                           else profiled)
                if (work / "worker.prof").is_file():  # kept for a closer look (pstats)
                    shutil.copy(work / "worker.prof", args.logs / "worker.prof")
    limit = min(scoring["encode_and_score_per_s"], relay.get("steady_throughput_per_s") or 0)
    sustained = drain.get("steady_throughput_per_s") or 0
    p99 = paced.get("e2e_latency_ms", {}).get("p99")
    report = {
        "command": command_line(),
        "what": "txmon worker (streams/worker.py) end to end on a private one-node Kafka 4.1, "
                "against scoring alone and a transactional Kafka relay alone, same run",
        "parameters": {"transactions": n, "history_transactions": h,
                       "transactions_per_account": per_account, "latency_seconds": latency_s,
                       "batch_size": args.batch_size,
                       "max_wait_ms": args.max_wait_ms, "partitions": args.partitions,
                       "retry_backoff_ms": args.retry_backoff_ms,
                       "concurrent_txn_backoff_ms": args.concurrent_txn_backoff_ms,
                       "drift_warmup": args.drift_warmup, "worker_args": args.worker_arg,
                       "pinned": "worker/relay on core 0, broker and load generator on core 1"
                       if args.pin else None,
                       "alert_rate": args.alert_rate, "alert_threshold": round(threshold, 6),
                       "model": str(args.model) if args.model else
                       f"untrained, built here with TrainConfig sizes {model_sizes()}"
                       + (f", hidden size {args.hidden_size}" if args.hidden_size else "")
                       + (f", {args.num_layers} layers" if args.num_layers else "")},
        "code": code_version(),
        "drift_reference": reference,
        "limit_scoring_alone": scoring,
        "limit_kafka_relay_alone": relay,
        "worker_max_rate": drain,
        "workers_max_rate_scaled_out": scaled,
        "worker_half_rate": paced,
        "kafka_relay_same_rate": relay_paced,
        "targets": {
            "lower_limit_per_s": limit,
            "sustained_share_of_lower_limit": round(sustained / limit, 3) if limit else None,
            "throughput_target_share": TARGET_SHARE,
            "throughput_met": bool(limit and sustained >= TARGET_SHARE * limit),
            "p99_e2e_ms_at_half_rate": p99, "p99_target_ms": TARGET_P99_MS,
            "latency_met": p99 is not None and p99 <= TARGET_P99_MS and paced.get("missing") == 0,
            # The same comparison in CPU time, which a busy machine distorts far less than wall
            # time: transactions per second one core of the measured process would sustain.
            "per_core_capacity": per_core(scoring, relay, drain)},
        "worker_profile_own_time": profile,
        "notes": [
            "Every process shares one machine: broker (JVM), the measured process, and this "
            "benchmark's own producer/consumer. machine_*.load_average says how busy it was.",
            "Throughputs are committed (read_committed) outputs per second over the steady middle of "
            "a drain (10%..90% of the pre-loaded topic), so start-up and the last partial batches "
            "are left out; throughput_per_s is over the whole drain.",
            "The worker runs as `txmon worker` with its defaults (drift monitor on, see "
            "worker_max_rate.worker for its banner). Unless drift_reference.pre_built is false, "
            "each worker starts with its champion's drift reference already built (as after a "
            "restart): it monitors from its first event. Building a reference (warm-up events, "
            "threshold simulation) is a one-off per champion, drift_reference.build_seconds when "
            "it was built in this run; with --drift-build-in-worker the workers build it in a "
            "background thread while measured.",
            "cpu_cores: CPU seconds of the measured process / wall seconds (1.0 = one core).",
        ],
        "seconds": round(time.monotonic() - t_start, 1),
        "machine_before": before, "machine_after": machine()}
    path = write_result(args.out or ("worker_quick" if args.quick else "worker"), report)
    print(json.dumps({"targets": report["targets"], "results": path.as_posix()}, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["_relay"]:
        run_relay()
    else:
        main()
