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
SECURE_OFFSET = 200  # SASL_SSL client listener of node i, when secure: port + 200 + i


@dataclass(frozen=True)
class Node:
    node_id: int
    host: str
    broker_port: int
    controller_port: int
    secure_port: int | None = None


@dataclass(frozen=True)
class ClusterPlan:
    host: str = "127.0.0.1"
    port: int = 9092
    brokers: int = 1
    partitions: int = 6
    # Adds a SASL_SSL (SCRAM) client listener; PLAINTEXT stays on loopback for inter-broker traffic.
    secure: bool = False

    @property
    def nodes(self) -> list[Node]:
        return [Node(i + 1, self.host, self.port + i, self.port + CONTROLLER_OFFSET + i,
                     self.port + SECURE_OFFSET + i if self.secure else None)
                for i in range(self.brokers)]

    @property
    def secure_bootstrap_servers(self) -> str:
        return ",".join(f"{n.host}:{n.secure_port}" for n in self.nodes if n.secure_port)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{n.host}:{n.broker_port}" for n in self.nodes)

    @property
    def voters(self) -> str:
        return ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.nodes)


def render(plan: ClusterPlan, node: Node, log_dir: str, tls: tuple[str, str] | None = None) -> str:
    """``server.properties`` for one node of the plan; ``tls`` = (server PEM, CA PEM) when secure."""
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
    if node.secure_port is not None:
        if tls is None:
            raise ValueError("a secure plan needs its TLS files")
        props["listeners"] += f",SASL_SSL://{node.host}:{node.secure_port}"
        props["advertised.listeners"] += f",SASL_SSL://{node.host}:{node.secure_port}"
        props["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        props |= {
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": tls[0],
            "listener.name.sasl_ssl.ssl.truststore.type": "PEM",
            "listener.name.sasl_ssl.ssl.truststore.location": tls[1],
        }
    return "".join(f"{k}={v}\n" for k, v in props.items())
