"""Columnar batches of simulated rows, and the small vector helpers every generator shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Internal columns; `acct` is the owning account's index, `t` seconds since the simulation start,
# `key` a stable row key (component code << 40 | index) that names the row across drift schedules.
COLUMNS = ("key", "t", "acct", "counterparty_id", "amount", "channel", "tx_type", "direction",
           "mcc", "country", "counterparty_country", "device_id", "scenario", "truth", "incident")
# `truth` says what the row is, for labelling: normal / investigated / fraud / aml.
_DTYPES = {"key": np.uint64, "t": np.int64, "acct": np.int64, "amount": np.float64,
           "incident": np.int64}

COMPONENT_BITS = 40


def component_key(code: int, n: int, start: int = 0) -> np.ndarray:
    return (np.uint64(code) << np.uint64(COMPONENT_BITS)) + np.arange(start, start + n, dtype=np.uint64)


@dataclass
class Rows:
    """Rows collected per component and concatenated once."""

    parts: list[dict[str, np.ndarray]] = field(default_factory=list)

    def add(self, n: int, **cols: Any) -> None:
        if n == 0:
            return
        part = {}
        for c in COLUMNS:
            v = cols.pop(c, None)
            dtype = _DTYPES.get(c, object)
            if isinstance(v, np.ndarray) and v.shape == (n,):
                part[c] = v.astype(dtype, copy=False)
            else:
                part[c] = np.full(n, v if v is not None or dtype is object else -1, dtype=dtype)
        if cols:
            raise TypeError(f"unknown columns {sorted(cols)}")
        self.parts.append(part)

    def extend(self, other: Rows) -> None:
        self.parts.extend(other.parts)

    def concat(self) -> dict[str, np.ndarray]:
        if not self.parts:
            return {c: np.empty(0, dtype=_DTYPES.get(c, object)) for c in COLUMNS}
        return {c: np.concatenate([p[c] for p in self.parts]) for c in COLUMNS}


def group_cumsum(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` restarting at each group of ``sizes`` consecutive elements.

    >>> group_cumsum(np.array([1, 2, 3, 4, 5]), np.array([2, 3])).tolist()
    [1, 3, 3, 7, 12]
    """
    total = np.cumsum(values)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    before = np.concatenate([[0], total])[starts]
    return total - before


def index_in_group(sizes: np.ndarray) -> np.ndarray:
    """0, 1, ... within each group: ``index_in_group([2, 3]) -> [0, 1, 0, 1, 2]``."""
    sizes = np.asarray(sizes)
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def pick(rng: np.random.Generator, values: np.ndarray, n: int, p: np.ndarray | None = None) -> np.ndarray:
    return values[rng.choice(len(values), size=n, p=p)] if len(values) else values[:0]


def choose(pool: tuple[np.ndarray, np.ndarray], u: np.ndarray) -> np.ndarray:
    """Weighted choice from ``(indices, weights)`` driven by given uniforms ``u``."""
    idx, w = pool
    cdf = np.cumsum(w)
    return idx[np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), idx.size - 1)]


def hashed_keys(parent: np.ndarray, name: str, seed: int) -> np.ndarray:
    """Row keys derived from parent keys (top bit set, so they never meet structured keys)."""
    from txmon.sim.randomness import hashed

    return hashed(parent, name, seed) | np.uint64(1 << 63)
