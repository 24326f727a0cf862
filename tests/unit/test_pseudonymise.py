"""Keyed pseudonyms: stable under one key, different under another, no key -> refusal."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import SecretStr

from retrain.pseudonymise import Pseudonymiser, PseudonymKeyError, from_settings
from txmon.settings import Settings


def test_stable_keyed_and_not_the_plain_hash() -> None:
    import hashlib

    p, q = Pseudonymiser(b"a" * 16), Pseudonymiser(b"b" * 16)
    assert p("DE89370400440532013000") == p("DE89370400440532013000")
    assert p("x") != q("x") and p("x") != p("y")
    assert hashlib.sha256(b"x").hexdigest()[:24] not in p("x")


def test_frame_columns_and_missing_values() -> None:
    f = pd.DataFrame({"account_id": ["a", "b", "a"], "counterparty_id": ["m", "a", None],
                      "device_id": [None, "d1", "d1"], "amount": [1.0, 2.0, 3.0]})
    p = Pseudonymiser(b"k" * 16)
    out = p.frame(f)
    assert out.loc[0, "account_id"] == out.loc[2, "account_id"] == out.loc[1, "counterparty_id"]
    assert out["counterparty_id"].isna().sum() == 1 and out["amount"].tolist() == [1.0, 2.0, 3.0]
    assert f.loc[0, "account_id"] == "a"  # the input is not modified


def test_short_or_missing_key_is_refused() -> None:
    with pytest.raises(PseudonymKeyError):
        Pseudonymiser(b"short")
    with pytest.raises(PseudonymKeyError):
        from_settings(Settings(pseudonym_key=None))
    p = from_settings(Settings(pseudonym_key=SecretStr("k" * 20)))
    assert p.fingerprint == Pseudonymiser(b"k" * 20).fingerprint != Pseudonymiser(b"j" * 20).fingerprint
