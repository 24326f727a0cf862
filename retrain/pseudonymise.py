"""Keyed pseudonymisation of account and counterparty identifiers.

HMAC-SHA256 with a key from settings (``TXMON_PSEUDONYM_KEY``): the same id always maps to the same
pseudonym under one key, so sequences and joins survive, but without the key nobody can confirm a
guessed id (a plain hash of an IBAN is reversible by enumeration). The key never goes into a
snapshot, a model artifact or the registry — only its fingerprint does, so an auditor can tell which
key a snapshot used.

>>> p = Pseudonymiser(b"0123456789abcdef")
>>> p("ACC-1") == p("ACC-1") != Pseudonymiser(b"fedcba9876543210")("ACC-1")
True
>>> p("ACC-1")[:3], len(p("ACC-1"))
('ps_', 27)
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pandas as pd

ID_COLUMNS = ("account_id", "counterparty_id", "device_id")
PREFIX = "ps_"


class PseudonymKeyError(RuntimeError):
    """No usable pseudonymisation key: a snapshot must not be taken with raw identifiers."""


class Pseudonymiser:
    """Maps an identifier to ``ps_`` + 24 base32 characters of its HMAC (120 bits)."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise PseudonymKeyError("the pseudonymisation key must be at least 16 bytes")
        self._key = key
        self._cache: dict[str, str] = {}

    @property
    def fingerprint(self) -> str:
        """Identifies the key without revealing it (HMAC of a fixed label)."""
        return hmac.new(self._key, b"txmon-pseudonym-key-fingerprint", hashlib.sha256).hexdigest()[:16]

    def __call__(self, value: str) -> str:
        out = self._cache.get(value)
        if out is None:
            mac = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
            out = PREFIX + base64.b32encode(mac[:15]).decode().lower()
            self._cache[value] = out
        return out

    def frame(self, frame: pd.DataFrame, columns: tuple[str, ...] = ID_COLUMNS) -> pd.DataFrame:
        """A copy of ``frame`` with every identifier column pseudonymised (missing values kept)."""
        out = frame.copy()
        for col in columns:
            if col in out.columns:
                out[col] = out[col].map(lambda v: self(str(v)) if isinstance(v, str) else v)
        return out


def from_settings(settings: object) -> Pseudonymiser:
    """The pseudonymiser for ``settings.pseudonym_key``; refuses to run without a key."""
    secret = getattr(settings, "pseudonym_key", None)
    if secret is None:
        raise PseudonymKeyError("set TXMON_PSEUDONYM_KEY (at least 16 bytes) before taking a snapshot")
    return Pseudonymiser(secret.get_secret_value().encode())
