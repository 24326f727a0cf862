"""Column mapping: parsing, reading CSV/Parquet with line numbers, validation of every row."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest

from txmon.mapping import ColumnMapping, load_table, parse_duration
from txmon.sim import SimConfig, simulate
from txmon.sim.output import write

MAP = ["tx_id=Ref", "event_time=When", "account_id=Card No", "counterparty_id=Shop", "amount=Amt EUR"]
CSV = """Ref;When;Card No;Shop;Amt EUR;Cur;Fraud?
r1;2026-03-01 10:00:00;c1;s1;12.50;EUR;0
r2;2026-03-01T11:00:00+01:00;c1;s2;abc;EUR;0
r3;1772362800000;c2;s1;7;usd;1
r4;2026-03-01 12:00:00;c2;s1;3.00;EUR
r5;2026-03-01 12:30:00;c3;s1;4.00;EUX;0
r6;2026-03-01 13:00:00;;s1;4.00;EUR;0
r1;2026-03-01 14:00:00;c3;s1;4.00;EUR;0
r8;"2026-03-01
 15:00:00";c3;s1;5.00;EUR;maybe
r9;2026-03-01 16:00:00;c3;s1;6.00;EUR;
"""


@pytest.fixture
def csv_file(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text(CSV)
    return p


def test_parse_duration():
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("1w2d3h4m5s") == timedelta(days=9, hours=3, minutes=4, seconds=5)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    for bad in ("", "7", "x7d", "7 days", "d"):
        if bad == "7":
            assert parse_duration(bad) == timedelta(seconds=7)
            continue
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_parse_and_file_forms_agree(tmp_path):
    cli = ColumnMapping.parse([*MAP, "currency:=USD"], label="Fraud?", label_delay="7d")
    y = tmp_path / "m.yaml"
    y.write_text("tx_id: Ref\nevent_time: When\naccount_id: Card No\ncounterparty_id: Shop\n"
                 "amount: Amt EUR\nlabel: Fraud?\nlabel_delay: 7d\nconstants: {currency: USD}\n")
    lines = tmp_path / "m.txt"
    lines.write_text("# my bank\n" + "\n".join(MAP) + "\nlabel=Fraud?\ncurrency:=USD\n")
    assert ColumnMapping.from_file(y) == cli
    assert ColumnMapping.from_file(lines).columns == cli.columns
    assert ColumnMapping.from_file(lines).merged(ColumnMapping(label_delay=timedelta(days=7))) == cli
    with pytest.raises(ValueError, match="unknown field"):
        ColumnMapping.parse(["txid=Ref"])
    with pytest.raises(ValueError, match="expected field=column"):
        ColumnMapping.parse(["Ref"])


def test_csv_lines_and_broken_rows(csv_file):
    raw = load_table(csv_file)
    assert list(raw.frame.columns) == ["Ref", "When", "Card No", "Shop", "Amt EUR", "Cur", "Fraud?"]
    assert [b.line for b in raw.broken] == [5]  # r4 has 6 fields, not 7
    assert "expected 7 fields, found 6" in raw.broken[0].reason
    assert raw.broken[0].original == b"r4;2026-03-01 12:00:00;c2;s1;3.00;EUR\n"
    assert list(raw.frame.index) == [2, 3, 4, 6, 7, 8, 9, 11]  # r8 spans lines 9-10


def test_apply_reports_each_bad_row_with_line_and_reason(csv_file):
    m = ColumnMapping.parse([*MAP, "currency=Cur"], label="Fraud?", label_delay="7d")
    out = m.apply(load_table(csv_file))
    bad = {b.line: b for b in out.bad}
    assert sorted(bad) == [3, 5, 6, 7, 8, 9]
    assert bad[3].field == "amount"
    assert bad[6].field == "currency" and "EUX" in bad[6].reason
    assert bad[7].field == "account_id"
    assert bad[8].field == "tx_id" and "first on line 2" in bad[8].reason
    assert bad[9].field == "label"
    assert bad[3].original.startswith(b"r2;")
    f = out.frame
    assert f["tx_id"].tolist() == ["r1", "r3", "r9"]
    assert out.lines.tolist() == [2, 4, 11]
    r3 = f.iloc[1]
    assert r3["event_time"] == pd.Timestamp(1772362800000, unit="ms", tz="UTC")
    assert r3["currency"] == "USD" and r3["label"] == "fraud"
    assert r3["label_time"] - r3["event_time"] == pd.Timedelta(days=7)
    assert f.iloc[0]["event_time"] == pd.Timestamp("2026-03-01 10:00:00", tz="UTC")  # naive = UTC
    assert f.iloc[2]["label"] is None and pd.isna(f.iloc[2]["label_time"])
    # Missing optional columns take the frame's defaults or stay empty.
    assert set(f["channel"]) == {"unknown"} and set(f["direction"]) == {"debit"}
    assert f["mcc"].isna().all() and f["device_id"].isna().all()


def test_required_field_without_source_is_refused(csv_file):
    with pytest.raises(ValueError, match="no column for amount"):
        ColumnMapping.parse(MAP[:4]).apply(load_table(csv_file))
    with pytest.raises(ValueError, match="not in the file"):
        ColumnMapping.parse([*MAP, "mcc=MCC"]).apply(load_table(csv_file))


def test_simulator_output_round_trips_with_identity_mapping(tmp_path):
    r = simulate(SimConfig(accounts=100, days=5, seed=3))
    for ext in ("parquet", "csv"):
        p = tmp_path / f"s.{ext}"
        write(r, p)
        out = ColumnMapping().apply(load_table(p))
        assert out.bad == []
        f, g = out.frame, r.frame
        assert f["tx_id"].tolist() == g["tx_id"].tolist()
        assert (f["event_time"] == g["event_time"]).all()
        assert (f["amount"] - g["amount"]).abs().max() < 0.005
        assert f["label"].fillna("-").tolist() == g["label"].fillna("-").tolist()
        assert (f["label_time"].fillna(pd.Timestamp(0, tz="UTC"))
                == g["label_time"].fillna(pd.Timestamp(0, tz="UTC"))).all()
        assert f["mcc"].fillna("-").tolist() == g["mcc"].fillna("-").tolist()


def test_parquet_bad_rows_use_row_numbers(tmp_path):
    df = pd.DataFrame({"tx_id": ["a", "b"],
                       "event_time": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True),
                       "account_id": ["x", "y"], "counterparty_id": ["m", "m"], "amount": [1.0, float("nan")],
                       "country": ["NL", "ZZ"]})
    p = tmp_path / "t.parquet"
    df.to_parquet(p)
    out = ColumnMapping().apply(load_table(p))
    assert [(b.line, b.field) for b in out.bad] == [(2, "amount")]
    assert json.loads(out.bad[0].original)["tx_id"] == "b"


def test_epoch_times_never_hand_pandas_a_nan(monkeypatch):
    # pandas 2.2 rounds uninitialised memory at a float NaN under np.errstate(over="raise") and
    # raised FloatingPointError at random in CI (pandas-dev/pandas#58419): only numbers go in.
    import numpy as np

    from txmon import mapping

    real = pd.to_datetime

    def checked(arg, *a, **kw):
        if kw.get("unit"):
            assert not pd.isna(pd.Series(arg)).any(), "a NaN reached to_datetime(unit=...)"
        return real(arg, *a, **kw)

    monkeypatch.setattr(mapping.pd, "to_datetime", checked)
    t, bad = mapping._times(pd.Series(["2026-01-05T00:00:00Z", "1767571200", "1767571200000", "", np.nan]))
    assert t[:3].tolist() == [pd.Timestamp("2026-01-05", tz="UTC")] * 3
    assert bad.tolist() == [False, False, False, True, True]
