"""``simulate(config) -> SimResult``: the whole synthetic bank, as one transaction frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from txmon.frames import COLUMNS
from txmon.sim import aml, card_fraud, drift, labels, normal
from txmon.sim.config import SCENARIOS, SimConfig
from txmon.sim.incidents import schedule
from txmon.sim.randomness import hex_ids, stream
from txmon.sim.rows import Rows
from txmon.sim.world import SEGMENT_NAMES, World, make_merchants, make_population

GENERATORS = {
    "card_testing": card_fraud.card_testing,
    "compromised_terminal": card_fraud.compromised_terminal,
    "account_takeover": card_fraud.account_takeover,
    "high_value": card_fraud.high_value,
    "structuring": aml.structuring,
    "fan_in": aml.fan_in,
    "fan_out": aml.fan_out,
    "rapid_pass_through": aml.rapid_pass_through,
    "round_tripping": aml.round_tripping,
}


@dataclass(frozen=True)
class SimResult:
    """A simulation's output.

    ``frame``: the transaction frame (:mod:`txmon.frames` columns), sorted by event time.
    ``drift_truth``: each scheduled drift event with its kind, parameters and true start/end.
    ``incidents``: one row per fraud/AML incident — scenario, start time, account, rows produced.
    """

    config: SimConfig
    frame: pd.DataFrame
    drift_truth: list[dict[str, Any]]
    incidents: pd.DataFrame = field(repr=False)

    def summary(self) -> dict[str, Any]:
        f = self.frame
        card = f["tx_type"].isin(["card_present", "card_not_present", "atm_withdrawal"])
        return {
            "rows": len(f), "accounts": int(f["account_id"].nunique()),
            "start": self.config.start.isoformat(), "end": self.config.end.isoformat(),
            "scenario_rows": {k: int(v) for k, v in f["scenario"].value_counts().sort_index().items()},
            "card_fraud_rate": float((f.loc[card, "scenario"] != "normal").mean()) if card.any() else 0.0,
            "labelled_share": float(f["label"].notna().mean()) if len(f) else 0.0,
            "incidents": {k: int(v) for k, v in
                          self.incidents["scenario"].value_counts().sort_index().items()},
        }


def simulate(config: SimConfig) -> SimResult:
    """Simulate the bank described by ``config``. Deterministic: same config, same frame.

    >>> r = simulate(SimConfig(accounts=50, days=3, seed=1))
    >>> r.frame["event_time"].is_monotonic_increasing, r.frame["tx_id"].is_unique
    (True, True)
    """
    cfg = config
    merchants = make_merchants(max(400, cfg.accounts // 4), cfg.home_country, stream(cfg.seed, "merchants"),
                               seed=cfg.seed)
    pop = make_population(cfg, merchants)
    everyday = normal.everyday(cfg, pop, merchants).concat()
    drift.apply(cfg, pop, merchants, everyday)
    world = World(cfg, pop, merchants, everyday)

    rows, incident_records = Rows(), []
    rows.add(everyday["key"].size, **everyday)
    for scenario in SCENARIOS:
        sched = schedule(cfg, scenario)
        produced = Rows()
        for batch in sched.batches:
            if len(batch):
                produced.extend(GENERATORS[scenario](batch, world))
            incident_records.append(pd.DataFrame({"incident": batch.ids, "scenario": scenario,
                                                  "t0": batch.t0, "acct": batch.acct}))
        part = produced.concat()
        part = _without(part, sched.dropped)
        _override(part, sched)
        if part["key"].size:
            rows.add(part["key"].size, **part)
        if sched.dropped.size:
            rec = incident_records[-len(sched.batches):]
            for k, r in enumerate(rec):
                rec[k] = r[~r["incident"].isin(sched.dropped)]
            incident_records[-len(sched.batches):] = rec

    data = rows.concat()
    inside = (data["t"] >= 0) & (data["t"] < cfg.days * 86400)
    data = {k: v[inside] for k, v in data.items()}
    label, label_t = labels.assign(cfg, data)
    frame = _frame(cfg, pop, data, label, label_t)
    incidents = _incidents(cfg, pop, incident_records, data)
    return SimResult(cfg, frame, drift.truth(cfg), incidents)


def _without(part: dict[str, np.ndarray], dropped: np.ndarray) -> dict[str, np.ndarray]:
    if not dropped.size:
        return part
    keep = ~np.isin(part["incident"], dropped)
    return {k: v[keep] for k, v in part.items()}


def _override(part: dict[str, np.ndarray], sched) -> None:
    """Rows of incidents under a fraud_pattern event move to its channel and/or country."""
    if not sched.events or not part["key"].size:
        return
    t0_of = {}
    for b in sched.batches:
        t0_of.update(zip(b.ids.tolist(), b.t0.tolist(), strict=True))
    t0 = np.array([t0_of[i] for i in part["incident"].tolist()])
    who = sched.governing(t0)
    for j, e in enumerate(sched.events):
        sel = who == j
        if e.channel:
            part["channel"][sel] = e.channel
        if e.country:
            part["country"][sel] = e.country
            card = sel & np.isin(part["tx_type"], ("card_present", "card_not_present", "atm_withdrawal"))
            part["counterparty_country"][card] = e.country


def _times(cfg: SimConfig, seconds: np.ndarray) -> pd.Series:
    start = pd.Timestamp(cfg.start).tz_convert("UTC").as_unit("ns")
    return pd.Series(start + pd.to_timedelta(seconds, unit="s"))


def _frame(cfg: SimConfig, pop, data: dict[str, np.ndarray], label: np.ndarray,
           label_t: np.ndarray) -> pd.DataFrame:
    order = np.lexsort((data["key"], data["t"]))
    d = {k: v[order] for k, v in data.items()}
    label, label_t = label[order], label_t[order]
    lt = _times(cfg, np.where(label_t < 0, 0, label_t))
    lt[label_t < 0] = pd.NaT
    frame = pd.DataFrame({
        "tx_id": hex_ids("tx", d["key"], "tx", cfg.seed),
        "event_time": _times(cfg, d["t"]),
        "account_id": pop.ids[d["acct"]],
        "counterparty_id": d["counterparty_id"],
        "amount": d["amount"],
        "currency": cfg.currency,
        "channel": d["channel"],
        "tx_type": d["tx_type"],
        "direction": d["direction"],
        "mcc": d["mcc"],
        "country": d["country"],
        "counterparty_country": d["counterparty_country"],
        "device_id": d["device_id"],
        "label": label,
        "label_time": lt,
        "scenario": d["scenario"],
        "segment": SEGMENT_NAMES[pop.segment[d["acct"]]],
    })
    return frame[list(COLUMNS)]


def _incidents(cfg: SimConfig, pop, records: list[pd.DataFrame], data: dict[str, np.ndarray]) -> pd.DataFrame:
    inc = pd.concat(records, ignore_index=True) if records else pd.DataFrame(
        columns=["incident", "scenario", "t0", "acct"])
    counts = pd.Series(data["incident"][data["incident"] >= 0]).value_counts()
    inc["rows"] = inc["incident"].map(counts).fillna(0).astype(int)
    inc["start"] = _times(cfg, inc["t0"].to_numpy(np.int64)).to_numpy()
    inc["account_id"] = pop.ids[inc["acct"].to_numpy(np.int64)]
    return inc[["incident", "scenario", "start", "account_id", "rows"]].sort_values(
        ["start", "incident"], ignore_index=True)
