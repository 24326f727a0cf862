"""SASL/SCRAM over TLS on the managed broker: both Kafka clients connect with txmon's settings;
a wrong password is refused; the password appears in no log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from tests.conftest import free_port_block
from txmon.broker import Cluster, ClusterPlan
from txmon.settings import KafkaSettings

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("secure"),
                      ClusterPlan(port=free_port_block(1), secure=True), heap="512m")
    try:
        cluster.up(timeout=180)
        yield cluster
    finally:
        cluster.down()


def _settings(cluster: Cluster, password: str) -> KafkaSettings:
    sec = cluster.security()
    return KafkaSettings(bootstrap_servers=cluster.plan.secure_bootstrap_servers,
                         security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                         sasl_username=sec.username, sasl_password=password,
                         ssl_cafile=sec.ca_pem)


def test_both_clients_connect_over_sasl_ssl(secure_cluster):
    conf = _settings(secure_cluster, secure_cluster.security().password)
    producer = KafkaProducer(**conf.kafka_python_config(), acks="all")
    for i in range(20):
        producer.send("secure.t", key=b"k", value=f"m{i}".encode())
    producer.flush()
    producer.close()

    async def consume() -> list[bytes]:
        consumer = AIOKafkaConsumer("secure.t", **conf.aiokafka_config(),
                                    auto_offset_reset="earliest", group_id="g-secure")
        await consumer.start()
        out: list[bytes] = []
        try:
            while len(out) < 20:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                out += [r.value for rs in batch.values() for r in rs]
        finally:
            await consumer.stop()
        return out

    assert asyncio.run(consume()) == [f"m{i}".encode() for i in range(20)]


def test_wrong_password_is_refused(secure_cluster):
    conf = _settings(secure_cluster, "not-the-password")
    with pytest.raises(KafkaError):
        consumer = KafkaConsumer("secure.t", **conf.kafka_python_config(),
                                 request_timeout_ms=8000, api_version_auto_timeout_ms=8000)
        consumer.topics()


def test_no_secret_in_broker_logs_or_config(secure_cluster):
    password = secure_cluster.security().password
    assert password not in repr(secure_cluster.security())
    for path in Path(secure_cluster.root).rglob("*"):
        if path.is_file() and path.name != "scram.json":
            assert password.encode() not in path.read_bytes(), f"password leaked into {path}"
    assert oct((secure_cluster.root / "security" / "scram.json").stat().st_mode & 0o777) == "0o600"
