"""Column mapping: how a user's transaction log (CSV or Parquet) becomes a transaction frame.

One format, used by ``txmon replay``, ``txmon train`` and ``txmon backtest``: ``field=column`` pairs
(``--map tx_id=id --map amount=amt``) or a file with the same pairs (YAML/JSON mapping, or one
``field=column`` per line). ``field:=VALUE`` sets a constant (``currency:=USD``). Fields not mapped
fall back to a column of the same name, then to the frame defaults. Only ``tx_id``, ``event_time``,
``account_id``, ``counterparty_id`` and ``amount`` are required.

>>> m = ColumnMapping.parse(["tx_id=id", "event_time=ts", "account_id=card", "counterparty_id=shop",
...                          "amount=amt", "currency:=USD"], label="is_fraud", label_delay="7d")
>>> raw = pd.DataFrame({"id": ["a", "b"], "ts": ["2026-01-01T10:00:00Z", "yesterday"],
...                     "card": ["c1", "c1"], "shop": ["s", "s"], "amt": ["9.99", "5"],
...                     "is_fraud": ["1", "0"]}, index=[2, 3])
>>> out = m.apply(raw)
>>> out.frame[["tx_id", "amount", "currency", "label"]].values.tolist()
[['a', 9.99, 'USD', 'fraud']]
>>> out.frame["label_time"].iloc[0].isoformat(), [(b.line, b.field) for b in out.bad]
('2026-01-08T10:00:00+00:00', [(3, 'event_time')])
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from txmon.contracts import EARLIEST, LATEST, ContractError, Transaction, validate
from txmon.frames import COLUMNS, DEFAULTS, OPTIONAL, REQUIRED, empty_frame

MAPPABLE = COLUMNS
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
LABEL_WORDS = {
    "fraud": "fraud", "1": "fraud", "1.0": "fraud", "true": "fraud", "t": "fraud", "yes": "fraud",
    "y": "fraud", "legit": "legit", "0": "legit", "0.0": "legit", "false": "legit", "f": "legit",
    "no": "legit", "n": "legit", "sar": "sar", "cleared": "cleared",
}
DIRECTION_WORDS = {"debit": "debit", "dr": "debit", "d": "debit", "out": "debit",
                   "credit": "credit", "cr": "credit", "c": "credit", "in": "credit"}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``"7d"``, ``"12h"``, ``"1d12h"``, ``"90m"``, ``"30s"``, ``"2w"`` -> timedelta; a number is seconds.

    >>> parse_duration("1d12h"), parse_duration("90m")
    (datetime.timedelta(days=1, seconds=43200), datetime.timedelta(seconds=5400))
    """
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        return timedelta(seconds=float(text))
    s = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return timedelta(seconds=float(s))
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"not a duration: {text!r} (use e.g. 7d, 12h, 30m, 1d12h)")
    return timedelta(seconds=total)


@dataclass(frozen=True)
class BadRow:
    """A row that cannot become a transaction: where it is, why, and its original bytes."""

    line: int
    reason: str
    field: str | None = None
    original: bytes = b""

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class RawTable:
    """A file as read: raw columns (CSV values are strings), indexed by line number (CSV: the
    header is line 1) or 1-based row number (Parquet); rows that could not even be split."""

    path: Path
    frame: pd.DataFrame
    broken: list[BadRow] = field(default_factory=list)

    def original(self, line: int) -> bytes:
        return self.frame.attrs.get("original", {}).get(line) or _row_json(self.frame.loc[line])


def _row_json(row: pd.Series) -> bytes:
    return json.dumps({str(k): (None if _missing(v) else str(v)) for k, v in row.items()}).encode()


def _missing(v: Any) -> bool:
    return v is None or v is pd.NaT or (isinstance(v, float) and v != v) or v == ""


def load_table(path: str | Path) -> RawTable:
    """Read a CSV (any delimiter csv.Sniffer recognises among , ; | tab) or Parquet file."""
    p = Path(path)
    if p.suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(p)
        frame.index = pd.RangeIndex(1, len(frame) + 1)
        return RawTable(p, frame)
    if p.suffix not in (".csv", ".tsv", ".txt"):
        raise ValueError(f"{p}: expected .csv or .parquet")
    return _read_csv(p)


def _read_csv(p: Path) -> RawTable:
    data = p.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw_lines = data.splitlines(keepends=True)
    broken: list[BadRow] = []
    lines = []
    for i, b in enumerate(raw_lines, start=1):
        try:
            lines.append(b.decode("utf-8"))
        except UnicodeDecodeError as exc:
            broken.append(BadRow(i, f"not valid UTF-8 at byte {exc.start}", None, b))
            lines.append("\n")  # keeps line numbers; the csv reader skips it as a blank line
    try:
        dialect: Any = csv.Sniffer().sniff("".join(lines[:20]), delimiters=",;|\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO("".join(lines)), dialect)
    header: list[str] | None = None
    records, numbers, originals = [], [], {}
    last = 0
    for rec in reader:
        first, last = last + 1, reader.line_num
        if not rec or all(not c.strip() for c in rec):
            continue
        if header is None:
            header = [c.strip() for c in rec]
            continue
        text = "".join(lines[first - 1:last]).encode()
        if len(rec) != len(header):
            broken.append(BadRow(first, f"expected {len(header)} fields, found {len(rec)}", None, text))
            continue
        records.append(rec)
        numbers.append(first)
        originals[first] = text
    if header is None:
        raise ValueError(f"{p}: no header line")
    frame = pd.DataFrame(records, columns=header, index=pd.Index(numbers, name="line"), dtype=object)
    frame.attrs["original"] = originals
    return RawTable(p, frame, sorted(broken, key=lambda b: b.line))


@dataclass(frozen=True)
class Mapped:
    """The valid rows as a transaction frame (``lines``: each row's source line) and the bad rows."""

    frame: pd.DataFrame
    lines: np.ndarray
    bad: list[BadRow]


@dataclass(frozen=True)
class ColumnMapping:
    """Frame field -> source column (``columns``) or fixed value (``constants``)."""

    columns: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    label_delay: timedelta | None = None

    def __post_init__(self) -> None:
        unknown = (set(self.columns) | set(self.constants)) - set(MAPPABLE)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; fields: {', '.join(MAPPABLE)}")

    @classmethod
    def parse(cls, items: Iterable[str] = (), label: str | None = None,
              label_delay: str | timedelta | None = None) -> ColumnMapping:
        """From ``field=column`` / ``field:=VALUE`` strings, plus the ``--label`` shorthand."""
        columns: dict[str, str] = {}
        constants: dict[str, str] = {}
        for item in items:
            if ":=" in item:
                k, v = item.split(":=", 1)
                constants[k.strip()] = v.strip()
            elif "=" in item:
                k, v = item.split("=", 1)
                columns[k.strip()] = v.strip()
            else:
                raise ValueError(f"mapping {item!r}: expected field=column or field:=VALUE")
        if label:
            columns["label"] = label
        delay = parse_duration(label_delay) if label_delay not in (None, "") else None
        return cls(columns, constants, delay)

    @classmethod
    def from_file(cls, path: str | Path) -> ColumnMapping:
        """A YAML/JSON mapping ``{field: column}`` (``label_delay`` and ``constants`` keys allowed)
        or lines of ``field=column``; ``#`` starts a comment."""
        text = Path(path).read_text()
        try:
            data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict):
            data = dict(data)
            delay = data.pop("label_delay", None)
            constants = {k: str(v) for k, v in (data.pop("constants", None) or {}).items()}
            return cls({k: str(v) for k, v in data.items()}, constants,
                       parse_duration(delay) if delay else None)
        items = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        return cls.parse([i for i in items if i])

    def merged(self, override: ColumnMapping) -> ColumnMapping:
        """This mapping with ``override``'s entries taking precedence (command line over file)."""
        return ColumnMapping({**self.columns, **override.columns}, {**self.constants, **override.constants},
                             override.label_delay or self.label_delay)

    def resolve(self, available: Iterable[str]) -> dict[str, str]:
        """Field -> source column, with same-named columns filling unmapped fields. Raises if a
        mapped column is absent or a required field has no source."""
        cols = set(available)
        missing = {f: c for f, c in self.columns.items() if c not in cols}
        if missing:
            raise ValueError("column(s) not in the file: " + ", ".join(f"{c!r} (for {f})" for f, c in
                                                                       missing.items()))
        out = {f: f for f in MAPPABLE if f in cols and f not in self.constants}
        out.update(self.columns)
        unsourced = [f for f in REQUIRED if f not in out and f not in self.constants]
        if unsourced:
            raise ValueError(f"no column for {', '.join(unsourced)}: map it with --map FIELD=COLUMN")
        return out

    def apply(self, raw: RawTable | pd.DataFrame) -> Mapped:
        """Map and validate every row: a transaction frame of the good rows, and the bad ones with
        their line numbers and reasons (a row's first problem)."""
        table = raw.frame if isinstance(raw, RawTable) else raw
        broken = list(raw.broken) if isinstance(raw, RawTable) else []
        source = self.resolve(table.columns)
        n = len(table)
        problem = pd.Series([None] * n, index=table.index, dtype=object)
        where = pd.Series([None] * n, index=table.index, dtype=object)

        def flag(mask: pd.Series | np.ndarray, fld: str, why: str | pd.Series) -> None:
            new = pd.Series(np.asarray(mask), index=table.index) & problem.isna()
            problem[new] = why[new] if isinstance(why, pd.Series) else why
            where[new] = fld

        out = empty_frame().reindex(range(n))
        out.index = table.index
        for f in COLUMNS:
            if f in self.constants:
                out[f] = self.constants[f]
            elif f in source:
                out[f] = _text(table[source[f]]) if f not in ("amount", "event_time", "label_time") \
                    else table[source[f]]
        for f in REQUIRED:
            if f in ("amount", "event_time"):
                continue
            v = out[f]
            flag(v.isna(), f, "required field is empty")
            flag(v.fillna("").str.len() > 128, f, "longer than 128 characters")
        out["event_time"], bad_time = _times(out["event_time"])
        flag(bad_time, "event_time", "not a timestamp between 2000 and 2100")
        out["amount"], bad_amount = _amounts(out["amount"])
        flag(bad_amount, "amount", "not a decimal amount below 1e15")
        for f in OPTIONAL:
            if f == "direction" and out[f].notna().any():
                words = out[f].str.lower().map(DIRECTION_WORDS)
                flag(out[f].notna() & words.isna(), f, "direction must be debit or credit")
                out[f] = words
            elif f in ("currency", "country", "counterparty_country") and out[f].notna().any():
                out[f] = out[f].str.upper()
            if out[f].notna().any():
                bad = _invalid_values(f, out[f])
                flag(out[f].isin(bad), f, out[f].map(bad))
        if out["label"].notna().any():
            words = out["label"].str.lower().map(LABEL_WORDS)
            flag(out["label"].notna() & words.isna(), "label",
                 "label must be fraud/legit/sar/cleared (or 1/0, true/false)")
            out["label"] = words
            if "label_time" in source:
                out["label_time"], bad_lt = _times(out["label_time"], allow_missing=True)
                flag(bad_lt, "label_time", "not a timestamp between 2000 and 2100")
            else:
                out["label_time"] = out["event_time"] + pd.Timedelta(self.label_delay or timedelta(0))
            out.loc[out["label"].isna(), "label_time"] = pd.NaT
        else:
            out["label_time"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns, UTC]")
        dup = out["tx_id"].notna() & out["tx_id"].duplicated(keep="first")
        first_line = pd.Series(out.index, index=out.index).groupby(out["tx_id"]).transform("first")
        flag(dup, "tx_id", "duplicate tx_id, first on line " + first_line.astype(str))
        for f, default in DEFAULTS.items():
            out[f] = out[f].fillna(default)
        good = problem.isna().to_numpy()
        def original(line: int) -> bytes:
            return raw.original(line) if isinstance(raw, RawTable) else _row_json(table.loc[line])

        bad_rows = [BadRow(int(line), f"{where[line]}: {problem[line]}", where[line], original(int(line)))
                    for line in table.index[~good]]
        frame = out[good].reset_index(drop=True)
        frame["event_time"] = frame["event_time"].astype("datetime64[ns, UTC]")
        frame["label_time"] = frame["label_time"].astype("datetime64[ns, UTC]")
        frame = frame.astype({c: object for c in COLUMNS if c not in ("amount", "event_time", "label_time")})
        frame = frame.where(frame.notna(), None) if len(frame) else frame
        frame["amount"] = frame["amount"].astype("float64")
        return Mapped(frame[list(COLUMNS)], table.index[good].to_numpy(),
                      sorted(broken + bad_rows, key=lambda b: b.line))


def _text(s: pd.Series) -> pd.Series:
    """Values as stripped strings; empty -> missing."""
    out = s.astype(object).where(s.notna(), None)
    out = out.map(lambda v: None if v is None else str(v).strip(), na_action="ignore")
    return out.where(out != "", None)


def _from_epoch(x: pd.Series, unit: str) -> pd.Series:
    """Epoch numbers to UTC timestamps, NaN to NaT. Only the numbers go to pandas: pandas 2.2 rounds
    uninitialised memory where a float array holds NaN and, now and then, raises
    FloatingPointError on it (pandas-dev/pandas#58419; failed a CI run here)."""
    out = pd.Series(pd.NaT, index=x.index, dtype="datetime64[ns, UTC]")
    ok = x.notna()
    if ok.any():
        out[ok] = pd.to_datetime(x[ok], unit=unit, utc=True, errors="coerce")
    return out


def _times(s: pd.Series, allow_missing: bool = False) -> tuple[pd.Series, pd.Series]:
    """ISO-8601 text (naive = UTC), datetimes, or epoch seconds/milliseconds -> UTC timestamps."""
    if pd.api.types.is_datetime64_any_dtype(s):
        t = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
    else:
        text = _text(s)
        num = pd.to_numeric(text, errors="coerce")
        t = pd.to_datetime(text.where(num.isna()), utc=True, errors="coerce", format="mixed")
        # Epoch numbers: 13 digits are milliseconds, 10 are seconds.
        ms = num.where(num.abs() >= 1e11)
        sec = num.where(num.abs() < 1e11)
        t = t.fillna(_from_epoch(ms, "ms")).fillna(_from_epoch(sec, "s"))
    t = t.astype("datetime64[ns, UTC]")
    bad = t.isna() | (t < pd.Timestamp(EARLIEST)) | (t >= pd.Timestamp(LATEST))
    if allow_missing:
        bad &= s.notna() & (s.astype(str).str.strip() != "")
    return t.where(~bad), bad


def _amounts(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num = pd.to_numeric(s if pd.api.types.is_numeric_dtype(s) else _text(s), errors="coerce")
    bad = num.isna() | ~np.isfinite(num.fillna(0)) | (num.abs() >= 1e15)
    return num.astype("float64"), bad


def _invalid_values(f: str, values: pd.Series) -> dict[str, str]:
    """Each distinct value the contract rejects for field ``f``, with the reason (checked once per
    distinct value, so a million rows cost a few hundred validations)."""
    uniq = values.dropna().unique()
    if f in ("device_id",):
        return {v: "longer than 128 characters" for v in uniq if len(v) > 128}
    return {v: why for v in uniq if (why := _field_problem(f, v))}


@cache
def _field_problem(f: str, value: str) -> str | None:
    probe = {"tx_id": "x", "event_time": "2026-01-01T00:00:00Z", "account_id": "a",
             "counterparty_id": "b", "amount": "1", f: value}
    if f in ("label", "label_time", "scenario", "segment"):
        return None
    try:
        validate(Transaction, probe)
    except ContractError as exc:
        return exc.problem
    return None
