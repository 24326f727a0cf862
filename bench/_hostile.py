"""Hostile transaction records, generated with hypothesis: every one breaks the transaction contract
(``txmon.contracts``) or the topic's keying, in one of the ways a broken or malicious publisher would.

Hypothesis draws each record's *shape* (which field, which wrong value, how long, how deep, where the
bad byte goes); multi-kilobyte payloads are then expanded deterministically from what it drew, because
hypothesis caps the data one example may draw at a few kilobytes.

>>> records = generate(30, seed=1)
>>> len(records), all(isinstance(r.value, bytes | type(None)) for r in records)
(30, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from txmon.contracts import MAX_JSON_DEPTH, MAX_MESSAGE_BYTES

# The biggest record the bench publishes: under the broker's default max.message.bytes (1 MiB + 12).
MAX_RECORD = 1_000_000


@dataclass(frozen=True)
class Hostile:
    category: str
    key: bytes | None
    value: bytes | None


def base(i: int) -> dict[str, Any]:
    """A valid transaction: every hostile record is this with something broken."""
    return {"schema_version": 1, "tx_id": f"hostile-{i}", "event_time": "2026-01-10T12:00:00Z",
            "account_id": f"hacc{i % 997}", "counterparty_id": "m1", "amount": "12.30",
            "currency": "EUR", "channel": "online", "tx_type": "card", "country": "NL"}


def _key(d: dict[str, Any]) -> bytes:
    return str(d.get("account_id", "x")).encode()


def _dump(d: dict[str, Any]) -> bytes:
    return json.dumps(d).encode()


REQUIRED = ("tx_id", "event_time", "account_id", "counterparty_id", "amount")
STRING_FIELDS = {"tx_id": 128, "account_id": 128, "counterparty_id": 128, "channel": 64,
                 "tx_type": 64, "device_id": 128}
_non_string = st.one_of(st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                        st.integers(), max_size=2), st.booleans())


@st.composite
def wrong_type(draw: Any, i: int) -> Hostile:
    d = base(i)
    name = draw(st.sampled_from([*REQUIRED, "currency", "channel", "tx_type", "country", "mcc",
                                 "direction"]))
    # Integers and floats are wrong for every text field; null only where a field is required.
    wrong = [_non_string, st.integers(min_value=-10**6, max_value=10**6)] if name != "event_time" \
        else [_non_string]
    if name in REQUIRED:
        wrong.append(st.none())
    if name == "amount":
        wrong.append(st.floats(allow_nan=False, allow_infinity=False))
    d[name] = draw(st.one_of(*wrong))
    return Hostile("wrong_type", _key(base(i)), _dump(d))


@st.composite
def missing_field(draw: Any, i: int) -> Hostile:
    d = base(i)
    del d[draw(st.sampled_from(REQUIRED))]
    return Hostile("missing_field", _key(base(i)), _dump(d))


@st.composite
def huge_string(draw: Any, i: int) -> Hostile:
    d = base(i)
    name = draw(st.sampled_from(sorted(STRING_FIELDS)))
    limit = STRING_FIELDS[name]
    length = draw(st.integers(min_value=limit + 8, max_value=MAX_MESSAGE_BYTES // 2))
    unit = draw(st.text(min_size=1, max_size=4).filter(lambda s: s.strip() == s and s != ""))
    d[name] = (unit * (length // len(unit) + 1))[:length]
    key = _key(base(i)) if name != "account_id" else d[name].encode()[:1000]
    return Hostile("huge_string", key, _dump(d))


NON_FINITE = ["NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "-inf", "1e400",
              "-1e400", "1e15", "999999999999999999"]


@st.composite
def non_finite_amount(draw: Any, i: int) -> Hostile:
    d = base(i)
    how = draw(st.sampled_from(["string", "json_constant", "json_float", "minor_float"]))
    if how == "string":
        d["amount"] = draw(st.sampled_from(NON_FINITE))
        return Hostile("nan_inf_amount", _key(d), _dump(d))
    if how == "minor_float":
        del d["amount"]
        d["amount_minor"] = draw(st.sampled_from([float("nan"), float("inf"), 1.5, -0.0]))
        return Hostile("nan_inf_amount", _key(d), json.dumps(d).encode())
    literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"])) if how == "json_constant" \
        else draw(st.sampled_from(["1e400", "-1e400", "1.5", "0.1"]))
    d["amount"] = "__AMOUNT__"
    return Hostile("nan_inf_amount", _key(d), _dump(d).replace(b'"__AMOUNT__"', literal.encode()))


@st.composite
def far_time(draw: Any, i: int) -> Hostile:
    d = base(i)
    field = draw(st.sampled_from(["event_time"]))
    # A day clear of the 2000..2100 bounds: 2100-01-01T00:00+14:00 is still 2099 in UTC.
    year = draw(st.one_of(st.integers(min_value=1, max_value=1998), st.integers(min_value=2101,
                                                                                 max_value=9999)))
    month, day = draw(st.integers(1, 12)), draw(st.integers(1, 28))
    tz = draw(st.sampled_from(["Z", "+00:00", "+14:00", "-12:00"]))
    stamp = f"{year:04d}-{month:02d}-{day:02d}T00:00:00{tz}"
    kind = draw(st.sampled_from(["far", "naive", "garbage"]))
    if kind == "naive":
        stamp = "2026-01-10T12:00:00"  # no time zone: ambiguous, refused
    elif kind == "garbage":
        stamp = draw(st.sampled_from(["yesterday", "2026-13-45T00:00:00Z", "", "0", "2026-02-30T00:00Z"]))
    d[field] = stamp
    return Hostile("far_or_bad_time", _key(d), _dump(d))


@st.composite
def unknown_code(draw: Any, i: int) -> Hostile:
    from txmon.contracts import _countries, _currencies

    d = base(i)
    if draw(st.booleans()):
        d["currency"] = draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0-",
                                     min_size=0, max_size=5).filter(lambda c: c not in _currencies()))
    else:
        name = draw(st.sampled_from(["country", "counterparty_country"]))
        d[name] = draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0", min_size=2, max_size=2)
                       .filter(lambda c: c not in _countries()))
    return Hostile("unknown_code", _key(d), _dump(d))


@st.composite
def deep_json(draw: Any, i: int) -> Hostile:
    d = base(i)
    depth = draw(st.integers(min_value=MAX_JSON_DEPTH + 1, max_value=(MAX_MESSAGE_BYTES - 400) // 2))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    if opener == "{":
        depth = min(depth, (MAX_MESSAGE_BYTES - 400) // 6)
    d["extra"] = "__NEST__"
    nested = (opener * depth + "1" + closer * depth).encode()
    return Hostile("deep_json", _key(d), _dump(d).replace(b'"__NEST__"', nested))


BAD_UTF8 = [b"\xff", b"\xfe", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc",
            b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]


@st.composite
def invalid_utf8(draw: Any, i: int) -> Hostile:
    raw = _dump(base(i))
    bad = draw(st.sampled_from(BAD_UTF8))
    at = draw(st.integers(min_value=0, max_value=len(raw)))
    return Hostile("invalid_utf8", _key(base(i)), raw[:at] + bad + raw[at:])


@st.composite
def oversized(draw: Any, i: int) -> Hostile:
    d = base(i)
    size = draw(st.integers(min_value=MAX_MESSAGE_BYTES + 1, max_value=MAX_RECORD - 2_000))
    d["padding"] = ""
    raw = _dump(d)
    fill = draw(st.sampled_from(["x", "é", "0", " "]))
    pad = (fill * size).encode()[: size - len(raw)]
    return Hostile("oversized", _key(d), raw.replace(b'"padding": ""', b'"padding": "' + pad + b'"'))


@st.composite
def not_an_object(draw: Any, i: int) -> Hostile:
    value = draw(st.one_of(
        st.none(), st.just(b""), st.binary(max_size=200),
        st.sampled_from([b"null", b"[]", b"[1, 2]", b"42", b'"tx"', b"true", b"{", b"{}}", b"\x00"]),
        st.lists(st.integers(), max_size=5).map(lambda v: json.dumps(v).encode()),
        st.text(max_size=50).map(lambda t: json.dumps(t).encode())))
    return Hostile("not_an_object", f"hacc{i % 997}".encode(), value)


@st.composite
def bad_amount(draw: Any, i: int) -> Hostile:
    d = base(i)
    choice = draw(st.sampled_from(["text", "long", "both", "minor_text"]))
    if choice == "text":
        d["amount"] = draw(st.sampled_from(["12,30", "1.2.3", "€12", "0x10", "", " ", "12 30", "--1"]))
    elif choice == "long":
        d["amount"] = "1." + "0" * draw(st.integers(min_value=31, max_value=2000))
    elif choice == "both":
        d["amount_minor"] = 1230
    else:
        del d["amount"]
        d["amount_minor"] = draw(st.sampled_from(["1230", True, [1230], None, {"v": 1}]))
        if d["amount_minor"] is None:
            d["amount_minor"] = "null"
    return Hostile("bad_amount", _key(d), _dump(d))


@st.composite
def wrong_key(draw: Any, i: int) -> Hostile:
    """A valid transaction under someone else's key (or none): it would split an account's history."""
    d = base(i)
    key = draw(st.one_of(st.none(), st.binary(max_size=64), st.text(max_size=40).map(str.encode))
               .filter(lambda k: k != _key(d)))
    return Hostile("wrong_key", key, _dump(d))


@st.composite
def hostile_key(draw: Any, i: int) -> Hostile:
    """A broken value under a hostile key: huge, control characters, or not UTF-8."""
    kind = draw(st.sampled_from(["huge", "control", "binary"]))
    if kind == "huge":
        key = (draw(st.sampled_from(["k", "\x00", "é"])) * draw(
            st.integers(min_value=10_000, max_value=MAX_RECORD // 3))).encode()[: MAX_RECORD // 2]
    elif kind == "control":
        key = draw(st.text(alphabet="\x00\x01\x1b\n\t\u2028", min_size=1, max_size=500)).encode()
    else:
        key = draw(st.binary(min_size=1, max_size=500))
    return Hostile("hostile_key", key, b'{"tx_id": "k", "amount": 1.5}')


# (strategy, weight): big payloads are rare so 100,000 records stay a few hundred megabytes.
KINDS = [(wrong_type, 20), (missing_field, 8), (huge_string, 2), (non_finite_amount, 12),
         (far_time, 12), (unknown_code, 12), (deep_json, 2), (invalid_utf8, 10), (oversized, 0.2),
         (not_an_object, 8), (bad_amount, 8), (wrong_key, 6), (hostile_key, 1)]


def hostile() -> st.SearchStrategy[Hostile]:
    total = sum(w for _, w in KINDS)
    cumulative, acc = [], 0.0
    for kind, w in KINDS:
        acc += w / total
        cumulative.append((acc, kind))

    @st.composite
    def pick(draw: Any) -> Hostile:
        u = draw(st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
        i = draw(st.integers(min_value=0, max_value=10**9))
        kind = next((k for c, k in cumulative if u < c), cumulative[-1][1])
        return draw(kind(i))

    return pick()


def extremes() -> list[Hostile]:
    """Hand-written worst cases hypothesis reaches only by luck: the biggest keys and values the
    broker accepts, in the characters that grow most when a dead letter escapes them into JSON."""
    big = MAX_RECORD - 1_000
    return [Hostile("hostile_key", b"\x00" * big, b"{}"),
            Hostile("hostile_key", b"k" * big, b"{}"),
            Hostile("hostile_key", b"\xff" * (big // 2), b"\x00" * (big // 2)),
            Hostile("oversized", b"hacc1", b"\x01" * big),
            Hostile("oversized", b"hacc1", b'{"tx_id": "' + b"\\u0000" * (big // 7) + b'"}')]


def generate(n: int, seed: int = 0) -> list[Hostile]:
    """:func:`extremes`, then hypothesis's records up to ``n`` (several runs if one stops early)."""
    out: list[Hostile] = extremes()[:n]
    run = 0
    while len(out) < n:
        @settings(max_examples=n - len(out), database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck))
        @hypothesis_seed(seed * 1000 + run)
        @given(hostile())
        def collect(h: Hostile) -> None:
            out.append(h)

        before = len(out)
        collect()
        run += 1
        if len(out) == before:
            raise RuntimeError("hypothesis generated nothing")
    return out[:n]
