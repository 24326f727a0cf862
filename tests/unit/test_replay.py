"""Replay without a broker: publishing order, pacing, dead letters, dry-run summary."""

from __future__ import annotations

import base64
import itertools

import pandas as pd
import pytest

from txmon.contracts import DeadLetter, decode
from txmon.mapping import BadRow, ColumnMapping, Mapped
from txmon.replay import Pacing, _wait, dead_letter, schedule, summarize
from txmon.sim import SimConfig, simulate


def test_labels_are_interleaved_at_their_label_time():
    r = simulate(SimConfig(accounts=60, days=4, seed=1))
    f = r.frame
    order = list(schedule(f))
    assert sum(k == "tx" for k, _ in order) == len(f)
    assert sum(k == "label" for k, _ in order) == int(f["label"].notna().sum())
    times = [f["event_time"].iloc[p] if k == "tx" else f["label_time"].iloc[p] for k, p in order]
    assert all(a <= b for a, b in itertools.pairwise(times))
    seen = set()
    for k, p in order:  # a label never precedes its transaction
        if k == "tx":
            seen.add(p)
        else:
            assert p in seen


def test_pacing():
    with pytest.raises(ValueError):
        Pacing(speed=2, rate=10)
    with pytest.raises(ValueError):
        Pacing(rate=0)
    slept = []
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    import time

    start = time.monotonic()
    _wait(Pacing(speed=3600), 0, t0 + pd.Timedelta(hours=2), t0, start, slept.append)
    assert slept and slept[0] == pytest.approx(2.0, abs=0.1)  # 2 h of event time at 3600x
    _wait(Pacing(rate=10), 50, t0, t0, start, slept.append)
    assert slept[1] == pytest.approx(5.0, abs=0.1)
    _wait(Pacing(), 10**6, t0, t0, start, slept.append)
    assert len(slept) == 2


def test_dead_letter_keeps_line_reason_and_original_bytes():
    b = BadRow(17, "amount: not a decimal amount below 1e15", "amount", b"r2;x;abc\n")
    dl = decode(DeadLetter, dead_letter(b, "file:log.csv").to_bytes())
    assert dl.offset == 17 and dl.source_topic == "file:log.csv" and dl.error_field == "amount"
    assert base64.b64decode(dl.original) == b"r2;x;abc\n"
    assert "line 17" in dl.error


def test_dry_run_summary():
    raw = pd.DataFrame({"tx_id": ["a", "b", "c"], "event_time": ["2026-01-01", "2026-01-03", "bad"],
                        "account_id": ["x", "y", "y"], "counterparty_id": ["m", "m", "m"],
                        "amount": ["1", "2", "3"], "y": ["1", "", "0"]}, index=[2, 3, 4])
    m: Mapped = ColumnMapping.parse([], label="y").apply(raw)
    s = summarize(m)
    assert s["rows"] == 3 and s["valid_rows"] == 2 and s["bad_rows"] == 1
    assert s["accounts"] == 2 and s["label_rate"] == 0.5 and s["labels"] == {"fraud": 1}
    assert s["first_event"].startswith("2026-01-01") and s["last_event"].startswith("2026-01-03")
