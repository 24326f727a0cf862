"""The Apache Kafka broker that txmon manages on this machine (``txmon kafka ...``)."""

from __future__ import annotations

from txmon.broker.cluster import Cluster, NodeStatus, wait_ready
from txmon.broker.config import ClusterPlan
from txmon.broker.jars import BrokerSetupError
from txmon.settings import Settings

__all__ = ["BrokerSetupError", "Cluster", "ClusterPlan", "NodeStatus", "cluster_for", "wait_ready"]


def cluster_for(settings: Settings, brokers: int | None = None) -> Cluster:
    """The managed cluster described by ``settings.broker`` (data under ``settings.home``)."""
    b = settings.broker
    n = brokers or b.brokers
    plan = ClusterPlan(host=b.host, port=b.port, brokers=n, partitions=settings.topics.partitions,
                       secure=b.secure)
    heap = b.heap if n == 1 else "512m"
    home = settings.home if n == 1 else settings.home / f"x{n}"
    return Cluster(home, plan, version=b.kafka_version, heap=heap)
