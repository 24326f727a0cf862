"""Dead letters: an event txmon could not use, with where it came from, why, and its original bytes.

>>> from datetime import datetime, UTC
>>> dl = dead_letter("txmon.transactions", 3, 42, b"k", b"\\xff", "(message)", "not valid UTF-8",
...                  stage="decode", now=datetime(2026, 1, 1, tzinfo=UTC))
>>> dl.original, dl.error_field, dl.offset
('/w==', '(message)', 42)
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from txmon.contracts import MAX_MESSAGE_BYTES, ContractError, DeadLetter

# DeadLetter.original holds at most 4 * MAX_MESSAGE_BYTES characters of base64.
_MAX_ORIGINAL = 3 * MAX_MESSAGE_BYTES
# Keys are account ids (at most 128 characters by contract). A hostile key can be as big as the
# broker allows (about 1 MB) and grow sixfold when escaped into JSON: kept whole, it would push the
# dead letter past the producer's request limit and fail the worker's transaction on every restart.
MAX_KEY_BYTES = 1024


def _b64(raw: bytes | None) -> str:
    return base64.b64encode((raw or b"")[:_MAX_ORIGINAL]).decode()


def record_key(key: bytes | None) -> bytes | None:
    """The key a dead letter is published under: the original record's, cut to MAX_KEY_BYTES.

    >>> len(record_key(b"k" * 5000)), record_key(None)
    (1024, None)
    """
    return key if key is None or len(key) <= MAX_KEY_BYTES else key[:MAX_KEY_BYTES]


def _key_text(key: bytes) -> str:
    try:
        text = key.decode("utf-8")[:MAX_KEY_BYTES]
    except UnicodeDecodeError:
        text = "base64:" + base64.b64encode(key[:MAX_KEY_BYTES]).decode()
    return text if len(key) <= MAX_KEY_BYTES else f"{text}...({len(key)} bytes)"


def dead_letter(source_topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None, error_field: str | None, error: str, *, stage: str = "decode",
                now: datetime | None = None) -> DeadLetter:
    key_text = None if key is None else _key_text(key)
    return DeadLetter(source_topic=source_topic, partition=partition, offset=offset, key=key_text,
                      original=_b64(value), error=error[:2048],
                      error_field=(error_field or None) and error_field[:64], stage=stage,
                      failed_at=now or datetime.now(UTC))


def from_contract_error(source_topic: str, partition: int, offset: int, key: bytes | None,
                        value: bytes | None, exc: ContractError, *, stage: str = "decode") -> DeadLetter:
    return dead_letter(source_topic, partition, offset, key, value, exc.field, str(exc), stage=stage)
