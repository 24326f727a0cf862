"""A three-node KRaft cluster on one machine: replicated topics survive losing a node."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from tests.conftest import free_port_block
from txmon.broker import Cluster, ClusterPlan, wait_ready
from txmon.broker.topics import admin_client
from txmon.settings import KafkaSettings, Settings

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("x3"), ClusterPlan(port=free_port_block(3), brokers=3),
                      heap="384m")
    try:
        cluster.up(timeout=240)
        yield cluster
    finally:
        cluster.down()


def test_three_brokers_replicate_and_survive_losing_one(cluster3):
    assert wait_ready(cluster3.bootstrap_servers, expected_brokers=3, timeout=60) == 3
    s = Settings(kafka=KafkaSettings(bootstrap_servers=cluster3.bootstrap_servers))
    admin = admin_client(s)
    admin.create_topics([NewTopic("replicated", num_partitions=3, replication_factor=3,
                                  topic_configs={"min.insync.replicas": "2"})])
    described = admin.describe_topics(["replicated"])[0]
    admin.close()
    assert all(len(p["replica_nodes"]) == 3 for p in described["partitions"])

    producer = KafkaProducer(**s.kafka.kafka_python_config(), acks="all", retries=10,
                             enable_idempotence=True)
    for i in range(500):
        producer.send("replicated", key=str(i % 7).encode(), value=str(i).encode())
    producer.flush()
    cluster3.kill(2)  # SIGKILL: no controlled shutdown
    for i in range(500, 1000):
        producer.send("replicated", key=str(i % 7).encode(), value=str(i).encode())
    producer.flush(timeout=60)
    producer.close()

    consumer = KafkaConsumer("replicated", **s.kafka.kafka_python_config(),
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    got = sorted(int(m.value) for m in consumer)
    consumer.close()
    assert got == list(range(1000)), "acks=all writes survive the loss of one of three brokers"
    cluster3.start_node(2)
    assert wait_ready(cluster3.bootstrap_servers, expected_brokers=3, timeout=90) == 3
