"""Reading back what a test published to a real broker."""

from __future__ import annotations

from kafka import KafkaConsumer

from txmon.settings import Settings


def drain(settings: Settings, name: str, expected: int, timeout_ms: int = 15_000) -> list:
    """Up to ``expected`` records of txmon topic ``name`` from the beginning (stops when idle)."""
    consumer = KafkaConsumer(settings.topic(name), **settings.kafka.kafka_python_config(),
                             auto_offset_reset="earliest", consumer_timeout_ms=timeout_ms)
    out = []
    try:
        for msg in consumer:
            out.append(msg)
            if len(out) >= expected:
                break
    finally:
        consumer.close()
    return out
