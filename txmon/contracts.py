"""Event contracts: one pydantic model per Kafka topic of DESIGN.md, and the one way to decode bytes.

Every event carries ``schema_version``. Money is a :class:`~decimal.Decimal` — on the wire a decimal
string (``"12.30"``) or integer minor units (``"amount_minor": 1230``), never a JSON float. Times are
timezone-aware. Currencies are ISO 4217, countries ISO 3166-1 alpha-2.

>>> tx = decode(Transaction, b'{"tx_id": "t1", "event_time": "2026-01-02T03:04:05Z", '
...             b'"account_id": "a1", "counterparty_id": "m1", "amount": "12.30", "currency": "EUR"}')
>>> tx.amount, tx.channel
(Decimal('12.30'), 'unknown')
>>> decode(Transaction, b'{"tx_id": "t1", "amount": 1.5}')  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
txmon.contracts.ContractError: amount: a JSON float is not accepted for money; send a decimal ...
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import orjson
import pycountry
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16
# Plausible event times: anything outside is a publisher bug, not a transaction.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_AMOUNT = Decimal("1e15")


class ContractError(ValueError):
    """An event that does not meet its contract; ``field`` names where, ``problem`` says what."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


@cache
def _currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)


@cache
def _countries() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries) | {"XK"}  # Kosovo: used by banks


# Minor-unit exponents that differ from 2 (ISO 4217); everything else has cents.
_EXPONENTS = {
    **dict.fromkeys(["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"], 0),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}


def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point of a currency: ``minor_unit_exponent("JPY") == 0``."""
    return _EXPONENTS.get(currency, 2)


def _currency(v: str) -> str:
    if v not in _currencies():
        raise ValueError(f"unknown ISO 4217 currency {v[:8]!r}")
    return v


def _country(v: str | None) -> str | None:
    if v is not None and v not in _countries():
        raise ValueError(f"unknown ISO 3166 alpha-2 country {v[:8]!r}")
    return v


def _plausible_time(v: datetime) -> datetime:
    if not EARLIEST <= v < LATEST:
        raise ValueError(f"timestamp {v.isoformat()} is outside {EARLIEST.year}..{LATEST.year}")
    return v.astimezone(UTC)


Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_currency)]
Country = Annotated[str, Field(min_length=2, max_length=2), AfterValidator(_country)]
Timestamp = Annotated[AwareDatetime, AfterValidator(_plausible_time)]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Token = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(max_length=2048)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Event(BaseModel):
    """Base of every contract: strict about types, tolerant of fields it does not know yet."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)
    topic: ClassVar[str]
    schema_version: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class Transaction(Event):
    """A payment or transfer, keyed by ``account_id``; ``direction`` says which way money moved.

    A transfer between two monitored accounts is published once, by the payer; the worker re-keys
    its credit side to ``counterparty_id`` so both histories see it.
    """

    topic: ClassVar[str] = "transactions"
    tx_id: Id
    event_time: Timestamp
    account_id: Id
    counterparty_id: Id
    amount: Annotated[Decimal, WithJsonSchema({
        "type": "string", "pattern": r"^-?\d{1,15}(\.\d{1,6})?$",
        "description": "decimal string, e.g. \"12.30\"; or send amount_minor instead"})]
    currency: Currency = "EUR"
    channel: Token = "unknown"
    tx_type: Token = "unknown"
    direction: Literal["debit", "credit"] = "debit"
    mcc: Annotated[str, Field(pattern=r"^\d{4}$")] | None = None
    country: Country | None = None
    counterparty_country: Country | None = None
    device_id: Id | None = None

    @model_validator(mode="before")
    @classmethod
    def _money(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        minor = data.pop("amount_minor", None)
        if minor is not None:
            if "amount" in data:
                raise _FieldProblem("amount", "send amount or amount_minor, not both")
            if isinstance(minor, bool) or not isinstance(minor, int):
                raise _FieldProblem("amount_minor", "must be an integer number of minor units")
            exp = minor_unit_exponent(str(data.get("currency", "EUR")))
            data["amount"] = Decimal(minor).scaleb(-exp)
            return data
        amount = data.get("amount")
        if isinstance(amount, float):
            raise _FieldProblem("amount", "a JSON float is not accepted for money; "
                                          "send a decimal string or integer minor units")
        if isinstance(amount, bool) or (amount is not None and not isinstance(amount, str | Decimal)):
            raise _FieldProblem("amount", "must be a decimal string such as \"12.30\"")
        if isinstance(amount, str):
            if len(amount) > 32:
                raise _FieldProblem("amount", "decimal string longer than 32 characters")
            try:
                data["amount"] = Decimal(amount)
            except InvalidOperation:
                raise _FieldProblem("amount", f"{amount[:32]!r} is not a decimal number") from None
        value = data.get("amount")
        if isinstance(value, Decimal) and (not value.is_finite() or abs(value) >= MAX_AMOUNT):
            raise _FieldProblem("amount", "must be finite and below 1e15")
        return data

    @property
    def amount_minor(self) -> int:
        return int(self.amount.scaleb(minor_unit_exponent(self.currency)))


# -- the plain transaction: what most events are, checked without pydantic ------------------------

_PLAIN_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3}|\.[0-9]{6})?"
                         r"(?:Z|\+00:00)")
_PLAIN_AMOUNT = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,6})?")
_PLAIN_MCC = re.compile(r"[0-9]{4}")
_TX_FIELDS = frozenset(Transaction.model_fields)
_new, _set = object.__new__, object.__setattr__
# None: not yet compared with pydantic in this process; then whether the plain path matched it.
_plain_ok: bool | None = None


def _plain_str(v: Any, longest: int) -> bool:
    # str.strip() returns the very object when there is nothing to strip; Python strips every
    # character pydantic's Rust core does (and a few more), so "nothing" here is nothing there.
    return type(v) is str and 0 < len(v) <= longest and v.strip() is v


def plain_transaction(data: dict[str, Any]) -> Transaction | None:
    """The Transaction pydantic would make of ``data``, built directly — or None, and then pydantic
    decides (and names what is wrong).

    Only a strict subset is taken: exact types, no whitespace to strip, ASCII digits, canonical UTC
    times (``...Z`` or ``+00:00``, no fraction or 3 or 6 digits), a decimal ``amount`` string. Those
    are what publishers send; anything else (``amount_minor``, offsets, a value pydantic would
    coerce or refuse) goes the validating way. Measured alone: 4.5 us against pydantic's 6.5
    (the worker's transaction is ~175-210 us in all). The first plain event of a
    process is also validated and must come out equal, else the plain path is off for good (a
    pydantic that builds models differently).

    >>> d = {"tx_id": "t1", "event_time": "2026-01-02T03:04:05Z", "account_id": "a1",
    ...      "counterparty_id": "m1", "amount": "12.30", "country": "NL"}
    >>> plain_transaction(d) == Transaction.model_validate(d)
    True
    >>> plain_transaction(d | {"amount": " 12.30"}) is None  # pydantic's to judge
    True
    """
    global _plain_ok
    if _plain_ok is False or "amount_minor" in data:
        return None
    get = data.get
    version = get("schema_version", SCHEMA_VERSION)
    tx_id, account_id, cp = get("tx_id"), get("account_id"), get("counterparty_id")
    at, amount = get("event_time"), get("amount")
    currency, channel = get("currency", "EUR"), get("channel", "unknown")
    tx_type, direction = get("tx_type", "unknown"), get("direction", "debit")
    mcc, country, cp_country = get("mcc"), get("country"), get("counterparty_country")
    device = get("device_id")
    if not (type(version) is int and version == SCHEMA_VERSION
            and _plain_str(tx_id, 128) and _plain_str(account_id, 128) and _plain_str(cp, 128)
            and type(at) is str and _PLAIN_TIME.fullmatch(at)
            and type(amount) is str and _PLAIN_AMOUNT.fullmatch(amount)
            and type(currency) is str and currency in _currencies()
            and _plain_str(channel, 64) and _plain_str(tx_type, 64)
            and (direction == "debit" or direction == "credit") and type(direction) is str
            and (mcc is None or (type(mcc) is str and _PLAIN_MCC.fullmatch(mcc)))
            and (country is None or (type(country) is str and country in _countries()))
            and (cp_country is None or (type(cp_country) is str and cp_country in _countries()))
            and (device is None or _plain_str(device, 128))):
        return None
    try:
        event_time = datetime.fromisoformat(at)
    except ValueError:  # 2026-02-30 and the like: pydantic says what is wrong
        return None
    if not EARLIEST <= event_time < LATEST:
        return None
    values = {"schema_version": SCHEMA_VERSION, "tx_id": tx_id, "event_time": event_time,
              "account_id": account_id, "counterparty_id": cp, "amount": Decimal(amount),
              "currency": currency, "channel": channel, "tx_type": tx_type, "direction": direction,
              "mcc": mcc, "country": country, "counterparty_country": cp_country,
              "device_id": device}
    # What BaseModel.model_construct does, without its per-field loop (5 us against 1).
    tx = _new(Transaction)
    _set(tx, "__dict__", values)
    _set(tx, "__pydantic_fields_set__", _TX_FIELDS.intersection(data))
    _set(tx, "__pydantic_extra__", None)
    _set(tx, "__pydantic_private__", None)
    if _plain_ok is None:
        checked = Transaction.model_validate(data)
        _plain_ok = (checked == tx and checked.to_bytes() == tx.to_bytes()
                     and checked.model_fields_set == tx.model_fields_set)
        return checked
    return tx


LabelValue = Literal["fraud", "legit", "sar", "cleared"]
POSITIVE_LABELS = frozenset({"fraud", "sar"})


class Label(Event):
    """A late truth about one transaction: a chargeback, a fraud claim, an AML case outcome."""

    topic: ClassVar[str] = "labels"
    tx_id: Id
    account_id: Id
    label: LabelValue
    label_time: Timestamp
    source: Token = "unknown"

    @property
    def positive(self) -> bool:
        return self.label in POSITIVE_LABELS


class Score(Event):
    """One score per transaction, whatever the model decided; ``alerted`` says if it raised one."""

    topic: ClassVar[str] = "scores"
    tx_id: Id
    account_id: Id
    score: Annotated[float, Field(ge=0.0, le=1.0)]
    model_version: Token
    alerted: bool
    latency_ms: Annotated[float, Field(ge=0.0)]
    event_time: Timestamp | None = None
    scored_at: Timestamp | None = None
    # A challenger scoring beside the champion: never alerts, compared by the governance loop.
    shadow: bool = False


# Model versions whose fast Score bytes matched pydantic's once (see score_bytes).
_FAST_SCORE_VERSIONS: set[str] = set()


def score_bytes(*, tx_id: str, account_id: str, score: float, model_version: str, alerted: bool,
                latency_ms: float, event_time: datetime | None = None,
                scored_at: datetime | None = None, shadow: bool = False) -> bytes:
    """``Score(...).to_bytes()`` without validating again what is already valid: the ids of a
    decoded :class:`Transaction`, a score clamped to [0, 1], a non-negative latency, UTC times.

    The worker writes one per transaction, and pydantic's validation and serialisation cost ~5 us
    of the ~1 us orjson needs. A model version takes the fast path only after its first Score has
    come out byte-identical to pydantic's; an out-of-range number always goes through pydantic
    (which raises), so the contract is what it was.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    >>> fields = dict(tx_id="t1", account_id="a1", score=0.25, model_version="v1", alerted=False,
    ...               latency_ms=3.5, event_time=t, scored_at=t)
    >>> score_bytes(**fields) == Score(**fields).to_bytes() == score_bytes(**fields)
    True
    """
    if (model_version not in _FAST_SCORE_VERSIONS or not 0.0 <= score <= 1.0
            or not latency_ms >= 0.0):
        slow = Score(tx_id=tx_id, account_id=account_id, score=score, model_version=model_version,
                     alerted=alerted, latency_ms=latency_ms, event_time=event_time,
                     scored_at=scored_at, shadow=shadow).to_bytes()
        if model_version not in _FAST_SCORE_VERSIONS and slow == _score_json(
                tx_id, account_id, score, model_version, alerted, latency_ms, event_time,
                scored_at, shadow):
            _FAST_SCORE_VERSIONS.add(model_version)
        return slow
    return _score_json(tx_id, account_id, score, model_version, alerted, latency_ms, event_time,
                       scored_at, shadow)


def _score_json(tx_id: str, account_id: str, score: float, model_version: str, alerted: bool,
                latency_ms: float, event_time: datetime | None, scored_at: datetime | None,
                shadow: bool) -> bytes:
    d: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "tx_id": tx_id,
                         "account_id": account_id, "score": score, "model_version": model_version,
                         "alerted": alerted, "latency_ms": latency_ms}
    if event_time is not None:
        d["event_time"] = event_time
    if scored_at is not None:
        d["scored_at"] = scored_at
    d["shadow"] = shadow
    return tight(orjson.dumps(d, option=orjson.OPT_UTC_Z))


def tight(buffer: bytes) -> bytes:
    """``buffer`` in a bytes object of its own length.

    orjson 3.12+ returns its whole working buffer (4-8 KiB for a 300-byte value) and never trims
    it. The worker makes ~4 such values a transaction and holds a batch of them until they are
    sent: 4-8 MB of heap churn a batch. Copying costs ~0.2 us a value. In ``bench/probe_core.py``
    it halved the page faults (0.6 -> 0.29 a transaction) and took 184 -> 173 us a transaction;
    the real worker faults less (~0.15 a transaction) and its drains showed no difference beyond
    noise (README, session 9), so it is kept for the memory: a 300-byte value holds 300 bytes.

    >>> tight(orjson.dumps({"score": 0.25}))
    b'{"score":0.25}'
    """
    return bytes(memoryview(buffer))


class Reason(BaseModel):
    """What drove a score, in an analyst's words, with its share of the score."""

    model_config = ConfigDict(frozen=True)
    feature: Token
    description: Text
    contribution: float


Severity = Literal["low", "medium", "high", "critical"]


class Alert(Event):
    """A transaction for an analyst to review: its score, why, and which rules it hit."""

    topic: ClassVar[str] = "alerts"
    tx_id: Id
    account_id: Id
    score: Annotated[float, Field(ge=0.0, le=1.0)]
    threshold: Annotated[float, Field(ge=0.0, le=1.0)]
    model_version: Token
    severity: Severity
    reasons: list[Reason] = Field(default_factory=list, max_length=32)
    rule_hits: list[Token] = Field(default_factory=list, max_length=32)
    created_at: Timestamp


class Window(BaseModel):
    """The stretch of traffic a drift statistic was computed on."""

    model_config = ConfigDict(frozen=True)
    start: Timestamp | None = None
    end: Timestamp | None = None
    events: int = Field(ge=0)


class FeatureShift(BaseModel):
    """One piece of drift evidence: which input moved, and how far."""

    model_config = ConfigDict(frozen=True)
    feature: Token
    statistic: float
    threshold: float | None = None
    reference_mean: float | None = None
    current_mean: float | None = None


class Drift(Event):
    """A detector decided the world moved: its statistic, its threshold, and the evidence."""

    topic: ClassVar[str] = "drift"
    detector: Token
    scope: Literal["feature", "embedding", "score", "performance"]
    statistic: float
    threshold: float
    detected_at: Timestamp
    window: Window
    champion_version: Token
    evidence: list[FeatureShift] = Field(default_factory=list, max_length=256)
    severity: Severity = "medium"


class GateResult(BaseModel):
    """One validation gate's verdict on a candidate model."""

    model_config = ConfigDict(frozen=True)
    name: Token
    passed: bool
    value: float | None = None
    threshold: float | None = None
    detail: Text = ""


class ModelEvent(Event):
    """A step in a model's life: candidate -> validated -> promoted (or rejected, rolled_back)."""

    topic: ClassVar[str] = "models"
    event: Literal["candidate", "validated", "promoted", "rejected", "rolled_back"]
    version: Token
    artifact_sha256: Sha256
    signature: Annotated[str, Field(max_length=512)] | None = None
    artifact_uri: Text | None = None
    gate_results: list[GateResult] = Field(default_factory=list, max_length=64)
    reason: Text = ""
    created_at: Timestamp


class DeadLetter(Event):
    """An event txmon could not use, with where it came from, why, and its original bytes."""

    topic: ClassVar[str] = "dlq"
    source_topic: Token
    partition: int = Field(ge=0)
    offset: int = Field(ge=-1)
    key: Annotated[str, Field(max_length=4 * MAX_MESSAGE_BYTES)] | None = None
    original: Annotated[str, Field(max_length=4 * MAX_MESSAGE_BYTES)] = Field(
        description="the original value bytes, base64")
    error: Text
    error_field: Token | None = None
    stage: Token = "decode"
    failed_at: Timestamp


CONTRACTS: tuple[type[Event], ...] = (Transaction, Label, Score, Alert, Drift, ModelEvent, DeadLetter)

E = TypeVar("E", bound=Event)


class _FieldProblem(ValueError):
    """Raised inside validators to name the field the problem belongs to."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(problem)


def _reject_constant(name: str) -> Any:
    raise ContractError("(json)", f"{name} is not a number JSON allows")


def _depth(obj: Any, limit: int) -> int:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    deepest = 0
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def decode(contract: type[E], raw: bytes | bytearray | memoryview | None) -> E:
    """Bytes off a topic -> a validated event, or :class:`ContractError` naming the field."""
    if raw is None:
        raise ContractError("(message)", "empty value (tombstone)")
    raw = bytes(raw)
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ContractError("(message)", f"{len(raw)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        # orjson checks UTF-8 and refuses NaN and Infinity as json.loads is told to below, at a
        # quarter of its cost; what it refuses goes the slow way, which says why.
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = _slow_json(raw)
    if not isinstance(data, dict):
        raise ContractError("(json)", f"expected a JSON object, got {type(data).__name__}")
    # Nesting needs an opening bracket per level: with few brackets (every normal event) the walk
    # is skipped; brackets inside strings only make this count larger, so it never misses.
    if (raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH
            and _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH):
        raise ContractError("(json)", f"nested deeper than {MAX_JSON_DEPTH} levels")
    if contract is Transaction:
        tx = plain_transaction(data)
        if tx is not None:
            return tx  # type: ignore[return-value]  # contract is Transaction
    return validate(contract, data)


def _slow_json(raw: bytes) -> Any:
    """``raw`` parsed by the standard library, or the ContractError that says what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError("(message)", f"not valid UTF-8 at byte {exc.start}") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ContractError:
        raise
    except RecursionError:
        raise ContractError("(json)", "nested too deeply") from None
    except ValueError as exc:
        raise ContractError("(json)", f"not JSON: {exc}") from None
    return data


def validate(contract: type[E], data: dict[str, Any]) -> E:
    """A dict -> a validated event, or :class:`ContractError` naming the field."""
    try:
        return contract.model_validate(data)
    except _FieldProblem as exc:
        raise ContractError(exc.field, exc.problem) from None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, _FieldProblem):
            raise ContractError(inner.field, inner.problem) from None
        field = ".".join(str(p) for p in err["loc"]) or "(event)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required field is missing"
        if isinstance(err.get("input"), float) and not math.isfinite(err["input"]):
            msg = "must be a finite number"
        raise ContractError(field, msg) from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every contract, by topic suffix, for publishers in other languages."""
    out = {}
    for c in CONTRACTS:
        schema = c.model_json_schema(mode="validation")
        schema["$id"] = f"txmon:{c.topic}:v{SCHEMA_VERSION}"
        if c is Transaction:
            # amount or amount_minor (integer minor units): exactly one.
            schema["properties"]["amount_minor"] = {"type": "integer"}
            schema["required"] = [f for f in schema["required"] if f != "amount"]
            schema["oneOf"] = [{"required": ["amount"]}, {"required": ["amount_minor"]}]
        out[c.topic] = schema
    return out
