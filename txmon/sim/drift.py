"""Drift events that change everyday behaviour: the channel or merchant mix shifts, amounts
inflate, a new region opens. (``fraud_pattern`` events act on incidents, in ``incidents.py``.)

Only rows at or after an event's start (and before its end) change, each chosen by a per-row coin,
so a run with a drift schedule is identical to the run without it up to the first start.
"""

from __future__ import annotations

import numpy as np

from txmon.sim.config import DriftEvent, SimConfig
from txmon.sim.incidents import window
from txmon.sim.randomness import stream, uniform
from txmon.sim.rows import choose
from txmon.sim.world import MCC_CODES, MCC_SCALE, Merchants, Population, make_merchants

_SCALE_BY_CODE = dict(zip(MCC_CODES.tolist(), MCC_SCALE.tolist(), strict=True))


def _scale(mcc: np.ndarray) -> np.ndarray:
    return np.array([_SCALE_BY_CODE.get(m, 1.0) for m in mcc.tolist()])


def _move_to(rows: dict[str, np.ndarray], sel: np.ndarray, merchants: Merchants,
             pool: tuple[np.ndarray, np.ndarray], u: np.ndarray, pop: Population) -> None:
    """Move the selected card rows to merchants of ``pool``, keeping their relative spend."""
    new = choose(pool, u)
    old_scale = _scale(rows["mcc"][sel])
    mcc = MCC_CODES[merchants.mcc[new]]
    online = merchants.online[new]
    rows["counterparty_id"][sel] = merchants.ids[new]
    rows["mcc"][sel] = mcc
    rows["country"][sel] = merchants.country[new]
    rows["counterparty_country"][sel] = merchants.country[new]
    rows["channel"][sel] = np.where(online, "ecommerce", "pos")
    rows["tx_type"][sel] = np.where(online, "card_not_present", "card_present")
    rows["device_id"][sel] = np.where(online, pop.devices[rows["acct"][sel], 0], None)
    rows["amount"][sel] = np.maximum(np.round(rows["amount"][sel] * _scale(mcc) / old_scale, 2), 0.5)


def apply(cfg: SimConfig, pop: Population, merchants: Merchants, rows: dict[str, np.ndarray]) -> None:
    """Apply every non-fraud drift event of the schedule to everyday rows, in schedule order."""
    for i, e in enumerate(cfg.drift):
        if e.kind == "fraud_pattern":
            continue
        start, end = window(cfg, e)
        everyday = ~np.isin(rows["truth"], ("fraud", "aml"))
        live = (rows["t"] >= start) & (rows["t"] < end) & everyday
        coin = uniform(rows["key"], f"drift{i}", cfg.seed)
        pick = uniform(rows["key"], f"drift{i}-pick", cfg.seed)
        card = np.isin(rows["tx_type"], ("card_present", "card_not_present"))
        _apply_one(cfg, i, e, rows, live, card, coin, pick, pop, merchants)


def _apply_one(cfg: SimConfig, i: int, e: DriftEvent, rows: dict[str, np.ndarray], live: np.ndarray,
               card: np.ndarray, coin: np.ndarray, pick: np.ndarray, pop: Population,
               merchants: Merchants) -> None:
    if e.kind == "amount_inflation":
        rows["amount"][live] = np.round(rows["amount"][live] * e.factor, 2)
    elif e.kind == "channel_mix":
        online = e.channel == "ecommerce"
        sel = live & card & (rows["channel"] == ("pos" if online else "ecommerce")) & (coin < e.share)
        _move_to(rows, sel, merchants, merchants.pool(online=online, country=cfg.home_country),
                 pick[sel], pop)
    elif e.kind == "merchant_mix":
        sel = live & card & (coin < e.share)
        _move_to(rows, sel, merchants, merchants.pool(country=cfg.home_country, mccs=e.mccs),
                 pick[sel], pop)
    elif e.kind == "new_region":
        opened = make_merchants(60, e.country, stream(cfg.seed, "drift", i, "merchants"),
                                prefix="m", key_offset=(i + 1) << 24, seed=cfg.seed, countries=(e.country,))
        sel = live & card & (coin < e.share)
        _move_to(rows, sel, opened, (np.arange(60), opened.weight), pick[sel], pop)


def truth(cfg: SimConfig) -> list[dict]:
    """The schedule as it really happened: each event's kind, parameters and true start/end."""
    out = []
    for e in cfg.drift:
        params = e.model_dump(exclude={"kind", "start", "end", "name"}, exclude_none=True)
        out.append({"name": e.label, "kind": e.kind, "start": e.resolve_start(cfg.start),
                    "end": e.resolve_end(cfg.start), "params": params})
    return out
