"""What the reliability benchmarks (faults, hostile input, back-pressure) share: a workload of
simulated transactions with an untrained production-sized model, worker processes restarted like a
supervisor would, a ``read_committed`` tally of what came out, and RSS / lag probes.

Imported as ``bench._reliability`` with the repository root on ``sys.path``; the integration tests
import it too, so the short variants run the same code as the long ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import kill, spawn

PARTITIONS = 6


# -- the workload ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Payload:
    tx_id: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Workload:
    items: list[Payload]
    artifact: Path
    threshold: float


def simulated_payloads(n: int, seed: int = 0, accounts: int | None = None, start: Any = None,
                       id_prefix: str = "") -> tuple[Any, list[Payload]]:
    """``n`` simulated transactions in event-time order as publisher bytes: about 33 per account
    unless ``accounts`` is given, from ``start`` (default the simulator's). Transaction ids depend on
    the account population only: a second set for the same accounts needs an ``id_prefix``."""
    from txmon.frames import to_transaction
    from txmon.sim import SimConfig, simulate

    accounts = accounts or max(50, n // 33)
    days = max(3, int(n / (2.2 * accounts)) + 2)  # the simulator makes about 2.2 per account-day
    extra = {"start": start} if start is not None else {}
    while True:
        frame = simulate(SimConfig(accounts=accounts, days=days, seed=seed, **extra)).frame
        if len(frame) >= n:
            break
        days += max(2, days // 4)
    txs = [to_transaction(row) for row in frame.iloc[:n].to_dict("records")]
    if id_prefix:
        txs = [t.model_copy(update={"tx_id": id_prefix + t.tx_id}) for t in txs]
    return frame.iloc[:n], [Payload(t.tx_id, t.account_id.encode(), t.to_bytes()) for t in txs]


def workload(n: int, work: Path, seed: int = 0, alert_rate: float = 0.005,
             tiny: bool = False, accounts: int | None = None) -> Workload:
    """Transactions (of ``accounts``, default about 33 each), an untrained production-sized ONNX
    model fitted to them (``tiny``: a one-layer model, for tests: delivery does not depend on the
    graph), and the threshold that makes about ``alert_rate`` of them alerts (so the alert path
    runs too)."""
    from bench.bench_worker import build_artifact, measure_scoring
    from txmon.frames import to_transaction

    frame, items = simulated_payloads(n, seed, accounts=accounts)
    artifact = (tiny_artifact if tiny else build_artifact)(frame, work / "artifact")
    sample = [to_transaction(r) for r in frame.iloc[:2000].to_dict("records")]
    threshold = measure_scoring(artifact, [], sample, 256, alert_rate)["threshold_for_alert_rate"]
    return Workload(items, artifact, min(float(threshold), 1.0))


def tiny_artifact(frame: Any, out_dir: Path) -> Path:
    import torch

    from models.configuration import TxmonConfig
    from models.dataset import fit_spec
    from models.export import export_artifact
    from models.modeling import TxmonModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = fit_spec(frame, min_count=1)
    model = TxmonModel(TxmonConfig(vocab_sizes=spec.vocab_sizes, max_len=8, hidden_size=16,
                                   field_size=8, num_layers=1, num_heads=2, intermediate_size=32))
    export_artifact(model, spec, out_dir, "bench-tiny")
    return out_dir


def settings_for(bootstrap: str, prefix: str, home: Path, partitions: int = PARTITIONS,
                 replication_factor: int = 1) -> Any:
    from txmon.settings import KafkaSettings, Settings, TopicSettings

    return Settings(home=home, kafka=KafkaSettings(bootstrap_servers=bootstrap),
                    topics=TopicSettings(prefix=prefix, partitions=partitions,
                                         replication_factor=replication_factor))


def produce(settings: Any, items: list[Any], *, rate: float | None = None,
            stop: Callable[[], bool] = lambda: False) -> list[Any]:
    """Publish ``(key, value)`` items (or Payloads) to the transactions topic, acks=all and
    idempotent, at ``rate``/s or as fast as possible; returns each item's RecordMetadata
    (partition, offset), or None where the broker never acknowledged it."""
    from kafka import KafkaProducer

    p = KafkaProducer(**settings.kafka.kafka_python_config(), acks="all", linger_ms=5,
                      batch_size=256 * 1024, max_request_size=2 * 1024 * 1024)
    topic = settings.topic("transactions")
    futures = []
    t0 = time.monotonic()
    try:
        for i, item in enumerate(items):
            if stop():
                break
            key, value = (item.key, item.value) if isinstance(item, Payload) else item
            futures.append(p.send(topic, key=key, value=value))
            if rate and i % 50 == 0:
                ahead = i / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        p.flush(timeout=300)
    finally:
        p.close(timeout=30)
    return [f.value if f.succeeded() else None for f in futures]


# -- worker processes ------------------------------------------------------------------------------

def worker_command(settings: Any, w: Workload, instance: str, *, drift_warmup: int,
                   extra: list[str]) -> tuple[list[str], dict[str, str]]:
    env = os.environ | {"TXMON_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
                        "TXMON_TOPICS__PREFIX": settings.topics.prefix,
                        "TXMON_TOPICS__PARTITIONS": str(settings.topics.partitions),
                        "TXMON_TOPICS__REPLICATION_FACTOR": str(settings.topics.replication_factor),
                        "TXMON_HOME": str(settings.home), "TXMON_WORKER__INSTANCE_ID": instance,
                        "TXMON_WORKER__METRICS_PORT": "-1", "OMP_NUM_THREADS": "1",
                        # Two workers on one host need a drift checkpoint directory each.
                        "TXMON_WORKER__DRIFT_STATE_DIR": str(Path(settings.home) / f"drift-{instance}")}
    env.pop("TXMON_SIGNING_KEY", None)  # the benchmark's artifact is unsigned
    txmon = Path(sys.executable).with_name("txmon")
    return ([str(txmon), "worker", "--model", str(w.artifact), "--threshold", f"{w.threshold:.6f}",
             "--drift-warmup", str(drift_warmup), "--log-level", "WARNING", *extra], env)


@dataclass
class Slot:
    """One worker instance id, restarted whenever it exits unasked — what systemd or Kubernetes
    would do. ``kill9`` is a crash (restarted at once); ``stop`` is a clean leave (not restarted)."""

    name: str
    command: tuple[list[str], dict[str, str]]
    log: Path
    proc: subprocess.Popen | None = None
    stopped: bool = False
    kills: int = 0
    unasked_exits: list[int | None] = field(default_factory=list)
    starts: int = 0

    def start(self) -> None:
        args, env = self.command
        self.proc = spawn(args, env, self.log)
        self.starts += 1
        self.stopped = False

    def kill9(self) -> None:
        assert self.proc is not None
        kill(self.proc, signal.SIGKILL)
        self.kills += 1
        self.start()

    def stop(self) -> int | None:
        self.stopped = True
        return kill(self.proc, signal.SIGTERM, wait=60) if self.proc is not None else None

    def supervise(self) -> bool:
        """Restart if it exited unasked; True when it did."""
        if self.stopped or self.proc is None or self.proc.poll() is None:
            return False
        self.unasked_exits.append(self.proc.returncode)
        self.start()
        return True

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def summary(self) -> dict[str, Any]:
        return {"instance": self.name, "starts": self.starts, "kill9": self.kills,
                "unasked_exits": self.unasked_exits}


async def supervise(slots: list[Slot], backoff: float = 1.0) -> None:
    """Restart crashed workers until cancelled (a worker exits on purpose when Kafka fails it)."""
    while True:
        for s in slots:
            if s.proc is not None and s.proc.poll() is not None and not s.stopped:
                await asyncio.sleep(backoff)
                s.supervise()
        await asyncio.sleep(0.3)


def log_tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def group_churn(path: Path) -> dict[str, int]:
    """From a worker's INFO log: partition assignments it got, and times the group coordinator
    no longer knew it (a heartbeat missed the session timeout, e.g. on a CPU-starved machine)."""
    text = log_tail(path, 10**9)
    return {"assignments": text.count("assigned partitions"),
            "evicted_from_group": text.count("member_id was not recognized")}


def code_version() -> dict[str, Any]:
    """The commit measured and the uncommitted files under test (the tree is shared)."""
    from bench.bench_worker import code_version as version

    return version()


# -- what came out ---------------------------------------------------------------------------------

class Tally:
    """Every committed (``read_committed``) champion score and dead letter, as it arrives."""

    def __init__(self, settings: Any, dlq: bool = True):
        self.settings = settings
        self.topics = [settings.topic("scores")] + ([settings.topic("dlq")] if dlq else [])
        self.scores: Counter[str] = Counter()
        self.score_records = 0
        self.letters: list[dict[str, Any]] = []
        self.consumer: Any = None
        self.growth: list[tuple[float, int]] = []  # (monotonic time, distinct scored)

    @property
    def scored(self) -> int:
        return len(self.scores)

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self.consumer = AIOKafkaConsumer(*self.topics, **self.settings.kafka.aiokafka_config(),
                                         group_id=None, isolation_level="read_committed",
                                         auto_offset_reset="earliest", enable_auto_commit=False,
                                         fetch_max_wait_ms=100, max_partition_fetch_bytes=4 << 20)
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    def _take(self, recs: list[Any]) -> None:
        scores, dlq = self.topics[0], self.topics[1] if len(self.topics) > 1 else None
        for r in recs:
            if r.topic == scores:
                s = json.loads(r.value)
                if not s.get("shadow"):
                    self.scores[s["tx_id"]] += 1
                    self.score_records += 1
            elif r.topic == dlq:
                d = json.loads(r.value)
                self.letters.append({k: d.get(k) for k in ("source_topic", "partition", "offset",
                                                           "error", "error_field", "stage", "key")})

    async def poll(self, timeout_ms: int = 200) -> None:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=20_000)
        for recs in batches.values():
            self._take(recs)
        if not self.growth or self.growth[-1][1] != self.scored:
            self.growth.append((time.monotonic(), self.scored))

    async def until(self, predicate: Callable[[], bool], timeout: float,
                    alive: Callable[[], None] = lambda: None) -> bool:
        """Poll until ``predicate()``; ``alive`` may raise (a worker that cannot run at all)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            alive()
            await self.poll()
        return True

    async def to_end(self, timeout: float = 120.0) -> None:
        """Read everything committed so far (call once every producer of the topics has stopped)."""
        from aiokafka import TopicPartition

        tps = [TopicPartition(t, p) for t in self.topics
               for p in sorted(self.consumer.partitions_for_topic(t) or ())]
        ends = await self.consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = {tp: await self.consumer.position(tp) for tp in tps if tp in
                         self.consumer.assignment()}
            if len(positions) == len(tps) and all(positions[tp] >= ends[tp] for tp in tps):
                return
            await self.poll()
        raise RuntimeError("the tally could not read to the end of its topics")

    def reached(self, count: int, after: float) -> float | None:
        """Seconds from ``after`` until ``count`` distinct transactions were scored."""
        return next((round(t - after, 1) for t, c in self.growth if t >= after and c >= count), None)

    def account(self, sent: list[str]) -> dict[str, Any]:
        """Transactions in vs committed scores out: lost and duplicated."""
        want = set(sent)
        return {"transactions_in": len(want), "scores_out": self.score_records,
                "distinct_scored": len(self.scores),
                "lost": len(want - self.scores.keys()),
                "duplicated": sum(c - 1 for c in self.scores.values() if c > 1),
                "unexpected": len(self.scores.keys() - want),
                "dead_letters": len(self.letters)}


def input_records(settings: Any) -> int:
    from bench._common import end_offsets

    return end_offsets(settings.kafka.bootstrap_servers, settings.topic("transactions"))


# -- probes ----------------------------------------------------------------------------------------

def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_per_minute(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) samples, per minute."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return round(60 * sum((t - mt) * (v - mv) for t, v in samples) / den, 3) if den else None


def rss_summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Max RSS, and its trend over the whole run and over its second half (MB per minute)."""
    if not samples:
        return {}
    half = samples[len(samples) // 2:]
    return {"samples": len(samples), "start_mb": round(samples[0][1], 1),
            "max_mb": round(max(v for _, v in samples), 1),
            "max_first_half_mb": round(max(v for _, v in samples[:len(samples) // 2] or samples), 1),
            "max_second_half_mb": round(max(v for _, v in half), 1),
            "end_mb": round(samples[-1][1], 1),
            "slope_mb_per_min": slope_per_minute(samples),
            "slope_second_half_mb_per_min": slope_per_minute(half)}


class LagProbe:
    """Consumer-group lag on the transactions topic: end offsets minus committed offsets."""

    def __init__(self, settings: Any, group: str = "txmon-scorer"):
        from kafka import KafkaAdminClient, KafkaConsumer

        conf = settings.kafka.kafka_python_config()
        self.group = group
        self.topic = settings.topic("transactions")
        self.consumer = KafkaConsumer(**conf, enable_auto_commit=False)
        self.admin = KafkaAdminClient(**conf)

    def lag(self) -> int | None:
        from kafka import TopicPartition

        try:
            parts = sorted(self.consumer.partitions_for_topic(self.topic) or ())
            ends = self.consumer.end_offsets([TopicPartition(self.topic, p) for p in parts])
            done = self.admin.list_group_offsets(self.group).get(self.group, {})
        except Exception:  # the coordinator is not elected yet, or a request timed out: no sample
            return None
        committed = {tp: m.offset for tp, m in done.items() if tp.topic == self.topic and m.offset >= 0}
        return sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close()
        with contextlib.suppress(Exception):
            self.admin.close()


@contextlib.contextmanager
def work_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)
