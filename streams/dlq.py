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


def _b64(raw: bytes | None) -> str:
    return base64.b64encode((raw or b"")[:_MAX_ORIGINAL]).decode()


def dead_letter(source_topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None, error_field: str | None, error: str, *, stage: str = "decode",
                now: datetime | None = None) -> DeadLetter:
    key_text = None
    if key is not None:
        try:
            key_text = key.decode("utf-8")[: 4 * MAX_MESSAGE_BYTES]
        except UnicodeDecodeError:
            key_text = "base64:" + _b64(key)
    return DeadLetter(source_topic=source_topic, partition=partition, offset=offset, key=key_text,
                      original=_b64(value), error=error[:2048],
                      error_field=(error_field or None) and error_field[:64], stage=stage,
                      failed_at=now or datetime.now(UTC))


def from_contract_error(source_topic: str, partition: int, offset: int, key: bytes | None,
                        value: bytes | None, exc: ContractError, *, stage: str = "decode") -> DeadLetter:
    return dead_letter(source_topic, partition, offset, key, value, exc.field, str(exc), stage=stage)
