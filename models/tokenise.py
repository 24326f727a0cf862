"""Tokenisation: a transaction record (see :mod:`models.features`) becomes one token id per field.

Every field has a vocabulary of string values learned from data (or fixed, for bins). Ids 0-3 are
reserved in every field: ``PAD`` (no transaction at this position), ``MASK`` (hidden during
pre-training), ``OOV`` (a value never seen in training: it never crashes, it just maps here) and
``MISSING`` (the log does not have this field: a five-field log is all ``MISSING`` but the amount,
time and history fields). The :class:`FeatureSpec` is saved with the model as JSON; it never holds
account or counterparty identifiers.

>>> spec = FeatureSpec.fit([{"cur": "EUR", "amt": 12.0, "ch": "pos"}] * 3, min_count=1)
>>> spec.field_value("channel", {"ch": "pos"})
'pos'
>>> spec.token(spec.index("channel"), {"ch": "never-seen"}) == OOV
True
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PAD, MASK, OOV, MISSING = 0, 1, 2, 3
RESERVED = 4
HIST = "hist"  # value of target-only fields at history positions

# Fields of one transaction, in the order of the token axis. Target-only fields describe the
# context of the transaction being scored (e.g. the counterparty's label risk at scoring time).
FIELDS: tuple[str, ...] = (
    "amount", "rel_amount", "direction", "currency", "channel", "tx_type", "mcc", "country",
    "geo", "cp_geo", "hour", "weekday", "since_prev", "new_cp", "new_device", "vel_1h", "vel_24h",
    "sum_24h", "distinct_cp_7d", "cp_risk",
)
TARGET_ONLY = frozenset({"cp_risk"})
LEARNED = {"currency": "cur", "channel": "ch", "tx_type": "typ", "mcc": "mcc", "country": "ctry"}

# Fixed bin edges (right-open); values are the bin index as a string.
SINCE_PREV_EDGES = [60, 300, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400]
REL_AMOUNT_EDGES = [-2.0, -1.0, -0.5, -0.2, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0]
COUNT_EDGES = [1, 2, 3, 5, 8, 12, 20]
LOG_SUM_EDGES = [0.5, 1.0, 2.0, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0]
RISK_EDGES = [0.001, 0.02, 0.1, 0.3, 0.6]
AMOUNT_BINS = 24


def _bin(x: float, edges: Sequence[float]) -> str:
    return str(bisect.bisect_right(edges, x))


@dataclass
class FeatureSpec:
    """Vocabularies and bin edges for every field; JSON round-trips; knows no identifiers."""

    vocabs: dict[str, list[str]]
    amount_edges: dict[str, list[float]]  # per currency, log10 amount quantiles; "*" = fallback
    fields: tuple[str, ...] = FIELDS
    _lookup: dict[str, dict[str, int]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.fields = tuple(self.fields)
        self._lookup = {f: {v: RESERVED + i for i, v in enumerate(self.vocabs[f])} for f in self.fields}
        self._risk_col = self.fields.index("cp_risk")
        # (value function, vocabulary) per column: tokens() runs per record, so resolve names once.
        self._columns = [(_VALUE[f], self._lookup[f]) for f in self.fields]

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def fit(cls, records: Iterable[dict[str, Any]], min_count: int = 20,
            max_values: int = 256) -> FeatureSpec:
        """Learn vocabularies (values seen at least ``min_count`` times) and per-currency amount
        quantiles from raw records."""
        counts: dict[str, Counter] = {f: Counter() for f in LEARNED}
        amounts: dict[str, list[float]] = {}
        for r in records:
            for f, key in LEARNED.items():
                v = r.get(key)
                if v is not None:
                    counts[f][v] += 1
            amt = r.get("amt")
            if amt is not None:
                amounts.setdefault(r.get("cur") or "*", []).append(math.log10(max(amt, 0.0) + 1.0))
        vocabs = {f: fixed for f, fixed in _fixed_vocabs().items()}
        for f, c in counts.items():
            vocabs[f] = sorted(v for v, n in c.most_common(max_values) if n >= min_count)
        pooled = [a for vals in amounts.values() for a in vals]
        edges = {"*": _quantile_edges(pooled)}
        for cur, vals in amounts.items():
            if len(vals) >= max(min_count, 200) and cur != "*":
                edges[cur] = _quantile_edges(vals)
        return cls(vocabs=vocabs, amount_edges=edges)

    def to_json(self) -> str:
        return json.dumps({"fields": list(self.fields), "vocabs": self.vocabs,
                           "amount_edges": self.amount_edges}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        d = json.loads(text)
        return cls(vocabs=d["vocabs"], amount_edges=d["amount_edges"], fields=tuple(d["fields"]))

    # -- tokenising -----------------------------------------------------------------------------
    @property
    def vocab_sizes(self) -> list[int]:
        return [RESERVED + len(self.vocabs[f]) for f in self.fields]

    def index(self, name: str) -> int:
        return self.fields.index(name)

    def field_value(self, name: str, r: dict[str, Any]) -> str | None:
        """The string value of field ``name`` for raw record ``r``; None means missing."""
        return _VALUE[name](self, r)

    def token(self, col: int, r: dict[str, Any]) -> int:
        name = self.fields[col]
        v = _VALUE[name](self, r)
        return MISSING if v is None else self._lookup[name].get(v, OOV)

    def tokens(self, r: dict[str, Any], risk: str | None = HIST) -> list[int]:
        """Token ids of one record; ``risk`` is the counterparty-risk value (target position) or
        :data:`HIST` (history positions)."""
        out = []
        for value, lookup in self._columns:
            v = value(self, r)
            out.append(MISSING if v is None else lookup.get(v, OOV))
        out[self._risk_col] = MISSING if risk is None else self._lookup["cp_risk"].get(risk, OOV)
        return out

    def target_and_history_tokens(self, r: dict[str, Any], risk: str | None) -> tuple[list[int], list[int]]:
        """``tokens(r, risk)`` and ``tokens(r, HIST)`` at the cost of one: they differ only in the
        counterparty-risk column."""
        target = self.tokens(r, risk)
        history = list(target)
        history[self._risk_col] = self._lookup["cp_risk"].get(HIST, OOV)
        return target, history

    def token_matrix(self, records: Sequence[dict[str, Any]]) -> np.ndarray:
        """History-position tokens of many records, shape (n, fields), int16."""
        out = np.empty((len(records), len(self.fields)), dtype=np.int16)
        for i, r in enumerate(records):
            out[i] = self.tokens(r)
        return out

    def risk_token(self, risk: str | None) -> int:
        return MISSING if risk is None else self._lookup["cp_risk"].get(risk, OOV)


def _quantile_edges(values: list[float]) -> list[float]:
    if not values:
        return [float(x) for x in np.linspace(0.5, 5.0, AMOUNT_BINS - 1)]
    qs = np.quantile(np.asarray(values), np.linspace(0, 1, AMOUNT_BINS + 1)[1:-1])
    return sorted({round(float(q), 6) for q in qs})


def _fixed_vocabs() -> dict[str, list[str]]:
    def bins(edges: Sequence[float]) -> list[str]:
        return [str(i) for i in range(len(edges) + 1)]

    return {
        "amount": [str(i) for i in range(AMOUNT_BINS + 1)],
        "rel_amount": [*bins(REL_AMOUNT_EDGES), "few"],
        "direction": ["debit", "credit"],
        "geo": ["home", "foreign"],
        "cp_geo": ["same", "foreign"],
        "hour": [str(h) for h in range(24)],
        "weekday": [str(d) for d in range(7)],
        "since_prev": [*bins(SINCE_PREV_EDGES), "first"],
        "new_cp": ["new", "seen"],
        "new_device": ["new", "seen"],
        "vel_1h": bins(COUNT_EDGES),
        "vel_24h": bins(COUNT_EDGES),
        "sum_24h": bins(LOG_SUM_EDGES),
        "distinct_cp_7d": bins(COUNT_EDGES),
        "cp_risk": [HIST, "unknown", *bins(RISK_EDGES)],
    }


def risk_value(labelled: float, positive: float, min_labels: float = 1.0) -> str:
    """Counterparty-risk value from (decayed) counts of arrived labels."""
    if labelled < min_labels:
        return "unknown"
    return _bin(positive / labelled, RISK_EDGES)


def _amount(spec: FeatureSpec, r: dict[str, Any]) -> str | None:
    amt = r.get("amt")
    if amt is None:
        return None
    edges = spec.amount_edges.get(r.get("cur") or "*") or spec.amount_edges["*"]
    return _bin(math.log10(max(amt, 0.0) + 1.0), edges)


def _opt(key: str):
    def value(spec: FeatureSpec, r: dict[str, Any]) -> str | None:
        v = r.get(key)
        return None if v is None else str(v)
    return value


def _binned(key: str, edges: Sequence[float], none: str | None = None):
    def value(spec: FeatureSpec, r: dict[str, Any]) -> str | None:
        v = r.get(key)
        return none if v is None else _bin(v, edges)
    return value


def _flag(key: str, yes: str, no: str):
    def value(spec: FeatureSpec, r: dict[str, Any]) -> str | None:
        v = r.get(key)
        return None if v is None else (yes if v else no)
    return value


def _hour(spec: FeatureSpec, r: dict[str, Any]) -> str:
    return str((r["ts"] // 3600) % 24)


def _weekday(spec: FeatureSpec, r: dict[str, Any]) -> str:
    return str((r["ts"] // 86400 + 3) % 7)  # 1970-01-01 was a Thursday; 0 = Monday


def _sum_24h(spec: FeatureSpec, r: dict[str, Any]) -> str:
    return _bin(math.log10(r.get("s24", 0.0) + 1.0) if r.get("s24") else 0.0, LOG_SUM_EDGES)


_VALUE = {
    "amount": _amount,
    "rel_amount": _binned("rel", REL_AMOUNT_EDGES, none="few"),
    "direction": _opt("dir"),
    "currency": _opt("cur"),
    "channel": _opt("ch"),
    "tx_type": _opt("typ"),
    "mcc": _opt("mcc"),
    "country": _opt("ctry"),
    "geo": _flag("foreign", "foreign", "home"),
    "cp_geo": _flag("cp_foreign", "foreign", "same"),
    "hour": _hour,
    "weekday": _weekday,
    "since_prev": _binned("dtp", SINCE_PREV_EDGES, none="first"),
    "new_cp": _flag("ncp", "new", "seen"),
    "new_device": _flag("ndev", "new", "seen"),
    "vel_1h": _binned("v1h", COUNT_EDGES),
    "vel_24h": _binned("v24h", COUNT_EDGES),
    "sum_24h": _sum_24h,
    "distinct_cp_7d": _binned("dcp7", COUNT_EDGES),
    "cp_risk": lambda spec, r: HIST,
}
