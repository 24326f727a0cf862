"""Settings from ``TXMON_*`` environment variables (and an optional ``.env``-style file).

Nested groups use a double underscore: ``TXMON_KAFKA__BOOTSTRAP_SERVERS=broker:9093``.
Secrets (SASL password, signing and pseudonymisation keys) come only from the environment or a
secrets file; they are never written to the repo, to logs or to model artifacts.

>>> s = Settings(kafka=KafkaSettings(bootstrap_servers="k1:9092,k2:9092"))
>>> s.topic("transactions")
'txmon.transactions'
>>> s.kafka.kafka_python_config()["bootstrap_servers"]
['k1:9092', 'k2:9092']
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

TOPIC_NAMES = ("transactions", "labels", "scores", "alerts", "drift", "models", "dlq")


def default_home() -> Path:
    return Path(os.environ.get("TXMON_HOME", Path.home() / ".cache" / "txmon"))


class KafkaSettings(BaseModel):
    """How both Kafka clients (aiokafka under Faust, and kafka-python) reach the cluster."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    client_id: str = "txmon"
    # How long kafka-python waits for a first broker before it gives up (its default is 30 s).
    bootstrap_timeout_ms: int = 10_000

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def _common(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"bootstrap_servers": self.servers,
                                "security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf["sasl_mechanism"] = self.sasl_mechanism
            conf["sasl_plain_username"] = self.sasl_username
            conf["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None)
        return conf

    def kafka_python_config(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer / KafkaConsumer / KafkaAdminClient."""
        conf = self._common() | {"client_id": self.client_id,
                                 "bootstrap_timeout_ms": self.bootstrap_timeout_ms}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            conf |= {"ssl_cafile": _str(self.ssl_cafile), "ssl_certfile": _str(self.ssl_certfile),
                     "ssl_keyfile": _str(self.ssl_keyfile),
                     "ssl_check_hostname": self.ssl_check_hostname}
        return conf

    def aiokafka_config(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients; TLS goes through an ``ssl.SSLContext``."""
        conf = self._common() | {"client_id": self.client_id}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            conf["ssl_context"] = self.ssl_context()
        return conf

    def ssl_context(self) -> Any:
        import ssl

        ctx = ssl.create_default_context(cafile=_str(self.ssl_cafile))
        if self.ssl_certfile:
            ctx.load_cert_chain(str(self.ssl_certfile), _str(self.ssl_keyfile))
        ctx.check_hostname = self.ssl_check_hostname
        return ctx


def _str(p: Path | None) -> str | None:
    return str(p) if p else None


class TopicSettings(BaseModel):
    prefix: str = "txmon."
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)
    # Longer than retrain's snapshot window (28 days) plus label delays: a snapshot must find the
    # start of its window on the topic.
    retention_ms: int = 42 * 24 * 3600 * 1000
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000


class BrokerSettings(BaseModel):
    """The Kafka broker that ``txmon kafka up`` manages on this machine."""

    host: str = "127.0.0.1"
    port: int = 9092
    brokers: int = Field(1, ge=1, le=5)
    heap: str = "1g"
    kafka_version: str = "4.1.1"
    # Also listen with SASL_SSL (SCRAM-SHA-256/512) on port + 200, with a local CA.
    secure: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TXMON_", env_nested_delimiter="__",
                                      env_file=os.environ.get("TXMON_ENV_FILE"), extra="ignore")

    home: Path = Field(default_factory=default_home)
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    broker: BrokerSettings = BrokerSettings()
    # Keys: from the environment or a secrets manager only, never committed.
    signing_key: SecretStr | None = None
    pseudonym_key: SecretStr | None = None
    # MLflow tracking + registry; None: sqlite and local artifacts under ``home/mlflow``.
    mlflow_tracking_uri: str | None = None

    def topic(self, name: str) -> str:
        if name not in TOPIC_NAMES:
            raise KeyError(f"unknown topic {name!r}; known: {', '.join(TOPIC_NAMES)}")
        return f"{self.topics.prefix}{name}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"


@lru_cache
def get_settings() -> Settings:
    return Settings()
