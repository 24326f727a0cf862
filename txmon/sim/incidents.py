"""When and to whom incidents happen: Poisson arrivals at the configured rate, reshaped by
``fraud_pattern`` drift events without disturbing anything before they start."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from txmon.sim.config import SCENARIOS, DriftEvent, SimConfig
from txmon.sim.randomness import stream, uniform

DAY = 86400


@dataclass(frozen=True)
class Incidents:
    """A batch of incidents of one scenario, and the random stream its rows are drawn from."""

    scenario: str
    ids: np.ndarray      # int64, unique across the run
    acct: np.ndarray     # the account an incident starts from
    t0: np.ndarray       # seconds since start
    rng: np.random.Generator

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Schedule:
    """A scenario's incident batches and the drift events that govern parts of the run."""

    scenario: str
    batches: list[Incidents]
    events: list[DriftEvent]
    windows: list[tuple[int, int]]
    # Base incidents a drift event thinned out. Their rows are still drawn (then discarded) so the
    # random numbers of every other incident stay where they were.
    dropped: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def governing(self, t0: np.ndarray) -> np.ndarray:
        """Index into ``events`` of the event in force at each time (latest wins), -1 for none."""
        who = np.full(np.shape(t0), -1)
        for j, (s, e) in enumerate(self.windows):
            who[(t0 >= s) & (t0 < e)] = j
        return who

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.batches) - len(self.dropped)


def _draw(cfg: SimConfig, rate: float, lo: int, hi: int, rng: np.random.Generator,
          id_base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = rate * cfg.accounts / 1000 * (hi - lo) / (30 * DAY)
    n = int(rng.poisson(mean)) if hi > lo else 0
    t0 = np.sort(rng.integers(lo, hi, n)) if n else np.empty(0, np.int64)
    acct = rng.integers(0, cfg.accounts, n)
    return np.arange(id_base, id_base + n, dtype=np.int64), acct, t0


def schedule(cfg: SimConfig, scenario: str) -> Schedule:
    """Incidents of one scenario over the run.

    The base rate is drawn over the whole run from the scenario's own stream; where a drift event
    lowers the rate, base incidents are thinned by a per-incident coin; where it raises it, the
    excess is drawn from the event's own stream. So nothing before an event's start changes.
    """
    horizon = cfg.days * DAY
    code = SCENARIOS.index(scenario) + 1
    indexed = [(i, e) for i, e in enumerate(cfg.drift)
               if e.kind == "fraud_pattern" and e.scenario == scenario]
    sched = Schedule(scenario, [], [e for _, e in indexed], [window(cfg, e) for _, e in indexed])
    base_rate = cfg.rate(scenario)
    rng = stream(cfg.seed, "incidents", scenario)
    ids, acct, t0 = _draw(cfg, base_rate, 0, horizon, rng, code << 32)
    who = sched.governing(t0)
    keep = np.ones(ids.size, bool)
    for j, e in enumerate(sched.events):
        p = min(1.0, e.rate / base_rate) if base_rate else 0.0
        sel = who == j
        keep[sel] = uniform(ids[sel].astype(np.uint64), f"thin-{scenario}", cfg.seed) < p
    sched = replace(sched, dropped=ids[~keep])
    sched.batches.append(Incidents(scenario, ids, acct, t0, rng))
    for j, (i, e) in enumerate(indexed):
        extra = e.rate - base_rate
        if extra <= 0:
            continue
        s, end = sched.windows[j]
        erng = stream(cfg.seed, "drift", i, scenario)
        eids, eacct, et0 = _draw(cfg, extra, s, end, erng, (code << 32) + ((i + 1) << 24))
        mine = sched.governing(et0) == j
        sched.batches.append(Incidents(scenario, eids[mine], eacct[mine], et0[mine], erng))
    return sched


def window(cfg: SimConfig, e: DriftEvent) -> tuple[int, int]:
    """A drift event's [start, end) in seconds since the simulation start, clipped to the run."""
    start = int((e.resolve_start(cfg.start) - cfg.start).total_seconds())
    end_at = e.resolve_end(cfg.start)
    end = cfg.days * DAY if end_at is None else int((end_at - cfg.start).total_seconds())
    return max(0, start), min(cfg.days * DAY, end)
