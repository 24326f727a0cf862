"""Short variants of bench/bench_faults.py (same code): two ``txmon worker`` processes with a
rebalance in each direction, a broker restart under live load, and one node of three lost under
live load — nothing lost or duplicated.

kill -9 has its own test in test_worker_kafka.py; the long runs (200,000 transactions, five kills)
are ``bench/bench_faults.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._common import private_cluster
from bench._reliability import workload
from bench.bench_faults import Plan, run_scenario

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def small_workload(tmp_path_factory):
    return workload(3_000, tmp_path_factory.mktemp("faults"), tiny=True)


def plan(tmp_path: Path, prefix: str) -> Plan:
    # Drift off: its imports double a worker's start-up, and it has no part in delivery.
    return Plan(worker_args=["--no-drift"], timeout=150.0, logs=tmp_path / "logs", prefix=prefix,
                rate=150.0, broker_down_seconds=3.0)


def assert_exactly_once(r: dict) -> None:
    assert (r["lost"], r["duplicated"], r["unexpected"]) == (0, 0, 0), r
    assert r["distinct_scored"] == r["transactions_in"] == r["input_records"], r


def test_second_worker_joins_then_first_leaves(kafka_cluster, topic_prefix, small_workload, tmp_path):
    r = run_scenario("rebalance", kafka_cluster, tmp_path, small_workload, plan(tmp_path, topic_prefix))
    assert_exactly_once(r)
    # w1 was assigned at start and again when w2 joined; w2 when it joined and again when w1 left.
    assert r["group_churn"]["w1"]["assignments"] >= 2, r
    assert r["group_churn"]["w2"]["assignments"] >= 2, r


def test_broker_killed_and_restarted_under_live_load(small_workload, tmp_path):
    # A private broker: killing the session's would disturb nothing now, but its clients' state.
    with private_cluster(heap="512m") as (cluster, work):
        r = run_scenario("broker", cluster, work, small_workload, plan(tmp_path, ""))
    assert_exactly_once(r)
    assert r["faults"][0]["producing_live_at_fault"], r


def test_node_loss_of_three_under_live_load(small_workload, tmp_path):
    # Three nodes (RF 3, min ISR 2): the worker's transaction coordinator is SIGKILLed mid-stream
    # and the worker finishes on two (the bench also starts the node again).
    with private_cluster(heap="384m", brokers=3) as (cluster, work):
        p = plan(tmp_path, "")
        p.node_down_fraction, p.restart_node = 1.0, False
        r = run_scenario("node_loss", cluster, work, small_workload, p)
    assert_exactly_once(r)
    fault = r["faults"][0]
    assert fault["producing_live_at_fault"], r
    assert fault["scored_while_down"] > 0, r
    assert fault["node"] == fault["roles_before"]["transaction_coordinator"], r
    rf = r["replication"]
    assert rf["node_loss.transactions"] == {"replicas": [3], "min_insync_replicas": 2}, rf
    assert rf["__transaction_state"] == {"replicas": [3], "min_insync_replicas": 2}, rf
