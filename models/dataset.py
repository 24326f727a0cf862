"""Replay a transaction frame in time order through the streaming feature code to get model inputs.

This is how training and backtests see the data exactly as the worker would: every row goes through
:func:`models.features.observe` / :func:`~models.features.apply` on its account's state; the credit
side of a transfer between two accounts of the frame goes into the beneficiary's state; labels feed
counterparty risk only once they have *arrived* (``available_at``). Instead of keeping a
``ModelInput`` per row, it keeps one token row per record plus, per scored row, the indices of its
history records — :meth:`Replayed.batch` gathers them into exactly the arrays
:meth:`FeatureEncoder.encode` produces (proved by ``tests/unit/test_features.py``).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd

from models.baselines import AGGREGATES, aggregates
from models.features import (
    HISTORY_MAX,
    Observation,
    add_label,
    apply,
    new_account_state,
    new_counterparty_risk,
    observe,
    risk_numbers,
    risk_of,
)
from models.numeric import numeric_inputs
from models.tokenise import HIST, PAD, FeatureSpec
from txmon.contracts import POSITIVE_LABELS, minor_unit_exponent

NEGATIVE_LABELS = frozenset({"legit", "cleared"})


@dataclass
class Replayed:
    """The replay of a frame: rows in the frame's original order."""

    tx_id: np.ndarray  # (n,) object
    account_id: np.ndarray  # (n,) object; used for per-account metrics, never saved with a model
    ts: np.ndarray  # (n,) int64 seconds
    target: np.ndarray  # (n, fields) int16 tokens of the row itself (with counterparty risk)
    history: np.ndarray  # (n, max_len - 1) int32 indices into ``records``, -1 = padding
    records: np.ndarray  # (m, fields) int16 history-position tokens of every record
    agg: np.ndarray  # (n, len(AGGREGATES)) float32 engineered aggregates for baselines
    max_len: int

    def __len__(self) -> int:
        return len(self.tx_id)

    def batch(self, idx: np.ndarray) -> np.ndarray:
        """Tokens (len(idx), max_len, fields) int64 for rows ``idx``."""
        h = self.history[idx]
        toks = self.records[np.maximum(h, 0)].astype(np.int64)
        toks[h < 0] = PAD
        return np.concatenate([toks, self.target[idx][:, None, :].astype(np.int64)], axis=1)

    def numeric(self, idx: np.ndarray) -> np.ndarray:
        """Numeric inputs (len(idx), len(NUMERIC)) float32 for rows ``idx``."""
        return numeric_inputs(self.agg[idx])

    def inputs(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The scorer's batch for rows ``idx``: what :meth:`FeatureEncoder.collate` returns."""
        return {"tokens": self.batch(idx), "numeric": self.numeric(idx)}


def label_outcome(values: pd.Series) -> pd.Series:
    """Label column -> 1.0 positive, 0.0 negative, NaN unlabelled (strings or 0/1 numbers)."""
    def one(v: object) -> float:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return math.nan
        if isinstance(v, str):
            s = v.strip().lower()
            if s in POSITIVE_LABELS or s in {"1", "true", "yes"}:
                return 1.0
            if s in NEGATIVE_LABELS or s in {"0", "false", "no"}:
                return 0.0
            return math.nan
        return 1.0 if float(v) > 0 else 0.0
    return values.map(one).astype("float64")


def _clean(v: object) -> str | None:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    return str(v)


def _col(frame: pd.DataFrame, name: str, default: object = None) -> list:
    if name not in frame.columns:
        return [default] * len(frame)
    return [default if (c := _clean(v)) is None else c for v in frame[name].tolist()]


def _seconds(values: pd.Series) -> np.ndarray:
    t = pd.to_datetime(values, utc=True)
    return (t.astype("datetime64[ns, UTC]").to_numpy(dtype="datetime64[ns]").astype(np.int64)
            // 1_000_000_000)


def _money(amount: float, currency: str) -> float:
    # As txmon.frames.to_transaction rounds it: the streaming side sees the wire decimal.
    q = Decimal(1).scaleb(-minor_unit_exponent(currency))
    return float(Decimal(repr(float(amount))).quantize(q))


def observations(frame: pd.DataFrame) -> tuple[list[Observation], list[str], list[str]]:
    """Per row: the payer-side observation, account id and counterparty id."""
    ts = _seconds(frame["event_time"]).tolist()
    cur = _col(frame, "currency", "EUR")
    amt = [_money(a, c) for a, c in zip(frame["amount"].astype(float).tolist(), cur, strict=True)]
    acc = [str(a) for a in frame["account_id"].tolist()]
    cp = [str(c) for c in frame["counterparty_id"].tolist()]
    obs = [Observation(*v) for v in zip(
        ts, amt, cur, _col(frame, "direction", "debit"), _col(frame, "channel", "unknown"),
        _col(frame, "tx_type", "unknown"), _col(frame, "mcc"), _col(frame, "country"),
        _col(frame, "counterparty_country"), _col(frame, "device_id"), cp, strict=True)]
    return obs, acc, cp


def fit_spec(frame: pd.DataFrame, min_count: int = 20) -> FeatureSpec:
    """Learn vocabularies and amount bins from a (training) frame's own fields."""
    obs, _, _ = observations(frame)
    return FeatureSpec.fit(({"cur": o.cur, "ch": o.ch, "typ": o.typ, "mcc": o.mcc, "ctry": o.ctry,
                             "amt": o.amt} for o in obs), min_count=min_count)


def replay(frame: pd.DataFrame, spec: FeatureSpec, max_len: int,
           outcome: pd.Series | None = None, available_at: pd.Series | None = None,
           progress: Callable[[int], None] | None = None,
           on_record: Callable[[int, dict], None] | None = None) -> Replayed:
    """Replay ``frame`` in event-time order (ties by tx_id).

    ``outcome`` (1/0/NaN per row, see :func:`label_outcome`) and ``available_at`` (when each label
    arrives) feed counterparty risk; a label counts only for transactions after it arrived.
    ``on_record(row, record)``: called with each row's feature record (:func:`observe`), the one
    the worker's drift monitor reads (``ScoredBatch.records``).
    """
    if not 1 <= max_len <= HISTORY_MAX + 1:
        raise ValueError(f"max_len must be in 1..{HISTORY_MAX + 1}")
    n = len(frame)
    obs, acc, cp = observations(frame)
    tx_ids = frame["tx_id"].astype(str).tolist()
    order = sorted(range(n), key=lambda i: (obs[i].ts, tx_ids[i]))
    accounts = set(acc)
    labels: list[tuple[int, int, bool]] = []
    if outcome is not None and available_at is not None:
        avail = _seconds(available_at.fillna(pd.Timestamp.max.tz_localize("UTC"))).tolist()
        for i, (y, a) in enumerate(zip(outcome.tolist(), avail, strict=True)):
            if not math.isnan(y):
                labels.append((a, i, y > 0.5))
        heapq.heapify(labels)

    n_fields = len(spec.fields)
    risk_col = spec.index("cp_risk")
    k = max_len - 1
    records = np.empty((2 * n, n_fields), dtype=np.int16)
    target = np.empty((n, n_fields), dtype=np.int16)
    history = np.full((n, max(k, 0)), -1, dtype=np.int32)
    agg = np.empty((n, len(AGGREGATES)), dtype=np.float32)
    states: dict[str, dict] = {}
    recent: dict[str, deque[int]] = {}
    risks: dict[str, dict] = {}
    m = 0

    def add(account: str, o: Observation) -> tuple[dict, dict]:
        nonlocal m
        state = states.get(account)
        if state is None:
            state = states[account] = new_account_state()
            recent[account] = deque(maxlen=max(k, 1))
        rec = observe(state, o)
        records[m] = spec.tokens(rec, HIST)
        return state, rec

    for step, i in enumerate(order):
        o = obs[i]
        while labels and labels[0][0] <= o.ts:
            t, j, positive = heapq.heappop(labels)
            add_label(risks.setdefault(cp[j], new_counterparty_risk()), t, positive)
        state, rec = add(acc[i], o)
        if on_record is not None:
            on_record(i, rec)
        risk = risks.get(cp[i])
        row = records[m].copy()
        row[risk_col] = spec.risk_token(risk_of(risk, o.ts))
        target[i] = row
        ids = recent[acc[i]]
        if k and ids:
            history[i, k - len(ids):] = list(ids)
        agg[i] = aggregates(state, rec, *risk_numbers(risk, o.ts))
        apply(state, o, rec)
        if k:
            ids.append(m)
        m += 1
        if cp[i] in accounts and cp[i] != acc[i]:
            co = Observation(o.ts, o.amt, o.cur, "credit" if o.dir == "debit" else "debit", o.ch,
                             o.typ, o.mcc, o.cpc, o.ctry, None, acc[i])
            bstate, brec = add(cp[i], co)
            apply(bstate, co, brec)
            if k:
                recent[cp[i]].append(m)
            m += 1
        if progress is not None and step % 10_000 == 0:
            progress(step)
    return Replayed(tx_id=np.asarray(tx_ids, dtype=object),
                    account_id=np.asarray(acc, dtype=object),
                    ts=np.asarray([o.ts for o in obs], dtype=np.int64), target=target,
                    history=history, records=records[:m].copy(), agg=agg, max_len=max_len)
