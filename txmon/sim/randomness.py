"""Seeded randomness that a drift event cannot disturb.

Bulk habits come from named :class:`numpy.random.Generator` streams (one per concern, so adding a
scenario never shifts another's draws). Per-row decisions that must not change when rows are added
elsewhere (label delays, which card a compromised terminal skims, which rows a drift moves) use
counter-based uniforms: a hash of the row's stable key, not a position in a shared stream.

>>> import numpy as np
>>> u = uniform(np.array([1, 2, 3], dtype=np.uint64), "labels", seed=7)
>>> bool(((u >= 0) & (u < 1)).all()), u[0] == uniform(np.array([1], dtype=np.uint64), "labels", 7)[0]
(True, True)
"""

from __future__ import annotations

import zlib

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _salt(name: str, seed: int) -> np.uint64:
    return np.uint64((zlib.crc32(name.encode()) << 32 | (seed & 0xFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective, well-mixed hash of uint64 values."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def hashed(keys: np.ndarray, name: str, seed: int) -> np.ndarray:
    """uint64 hash of each key, salted by a purpose name and the seed."""
    return mix64(mix64(np.asarray(keys, dtype=np.uint64) ^ _salt(name, seed)))


def uniform(keys: np.ndarray, name: str, seed: int) -> np.ndarray:
    """A uniform [0, 1) per key, the same whatever other keys exist."""
    return (hashed(keys, name, seed) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def stream(seed: int, *names: str | int) -> np.random.Generator:
    """An independent generator for one concern, e.g. ``stream(seed, "fraud", "card_testing")``."""
    words = [seed & 0xFFFFFFFF] + [n if isinstance(n, int) else zlib.crc32(n.encode()) for n in names]
    return np.random.default_rng(words)


def hex_ids(prefix: str, keys: np.ndarray, name: str, seed: int, width: int = 16) -> np.ndarray:
    """Opaque identifiers (object array), e.g. ``dv3f2a…``: they reveal nothing about their origin."""
    h = hashed(keys, name, seed)
    digits = np.frombuffer(h.astype(">u8").tobytes().hex().encode(), dtype="S16")
    text = digits.astype(f"U{width}") if width < 16 else digits.astype("U16")
    if not prefix:
        return text.astype(object)
    return np.array([prefix + t for t in text.tolist()], dtype=object)
