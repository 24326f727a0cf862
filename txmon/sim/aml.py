"""AML typologies. Rows are keyed by the payer; a transfer between two simulated accounts is one row
that the beneficiary's history also sees (``txmon.sim.both_sides``)."""

from __future__ import annotations

import numpy as np

from txmon.sim.incidents import DAY, Incidents
from txmon.sim.randomness import hex_ids
from txmon.sim.rows import Rows, group_cumsum, hashed_keys, index_in_group
from txmon.sim.world import FRAUD_ABROAD, World, branch_ids

HOUR = 3600


def _add(rows: Rows, w: World, b: Incidents, inc: np.ndarray, j: np.ndarray, tag: str, **cols) -> None:
    n = inc.size
    keys = hashed_keys(b.ids.astype(np.uint64)[inc] * np.uint64(256) + j.astype(np.uint64), tag, w.cfg.seed)
    cols.setdefault("country", w.cfg.home_country)
    rows.add(n, key=keys, incident=b.ids[inc], scenario=b.scenario, truth="aml", **cols)


def _beneficiaries(w: World, b: Incidents, inc: np.ndarray, j: np.ndarray, tag: str,
                   abroad: float) -> tuple[np.ndarray, np.ndarray]:
    keys = b.ids.astype(np.uint64)[inc] * np.uint64(256) + j.astype(np.uint64)
    ids = hex_ids("ext", keys, tag, w.cfg.seed, 12)
    country = np.where(b.rng.random(inc.size) < abroad,
                       b.rng.choice(np.array(FRAUD_ABROAD, dtype=object), inc.size), w.cfg.home_country)
    return ids, country.astype(object)


def _others(w: World, rng: np.random.Generator, not_: np.ndarray) -> np.ndarray:
    other = rng.integers(0, w.pop.n, not_.size)
    return np.where(other == not_, (other + 1) % w.pop.n, other)


def _transfer_channel(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array(["mobile", "web", "branch"], dtype=object), n, p=[.5, .4, .1])


def _device(w: World, acct: np.ndarray, channel: np.ndarray) -> np.ndarray:
    return np.where(channel == "branch", None, w.pop.devices[acct, 0])


def structuring(b: Incidents, w: World) -> Rows:
    """3-8 cash deposits just under the reporting threshold over 4-14 days, then usually one
    transfer of most of it to a new beneficiary."""
    rng, rows, n, cfg = b.rng, Rows(), len(b), w.cfg
    k = rng.integers(3, 9, n)
    inc = np.repeat(np.arange(n), k)
    span = rng.uniform(4, 14, n) * DAY
    offset = np.sort(rng.random(inc.size) + inc)  # sorted within each incident
    t = b.t0[inc] + ((offset - inc) * span[inc]).astype(np.int64)
    amount = np.round(cfg.reporting_threshold * rng.uniform(0.85, 0.99, inc.size), -1)
    branches = branch_ids(cfg.seed)
    _add(rows, w, b, inc, index_in_group(k), "struct-in", t=t, acct=b.acct[inc],
         counterparty_id=branches[rng.integers(0, branches.size, inc.size)], amount=amount,
         channel="branch", tx_type="cash_deposit", direction="credit",
         counterparty_country=cfg.home_country)
    out = rng.random(n) < 0.7
    total = np.bincount(inc, weights=amount, minlength=n)
    last = b.t0 + span
    o = np.flatnonzero(out)
    ben, ben_c = _beneficiaries(w, b, o, np.zeros(o.size, np.int64), "struct-out", 0.6)
    ch = _transfer_channel(rng, o.size)
    _add(rows, w, b, o, np.zeros(o.size, np.int64), "struct-out",
         t=(last[o] + rng.uniform(1, 3, o.size) * DAY).astype(np.int64), acct=b.acct[o],
         counterparty_id=ben, amount=np.round(total[o] * rng.uniform(0.85, 0.95, o.size), 2),
         channel=ch, tx_type="transfer", direction="debit", counterparty_country=ben_c,
         device_id=_device(w, b.acct[o], ch))
    return rows


def fan_in(b: Incidents, w: World) -> Rows:
    """5-15 payers — other customers of the bank and outside accounts — send a mule 500-3,000
    each over 1-5 days; within two days the mule moves ~90% on."""
    rng, rows, n, cfg = b.rng, Rows(), len(b), w.cfg
    k = rng.integers(5, 16, n)
    inc = np.repeat(np.arange(n), k)
    j = index_in_group(k)
    m = inc.size
    t = b.t0[inc] + (rng.random(m) * rng.uniform(1, 5, n)[inc] * DAY).astype(np.int64)
    amount = np.round(rng.uniform(500, 3000, m), -1)
    mule = b.acct[inc]
    internal = rng.random(m) < 0.5
    payer = _others(w, rng, mule)
    ext, _ = _beneficiaries(w, b, inc, j, "fan-in-src", 0.0)
    ch = np.where(internal, _transfer_channel(rng, m), "sepa")
    _add(rows, w, b, inc, j, "fan-in", t=t, acct=np.where(internal, payer, mule),
         counterparty_id=np.where(internal, w.pop.ids[mule], ext), amount=amount, channel=ch,
         tx_type="transfer", direction=np.where(internal, "debit", "credit").astype(object),
         counterparty_country=cfg.home_country,
         device_id=np.where(internal, _device(w, payer, ch), None))
    last = np.zeros(n, np.int64)
    np.maximum.at(last, inc, t)
    total = np.bincount(inc, weights=amount, minlength=n)
    _pass_on(rows, w, b, np.arange(n), last, total, "fan-in-out")
    return rows


def _pass_on(rows: Rows, w: World, b: Incidents, idx: np.ndarray, after: np.ndarray, total: np.ndarray,
             tag: str, hours: tuple[float, float] = (1, 48), abroad: float = 0.6) -> None:
    """The mule sends most of what came in to 1-2 outside beneficiaries."""
    rng = b.rng
    k = rng.integers(1, 3, idx.size)
    inc = np.repeat(idx, k)
    j = index_in_group(k)
    share = rng.uniform(0.9, 0.98, idx.size)[np.repeat(np.arange(idx.size), k)] / np.repeat(k, k)
    ben, ben_c = _beneficiaries(w, b, inc, j, tag, abroad)
    ch = _transfer_channel(rng, inc.size)
    t = after[np.repeat(np.arange(idx.size), k)] + (rng.uniform(*hours, inc.size) * HOUR).astype(np.int64)
    _add(rows, w, b, inc, j, tag, t=t, acct=b.acct[inc], counterparty_id=ben,
         amount=np.round(total[np.repeat(np.arange(idx.size), k)] * share, 2), channel=ch,
         tx_type="transfer", direction="debit", counterparty_country=ben_c,
         device_id=_device(w, b.acct[inc], ch))


def fan_out(b: Incidents, w: World) -> Rows:
    """One large deposit (5,000-50,000, by transfer or cash), then 5-15 payments to different
    beneficiaries within three days."""
    rng, rows, n, cfg = b.rng, Rows(), len(b), w.cfg
    total = np.round(rng.uniform(5000, 50000, n), -1)
    cash = rng.random(n) < 0.3
    src, _ = _beneficiaries(w, b, np.arange(n), np.zeros(n, np.int64), "fan-out-src", 0.0)
    branches = branch_ids(cfg.seed)
    _add(rows, w, b, np.arange(n), np.zeros(n, np.int64), "fan-out-in", t=b.t0, acct=b.acct,
         counterparty_id=np.where(cash, branches[rng.integers(0, branches.size, n)], src), amount=total,
         channel=np.where(cash, "branch", "sepa").astype(object),
         tx_type=np.where(cash, "cash_deposit", "transfer").astype(object), direction="credit",
         counterparty_country=cfg.home_country)
    k = rng.integers(5, 16, n)
    inc = np.repeat(np.arange(n), k)
    j = index_in_group(k)
    m = inc.size
    internal = rng.random(m) < 0.5
    ext, ext_c = _beneficiaries(w, b, inc, j, "fan-out", 0.4)
    ch = _transfer_channel(rng, m)
    _add(rows, w, b, inc, j + 1, "fan-out", t=b.t0[inc] + (rng.uniform(1, 72, m) * HOUR).astype(np.int64),
         acct=b.acct[inc], counterparty_id=np.where(internal, w.pop.ids[_others(w, rng, b.acct[inc])], ext),
         amount=np.round(total[inc] * 0.95 / k[inc] * rng.uniform(0.8, 1.2, m), 2), channel=ch,
         tx_type="transfer", direction="debit",
         counterparty_country=np.where(internal, cfg.home_country, ext_c),
         device_id=_device(w, b.acct[inc], ch))
    return rows


def rapid_pass_through(b: Incidents, w: World) -> Rows:
    """2,000-20,000 arrives from outside and 90-98% leaves again within 30 minutes to 6 hours."""
    rng, rows, n, cfg = b.rng, Rows(), len(b), w.cfg
    amount = np.round(rng.uniform(2000, 20000, n), 2)
    src, _ = _beneficiaries(w, b, np.arange(n), np.zeros(n, np.int64), "rpt-src", 0.0)
    _add(rows, w, b, np.arange(n), np.zeros(n, np.int64), "rpt-in", t=b.t0, acct=b.acct,
         counterparty_id=src, amount=amount, channel="sepa", tx_type="transfer", direction="credit",
         counterparty_country=cfg.home_country)
    _pass_on(rows, w, b, np.arange(n), b.t0, amount, "rpt-out", hours=(0.5, 6), abroad=0.7)
    return rows


def round_tripping(b: Incidents, w: World) -> Rows:
    """Money goes round a ring of 3-5 of the bank's accounts, 1-3 times, losing 1-3% per hop."""
    rng, rows, n, cfg = b.rng, Rows(), len(b), w.cfg
    ring = rng.integers(3, 6, n)
    laps = rng.integers(1, 4, n)
    # Distinct members: increasing offsets that never wrap back to the first account.
    steps = rng.integers(1, max(2, w.pop.n // 5), (n, 4))
    offsets = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(steps, 1)], 1)
    members = (b.acct[:, None] + offsets) % w.pop.n
    hops = ring * laps
    inc = np.repeat(np.arange(n), hops)
    j = index_in_group(hops)
    payer = members[inc, j % ring[inc]]
    payee = members[inc, (j + 1) % ring[inc]]
    t = b.t0[inc] + group_cumsum(np.where(j == 0, 0, rng.uniform(2 * HOUR, 3 * DAY, inc.size)),
                                 hops).astype(np.int64)
    amount = rng.uniform(5000, 50000, n)[inc] * (1 - rng.uniform(0.01, 0.03, n)[inc]) ** j
    ch = _transfer_channel(rng, inc.size)
    _add(rows, w, b, inc, j, "ring", t=t, acct=payer, counterparty_id=w.pop.ids[payee],
         amount=np.round(amount, 2), channel=ch, tx_type="transfer", direction="debit",
         counterparty_country=cfg.home_country, device_id=_device(w, payer, ch))
    return rows
