"""Create and list txmon's topics (DESIGN.md contracts) with kafka-python's admin client."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from txmon.settings import TOPIC_NAMES, Settings


def admin_client(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(**settings.kafka.kafka_python_config(), request_timeout_ms=15000)


def topic_specs(settings: Settings, partitions: int | None = None) -> list[NewTopic]:
    t = settings.topics
    specs = []
    for name in TOPIC_NAMES:
        retention = t.dlq_retention_ms if name == "dlq" else t.retention_ms
        configs = {"retention.ms": str(retention)}
        if name == "models":
            # Every promotion must stay readable: a worker starting later replays the latest one.
            configs = {"retention.ms": "-1", "cleanup.policy": "delete"}
        n = 1 if name == "models" else (partitions or t.partitions)
        specs.append(NewTopic(settings.topic(name), num_partitions=n,
                              replication_factor=t.replication_factor, topic_configs=configs))
    return specs


def ensure_topics(settings: Settings, partitions: int | None = None) -> list[str]:
    """Create whichever txmon topics are missing; returns the names it created."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [s for s in topic_specs(settings, partitions) if s.name not in existing]
        if missing:
            # Another process may create one between list and create.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, timeout_ms=30000)
        return [s.name for s in missing]
    finally:
        admin.close()


def list_topics(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count, internal topics left out."""
    admin = admin_client(settings)
    try:
        described = admin.describe_topics()
    finally:
        admin.close()
    return {d["name"]: len(d["partitions"]) for d in described
            if not d.get("is_internal") and not d["name"].startswith("__")}
