"""Helpers the Kafka benchmarks share: a private broker, child processes that never outlive the
benchmark, CPU accounting from ``/proc``, and the JSON result file.

Benchmarks are scripts (``.venv/bin/python bench/NAME.py``); this module is imported as
``bench._common`` with the repository root on ``sys.path`` (each script puts it there).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from txmon.broker.ports import free_port_block  # shared with tests and the demo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the broker ------------------------------------------------------------------------------------


@contextlib.contextmanager
def private_cluster(heap: str = "768m", brokers: int = 1) -> Iterator[tuple[Any, Path]]:
    """An Apache Kafka (KRaft) of ``brokers`` nodes in a temp directory: yields (its ``Cluster``,
    temp dir), so a benchmark can stop and start nodes."""
    from txmon.broker import Cluster, ClusterPlan

    with tempfile.TemporaryDirectory(prefix="txmon-bench-") as d:
        home = Path(d)
        cluster = Cluster(home / "kafka", ClusterPlan(port=free_port_block(brokers), brokers=brokers),
                          heap=heap)
        try:
            cluster.up(timeout=180)
            yield cluster, home
        finally:
            cluster.down()


@contextlib.contextmanager
def private_broker(heap: str = "768m") -> Iterator[tuple[str, Path]]:
    """A one-node Apache Kafka (KRaft) in a temp directory: yields (bootstrap servers, temp dir)."""
    with private_cluster(heap) as (cluster, home):
        yield cluster.bootstrap_servers, home


def broker_pids(home: Path) -> list[int]:
    """Process ids of the broker(s) :func:`private_broker` started under ``home``."""
    pids = []
    for f in sorted((Path(home) / "kafka" / "cluster").glob("node-*/kafka.pid")):
        with contextlib.suppress(ValueError, OSError):
            pids.append(int(f.read_text().strip()))
    return pids


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="bench-admin")
    try:
        admin.create_topics([NewTopic(n, partitions, 1) for n in names], timeout_ms=30_000)
    finally:
        admin.close()


def end_offsets(bootstrap: str, topic: str, committed_only: bool = True) -> int:
    """Sum of a topic's end offsets: the last stable offset when ``committed_only``."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                      isolation_level="read_committed" if committed_only else "read_uncommitted")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        return sum(c.end_offsets(tps).values()) if tps else 0
    finally:
        c.close()


def group_committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of a consumer group's committed offsets on ``topic`` (0 before its first commit)."""
    from kafka import KafkaAdminClient
    from kafka.errors import (
        CoordinatorLoadInProgressError,
        CoordinatorNotAvailableError,
        NotCoordinatorError,
    )

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="bench-admin")
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
        return sum(m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset >= 0)
    except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError):
        return 0  # a fresh broker elects the group coordinator on first use: nothing committed yet
    finally:
        admin.close()


# -- child processes -------------------------------------------------------------------------------

_children: set[subprocess.Popen] = set()


def reap_children() -> None:
    """SIGKILL every child :func:`spawn` started that is still running."""
    for p in list(_children):
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        _children.discard(p)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def guard_children() -> None:
    """Make SIGTERM/SIGINT unwind the benchmark, so its ``finally`` blocks stop broker and children."""
    atexit.register(reap_children)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)


def spawn(args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """A child in its own process group (killed with the benchmark whatever the exit)."""
    p = subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                         start_new_session=True, cwd=cwd)
    _children.add(p)
    return p


def kill(p: subprocess.Popen, sig: int = signal.SIGKILL, wait: float = 30.0) -> int | None:
    """Signal ``p``; SIGKILL it if it has not exited after ``wait`` seconds. Returns its exit code."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(sig)
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    _children.discard(p)
    return p.returncode


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def minor_faults(pid: int) -> int:
    """Minor page faults of a live process so far, from ``/proc/<pid>/stat``. On this machine's VM
    a first touch of a page costs ~10-20 us, so they show in CPU per transaction."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


class CpuMeter:
    """CPU share of one process between :meth:`start` and :meth:`stop` (1.0 = one full core), and
    its minor page faults."""

    def __init__(self, pid: int):
        self.pid = pid
        self._t0 = self._c0 = 0.0
        self._f0 = self.faults = 0
        self.seconds = self.cpu = 0.0

    def start(self) -> None:
        self._t0, self._c0, self._f0 = time.monotonic(), cpu_seconds(self.pid), minor_faults(self.pid)

    def stop(self) -> float:
        self.seconds = time.monotonic() - self._t0
        self.cpu = cpu_seconds(self.pid) - self._c0
        self.faults = minor_faults(self.pid) - self._f0
        return self.cores

    @property
    def cores(self) -> float:
        return self.cpu / self.seconds if self.seconds else 0.0


# -- results ---------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """What the figures were measured on, including how busy the machine was."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(terse=True)}


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def command_line() -> str:
    return " ".join([".venv/bin/python", *[a if " " not in a else repr(a) for a in sys.argv]])


def percentiles(values: list[float], qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., ...}`` of ``values`` (nearest-rank), rounded to 0.1; empty -> {}.

    >>> percentiles([1.0, 2.0, 3.0, 4.0], (50, 99))
    {'p50': 2.0, 'p99': 4.0}
    """
    if not values:
        return {}
    s = sorted(values)
    return {f"p{q:g}": round(s[max(0, min(len(s) - 1, math.ceil(len(s) * q / 100) - 1))], 1) for q in qs}
