"""Card fraud scenarios. Each is recognisable mostly from the account's own context — a burst of
tiny charges at shops it never used, a card seen at a compromised terminal, a new device from a new
place, an amount far above its habit — rather than from any single field."""

from __future__ import annotations

import numpy as np

from txmon.sim.incidents import DAY, Incidents
from txmon.sim.randomness import hex_ids, uniform
from txmon.sim.rows import Rows, choose, group_cumsum, hashed_keys, index_in_group
from txmon.sim.world import CASHOUT_MCCS, FRAUD_ABROAD, MCC_CODES, TEST_MCCS, World, atm_ids

SKIM_SHARE = 0.35


def _attacker_country(rng: np.random.Generator, n: int, home: str, abroad_share: float) -> np.ndarray:
    return np.where(rng.random(n) < abroad_share, rng.choice(np.array(FRAUD_ABROAD, dtype=object), n),
                    home).astype(object)


def card_testing(b: Incidents, w: World) -> Rows:
    """A stolen card number is tried with 3-8 tiny online charges at unfamiliar shops within
    minutes, then spent on 1-3 large purchases within hours."""
    rng, rows, n = b.rng, Rows(), len(b)
    n_test = rng.integers(3, 9, n)
    size = n_test + rng.integers(1, 4, n)
    inc = np.repeat(np.arange(n), size)
    j = index_in_group(size)
    test = j < n_test[inc]
    m = inc.size
    gap = np.where(test, rng.uniform(20, 300, m), rng.uniform(60, 1800, m))
    gap[j == n_test[inc]] = rng.uniform(600, 6 * 3600, n)[inc[j == n_test[inc]]]
    gap[j == 0] = 0
    t = b.t0[inc] + group_cumsum(gap, size).astype(np.int64)
    acct = b.acct[inc]
    merchant = np.where(test, choose(w.merchants.pool(online=True, mccs=TEST_MCCS), rng.random(m)),
                        choose(w.merchants.pool(online=True, mccs=CASHOUT_MCCS), rng.random(m)))
    amount = np.where(test, rng.uniform(0.5, 3.0, m), w.pop.base[acct] * rng.uniform(6, 25, m))
    keys = hashed_keys(b.ids.astype(np.uint64)[inc] * np.uint64(64) + j.astype(np.uint64), "ct", w.cfg.seed)
    device = hex_ids("dv", b.ids.astype(np.uint64), "attacker", w.cfg.seed, 12)[inc]
    country = w.merchants.country[merchant]
    rows.add(m, key=keys, t=t, acct=acct, counterparty_id=w.merchants.ids[merchant],
             amount=np.round(amount, 2), channel="ecommerce", tx_type="card_not_present",
             direction="debit", mcc=MCC_CODES[w.merchants.mcc[merchant]], country=country,
             counterparty_country=country, device_id=device, scenario="card_testing", truth="fraud",
             incident=b.ids[inc])
    return rows


def compromised_terminal(b: Incidents, w: World) -> Rows:
    """A skimmer sits on a point-of-sale terminal for 3-10 days; a third of the cards used there are
    cloned and cashed out 1-14 days later at ATMs and shops, at home or abroad.

    Victims are decided per skimmed row (counter-based coins), so a drift event that changes who
    shops where after its start cannot change the victims before it.
    """
    rng, rows, seed, cfg = b.rng, Rows(), w.cfg.seed, w.cfg
    n = len(b)
    # Any terminal can be tampered with, not only the busiest ones.
    idx, _ = w.merchants.pool(online=False, country=cfg.home_country)
    terminals = idx[rng.integers(0, idx.size, n)]
    duration = rng.uniform(3, 10, n) * DAY
    ev = w.everyday
    terminal_ids = w.merchants.ids[terminals]
    victim_rows, victim_inc = [], []
    card = np.flatnonzero(ev["tx_type"] == "card_present")
    for k in range(n):
        at = card[(ev["counterparty_id"][card] == terminal_ids[k]) & (ev["t"][card] >= b.t0[k])
                  & (ev["t"][card] < b.t0[k] + duration[k])]
        at = at[uniform(ev["key"][at], "skimmed", seed) < SKIM_SHARE]
        _, first = np.unique(ev["acct"][at], return_index=True)  # a card is cloned once
        victim_rows.append(at[first])
        victim_inc.append(np.full(first.size, k))
    if not victim_rows or not sum(v.size for v in victim_rows):
        return rows
    vr, vi = np.concatenate(victim_rows), np.concatenate(victim_inc)
    vkey = ev["key"][vr]
    u = [uniform(vkey, f"clone{i}", seed) for i in range(3)]
    size = 1 + (u[0] * 4).astype(np.int64)
    start = ev["t"][vr] + ((1 + u[1] * 13) * DAY).astype(np.int64)
    abroad = u[2] < 0.6
    rep = np.repeat(np.arange(vr.size), size)
    j = index_in_group(size)
    rkey = vkey[rep] * np.uint64(8) + j.astype(np.uint64)
    ru = [uniform(rkey, f"cashout{i}", seed) for i in range(5)]
    t = start[rep] + group_cumsum(np.where(j == 0, 0, 600 + ru[0] * 3 * 3600), size).astype(np.int64)
    acct = ev["acct"][vr][rep]
    where = np.array(FRAUD_ABROAD, dtype=object)[(ru[1] * len(FRAUD_ABROAD)).astype(int)]
    country = np.where(abroad[rep], where,
                       cfg.home_country).astype(object)
    is_atm = ru[2] < 0.4
    merchant = np.empty(rep.size, np.int64)
    for c in np.unique(country):
        sel = country == c
        try:
            pool = w.merchants.pool(online=False, country=str(c), mccs=CASHOUT_MCCS)
        except ValueError:
            pool = w.merchants.pool(online=False, mccs=CASHOUT_MCCS)
        merchant[sel] = choose(pool, ru[3][sel])
    atms = atm_ids(seed, 64, "atmx")
    cp = np.where(is_atm, atms[(ru[3] * atms.size).astype(int)], w.merchants.ids[merchant])
    shop_amount = w.pop.base[acct] * (3 + ru[4] * 12)
    atm_amount = np.array([200.0, 250, 300, 400, 500])[(ru[4] * 5).astype(int)]
    keep = t < cfg.days * DAY
    rows.add(int(keep.sum()), key=hashed_keys(rkey, "ct-row", seed)[keep], t=t[keep], acct=acct[keep],
             counterparty_id=cp[keep],
             amount=np.round(np.where(is_atm, atm_amount, shop_amount), 2)[keep],
             channel=np.where(is_atm, "atm", "pos").astype(object)[keep],
             tx_type=np.where(is_atm, "atm_withdrawal", "card_present").astype(object)[keep],
             direction="debit",
             mcc=np.where(is_atm, "6011", MCC_CODES[w.merchants.mcc[merchant]]).astype(object)[keep],
             country=country[keep], counterparty_country=country[keep], scenario="compromised_terminal",
             truth="fraud", incident=b.ids[vi][rep][keep])
    return rows


def account_takeover(b: Incidents, w: World) -> Rows:
    """Stolen online-banking credentials: a new device, often from abroad, moves 8-40x the
    account's usual amount to a new beneficiary, sometimes with online purchases."""
    rng, rows, n, cfg = b.rng, Rows(), len(b), w.cfg
    n_tr = rng.integers(1, 4, n)
    size = n_tr + rng.integers(0, 3, n)
    inc = np.repeat(np.arange(n), size)
    j = index_in_group(size)
    m = inc.size
    transfer = j < n_tr[inc]
    t = b.t0[inc] + group_cumsum(np.where(j == 0, 0, rng.uniform(120, 4 * 3600, m)), size).astype(np.int64)
    acct = b.acct[inc]
    ids64 = b.ids.astype(np.uint64)
    device = hex_ids("dv", ids64, "attacker", cfg.seed, 12)[inc]
    where_from = _attacker_country(rng, n, cfg.home_country, 0.6)[inc]
    beneficiary = hex_ids("ext", ids64, "mule-beneficiary", cfg.seed, 12)[inc]
    ben_country = _attacker_country(rng, n, cfg.home_country, 0.5)[inc]
    merchant = choose(w.merchants.pool(online=True, mccs=CASHOUT_MCCS), rng.random(m))
    base = w.pop.base[acct]
    amount = np.where(transfer, np.round(base * rng.uniform(8, 40, m), -1), base * rng.uniform(4, 15, m))
    channel = np.where(transfer, rng.choice(np.array(["mobile", "web"], dtype=object), m), "ecommerce")
    rows.add(m, key=hashed_keys(ids64[inc] * np.uint64(64) + j.astype(np.uint64), "ato", cfg.seed), t=t,
             acct=acct, counterparty_id=np.where(transfer, beneficiary, w.merchants.ids[merchant]),
             amount=np.round(np.maximum(amount, 10), 2), channel=channel.astype(object),
             tx_type=np.where(transfer, "transfer", "card_not_present").astype(object),
             direction="debit",
             mcc=np.where(transfer, None, MCC_CODES[w.merchants.mcc[merchant]]),
             country=np.where(transfer, where_from, w.merchants.country[merchant]),
             counterparty_country=np.where(transfer, ben_country, w.merchants.country[merchant]),
             device_id=device, scenario="account_takeover", truth="fraud", incident=b.ids[inc])
    return rows


def high_value(b: Incidents, w: World) -> Rows:
    """One purchase 12-50x the account's usual amount at an electronics, jewellery or quasi-cash
    merchant; legitimate customers make big purchases there too."""
    rng, rows, n, cfg = b.rng, Rows(), len(b), w.cfg
    online = rng.random(n) < 0.6
    merchant = np.where(online, choose(w.merchants.pool(online=True, mccs=CASHOUT_MCCS), rng.random(n)),
                        choose(w.merchants.pool(online=False, mccs=CASHOUT_MCCS), rng.random(n)))
    ids64 = b.ids.astype(np.uint64)
    country = w.merchants.country[merchant]
    rows.add(n, key=hashed_keys(ids64, "hv", cfg.seed), t=b.t0, acct=b.acct,
             counterparty_id=w.merchants.ids[merchant],
             amount=np.round(w.pop.base[b.acct] * rng.uniform(12, 50, n), 2),
             channel=np.where(online, "ecommerce", "pos").astype(object),
             tx_type=np.where(online, "card_not_present", "card_present").astype(object),
             direction="debit", mcc=MCC_CODES[w.merchants.mcc[merchant]], country=country,
             counterparty_country=country,
             device_id=np.where(online, hex_ids("dv", ids64, "attacker", cfg.seed, 12), None),
             scenario="high_value", truth="fraud", incident=b.ids)
    return rows
