"""Per-account history state, per-counterparty label risk, and the encoder that turns them into model
inputs. The streaming worker and the training/backtest replay call the *same* functions here, so the
two cannot disagree (``tests/unit/test_features.py`` proves it).

State is plain JSON (dict/list/str/int/float) so it can live in a Faust changelog table:

* account state (:func:`new_account_state`, :func:`update_account_state`): the last
  :data:`HISTORY_MAX` transactions in compact, model-independent form (money in *and* out), a running
  mean of log amounts, the home country, and recently seen counterparties/devices as short salted-free
  hashes (for "new counterparty" and fan-in velocity) — never raw identifiers.
* counterparty risk (:func:`new_counterparty_risk`, :func:`update_counterparty_risk`): exponentially
  decayed counts of *arrived* labels on transactions with that counterparty.

The credit side of a transfer between two monitored accounts is applied to the beneficiary's state with
``update_account_state(beneficiary_state, tx, as_counterparty=True)``.

>>> from datetime import datetime, UTC
>>> from decimal import Decimal
>>> from txmon.contracts import Transaction
>>> tx = Transaction(tx_id="t1", event_time=datetime(2026, 1, 5, 9, tzinfo=UTC), account_id="a",
...                  counterparty_id="m", amount=Decimal("20.00"))
>>> s = update_account_state(new_account_state(), tx)
>>> len(s["h"]), s["h"][0]["ncp"]
(1, True)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

from models.baselines import aggregates
from models.numeric import numeric_inputs
from models.tokenise import HIST, PAD, FeatureSpec, risk_value
from txmon.contracts import POSITIVE_LABELS, Label, Transaction

STATE_VERSION = 1
HISTORY_MAX = 32  # records kept per account; a model's K may be anything up to this
SEEN_MAX = 64  # counterparty hashes remembered per account
DEVICES_MAX = 16
RISK_HALF_LIFE_S = 30 * 86400
MEAN_RATE = 0.1  # weight of a new amount in the running mean of log amounts
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Observation(NamedTuple):
    """The model-relevant fields of one side of a transaction, from a Transaction or a frame row."""

    ts: int  # event time, whole seconds since the epoch
    amt: float
    cur: str
    dir: str
    ch: str
    typ: str
    mcc: str | None
    ctry: str | None
    cpc: str | None
    dev: str | None
    cp: str


def epoch_seconds(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(seconds=1)


def observation(tx: Transaction, as_counterparty: bool = False) -> Observation:
    """The account's view of ``tx``; with ``as_counterparty`` the beneficiary's (credit) view."""
    ts = epoch_seconds(tx.event_time)
    if as_counterparty:
        return Observation(ts, float(tx.amount), tx.currency, _flip(tx.direction), tx.channel,
                           tx.tx_type, tx.mcc, tx.counterparty_country, tx.country, None, tx.account_id)
    return Observation(ts, float(tx.amount), tx.currency, tx.direction, tx.channel, tx.tx_type,
                       tx.mcc, tx.country, tx.counterparty_country, tx.device_id, tx.counterparty_id)


def _flip(direction: str) -> str:
    return "credit" if direction == "debit" else "debit"


def _h(value: str) -> str:
    # A short digest only to test membership; identifiers themselves never enter state or artifacts.
    return hashlib.blake2b(value.encode(), digest_size=6).hexdigest()


# -- account state -------------------------------------------------------------------------------

def new_account_state() -> dict[str, Any]:
    return {"v": STATE_VERSION, "h": [], "mu": 0.0, "n": 0, "home": None, "cps": {}, "devs": {}}


def observe(state: dict[str, Any], o: Observation) -> dict[str, Any]:
    """The compact record of ``o`` given the account's history *before* it (state is not changed)."""
    hist = state["h"]
    prev_ts = hist[-1]["ts"] if hist else None
    v1h = v24h = 0
    s24 = 0.0
    for r in reversed(hist):
        age = o.ts - r["ts"]
        if age > 86400:
            break
        v24h += 1
        s24 += r["amt"]
        if age <= 3600:
            v1h += 1
    log_amt = math.log1p(max(o.amt, 0.0))
    home = state["home"] if state["home"] is not None else o.ctry
    cps = state["cps"]
    week_ago = o.ts - 7 * 86400
    return {
        "ts": o.ts, "amt": o.amt, "cur": o.cur, "dir": o.dir, "ch": o.ch, "typ": o.typ,
        "mcc": o.mcc, "ctry": o.ctry,
        "foreign": None if o.ctry is None or home is None else o.ctry != home,
        "cp_foreign": None if o.cpc is None or o.ctry is None else o.cpc != o.ctry,
        # A country none of the kept records has: a trip starting or a card used abroad out of the
        # blue, not every row of a trip (``foreign`` is that state). The drift monitor watches it
        # (streams.drift.columns); not a model input. Scanned newest first: home ends it at once.
        "nctry": None if o.ctry is None or not hist else all(r["ctry"] != o.ctry for r in reversed(hist)),
        "dtp": None if prev_ts is None else max(o.ts - prev_ts, 0),
        "rel": None if state["n"] < 3 else round(log_amt - state["mu"], 6),
        "ncp": _h(o.cp) not in cps,
        "ndev": None if o.dev is None else _h(o.dev) not in state["devs"],
        "v1h": v1h, "v24h": v24h, "s24": round(s24, 2),
        "dcp7": sum(1 for t in cps.values() if t >= week_ago),
    }


def apply(state: dict[str, Any], o: Observation, record: dict[str, Any]) -> dict[str, Any]:
    """Append ``record`` (from :func:`observe`) and update the running aggregates, in place."""
    hist = state["h"]
    hist.append(record)
    if len(hist) > HISTORY_MAX:
        del hist[: len(hist) - HISTORY_MAX]
    log_amt = math.log1p(max(o.amt, 0.0))
    state["mu"] = log_amt if state["n"] == 0 else state["mu"] + MEAN_RATE * (log_amt - state["mu"])
    state["mu"] = round(state["mu"], 9)
    state["n"] += 1
    if state["home"] is None and o.ctry is not None and o.dir == "debit":
        state["home"] = o.ctry
    _remember(state["cps"], _h(o.cp), o.ts, SEEN_MAX)
    if o.dev is not None:
        _remember(state["devs"], _h(o.dev), o.ts, DEVICES_MAX)
    return state


def _remember(seen: dict[str, int], key: str, ts: int, cap: int) -> None:
    seen.pop(key, None)
    seen[key] = ts  # insertion order = recency, so the first key is the oldest
    while len(seen) > cap:
        del seen[next(iter(seen))]


def update_account_state(state: dict[str, Any], tx: Transaction, *, as_counterparty: bool = False,
                         record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add ``tx`` to the account's history (in place; also returned). ``record``: the target record
    :meth:`FeatureEncoder.encode` just made of ``tx`` from this same state (``observe`` would make
    an equal one), so the worker neither observes twice nor tokenises that record again."""
    o = observation(tx, as_counterparty)
    return apply(state, o, observe(state, o) if record is None else record)


# -- counterparty risk ---------------------------------------------------------------------------

def new_counterparty_risk() -> dict[str, Any]:
    return {"n": 0.0, "p": 0.0, "t": 0}


def _decayed(risk: dict[str, Any], ts: int) -> tuple[float, float]:
    if not risk["n"]:
        return 0.0, 0.0
    w = 0.5 ** (max(ts - risk["t"], 0) / RISK_HALF_LIFE_S)
    return risk["n"] * w, risk["p"] * w


def update_counterparty_risk(risk: dict[str, Any], label: Label, counterparty_id: str) -> dict[str, Any]:
    """Count one arrived label on a transaction with ``counterparty_id`` (the table key; not stored)."""
    return add_label(risk, epoch_seconds(label.label_time), label.label in POSITIVE_LABELS)


def add_label(risk: dict[str, Any], ts: int, positive: bool) -> dict[str, Any]:
    ts = max(ts, risk["t"])
    n, p = _decayed(risk, ts)
    risk.update(n=round(n + 1.0, 9), p=round(p + (1.0 if positive else 0.0), 9), t=ts)
    return risk


def risk_of(risk: dict[str, Any] | None, ts: int) -> str:
    """The counterparty-risk field value at time ``ts`` (labels only as far as they have arrived)."""
    if risk is None:
        return risk_value(0.0, 0.0)
    return risk_value(*_decayed(risk, ts))


def risk_numbers(risk: dict[str, Any] | None, ts: int) -> tuple[float, float]:
    """(decayed labelled count, decayed positive rate) for aggregate-feature baselines."""
    if risk is None:
        return 0.0, 0.0
    n, p = _decayed(risk, ts)
    return n, (p / n if n else 0.0)


# -- encoding ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelInput:
    """One transaction's model input: ``tokens`` (max_len, fields) int64, history left-padded, the
    transaction itself in the last row; ``numeric`` (len(NUMERIC),) float32 per-transaction
    aggregates (:mod:`models.numeric`), or their raw ``aggregates`` (:data:`AGGREGATES` order) for
    :meth:`FeatureEncoder.collate` to transform a whole batch at once (one numpy call per batch
    instead of one per transaction; the transform is element-wise, so the values are the same).
    ``records`` keeps the raw records for explanations."""

    tokens: np.ndarray
    records: tuple[dict[str, Any], ...] = ()
    risk: str = "unknown"
    numeric: np.ndarray | None = None
    aggregates: tuple[float, ...] | None = None

    def numeric_row(self) -> np.ndarray | None:
        """``numeric``, computed from ``aggregates`` when only those are held."""
        if self.numeric is not None or self.aggregates is None:
            return self.numeric
        return numeric_inputs(np.asarray([self.aggregates], dtype=np.float32))[0]


class HistoryRows:
    """One account's history-position token rows under one :class:`FeatureSpec`: a record is
    tokenised once, when it first appears in a history, instead of at every later transaction.

    Keyed by the record object's identity (the entry holds the record, so the id cannot be reused):
    :func:`apply` never changes a record once appended, and a state restored from JSON brings new
    objects, which simply miss. Only rows of the last history asked for are kept.
    """

    __slots__ = ("_rows", "spec")

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        self._rows: dict[int, tuple[dict[str, Any], list[int]]] = {}

    def rows(self, history: Sequence[dict[str, Any]]) -> list[list[int]]:
        old, new, out = self._rows, {}, []
        for r in history:
            hit = old.get(id(r))
            if hit is None or hit[0] is not r:
                hit = (r, self.spec.tokens(r, HIST))
            new[id(r)] = hit
            out.append(hit[1])
        self._rows = new
        return out

    def seed(self, record: dict[str, Any], row: list[int]) -> None:
        """``record``'s history row, known before it enters the history (from its target row)."""
        self._rows[id(record)] = (record, row)


class FeatureEncoder:
    """Turns account state + a transaction + counterparty risk into a :class:`ModelInput`.

    Built from the :class:`FeatureSpec` saved with an artifact and the model's sequence length.
    """

    def __init__(self, spec: FeatureSpec, max_len: int):
        if not 1 <= max_len <= HISTORY_MAX + 1:
            raise ValueError(f"max_len must be in 1..{HISTORY_MAX + 1}")
        self.spec = spec
        self.max_len = max_len

    def encode(self, account_state: dict[str, Any], tx: Transaction,
               counterparty_risk: dict[str, Any] | None,
               rows: HistoryRows | None = None) -> ModelInput:
        """``tx``'s input given the account's state before it; ``rows``, the account's token-row
        cache for this encoder's spec (the streaming worker keeps one per account), saves
        re-tokenising its history. The numeric transform is left to :meth:`collate`."""
        o = observation(tx)
        target = observe(account_state, o)
        history = account_state["h"][-(self.max_len - 1):] if self.max_len > 1 else []
        risk = risk_of(counterparty_risk, o.ts)
        agg = aggregates(account_state, target, *risk_numbers(counterparty_risk, o.ts))
        return self.from_records(history, target, risk, rows=rows, aggregates=tuple(agg))

    def from_records(self, history: Sequence[dict[str, Any]], target: dict[str, Any],
                     risk: str, numeric: np.ndarray | None = None, *, rows: HistoryRows | None = None,
                     aggregates: tuple[float, ...] | None = None) -> ModelInput:
        spec = self.spec
        tokens = np.full((self.max_len, len(spec.fields)), PAD, dtype=np.int64)
        if history:
            if rows is not None and rows.spec is not spec:
                raise ValueError("token rows cached under another feature spec")
            tokens[self.max_len - 1 - len(history):-1] = (
                rows.rows(history) if rows is not None else [spec.tokens(r, HIST) for r in history])
        if rows is not None:
            tokens[-1], history_row = spec.target_and_history_tokens(target, risk)
            rows.seed(target, history_row)
        else:
            tokens[-1] = spec.tokens(target, risk)
        return ModelInput(tokens=tokens, records=(*history, target), risk=risk, numeric=numeric,
                          aggregates=aggregates)

    @staticmethod
    def collate(inputs: Sequence[ModelInput]) -> dict[str, np.ndarray]:
        """Stack inputs into the batch the scorer takes: ``{"tokens": (n, max_len, fields) int64,
        "numeric": (n, len(NUMERIC)) float32}`` (``numeric`` only if every input has it or its
        aggregates)."""
        out = {"tokens": np.stack([i.tokens for i in inputs]).astype(np.int64, copy=False)}
        if inputs and all(i.numeric is not None for i in inputs):
            out["numeric"] = np.stack([i.numeric for i in inputs]).astype(np.float32, copy=False)
        elif inputs and all(i.numeric is not None or i.aggregates is not None for i in inputs):
            if all(i.aggregates is not None for i in inputs):
                out["numeric"] = numeric_inputs(np.asarray([i.aggregates for i in inputs],
                                                           dtype=np.float32))
            else:
                out["numeric"] = np.stack([i.numeric_row() for i in inputs]).astype(np.float32,
                                                                                   copy=False)
        return out


def collate(inputs: Sequence[ModelInput]) -> dict[str, np.ndarray]:
    return FeatureEncoder.collate(inputs)
