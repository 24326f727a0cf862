"""Server properties for a KRaft cluster of combined broker+controller nodes on one machine.

Pure: renders text, starts nothing.

>>> plan = ClusterPlan(host="127.0.0.1", port=19092, brokers=1)
>>> [n.broker_port for n in plan.nodes], plan.nodes[0].controller_port
([19092], 19192)
>>> "transaction.state.log.replication.factor=1" in render(plan, plan.nodes[0], "/tmp/d")
True
"""

from __future__ import annotations

from dataclasses import dataclass

CONTROLLER_OFFSET = 100  # controller listener of node i: port + 100 + i


@dataclass(frozen=True)
class Node:
    node_id: int
    host: str
    broker_port: int
    controller_port: int


@dataclass(frozen=True)
class ClusterPlan:
    host: str = "127.0.0.1"
    port: int = 9092
    brokers: int = 1
    partitions: int = 6

    @property
    def nodes(self) -> list[Node]:
        return [Node(i + 1, self.host, self.port + i, self.port + CONTROLLER_OFFSET + i)
                for i in range(self.brokers)]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{n.host}:{n.broker_port}" for n in self.nodes)

    @property
    def voters(self) -> str:
        return ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.nodes)


def render(plan: ClusterPlan, node: Node, log_dir: str) -> str:
    """``server.properties`` for one node of the plan."""
    replicas = min(plan.brokers, 3)
    min_isr = 1 if replicas == 1 else 2
    props = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": plan.voters,
        "listeners": f"PLAINTEXT://{node.host}:{node.broker_port},"
                     f"CONTROLLER://{node.host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.host}:{node.broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": log_dir,
        "num.partitions": plan.partitions,
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        # Internal topics must fit the cluster: on one broker, transactions need RF 1 / ISR 1.
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        # A local dev/test cluster: rebalance at once instead of waiting for more members.
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "true",
        "log.retention.hours": 168,
        "log.segment.bytes": 64 * 1024 * 1024,
        "num.network.threads": 2,
        "num.io.threads": 4,
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())
