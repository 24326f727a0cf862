"""The streaming path (Transaction events through the state functions) and the training replay of a
frame must give identical model inputs; state must survive a JSON round trip (Faust changelog)."""

from __future__ import annotations

import heapq
import json

import numpy as np
import pandas as pd
import pytest

from models.dataset import fit_spec, label_outcome, replay
from models.features import (
    HISTORY_MAX,
    FeatureEncoder,
    HistoryRows,
    ModelInput,
    collate,
    new_account_state,
    new_counterparty_risk,
    update_account_state,
    update_counterparty_risk,
)
from models.numeric import NUMERIC
from models.toy import toy_frame
from txmon.frames import to_label, to_transaction


def _stream(frame: pd.DataFrame, encoder: FeatureEncoder,
            cached: bool = False) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict]]:
    """What the worker does, event by event, with state stored as JSON between events; ``cached``:
    as the worker really does, state kept as objects with each account's token-row cache, the
    encoded target record applied as is, and numeric inputs transformed per batch of 64."""
    rows = frame.sort_values(["event_time", "tx_id"], kind="stable").to_dict("records")
    accounts = set(frame["account_id"])
    cp_of = dict(zip(frame["tx_id"], frame["counterparty_id"], strict=True))
    pending = [(r["label_time"], r["tx_id"], to_label(r)) for r in rows if to_label(r) is not None]
    heapq.heapify(pending)
    states: dict[str, str] = {}
    risks: dict[str, str] = {}
    live: dict[str, dict] = {}
    caches: dict[str, HistoryRows] = {}
    batch: list[tuple[str, ModelInput]] = []
    out = {}

    def flush() -> None:
        collated = encoder.collate([i for _, i in batch])
        for j, (tx_id, _) in enumerate(batch):
            out[tx_id] = {k: v[j:j + 1] for k, v in collated.items()}
        batch.clear()

    for row in rows:
        tx = to_transaction(row)
        while pending and pending[0][0] <= row["event_time"]:
            _, tx_id, label = heapq.heappop(pending)
            cp = cp_of[tx_id]
            risk = json.loads(risks.get(cp, json.dumps(new_counterparty_risk())))
            risks[cp] = json.dumps(update_counterparty_risk(risk, label, cp))
        risk = json.loads(risks[tx.counterparty_id]) if tx.counterparty_id in risks else None
        if cached:
            state = live.setdefault(tx.account_id, new_account_state())
            rows_ = caches.setdefault(tx.account_id, HistoryRows(encoder.spec))
            model_input = encoder.encode(state, tx, risk, rows=rows_)
            batch.append((tx.tx_id, model_input))
            update_account_state(state, tx, record=model_input.records[-1])
            if len(batch) == 64:
                flush()
            if tx.counterparty_id in accounts and tx.counterparty_id != tx.account_id:
                update_account_state(live.setdefault(tx.counterparty_id, new_account_state()), tx,
                                     as_counterparty=True)
            continue
        state = json.loads(states.get(tx.account_id, json.dumps(new_account_state())))
        out[tx.tx_id] = encoder.collate([encoder.encode(state, tx, risk)])
        states[tx.account_id] = json.dumps(update_account_state(state, tx))
        if tx.counterparty_id in accounts and tx.counterparty_id != tx.account_id:
            other = json.loads(states.get(tx.counterparty_id, json.dumps(new_account_state())))
            states[tx.counterparty_id] = json.dumps(
                update_account_state(other, tx, as_counterparty=True))
    if batch:
        flush()
    final = {a: json.loads(json.dumps(v)) for a, v in live.items()} if cached else \
        {a: json.loads(v) for a, v in states.items()}
    return out, final


@pytest.mark.parametrize(("max_len", "cached"), [(1, False), (8, False), (HISTORY_MAX + 1, False),
                                               (8, True), (HISTORY_MAX + 1, True)])
def test_streaming_and_replay_give_identical_inputs(max_len: int, cached: bool) -> None:
    frame = toy_frame(accounts=25, days=12, seed=3)
    frame.loc[frame.index[::7], "device_id"] = "dev-1"
    spec = fit_spec(frame, min_count=1)
    encoder = FeatureEncoder(spec, max_len)
    streamed, states = _stream(frame, encoder, cached)
    if cached:  # caching changed nothing the state holds (the changelog writes it)
        assert states == _stream(frame, encoder)[1]
    replayed = replay(frame, spec, max_len, label_outcome(frame["label"]), frame["label_time"])
    inputs = replayed.inputs(np.arange(len(frame)))
    batch, numeric = inputs["tokens"], inputs["numeric"]
    assert batch.shape == (len(frame), max_len, len(spec.fields))
    assert numeric.shape == (len(frame), len(NUMERIC)) and numeric.dtype == np.float32
    for i, tx_id in enumerate(replayed.tx_id):
        np.testing.assert_array_equal(batch[i], streamed[tx_id]["tokens"][0], err_msg=tx_id)
        np.testing.assert_array_equal(numeric[i], streamed[tx_id]["numeric"][0], err_msg=tx_id)
    # Numeric inputs vary (amounts, velocities, arrived-label risk counts), and are finite.
    assert np.isfinite(numeric).all()
    assert (numeric.std(0) > 0).sum() >= len(NUMERIC) // 2
    assert (numeric[:, NUMERIC.index("cp_risk_labels")] > 0).any()
    # The comparison is not vacuous: histories, credits and arrived-label risk all occur.
    risk = batch[:, -1, spec.index("cp_risk")]
    assert len(set(risk.tolist())) > 1
    if max_len > 8:
        direction = batch[:, :, spec.index("direction")]
        assert (direction == spec.tokens({"dir": "credit", "ts": 0})[spec.index("direction")]).any()


def test_counterparty_risk_sees_only_arrived_labels() -> None:
    frame = toy_frame(accounts=20, days=10, seed=5)
    spec = fit_spec(frame, min_count=1)
    y = label_outcome(frame["label"])
    never = replay(frame, spec, 4, y, frame["label_time"] + pd.Timedelta("3650D"))
    now = replay(frame, spec, 4, y, frame["event_time"])
    col = spec.index("cp_risk")
    unknown = spec.risk_token("unknown")
    assert (never.target[:, col] == unknown).all()
    assert (now.target[:, col] != unknown).any()


def test_new_values_map_to_oov_and_missing_fields_to_missing() -> None:
    frame = toy_frame(accounts=8, days=5, seed=1)
    spec = fit_spec(frame, min_count=1)
    row = frame.iloc[0].to_dict() | {"channel": "teleport", "mcc": None, "country": None}
    state = new_account_state()
    toks = FeatureEncoder(spec, 4).encode(state, to_transaction(row), None).tokens[-1]
    assert toks[spec.index("channel")] == 2  # OOV
    assert toks[spec.index("mcc")] == 3 and toks[spec.index("country")] == 3  # MISSING


def test_state_is_bounded_and_json() -> None:
    frame = toy_frame(accounts=1, days=40, seed=2)
    state = new_account_state()
    for row in frame.to_dict("records"):
        state = json.loads(json.dumps(update_account_state(state, to_transaction(row))))
    assert len(state["h"]) == HISTORY_MAX
    assert "acc0" not in json.dumps(state)  # no raw identifiers
    assert collate([FeatureEncoder(fit_spec(frame, 1), 6).encode(state, to_transaction(row), None)]
                   )["tokens"].shape == (1, 6, 20)


def test_numeric_inputs_log_heavy_tails_and_flag_missing() -> None:
    from models.baselines import AGGREGATES
    from models.numeric import numeric_inputs

    agg = np.zeros((2, len(AGGREGATES)), np.float32)
    agg[0, AGGREGATES.index("amount")] = 1e6
    agg[0, AGGREGATES.index("rel_amount")] = np.nan  # first transactions: no usual amount yet
    agg[1, AGGREGATES.index("rel_amount")] = 1.5
    x = numeric_inputs(agg)
    col = {n: i for i, n in enumerate(NUMERIC)}
    assert x[0, col["amount"]] == pytest.approx(np.log1p(1e6))
    assert x[0, col["rel_amount"]] == 0.0 and x[0, col["rel_amount_missing"]] == 1.0
    assert x[1, col["rel_amount"]] == 1.5 and x[1, col["rel_amount_missing"]] == 0.0
    assert not any(n.endswith("_code") for n in NUMERIC)  # hashed categories stay tokens


def _trip_flags(days_abroad: int, home_every: int | None) -> tuple[list[bool], list[bool]]:
    """(``nctry``, ``foreign``) of each row of an account's trip: 10 days at home, then
    ``days_abroad`` days of four card payments a day in ES (one in ``home_every`` made at home,
    as an online purchase or a standing order is), then 3 days home again."""
    from datetime import UTC, datetime, timedelta

    from txmon.contracts import Transaction

    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    plan = ([("DE", d, h) for d in range(10) for h in (9, 18)]
            + [("ES", 10 + d, h) for d in range(days_abroad) for h in (8, 12, 16, 20)]
            + [("DE", 10 + days_abroad + d, h) for d in range(3) for h in (9, 18)])
    if home_every:
        plan = [("DE", *p[1:]) if p[0] == "ES" and i % home_every == 0 else p for i, p in enumerate(plan)]
    enc = FeatureEncoder(fit_spec(toy_frame(accounts=1, days=2, seed=1), 1), 2)
    state, nctry, foreign = new_account_state(), [], []
    for i, (country, day, hour) in enumerate(plan):
        tx = Transaction(tx_id=f"t{i}", event_time=t0 + timedelta(days=day, hours=hour), account_id="a",
                         counterparty_id=f"m{i % 5}", amount="30.00", country=country,
                         counterparty_country=country)
        rec = enc.encode(state, tx, None).records[-1]
        nctry.append(rec["nctry"])
        foreign.append(rec["foreign"])
        update_account_state(state, tx, record=rec)
    return nctry, foreign


def test_new_country_marks_the_onset_of_a_trip_not_its_rows() -> None:
    # A 6-day trip: 24 rows abroad, every one foreign, one onset; home is still in the history on return.
    nctry, foreign = _trip_flags(6, None)
    assert sum(bool(f) for f in foreign) == 24
    assert [i for i, n in enumerate(nctry) if n] == [20]
    assert nctry[0] is None  # the account's first row: nothing to compare with
    # Home rows during the trip (every 7th) leave the trip one onset, not one per return abroad.
    nctry, foreign = _trip_flags(6, 7)
    assert sum(bool(n) for n in nctry) == 1 and sum(bool(f) for f in foreign) > 15
    # A 12-day trip of 48 rows abroad pushes home out of the kept history: its end is an onset too.
    nctry, _ = _trip_flags(12, None)
    assert [i for i, n in enumerate(nctry) if n] == [20, 68]
