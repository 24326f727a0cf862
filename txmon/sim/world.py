"""The simulated bank's world: merchants and terminals, and accounts with their own habits.

Everything here is drawn once per seed, before any transaction, so scenarios and drift events can
read it without changing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from txmon.sim.config import SimConfig
from txmon.sim.randomness import hex_ids, stream

# mcc, amount scale (x the account's usual amount), share of merchants online, relative count
MCC_TABLE: tuple[tuple[str, float, float, float], ...] = (
    ("5411", 1.0, 0.05, 30), ("5812", 1.3, 0.05, 12), ("5814", 0.45, 0.10, 10),
    ("5541", 1.8, 0.0, 8), ("5912", 0.8, 0.15, 5), ("5311", 2.0, 0.40, 5),
    ("5651", 2.2, 0.45, 6), ("5732", 5.0, 0.55, 3), ("5999", 1.5, 0.50, 6),
    ("4121", 0.9, 0.90, 4), ("4111", 0.35, 0.50, 4), ("5815", 0.25, 1.0, 4),
    ("5818", 0.4, 1.0, 3), ("4814", 1.6, 0.90, 2), ("4511", 10.0, 0.90, 1),
    ("7011", 7.0, 0.60, 1.5), ("5944", 8.0, 0.30, 0.5), ("5921", 1.0, 0.10, 1.5),
    ("7995", 2.0, 1.0, 0.8), ("6051", 5.0, 1.0, 0.4), ("5200", 3.0, 0.30, 2),
    ("5045", 6.0, 0.60, 1.0),
)
MCC_CODES = np.array([m[0] for m in MCC_TABLE], dtype=object)
MCC_SCALE = np.array([m[1] for m in MCC_TABLE])
# Where cards are tested and cashed out; legitimate customers buy there too.
TEST_MCCS = ("5815", "5818", "4814", "5999")
CASHOUT_MCCS = ("5732", "5944", "6051", "5311")

TRAVEL = ("ES", "FR", "IT", "PT", "GR", "DE", "GB", "US", "TR", "HR", "TH", "BE")
ONLINE_ABROAD = ("US", "GB", "IE", "LU", "CN", "DE", "FR")
# Countries an attacker appears from; several are also ordinary travel destinations.
FRAUD_ABROAD = ("RO", "BR", "NG", "US", "GB", "ES", "UA", "VN", "FR", "DE")
SEGMENT_NAMES = np.array(["retail", "small_business", "high_value"], dtype=object)


def _others(pool: tuple[str, ...], home: str) -> tuple[str, ...]:
    return tuple(c for c in pool if c != home) or ("US",)


@dataclass(frozen=True)
class Merchants:
    """Card acceptors: point-of-sale terminals and online shops."""

    ids: np.ndarray        # object
    mcc: np.ndarray        # int index into MCC_TABLE
    country: np.ndarray    # object
    online: np.ndarray     # bool
    weight: np.ndarray     # popularity, sums to 1

    def pool(self, online: bool | None = None, country: str | None = None,
             mccs: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices of matching merchants and their normalised popularity."""
        mask = np.ones(len(self.ids), bool)
        if online is not None:
            mask &= self.online == online
        if country is not None:
            mask &= self.country == country
        if mccs is not None:
            mask &= np.isin(MCC_CODES[self.mcc], mccs)
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            raise ValueError(f"no merchant with online={online} country={country} mccs={mccs}")
        w = self.weight[idx]
        return idx, w / w.sum()


def make_merchants(n: int, home: str, rng: np.random.Generator, prefix: str = "m",
                   key_offset: int = 0, seed: int = 0, countries: tuple[str, ...] | None = None
                   ) -> Merchants:
    kinds = np.array([m[3] for m in MCC_TABLE])
    mcc = rng.choice(len(MCC_TABLE), size=n, p=kinds / kinds.sum())
    online = rng.random(n) < np.array([m[2] for m in MCC_TABLE])[mcc]
    if countries is None:
        abroad_pos = rng.choice(_others(TRAVEL, home), size=n)
        abroad_online = rng.choice(_others(ONLINE_ABROAD, home), size=n)
        u = rng.random(n)
        country = np.where(online, np.where(u < 0.65, home, abroad_online),
                           np.where(u < 0.80, home, abroad_pos)).astype(object)
        # Every travel destination has shops, however small the world.
        dest = np.array(_others(TRAVEL, home), dtype=object)
        k = min(n // 4, 4 * dest.size)
        online[:k], country[:k] = False, np.resize(dest, k)
    else:
        country = rng.choice(np.array(countries, dtype=object), size=n)
    weight = rng.pareto(2.0, size=n) + 0.2
    ids = hex_ids(prefix, np.arange(key_offset, key_offset + n, dtype=np.uint64), "merchant", seed, 8)
    return Merchants(ids, mcc, country, online, weight / weight.sum())


@dataclass(frozen=True)
class Population:
    """Accounts and their habits; arrays are indexed by account number."""

    ids: np.ndarray          # object, "acc0000042"
    segment: np.ndarray      # int8 index into SEGMENT_NAMES
    base: np.ndarray         # median card amount
    sigma: np.ndarray        # spread of log amounts
    card_rate: np.ndarray    # card payments per day
    atm_rate: np.ndarray
    transfer_rate: np.ndarray
    credit_rate: np.ndarray  # incoming payments from customers (small business)
    cash_rate: np.ndarray    # cash deposits per day
    peak_hour: np.ndarray
    fav_share: np.ndarray    # share of card payments at favourite merchants
    online_share: np.ndarray
    favourites: np.ndarray   # [n, K] merchant index
    atms: np.ndarray         # [n, 2] ATM index
    payees: np.ndarray       # [n, P] object ids (internal accounts or external)
    payee_country: np.ndarray
    devices: np.ndarray      # [n, 2] object
    device_change: np.ndarray  # seconds from start when the second device appears
    pay_dom: np.ndarray      # salary day of month, 0 = no salary
    salary: np.ndarray
    employer: np.ndarray
    rent_dom: np.ndarray     # 0 = no standing order
    rent: np.ndarray
    trip_start: np.ndarray   # seconds from start, -1 = no trip
    trip_end: np.ndarray
    trip_country: np.ndarray

    @property
    def n(self) -> int:
        return len(self.ids)


FAVOURITES = 12
PAYEES = 4
ATM_COUNT = 200
BRANCHES = 40


def make_population(cfg: SimConfig, merchants: Merchants) -> Population:
    rng = stream(cfg.seed, "population")
    n, seed, home = cfg.accounts, cfg.seed, cfg.home_country
    horizon = cfg.days * 86400
    shares = np.array(cfg.segment_shares) / sum(cfg.segment_shares)
    seg = rng.choice(3, size=n, p=shares).astype(np.int8)

    def by_seg(retail: float, business: float, wealthy: float) -> np.ndarray:
        return np.array([retail, business, wealthy])[seg]

    base = by_seg(25, 80, 90) * np.exp(rng.normal(0, 0.45, n))
    sigma = rng.uniform(0.55, 1.0, n)
    activity = np.exp(rng.normal(0, 0.5, n))
    card_rate = by_seg(1.3, 3.0, 2.0) * activity
    atm_rate = by_seg(0.12, 0.05, 0.05) * np.exp(rng.normal(0, 0.5, n))
    transfer_rate = by_seg(0.12, 0.6, 0.3) * np.exp(rng.normal(0, 0.4, n))
    credit_rate = by_seg(0.0, 0.8, 0.08) * np.exp(rng.normal(0, 0.4, n))
    cash_rate = by_seg(0.01, 0.15, 0.005)
    peak_hour = np.clip(rng.normal(by_seg(15.5, 12.5, 14), 2.0, n), 8, 21)
    fav_share = rng.uniform(0.55, 0.9, n)
    online_share = np.clip(rng.beta(2, 5, n) * by_seg(1.0, 0.8, 1.2), 0, 0.9)

    home_idx, home_w = merchants.pool(country=home)
    favourites = rng.choice(home_idx, size=(n, FAVOURITES), p=home_w)
    atms = rng.integers(0, ATM_COUNT, size=(n, 2))

    slot = np.arange(n * PAYEES, dtype=np.uint64)
    internal = rng.random(n * PAYEES) < 0.35
    other = rng.integers(0, n, size=n * PAYEES)
    ids = np.char.add("acc", np.char.zfill(np.arange(n).astype(str), 7)).astype(object)
    external = hex_ids("ext", slot, "payee", seed, 12)
    payees = np.where(internal, ids[other], external).reshape(n, PAYEES)
    abroad = rng.random(n * PAYEES) < 0.1
    payee_country = np.where(internal | ~abroad, home,
                             rng.choice(_others(TRAVEL, home), n * PAYEES)).astype(object)
    payee_country = payee_country.reshape(n, PAYEES)

    devices = hex_ids("dv", np.arange(2 * n, dtype=np.uint64), "device", seed, 12).reshape(n, 2)
    # Some customers get a new phone during the run: a legitimate "new device".
    device_change = np.where(rng.random(n) < 0.15, rng.integers(0, horizon, n), horizon * 10)

    salaried = seg != 1
    pay_dom = np.where(salaried & (rng.random(n) < 0.9),
                       rng.choice([1, 15, 20, 25, 28], size=n, p=[.25, .1, .15, .35, .15]), 0)
    salary = base * by_seg(70, 0, 110) * np.exp(rng.normal(0, 0.3, n))
    employer = hex_ids("emp", rng.integers(0, max(50, n // 40), n).astype(np.uint64), "employer", seed, 8)
    rent_dom = np.where((seg == 0) & (rng.random(n) < 0.7), rng.integers(1, 6, n), 0)
    rent = np.round(base * 30 * np.exp(rng.normal(0, 0.25, n)), 0)

    travels = rng.random(n) < np.minimum(1.0, by_seg(2.0, 1.0, 4.0) * cfg.days / 365)
    trip_len = rng.integers(3, 15, n) * 86400
    trip_start = np.where(travels, rng.integers(0, horizon, n), -1)
    trip_end = np.where(travels, trip_start + trip_len, -1)
    trip_country = rng.choice(np.array(_others(TRAVEL, home), dtype=object), n)

    return Population(ids, seg, base, sigma, card_rate, atm_rate, transfer_rate, credit_rate,
                      cash_rate, peak_hour, fav_share, online_share, favourites, atms, payees,
                      payee_country, devices, device_change, pay_dom, salary, employer, rent_dom,
                      rent, trip_start, trip_end, trip_country)


def atm_ids(seed: int, count: int = ATM_COUNT, prefix: str = "atm") -> np.ndarray:
    return hex_ids(prefix, np.arange(count, dtype=np.uint64), "atm", seed, 8)


def branch_ids(seed: int) -> np.ndarray:
    return hex_ids("br", np.arange(BRANCHES, dtype=np.uint64), "branch", seed, 6)


@dataclass(frozen=True)
class World:
    """What scenario generators read: the config, accounts, merchants and everyday rows."""

    cfg: SimConfig
    pop: Population
    merchants: Merchants
    everyday: dict[str, np.ndarray]
