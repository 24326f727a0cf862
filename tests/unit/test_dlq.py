"""Dead letters stay publishable whatever the record they describe (found by bench/bench_hostile.py:
a ~1 MB key made the dead letter bigger than the producer's request limit, or broke DeadLetter's
own length limit, and failed the worker's transaction on every restart)."""

from __future__ import annotations

import pytest

from streams.dlq import MAX_KEY_BYTES, dead_letter, record_key
from txmon.contracts import DeadLetter, decode

BIG = 1_000_000  # about the broker's default max.message.bytes


@pytest.mark.parametrize("key", [b"\x00" * BIG, b"\xff" * BIG, b"k" * BIG, "é".encode() * (BIG // 2)],
                         ids=["nul", "not-utf8", "ascii", "two-byte"])
def test_a_dead_letter_of_the_biggest_record_is_far_below_a_megabyte(key: bytes) -> None:
    raw = dead_letter("txmon.transactions", 0, 7, key, b"\x01" * BIG, "(message)", "too big").to_bytes()
    assert len(raw) < 300_000
    back = decode(DeadLetter, raw) if len(raw) <= 64 * 1024 else DeadLetter.model_validate_json(raw)
    assert back.key is not None and back.key.endswith(f"...({len(key)} bytes)")
    assert len(record_key(key)) == MAX_KEY_BYTES


def test_ordinary_keys_are_kept_whole() -> None:
    dl = dead_letter("txmon.transactions", 0, 7, b"acc-1", b"{}", "amount", "missing")
    assert dl.key == "acc-1" and record_key(b"acc-1") == b"acc-1"
    assert dead_letter("t", 0, 7, b"\xff\xfe", b"{}", None, "x").key == "base64://4="
