"""Event contracts: valid events round-trip; invalid input is rejected with the field named."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from txmon.contracts import (
    CONTRACTS,
    Alert,
    ContractError,
    DeadLetter,
    Drift,
    FeatureShift,
    GateResult,
    Label,
    ModelEvent,
    Reason,
    Score,
    Transaction,
    Window,
    decode,
    json_schemas,
)

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
TX = {"tx_id": "tx-1", "event_time": "2026-03-01T12:30:00+01:00", "account_id": "acct-1",
      "counterparty_id": "merchant-9", "amount": "1234.50", "currency": "EUR", "channel": "pos",
      "tx_type": "card_present", "mcc": "5411", "country": "DE", "counterparty_country": "FR",
      "device_id": "dev-1"}


def raw(**changes) -> bytes:
    d = {**TX, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()


def examples():
    return [
        decode(Transaction, raw()),
        Label(tx_id="tx-1", account_id="a", label="fraud", label_time=NOW, source="chargeback"),
        Score(tx_id="tx-1", account_id="a", score=0.93, model_version="v3", alerted=True,
              latency_ms=4.2, event_time=NOW, scored_at=NOW),
        Alert(tx_id="tx-1", account_id="a", score=0.93, threshold=0.8, model_version="v3",
              severity="high", reasons=[Reason(feature="amount", description="10x usual",
                                               contribution=0.4)],
              rule_hits=["velocity"], created_at=NOW),
        Drift(detector="mmd", scope="embedding", statistic=0.4, threshold=0.2, detected_at=NOW,
              window=Window(start=NOW, end=NOW, events=500), champion_version="v3",
              evidence=[FeatureShift(feature="log_amount", statistic=3.0)]),
        ModelEvent(event="promoted", version="v4", artifact_sha256="a" * 64, signature="s",
                   gate_results=[GateResult(name="ap", passed=True, value=0.5, threshold=0.4)],
                   created_at=NOW),
        DeadLetter(source_topic="txmon.transactions", partition=0, offset=7, original="e30=",
                   error="amount: bad", failed_at=NOW),
    ]


@pytest.mark.parametrize("event", examples(), ids=lambda e: type(e).__name__)
def test_round_trip(event):
    again = decode(type(event), event.to_bytes())
    assert again == event
    assert json.loads(event.to_bytes())["schema_version"] == 1


def test_every_contract_has_an_example():
    assert {type(e) for e in examples()} == set(CONTRACTS)


def test_transaction_normalises_time_and_money():
    tx = decode(Transaction, raw())
    assert tx.event_time == datetime(2026, 3, 1, 11, 30, tzinfo=UTC)
    assert tx.amount == Decimal("1234.50") and tx.amount_minor == 123450


def test_minor_units_use_the_currency_exponent():
    jpy = decode(Transaction, raw(amount=..., amount_minor=1500, currency="JPY"))
    kwd = decode(Transaction, raw(amount=..., amount_minor=1500, currency="KWD"))
    assert jpy.amount == Decimal(1500) and kwd.amount == Decimal("1.500")


@pytest.mark.parametrize(("payload", "field", "words"), [
    (raw(tx_id=...), "tx_id", "missing"),
    (raw(account_id=12), "account_id", "string"),
    (raw(amount=12.5), "amount", "float"),
    (raw(amount="12,50"), "amount", "decimal"),
    (raw(amount="NaN"), "amount", "finite"),
    (raw(amount_minor=5), "amount", "not both"),
    (raw(event_time="2026-03-01T12:30:00"), "event_time", "timezone"),
    (raw(event_time="3026-03-01T12:30:00Z"), "event_time", "outside"),
    (raw(currency="ABC"), "currency", "ISO 4217"),
    (raw(country="XX"), "country", "ISO 3166"),
    (raw(mcc="54x1"), "mcc", "pattern"),
    (raw(device_id="d" * 10_000), "device_id", "at most"),
    (b'{"tx_id": "\xff\xfe"}', "(message)", "UTF-8"),
    (b"not json", "(json)", "not JSON"),
    (b'{"amount": NaN}', "(json)", "NaN"),
    (b"[1, 2]", "(json)", "object"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, "(json)", "nested"),
    (b"x" * 70_000, "(message)", "limit"),
    (None, "(message)", "empty"),
])
def test_invalid_input_names_the_field(payload, field, words):
    with pytest.raises(ContractError) as info:
        decode(Transaction, payload)
    assert info.value.field == field
    assert words.lower() in info.value.problem.lower(), info.value.problem


def test_label_values_are_closed():
    with pytest.raises(ContractError) as info:
        decode(Label, json.dumps({"tx_id": "t", "account_id": "a", "label": "maybe",
                                  "label_time": "2026-01-01T00:00:00Z"}).encode())
    assert info.value.field == "label"


def test_unknown_fields_are_ignored_for_forward_compatibility():
    assert decode(Transaction, raw(new_field="x")).tx_id == "tx-1"


def test_json_schemas_validate_what_the_contract_accepts_and_reject_floats(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schemas = json_schemas()
    assert set(schemas) == {c.topic for c in CONTRACTS}
    jsonschema.validate(json.loads(raw()), schemas["transactions"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**json.loads(raw()), "amount": 12.5}, schemas["transactions"])


def test_committed_schemas_are_current():
    from pathlib import Path

    docs = Path(__file__).parents[2] / "docs" / "schemas"
    for topic, schema in json_schemas().items():
        path = docs / f"{topic}.v1.json"
        assert path.exists(), f"run `txmon schemas` to write {path}"
        assert json.loads(path.read_text()) == schema, f"{path} is stale: run `txmon schemas`"


def _stdlib_decode(contract, payload: bytes):
    """The decode of before orjson: the standard library's parser, then the same validation."""
    from txmon.contracts import validate

    return validate(contract, json.loads(payload.decode("utf-8")))


@pytest.mark.parametrize("payload", [
    raw(),
    raw(tx_id="tx-\u00e9\u4e2d\U0001f600", device_id=None, mcc=...),
    raw(amount=..., amount_minor=1500, currency="JPY"),
    b'{"tx_id":"a","tx_id":"b","event_time":"2026-03-01T12:30:00Z","account_id":"x",'
    b'"counterparty_id":"m","amount":"1.00"}',  # a repeated key: the last one wins in both
    b'{"tx_id":"t\\u00e9\\"q","event_time":"2026-03-01T12:30:00.123456Z","account_id":" x ",'
    b'"counterparty_id":"m","amount":"-0.10","extra":{"nested":[1,2.5,null,true]}}',
])
def test_fast_json_decodes_as_the_standard_library_does(payload):
    assert decode(Transaction, payload) == _stdlib_decode(Transaction, payload)


def test_score_bytes_are_pydantic_bytes_and_still_refuse_what_score_refuses():
    import random

    from pydantic import ValidationError

    from txmon.contracts import score_bytes

    rng = random.Random(5)
    for i in range(2_000):
        fields = dict(tx_id=f"tx-{i}", account_id="acct-\u00e9", score=rng.random() ** rng.randint(1, 40),
                      model_version=f"v{i % 3}", alerted=rng.random() < 0.1,
                      latency_ms=rng.choice([0.0, rng.random() * 1e4]),
                      event_time=rng.choice([None, NOW]),
                      scored_at=datetime.fromtimestamp(1.7e9 + rng.random() * 1e7, UTC),
                      shadow=rng.random() < 0.5)
        assert score_bytes(**fields) == Score(**fields).to_bytes(), fields
    for bad in ({"score": 1.5}, {"score": float("nan")}, {"latency_ms": -1.0}):
        with pytest.raises(ValidationError):
            score_bytes(**{**fields, **bad})


# Values for each Transaction field that the plain path must either take exactly as pydantic does
# or leave to pydantic: whitespace, non-ASCII digits, coercible types, offsets, impossible dates.
_TRICKY = {
    "schema_version": [1, True, 1.0, "1", 2, None],
    "tx_id": ["t", " t", "t\u00a0", "\u2003t", "x" * 128, "x" * 129, "", 7, None, "\u00e9t\u00e9"],
    "account_id": ["acct-2", "acct-2 ", "\tacct", "a\u001c", "\u0085a"],
    "counterparty_id": ["m", "m\n", "\u3000m", "\u200bm"],
    "event_time": ["2026-03-01T12:30:00Z", "2026-03-01T12:30:00+00:00", "2026-03-01T12:30:00.123Z",
                   "2026-03-01T12:30:00.123456Z", "2026-03-01T12:30:00.1234567Z",
                   "2026-03-01T12:30:00.1Z", "2026-03-01T12:30:00+01:00", "2026-02-30T00:00:00Z",
                   "2026-03-01T24:00:00Z", "2026-12-31T23:59:60Z", "1999-12-31T23:59:59Z",
                   "2100-01-01T00:00:00Z", "2026-03-01 12:30:00Z", "2026-03-01T12:30:00",
                   "\u0662026-03-01T12:30:00Z", 1_772_368_200, None],
    "amount": ["12.30", "-0", "0.000001", "0.0000001", "999999999999999", "1000000000000000",
               "012.50", "1e3", " 1", "1.", ".5", "\u0661\u0662", 12, 12.5, None, ...],
    "currency": ["EUR", "JPY", "eur", "EUR ", "XXX", "ZZZ", None, ...],
    "channel": ["pos", "", "x" * 64, "x" * 65, " pos", None, ...],
    "tx_type": ["transfer", "card present", "t\r", ...],
    "direction": ["debit", "credit", "DEBIT", " debit", None, ...],
    "mcc": ["5411", "541", "54111", "\u0665\u0664\u0661\u0661", 5411, None, ...],
    "country": ["DE", "XK", "de", "ZZ", "DE ", None, ...],
    "counterparty_country": ["FR", "GB", "UK", None, ...],
    "device_id": ["dev-1", "", " dev", None, ...],
}


def test_plain_transactions_are_what_pydantic_makes_and_the_rest_is_left_to_it():
    import random

    from txmon.contracts import plain_transaction

    rng = random.Random(11)
    base = {**TX, "event_time": "2026-03-01T11:30:00Z"}
    cases = [base, {**base, "amount_minor": 1250}, {**base, "unknown_field": [1, 2]},
             {k: v for k, v in base.items() if k != "amount"}]
    for name, values in _TRICKY.items():
        cases += [{k: v for k, v in {**base, name: value}.items() if v is not ...}
                  for value in values]
    for _ in range(3_000):  # several fields tricky at once
        d = dict(base)
        for name in rng.sample(sorted(_TRICKY), rng.randint(1, 4)):
            d[name] = rng.choice(_TRICKY[name])
        cases.append({k: v for k, v in d.items() if v is not ...})
    plain = 0
    for d in cases:
        got = plain_transaction(d)
        if got is None:
            continue
        plain += 1
        expected = Transaction.model_validate(d)  # raises if plain took what pydantic refuses
        assert got == expected, d
        assert got.to_bytes() == expected.to_bytes(), d
        assert got.model_fields_set == expected.model_fields_set, d
        assert str(got.amount) == str(expected.amount) and got.event_time.tzinfo is UTC, d
    # The common shape takes the plain path; each refusal above is pydantic's to make.
    assert plain_transaction(base) is not None and 300 < plain < len(cases) - 300, plain


def test_the_plain_path_turns_itself_off_when_pydantic_disagrees(monkeypatch):
    import txmon.contracts as contracts

    real = Transaction.model_validate
    event = raw(event_time="2026-03-01T11:30:00Z")
    monkeypatch.setattr(contracts, "_plain_ok", None)  # this process's first plain event
    with monkeypatch.context() as m:
        m.setattr(Transaction, "model_validate",
                  classmethod(lambda cls, d: real({**d, "channel": "other"})))
        assert decode(Transaction, event).channel == "other"  # validated, and they differ
    assert contracts._plain_ok is False
    assert contracts.plain_transaction(json.loads(event)) is None
    assert decode(Transaction, event).channel == "pos"  # pydantic's, every time from now on


def test_serialised_values_hold_no_more_memory_than_their_bytes():
    import tracemalloc

    from streams.tables import AccountEntry
    from txmon.contracts import score_bytes

    entry = AccountEntry({"v": 1, "h": [{"ts": 1, "amt": 2.5}], "n": 1, "cps": {"c": 1}})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        values = [score_bytes(tx_id=f"t{i}", account_id="a", score=0.5, model_version="v",
                              alerted=False, latency_ms=1.0, event_time=NOW, scored_at=NOW)
                  for i in range(500)]
        values += [v for i in range(500) for _, v in entry.delta(b"a", (32, 512))]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # orjson's own buffers are 4-8 KiB whatever the length: these must be copied out of them.
    assert held / len(values) < 2 * max(len(v) for v in values) + 100, held / len(values)
