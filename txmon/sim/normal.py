"""Everyday banking: card payments, ATM withdrawals, transfers, salaries, standing orders, business
income and cash deposits — each account following its own habits, with the legitimate look-alikes
(travel abroad, big purchases, new phones, payday bursts, near-threshold cash) that make fraud hard
to spot from one field.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from txmon.sim.config import SimConfig
from txmon.sim.randomness import hex_ids, stream
from txmon.sim.rows import Rows, choose, component_key
from txmon.sim.world import (
    FAVOURITES,
    MCC_CODES,
    MCC_SCALE,
    PAYEES,
    Merchants,
    Population,
    atm_ids,
    branch_ids,
)

# Relative activity Monday..Sunday per segment.
WEEKLY = np.array([[1.0, 1.0, 1.0, 1.05, 1.2, 1.35, 0.9],
                   [1.2, 1.2, 1.2, 1.2, 1.15, 0.5, 0.2],
                   [1.0, 1.0, 1.0, 1.0, 1.1, 1.3, 1.1]])
ATM_AMOUNTS = np.array([20, 50, 100, 150, 200, 250, 300, 400, 500], dtype=float)
ATM_P = np.array([.08, .25, .27, .1, .15, .05, .05, .03, .02])
CODES = {"card": 1, "atm": 2, "transfer": 3, "salary": 4, "rent": 5, "business_credit": 6, "cash": 7}


class Calendar:
    """Day-of-month and weekday of each simulated day, for habits tied to the calendar."""

    def __init__(self, cfg: SimConfig):
        days = [cfg.start + timedelta(days=d) for d in range(cfg.days)]
        self.days = cfg.days
        self.dom = np.array([d.day for d in days])
        self.weekday = np.array([d.weekday() for d in days])

    def sample_days(self, rng: np.random.Generator, segment: np.ndarray) -> np.ndarray:
        out = np.empty(len(segment), dtype=np.int64)
        for s in range(3):
            rows = np.flatnonzero(segment == s)
            cdf = np.cumsum(WEEKLY[s][self.weekday])
            out[rows] = np.searchsorted(cdf / cdf[-1], rng.random(rows.size), side="right")
        return np.minimum(out, self.days - 1)

    def days_with_dom(self, dom: int) -> np.ndarray:
        return np.flatnonzero(self.dom == dom)

    def last_day_with_dom(self, dom: int) -> np.ndarray:
        """For each day, the most recent day (inclusive) whose day of month is ``dom``, or -1."""
        marks = np.where(self.dom == dom, np.arange(self.days), -1)
        return np.maximum.accumulate(marks)


def _seconds(rng: np.random.Generator, day: np.ndarray, hour: np.ndarray) -> np.ndarray:
    return day * 86400 + (np.mod(hour, 24) * 3600).astype(np.int64) + rng.integers(0, 60, day.size)


def _pick(rng: np.random.Generator, pool: tuple[np.ndarray, np.ndarray], n: int) -> np.ndarray:
    return choose(pool, rng.random(n))


def _devices(rng: np.random.Generator, pop: Population, acct: np.ndarray, t: np.ndarray) -> np.ndarray:
    second = (t >= pop.device_change[acct]) & (rng.random(acct.size) < 0.8)
    return pop.devices[acct, second.astype(np.int64)]


def card_payments(cfg: SimConfig, pop: Population, merchants: Merchants, cal: Calendar, rows: Rows) -> None:
    rng = stream(cfg.seed, "normal", "card")
    home = cfg.home_country
    acct = np.repeat(np.arange(pop.n), rng.poisson(pop.card_rate * cfg.days))
    m = acct.size
    day = cal.sample_days(rng, pop.segment[acct])
    # Payday bursts: a share of spending lands in the three days after the salary.
    burst = (pop.pay_dom[acct] > 0) & (rng.random(m) < 0.12)
    for dom in np.unique(pop.pay_dom[acct[burst]]):
        sel = burst & (pop.pay_dom[acct] == dom)
        last = cal.last_day_with_dom(int(dom))[day[sel]]
        moved = last + rng.integers(0, 3, sel.sum())
        day[sel] = np.where((last >= 0) & (moved < cfg.days), moved, day[sel])
    t = _seconds(rng, day, rng.normal(pop.peak_hour[acct], 3.5))

    favourite = pop.favourites[acct, rng.integers(0, FAVOURITES, m)]
    online = rng.random(m) < pop.online_share[acct]
    dom_online = _pick(rng, merchants.pool(online=True, country=home), m)
    foreign_online = _pick(rng, merchants.pool(online=True), m)
    dom_pos = _pick(rng, merchants.pool(online=False, country=home), m)
    other = np.where(online, np.where(rng.random(m) < 0.7, dom_online, foreign_online), dom_pos)
    merchant = np.where(rng.random(m) < pop.fav_share[acct], favourite, other)
    # Travel abroad: most card use moves to the destination for the trip's days.
    on_trip = (t >= pop.trip_start[acct]) & (t < pop.trip_end[acct]) & (rng.random(m) < 0.85)
    dest = pop.trip_country[acct]
    for country in np.unique(dest[on_trip]):
        sel = np.flatnonzero(on_trip & (dest == country))
        merchant[sel] = _pick(rng, merchants.pool(online=False, country=str(country)), sel.size)

    mcc = merchants.mcc[merchant]
    amount = pop.base[acct] * MCC_SCALE[mcc] * np.exp(rng.normal(0, pop.sigma[acct]))
    big = rng.random(m) < 0.004  # the occasional legitimate big purchase
    amount[big] *= rng.uniform(5, 20, big.sum())
    is_online = merchants.online[merchant]
    device = np.where(is_online, _devices(rng, pop, acct, t), None)
    country = merchants.country[merchant]
    rows.add(m, key=component_key(CODES["card"], m), t=t, acct=acct,
             counterparty_id=merchants.ids[merchant], amount=np.maximum(np.round(amount, 2), 0.5),
             channel=np.where(is_online, "ecommerce", "pos").astype(object),
             tx_type=np.where(is_online, "card_not_present", "card_present").astype(object),
             direction="debit", mcc=MCC_CODES[mcc], country=country, counterparty_country=country,
             device_id=device, scenario="normal", truth="normal")


def atm_withdrawals(cfg: SimConfig, pop: Population, cal: Calendar, rows: Rows) -> None:
    rng = stream(cfg.seed, "normal", "atm")
    acct = np.repeat(np.arange(pop.n), rng.poisson(pop.atm_rate * cfg.days))
    m = acct.size
    t = _seconds(rng, cal.sample_days(rng, pop.segment[acct]), rng.normal(pop.peak_hour[acct], 4))
    domestic = atm_ids(cfg.seed)
    atm = np.where(rng.random(m) < 0.85, pop.atms[acct, rng.integers(0, 2, m)],
                   rng.integers(0, domestic.size, m))
    cp = domestic[atm]
    country = np.full(m, cfg.home_country, dtype=object)
    on_trip = (t >= pop.trip_start[acct]) & (t < pop.trip_end[acct])
    country[on_trip] = pop.trip_country[acct[on_trip]]
    abroad = atm_ids(cfg.seed, 64, "atmx")
    cp[on_trip] = abroad[rng.integers(0, abroad.size, on_trip.sum())]
    amount = ATM_AMOUNTS[rng.choice(ATM_AMOUNTS.size, m, p=ATM_P)]
    rows.add(m, key=component_key(CODES["atm"], m), t=t, acct=acct, counterparty_id=cp,
             amount=amount, channel="atm", tx_type="atm_withdrawal", direction="debit", mcc="6011",
             country=country, counterparty_country=country, scenario="normal", truth="normal")


def transfers(cfg: SimConfig, pop: Population, cal: Calendar, rows: Rows) -> None:
    rng = stream(cfg.seed, "normal", "transfer")
    acct = np.repeat(np.arange(pop.n), rng.poisson(pop.transfer_rate * cfg.days))
    m = acct.size
    t = _seconds(rng, cal.sample_days(rng, pop.segment[acct]), rng.normal(pop.peak_hour[acct], 3))
    slot = rng.integers(0, PAYEES, m)
    keys = component_key(CODES["transfer"], m)
    one_off = rng.random(m) < 0.2  # a new beneficiary, once: common and legitimate
    cp = np.where(one_off, hex_ids("ext", keys, "one-off", cfg.seed, 12), pop.payees[acct, slot])
    cp_country = np.where(one_off, np.where(rng.random(m) < 0.85, cfg.home_country, pop.trip_country[acct]),
                          pop.payee_country[acct, slot])
    amount = pop.base[acct] * 6 * np.exp(rng.normal(0, 0.9, m))
    amount = np.where(rng.random(m) < 0.5, np.maximum(np.round(amount, -1), 10), np.round(amount, 2))
    channel = rng.choice(np.array(["mobile", "web", "branch"], dtype=object), m, p=[.6, .33, .07])
    device = np.where(channel == "branch", None, _devices(rng, pop, acct, t))
    rows.add(m, key=keys, t=t, acct=acct, counterparty_id=cp, amount=amount, channel=channel,
             tx_type="transfer", direction="debit", country=cfg.home_country,
             counterparty_country=cp_country, device_id=device, scenario="normal", truth="transfer")


def _monthly(cal: Calendar, dom_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(account, day) for every account's monthly date inside the run."""
    accts, days = [], []
    for dom in np.unique(dom_of[dom_of > 0]):
        a = np.flatnonzero(dom_of == dom)
        d = cal.days_with_dom(int(dom))
        accts.append(np.repeat(a, d.size))
        days.append(np.tile(d, a.size))
    if not accts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(accts), np.concatenate(days)


def salaries_and_rent(cfg: SimConfig, pop: Population, cal: Calendar, rows: Rows) -> None:
    rng = stream(cfg.seed, "normal", "salary")
    acct, day = _monthly(cal, pop.pay_dom)
    m = acct.size
    rows.add(m, key=component_key(CODES["salary"], m), t=_seconds(rng, day, rng.uniform(1, 6, m)),
             acct=acct, counterparty_id=pop.employer[acct],
             amount=np.round(pop.salary[acct] * (1 + rng.normal(0, 0.02, m)), 2), channel="sepa",
             tx_type="salary", direction="credit", country=cfg.home_country,
             counterparty_country=cfg.home_country, scenario="normal", truth="normal")
    acct, day = _monthly(cal, pop.rent_dom)
    m = acct.size
    rows.add(m, key=component_key(CODES["rent"], m), t=_seconds(rng, day, rng.uniform(6, 8, m)),
             acct=acct, counterparty_id=pop.payees[acct, 0], amount=pop.rent[acct],
             channel="standing_order", tx_type="transfer", direction="debit", country=cfg.home_country,
             counterparty_country=pop.payee_country[acct, 0], scenario="normal", truth="transfer")


def business_income(cfg: SimConfig, pop: Population, cal: Calendar, rows: Rows) -> None:
    rng = stream(cfg.seed, "normal", "business")
    acct = np.repeat(np.arange(pop.n), rng.poisson(pop.credit_rate * cfg.days))
    m = acct.size
    t = _seconds(rng, cal.sample_days(rng, pop.segment[acct]), rng.normal(11, 3, m))
    customer = acct.astype(np.uint64) * np.uint64(64) + rng.integers(0, 30, m).astype(np.uint64)
    rows.add(m, key=component_key(CODES["business_credit"], m), t=t, acct=acct,
             counterparty_id=hex_ids("ext", customer, "customer", cfg.seed, 12),
             amount=np.round(pop.base[acct] * 4 * np.exp(rng.normal(0, 1.0, m)), 2), channel="sepa",
             tx_type="transfer", direction="credit", country=cfg.home_country,
             counterparty_country=cfg.home_country, scenario="normal", truth="transfer")

    rng = stream(cfg.seed, "normal", "cash")
    acct = np.repeat(np.arange(pop.n), rng.poisson(pop.cash_rate * cfg.days))
    m = acct.size
    t = _seconds(rng, cal.sample_days(rng, pop.segment[acct]), rng.normal(12, 2, m))
    amount = np.minimum(np.exp(rng.normal(np.log(1500), 0.8, m)), 25_000)
    # Legitimate takings that happen to sit just under the reporting threshold.
    near = rng.random(m) < 0.12
    amount[near] = cfg.reporting_threshold * rng.uniform(0.5, 0.99, near.sum())
    branches = branch_ids(cfg.seed)
    rows.add(m, key=component_key(CODES["cash"], m), t=t, acct=acct,
             counterparty_id=branches[rng.integers(0, branches.size, m)],
             amount=np.round(amount, -1), channel="branch", tx_type="cash_deposit", direction="credit",
             country=cfg.home_country, counterparty_country=cfg.home_country, scenario="normal",
             truth="normal")


def everyday(cfg: SimConfig, pop: Population, merchants: Merchants) -> Rows:
    """All legitimate activity of the population over the run."""
    cal, rows = Calendar(cfg), Rows()
    card_payments(cfg, pop, merchants, cal, rows)
    atm_withdrawals(cfg, pop, cal, rows)
    transfers(cfg, pop, cal, rows)
    salaries_and_rent(cfg, pop, cal, rows)
    business_income(cfg, pop, cal, rows)
    return rows
