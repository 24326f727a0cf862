"""Settings: environment variables reach both Kafka clients the same way; secrets stay secret."""

from __future__ import annotations

import pytest

from txmon.settings import Settings


def test_env_overrides_and_sasl_reaches_both_clients(monkeypatch, tmp_path):
    monkeypatch.setenv("TXMON_HOME", str(tmp_path))
    monkeypatch.setenv("TXMON_KAFKA__BOOTSTRAP_SERVERS", "k1:9093, k2:9093")
    monkeypatch.setenv("TXMON_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TXMON_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("TXMON_KAFKA__SASL_USERNAME", "svc-txmon")
    monkeypatch.setenv("TXMON_KAFKA__SASL_PASSWORD", "s3cret-value")
    monkeypatch.setenv("TXMON_TOPICS__PREFIX", "bank.")
    s = Settings()
    assert s.home == tmp_path and s.topic("alerts") == "bank.alerts"
    for conf in (s.kafka.kafka_python_config(), s.kafka.aiokafka_config()):
        assert conf["bootstrap_servers"] == ["k1:9093", "k2:9093"]
        assert conf["security_protocol"] == "SASL_PLAINTEXT"
        assert conf["sasl_mechanism"] == "SCRAM-SHA-512"
        assert conf["sasl_plain_username"] == "svc-txmon"
        assert conf["sasl_plain_password"] == "s3cret-value"
    assert "s3cret-value" not in repr(s) and "s3cret-value" not in s.model_dump_json()


def test_tls_files_go_to_kafka_python_and_an_ssl_context_to_aiokafka(tmp_path):
    import ssl
    import subprocess

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    s = Settings.model_validate({"kafka": {"security_protocol": "SSL", "ssl_cafile": cert,
                                           "ssl_certfile": cert, "ssl_keyfile": key}})
    assert s.kafka.kafka_python_config()["ssl_cafile"] == str(cert)
    assert isinstance(s.kafka.aiokafka_config()["ssl_context"], ssl.SSLContext)


def test_unknown_topic_is_an_error():
    with pytest.raises(KeyError, match="unknown topic"):
        Settings().topic("nope")
