"""Benchmark: crashes, rebalances and a broker restart under load — nothing lost, nothing duplicated.

    .venv/bin/python bench/bench_faults.py [--transactions 200000] [--kills 5] [--scenario NAME ...]

Each scenario runs on fresh topics of one private Kafka 4.1 broker (KRaft, temp dir) with
``--transactions`` simulated transactions and ``txmon worker`` subprocesses with their defaults
(drift monitor on) serving an untrained, production-sized ONNX model:

1. ``kills`` — one worker drains the pre-loaded topic; it is SIGKILLed ``--kills`` times at evenly
   spaced points and restarted at once (same instance id, as a supervisor would).
2. ``rebalance`` — one worker; a second joins at 25% of the run and the first leaves (SIGTERM) at
   60%: two rebalances while batches are in flight.
3. ``broker`` — half the transactions pre-loaded, the other half published live at ``--rate``/s
   from 10% scored on; at 30% the broker is SIGKILLed, stays down ``--broker-down-seconds``, and
   is started again.
   A worker whose Kafka transaction fails exits on purpose (crash-only) and is restarted.
4. ``node_loss`` — on a private *three-node* cluster (topics replication factor 3, min ISR 2, the
   transaction state log 3 / 2): as ``broker``, but at 30% the node that is the worker's transaction
   coordinator (else the one leading most input partitions) is SIGKILLed; it stays down until
   ``--node-down-fraction`` of the run is scored (or ``--node-down-max-seconds``), so the worker must
   make progress on two nodes, then it is started again.

Per scenario: transactions in, committed scores out (``read_committed``), lost, duplicated, and the
faults with the seconds until 1,000 more transactions were scored. Writes
``bench/results/faults.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    command_line,
    guard_children,
    machine,
    private_cluster,
    reap_children,
    write_result,
)
from bench._reliability import (
    Slot,
    Tally,
    Workload,
    code_version,
    group_churn,
    input_records,
    log_tail,
    produce,
    settings_for,
    supervise,
    work_dir,
    worker_command,
    workload,
)

SCENARIOS = ("kills", "rebalance", "broker", "node_loss")


@dataclass
class Plan:
    kills: int = 5
    rate: float = 800.0
    broker_down_seconds: float = 10.0
    node_down_fraction: float = 0.6  # node_loss: restart the node once this share is scored
    node_down_max_seconds: float = 300.0
    restart_node: bool = True  # node_loss: start the lost node again (tests skip it for time)
    drift_warmup: int = 5_000
    worker_args: list[str] = field(default_factory=list)
    timeout: float = 1800.0  # per scenario
    logs: Path = Path("/tmp/txmon-bench-faults")
    prefix: str = ""  # topic prefix before the scenario's name (tests share one broker)


class Run:
    """One scenario's topics, workers and tally."""

    def __init__(self, cluster: Any, work: Path, name: str, w: Workload, plan: Plan):
        self.cluster, self.w, self.plan, self.name = cluster, w, plan, name
        self.settings = settings_for(cluster.bootstrap_servers, f"{plan.prefix}{name}.",
                                     work / f"{name}-home",
                                     replication_factor=min(3, cluster.plan.brokers))
        self.slots: list[Slot] = []
        self.tally = Tally(self.settings)
        self.faults: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

    def slot(self, instance: str) -> Slot:
        cmd = worker_command(self.settings, self.w, instance, drift_warmup=self.plan.drift_warmup,
                             extra=["--log-level", "INFO", *self.plan.worker_args])
        s = Slot(instance, cmd, self.plan.logs / f"{self.plan.prefix}{self.name}-{instance}.log")
        self.slots.append(s)
        s.start()
        return s

    @property
    def n(self) -> int:
        return len(self.w.items)

    def alive(self) -> None:
        for s in self.slots:
            if s.starts > 50:
                raise RuntimeError(f"{s.name} restarted {s.starts} times: {log_tail(s.log)}")

    async def reach(self, count: int) -> None:
        if not await self.tally.until(lambda: self.tally.scored >= count, self.plan.timeout, self.alive):
            tails = {s.name: log_tail(s.log, 800) for s in self.slots}
            raise RuntimeError(f"{self.name}: {self.tally.scored} of {count} scored in time; {tails}")

    async def logged(self, slot: Slot, assignments: int) -> None:
        """Wait until ``slot`` has logged ``assignments`` partition assignments."""
        def done() -> bool:
            return log_tail(slot.log, 10**8).count("assigned partitions") >= assignments

        if not await self.tally.until(done, self.plan.timeout, self.alive):
            raise RuntimeError(f"{self.name}: {slot.name} never got partitions: {log_tail(slot.log)}")

    def fault(self, what: str) -> dict[str, Any]:
        f = {"fault": what, "at_scored": self.tally.scored,
             "at_seconds": round(time.monotonic() - self.t0, 1), "_t": time.monotonic()}
        self.faults.append(f)
        return f

    async def finish(self, sent: list[str], supervisor: asyncio.Task | None) -> dict[str, Any]:
        await self.reach(self.n)
        seconds = time.monotonic() - self.t0
        if supervisor is not None:
            supervisor.cancel()
        for s in self.slots:
            s.stop()
        await self.tally.to_end()
        await self.tally.stop()
        for f in self.faults:
            t = f.pop("_t")
            f["seconds_to_1000_more_scored"] = self.tally.reached(f["at_scored"] + 1000, t)
        churn = {s.name: group_churn(s.log) for s in self.slots}
        return {**self.tally.account(sent), "input_records": input_records(self.settings),
                "seconds": round(seconds, 1), "throughput_per_s": round(self.n / seconds),
                "faults": self.faults, "workers": [s.summary() for s in self.slots],
                "group_churn": churn}


async def kills(cluster: Any, work: Path, w: Workload, plan: Plan) -> dict[str, Any]:
    run = Run(cluster, work, "kills", w, plan)
    await asyncio.to_thread(_ensure_and_produce, run.settings, w.items)
    await run.tally.start()
    slot = run.slot("w1")
    sup = asyncio.create_task(supervise(run.slots))
    for i in range(1, plan.kills + 1):
        await run.reach(run.n * i // (plan.kills + 1))
        if run.tally.scored >= run.n:
            raise RuntimeError("the worker finished before it could be killed mid-stream")
        run.fault(f"kill -9 worker (#{i})")
        slot.kill9()
    return await run.finish([p.tx_id for p in w.items], sup)


async def rebalance(cluster: Any, work: Path, w: Workload, plan: Plan) -> dict[str, Any]:
    run = Run(cluster, work, "rebalance", w, plan)
    await asyncio.to_thread(_ensure_and_produce, run.settings, w.items)
    await run.tally.start()
    first = run.slot("w1")
    sup = asyncio.create_task(supervise(run.slots))
    await run.reach(run.n // 4)
    run.fault("second worker joins")
    second = run.slot("w2")
    # Both must hold partitions before the first one leaves, or there was no rebalance between them.
    await run.logged(second, 1)
    await run.logged(first, 2)
    if run.tally.scored >= run.n * 6 // 10:
        run.faults[-1]["note"] = "joined after 60% were scored: the first worker leaves at once"
    await run.reach(run.n * 6 // 10)
    run.fault("first worker leaves (SIGTERM)")
    await asyncio.to_thread(first.stop)
    await run.logged(second, 2)  # the survivor took the leaver's partitions
    return await run.finish([p.tx_id for p in w.items], sup)


async def broker(cluster: Any, work: Path, w: Workload, plan: Plan) -> dict[str, Any]:
    from txmon.broker import wait_ready

    run = Run(cluster, work, "broker", w, plan)
    half = run.n // 2
    await asyncio.to_thread(_ensure_and_produce, run.settings, w.items[:half])
    await run.tally.start()
    run.slot("w1")
    sup = asyncio.create_task(supervise(run.slots))
    live: list[Any] = []
    producer = threading.Thread(target=lambda: live.extend(
        produce(run.settings, w.items[half:], rate=plan.rate)), daemon=True)
    await run.reach(run.n // 10)  # the worker is up: publishing starts now, the fault comes under it
    producer.start()
    await run.reach(run.n * 3 // 10)
    f = run.fault(f"broker SIGKILL, down {plan.broker_down_seconds:.0f} s, restarted")
    await asyncio.to_thread(cluster.kill, 1)
    await asyncio.sleep(plan.broker_down_seconds)
    t = time.monotonic()
    await asyncio.to_thread(cluster.start_node, 1, 120.0)
    await asyncio.to_thread(wait_ready, cluster.bootstrap_servers, 1, 120.0)
    f["broker_restart_seconds"] = round(time.monotonic() - t, 1)
    f["producing_live_at_fault"] = producer.is_alive()
    await asyncio.to_thread(producer.join, plan.timeout)
    acked = [p.tx_id for p in w.items[:half]] + [p.tx_id for p, m in zip(w.items[half:], live, strict=False)
                                                 if m is not None]
    if len(acked) < run.n:
        run.faults.append({"fault": f"{run.n - len(acked)} live sends never acknowledged"})
    run.w = Workload(w.items[:len(acked)], w.artifact, w.threshold)  # wait only for what got in
    return await run.finish(acked, sup)


async def node_loss(cluster: Any, work: Path, w: Workload, plan: Plan) -> dict[str, Any]:
    from txmon.broker import wait_ready

    if cluster.plan.brokers < 3:
        raise RuntimeError("node_loss needs a three-node cluster")
    run = Run(cluster, work, "node_loss", w, plan)
    half = run.n // 2
    await asyncio.to_thread(_ensure_and_produce, run.settings, w.items[:half])
    await run.tally.start()
    slot = run.slot("w1")
    sup = asyncio.create_task(supervise(run.slots))
    live: list[Any] = []
    producer = threading.Thread(target=lambda: live.extend(
        produce(run.settings, w.items[half:], rate=plan.rate)), daemon=True)
    await run.reach(run.n // 10)
    producer.start()
    await run.reach(run.n * 3 // 10)
    roles = await asyncio.to_thread(cluster_roles, run.settings, f"txmon-scorer-{slot.name}")
    victim = roles["transaction_coordinator"] or max(roles["input_leaders"],
                                                     key=lambda b: len(roles["input_leaders"][b]))
    f = run.fault(f"node {victim} of 3 SIGKILLed (the worker's transaction coordinator: "
                  f"{victim == roles['transaction_coordinator']})")
    f |= {"node": victim, "roles_before": roles}
    await asyncio.to_thread(cluster.kill, victim)
    f["producing_live_at_fault"] = producer.is_alive()
    t_down = time.monotonic()
    down_at = run.tally.scored
    goal = max(down_at + 1, int(run.n * plan.node_down_fraction))
    await run.tally.until(lambda: run.tally.scored >= goal, plan.node_down_max_seconds, run.alive)
    f["down_seconds"] = round(time.monotonic() - t_down, 1)
    f["scored_while_down"] = run.tally.scored - down_at
    f["roles_while_down"] = await asyncio.to_thread(cluster_roles, run.settings,
                                                    f"txmon-scorer-{slot.name}")
    f["node_restarted"] = plan.restart_node
    if plan.restart_node:
        t = time.monotonic()
        await asyncio.to_thread(cluster.start_node, victim, 120.0)
        await asyncio.to_thread(wait_ready, cluster.bootstrap_servers, 3, 120.0)
        f["node_restart_seconds"] = round(time.monotonic() - t, 1)
    await asyncio.to_thread(producer.join, plan.timeout)
    acked = [p.tx_id for p in w.items[:half]] + [p.tx_id for p, m in zip(w.items[half:], live, strict=False)
                                                 if m is not None]
    if len(acked) < run.n:
        run.faults.append({"fault": f"{run.n - len(acked)} live sends never acknowledged"})
    run.w = Workload(w.items[:len(acked)], w.artifact, w.threshold)
    result = await run.finish(acked, sup)
    result["replication"] = await asyncio.to_thread(replication, run.settings)
    return result


def cluster_roles(settings: Any, transactional_id: str) -> dict[str, Any]:
    """Which node coordinates ``transactional_id``'s transactions, and which leads each input
    partition (None / missing when unknown, e.g. while a node is down)."""
    from txmon.broker.topics import admin_client

    admin = admin_client(settings)
    try:
        coordinator = None
        try:
            coordinator = admin.describe_transactions([transactional_id])[transactional_id].coordinator_id
        except Exception:  # not registered yet, or no coordinator elected right now
            coordinator = None
        leaders: dict[int, list[int]] = {}
        for p in admin.describe_topics([settings.topic("transactions")])[0]["partitions"]:
            leaders.setdefault(p["leader_id"], []).append(p["partition_index"])
        return {"transaction_coordinator": coordinator,
                "input_leaders": {b: sorted(ps) for b, ps in sorted(leaders.items())}}
    finally:
        admin.close()


def replication(settings: Any) -> dict[str, Any]:
    """Replicas and min.insync.replicas of the run's topics and of the transaction state log."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from txmon.broker.topics import admin_client

    admin = admin_client(settings)
    try:
        names = [t for t in admin.list_topics() if t.startswith(settings.topics.prefix)
                 or t == "__transaction_state"]
        out: dict[str, Any] = {d["name"]: {"replicas": sorted({len(p["replica_nodes"])
                                                              for p in d["partitions"]})}
                               for d in admin.describe_topics(names)}
        wanted = [ConfigResource(ConfigResourceType.TOPIC, n, {"min.insync.replicas": None})
                  for n in names]
        for name, conf in admin.describe_configs(wanted, config_filter="all").get("topic", {}).items():
            if "min.insync.replicas" in conf and name in out:
                out[name]["min_insync_replicas"] = int(conf["min.insync.replicas"]["value"])
        return out
    finally:
        admin.close()


def _ensure_and_produce(settings: Any, items: list[Any]) -> None:
    from txmon.broker.topics import ensure_topics

    ensure_topics(settings)
    acks = produce(settings, items)
    if sum(m is not None for m in acks) != len(items):
        raise RuntimeError("the broker did not acknowledge every pre-loaded transaction")


RUNNERS = {"kills": kills, "rebalance": rebalance, "broker": broker, "node_loss": node_loss}


def run_scenario(name: str, cluster: Any, work: Path, w: Workload, plan: Plan) -> dict[str, Any]:
    plan.logs.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(RUNNERS[name](cluster, work, w, plan))
    finally:
        reap_children()  # a scenario that failed half-way must not leave its workers running


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transactions", type=int, default=200_000, help="per scenario")
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all four")
    ap.add_argument("--rate", type=float, default=800.0, help="live publishing rate, broker scenario")
    ap.add_argument("--broker-down-seconds", type=float, default=10.0)
    ap.add_argument("--node-down-fraction", type=float, default=0.6,
                    help="node_loss: restart the node once this share of the run is scored")
    ap.add_argument("--node-down-max-seconds", type=float, default=300.0)
    ap.add_argument("--worker-arg", action="append", default=[],
                    help="extra argument for `txmon worker` (repeatable), e.g. --worker-arg=--no-drift")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per scenario (seconds)")
    ap.add_argument("--logs", type=Path, default=Path("/tmp/txmon-bench-faults"))
    ap.add_argument("--out", default=None,
                    help="result name (default faults, or faults_<scenario...> for a subset)")
    args = ap.parse_args()
    plan = Plan(kills=args.kills, rate=args.rate, broker_down_seconds=args.broker_down_seconds,
                node_down_fraction=args.node_down_fraction,
                node_down_max_seconds=args.node_down_max_seconds,
                worker_args=args.worker_arg, timeout=args.timeout, logs=args.logs)

    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # reconnect noise while the broker is down
    guard_children()
    before = machine()
    t0 = time.monotonic()
    results: dict[str, Any] = {}
    names = args.scenario or list(SCENARIOS)
    with work_dir("txmon-bench-faults-") as work:
        w = workload(args.transactions, work)
        print(f"{len(w.items)} transactions, threshold {w.threshold:.4f}", file=sys.stderr)
        # node_loss on its own three-node cluster, the others on one node.
        for brokers, group in ((1, [n for n in names if n != "node_loss"]),
                               (3, [n for n in names if n == "node_loss"])):
            if not group:
                continue
            with private_cluster(heap="768m" if brokers == 1 else "512m", brokers=brokers) as (
                    cluster, cwork):
                for name in group:
                    try:
                        results[name] = run_scenario(name, cluster, cwork, w, plan)
                    except RuntimeError as exc:
                        results[name] = {"error": str(exc)[:3000]}
                    print(name, json.dumps({k: v for k, v in results[name].items() if k != "workers"}),
                          file=sys.stderr)
    ok = all(r.get("lost") == 0 and r.get("duplicated") == 0 and "error" not in r
             for r in results.values())
    report = {"command": command_line(),
              "what": "txmon worker subprocesses on a private one-node Kafka 4.1: kill -9, "
                      "rebalances and a broker restart; on a private three-node cluster (RF 3, "
                      "min ISR 2): one node SIGKILLed and restarted; outputs counted read_committed",
              "parameters": {"transactions_per_scenario": args.transactions, "kills": args.kills,
                             "live_rate_per_s": args.rate,
                             "broker_down_seconds": args.broker_down_seconds,
                             "node_down_fraction": args.node_down_fraction,
                             "drift_warmup": plan.drift_warmup, "worker_args": args.worker_arg,
                             "partitions": 6, "model": "untrained, production-sized (TrainConfig)"},
              "code": code_version(),
              "scenarios": results, "nothing_lost_or_duplicated": ok,
              "notes": ["lost = transactions acknowledged by the broker with no committed score; "
                        "duplicated = committed scores beyond one per transaction.",
                        "seconds_to_1000_more_scored: from the fault until 1,000 more distinct "
                        "transactions had a committed score (restart, restore, rebalance).",
                        "group_churn: partition assignments each worker logged, and how often the "
                        "group coordinator had evicted it (heartbeats late past the 10 s session "
                        "timeout); each costs a changelog restore, never a lost or duplicate score.",
                        "Every process shares a 2-core machine; see load_average."],
              "seconds": round(time.monotonic() - t0, 1),
              "machine_before": before, "machine_after": machine()}
    out = args.out or ("faults" if set(names) == set(SCENARIOS) else "faults_" + "_".join(names))
    path = write_result(out, report)
    print(json.dumps({"nothing_lost_or_duplicated": ok, "results": path.as_posix()}))


if __name__ == "__main__":
    main()
