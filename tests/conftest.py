"""Shared fixtures. ``kafka`` starts a real Apache Kafka broker (KRaft) for the test session.

Kafka tests never skip: if the broker cannot start, they error, loudly. ``TXMON_TEST_BROKERS=3``
runs the session against a three-node cluster instead.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from txmon.broker import Cluster, ClusterPlan
from txmon.broker.ports import free_port_block
from txmon.settings import BrokerSettings, KafkaSettings, Settings


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    brokers = int(os.environ.get("TXMON_TEST_BROKERS", "1"))
    home = tmp_path_factory.mktemp("kafka-home")
    cluster = Cluster(home, ClusterPlan(port=free_port_block(brokers), brokers=brokers),
                      heap="768m" if brokers == 1 else "384m")
    try:
        cluster.up(timeout=180)
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def kafka(kafka_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the session's real broker, with a private TXMON_HOME."""
    plan = kafka_cluster.plan
    return Settings(
        home=Path(tmp_path_factory.mktemp("txmon-home")),
        kafka=KafkaSettings(bootstrap_servers=kafka_cluster.bootstrap_servers),
        broker=BrokerSettings(host=plan.host, port=plan.port, brokers=plan.brokers),
    )


_counter = itertools.count()


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, so tests do not read each other's events."""
    return f"t{next(_counter)}{uuid.uuid4().hex[:6]}."


@pytest.fixture
def kafka_settings_for(kafka: Settings) -> Callable[[str], Settings]:
    """``kafka_settings_for(prefix)`` -> the session settings with their own topic names."""

    def make(prefix: str) -> Settings:
        return kafka.model_copy(update={"topics": kafka.topics.model_copy(update={"prefix": prefix})})

    return make


# -- CI guard: Kafka tests must run, never be skipped silently ---------------------------------
_kafka_outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "kafka" in report.keywords and (report.when == "call" or report.outcome == "skipped"):
        _kafka_outcomes[report.nodeid] = report.outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("TXMON_REQUIRE_KAFKA") != "1":
        return
    skipped = sorted(n for n, o in _kafka_outcomes.items() if o == "skipped")
    problem = None
    if not _kafka_outcomes:
        problem = "TXMON_REQUIRE_KAFKA=1 but no Kafka integration test ran"
    elif skipped:
        problem = f"TXMON_REQUIRE_KAFKA=1 but Kafka tests were skipped: {', '.join(skipped)}"
    if problem:
        session.config.get_terminal_writer().line(problem, red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        session.config.get_terminal_writer().line(
            f"Kafka integration tests run against a real broker: {len(_kafka_outcomes)}")
