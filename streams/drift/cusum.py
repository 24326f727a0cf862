"""Page's CUSUM on the rate of high scores: a new fraud pattern seen within a few thousand events.

The block detectors (Cramér-von Mises on block summaries) cannot react before a window of several
blocks has filled, and with a reference of a few dozen blocks their smallest windows can never
reach a large ERT's threshold (a window of 3 among 50 reference blocks has at most C(53, 3)
orderings). A fraud wave the champion recognises shows up first as more scores in its tail, so
this detector counts, per *mini-block* of ``mini_events`` consecutive events, the scores above the
reference's ``tail_quantile`` and runs a one-sided CUSUM on the counts::

    S <- max(0, S + count - k * expected),   alarm when S >= h

``expected`` is the reference rate; ``k = (r - 1) / ln r`` is the Poisson-optimal reference value
for a rise to ``r`` times the reference rate. Counts are overdispersed (one incident is several
high scores in a row), so ``h`` is set for the ERT under a negative binomial with the reference's
measured variance-to-mean ratio, by the Markov-chain method of Brook & Evans (1972): no bootstrap,
milliseconds. Only a rise is tested: fewer high scores is not a fraud wave.

An incident often outlasts a mini-block (a compromised terminal cashes out for an hour, a card
testing ring works through a night), so consecutive counts are correlated, and a CUSUM's run length
follows the *long-run* variance of the counts, not the single mini-block's. The dispersion used is
therefore the largest over spans of 1, 2, 4, ... mini-blocks, up to the longest span the reference
holds 20 times: the reference is the champion's whole contiguous validation window (two weeks or
more), so spans of hours are measured, not guessed. On a 5,000-account bank the ratio grows from 2.6
(one mini-block) to 15 (6,400 events): 50 scattered blocks had measured 3.3, and the threshold they
gave alarmed 7 times in 512k stationary events; the whole window's (h 188.5) gives none.

The expected rate is flat, not cycled by hour of the week: a 1% rate's weekly profile fitted on two
weeks is mostly noise (cross-fitted residuals on that bank read a dispersion of 27, not 15), and
the long-run dispersion already holds the day/night swing. It is still an approximation: bursty
counts have heavier run-length tails than a negative binomial of the same variance.

>>> cal = calibrate(np.r_[np.zeros(990), np.ones(10)].reshape(1, -1).repeat(50, 0).ravel()
...                 .astype(bool), 100, 3.0, ert_events=1e6)
>>> round(cal.p0, 3), cal.dispersion >= 1.0, cal.h > 0
(0.01, True, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

GRID = 400  # Markov-chain states between 0 and h
MIN_MINI_BLOCKS = 20  # a reference with fewer cannot estimate the count dispersion


@dataclass(frozen=True)
class TailCalibration:
    """Everything the CUSUM needs, computed once from the reference."""

    p0: float  # reference rate of scores above the threshold
    dispersion: float  # long-run variance / mean of reference mini-block counts (>= 1)
    mini_events: int
    ratio: float
    h: float  # decision threshold for the group's ERT
    arl_events: float  # in-control average run length the chain gives for h
    mini_dispersion: float = 1.0  # of single mini-blocks, for the record
    dispersion_span: int = 0  # events per span where the dispersion peaked (0: not recorded)

    @property
    def k(self) -> float:
        return (self.ratio - 1) / math.log(self.ratio)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in asdict(self).items()}

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray]) -> TailCalibration:
        v = {k: float(np.asarray(z[k])) for k in ("p0", "dispersion", "ratio", "h", "arl_events")}
        mini = float(np.asarray(z["mini_dispersion"])) if "mini_dispersion" in z else v["dispersion"]
        span = int(np.asarray(z["dispersion_span"])) if "dispersion_span" in z else 0
        return cls(mini_events=int(np.asarray(z["mini_events"])), mini_dispersion=mini,
                   dispersion_span=span, **v)


def _pmf(mean: float, dispersion: float) -> np.ndarray:
    """Counts 0..c_max under a negative binomial (Poisson when not overdispersed)."""
    if dispersion <= 1.0 + 1e-9:
        dist: Any = stats.poisson(mean)
    else:
        dist = stats.nbinom(mean / (dispersion - 1.0), 1.0 / dispersion)
    c_max = int(dist.ppf(1 - 1e-13)) + 1
    p = dist.pmf(np.arange(c_max + 1))
    return p / p.sum()


def arl(h: float, mean: float, dispersion: float, k: float, grid: int = GRID,
        rise: float = 1.0) -> float:
    """Average run length, in mini-blocks, of the count CUSUM with threshold ``h``: in control
    (``rise`` 1), or from the start of a rise of the rate to ``rise`` times the reference's (the
    expected detection delay)."""
    pmf = _pmf(mean * rise, dispersion)
    step = h / grid
    s = np.arange(grid) * step
    new = np.maximum(s[:, None] + np.arange(len(pmf))[None, :] - k * mean, 0.0)
    j = np.minimum(np.rint(new / step).astype(np.int64), grid)  # grid = absorbed (alarm)
    p = np.zeros((grid, grid + 1))
    np.add.at(p, (np.repeat(np.arange(grid), len(pmf)), j.ravel()), np.tile(pmf, grid))
    q = np.eye(grid) - p[:, :grid]
    return float(np.linalg.solve(q, np.ones(grid))[0])


def threshold(target_steps: float, mean: float, dispersion: float, k: float) -> tuple[float, float]:
    """The smallest ``h`` (to 0.5%) whose in-control run length reaches ``target_steps``."""
    lo, hi = 0.5, 8.0
    while arl(hi, mean, dispersion, k) < target_steps:
        lo, hi = hi, hi * 2
    while hi - lo > 0.005 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if arl(mid, mean, dispersion, k) < target_steps else (lo, mid)
    return hi, arl(hi, mean, dispersion, k)


def tradeoff(cal: TailCalibration, erts: tuple[float, ...] = (1e6, 1e7, 1e8, 1e9),
             rises: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0)) -> list[dict[str, float]]:
    """Expected delay (events) to a rise of the tail rate, per ERT (events), at this reference's
    rate and dispersion: the price of fewer false alarms."""
    mean = max(cal.p0 * cal.mini_events, 1e-3)
    out = []
    for ert in erts:
        h, _ = threshold(ert / cal.mini_events, mean, cal.dispersion, cal.k)
        out.append({"ert_events": ert, "h": h, **{
            f"delay_events_at_{r:g}x": cal.mini_events * arl(h, mean, cal.dispersion, cal.k, rise=r)
            for r in rises}})
    return out


def dispersion(exceed: np.ndarray, expected: np.ndarray, span: int) -> float:
    """Variance-to-mean ratio of the counts in consecutive runs of ``span`` events, less what
    ``expected`` explains (floored at 1: a Poisson)."""
    m = len(exceed) // span
    counts = exceed[: m * span].reshape(m, span).sum(axis=1)
    means = expected[: m * span].reshape(m, span).sum(axis=1)
    return max(float(np.mean((counts - means) ** 2)) / max(float(means.mean()), 1e-9), 1.0)


def spans(n: int, mini_events: int) -> list[int]:
    """Spans (events) of 1, 2, 4, ... mini-blocks that ``n`` events hold ``MIN_MINI_BLOCKS`` times.

    >>> spans(10_000, 100)
    [100, 200, 400]
    """
    out, span = [], mini_events
    while n // span >= MIN_MINI_BLOCKS:
        out.append(span)
        span *= 2
    return out


def calibrate(exceed: np.ndarray, mini_events: int, ratio: float, ert_events: float,
              expected: np.ndarray | None = None) -> TailCalibration:
    """Calibration from the reference's exceedances (contiguous events in time order) and,
    optionally, their expected rates. The dispersion is the largest over :func:`spans` (see the
    module docstring)."""
    x = np.asarray(exceed, dtype=np.float64)
    e = np.full(len(x), x.mean()) if expected is None else np.asarray(expected, dtype=np.float64)
    m = len(x) // mini_events
    if m < MIN_MINI_BLOCKS:
        raise ValueError(f"{len(x)} reference events hold {m} mini-blocks of {mini_events}; "
                         f"need {MIN_MINI_BLOCKS}")
    p0 = float(x.mean())
    mean = max(p0 * mini_events, 1e-3)
    by_span = {span: dispersion(x, e, span) for span in spans(len(x), mini_events)}
    span = max(by_span, key=by_span.__getitem__)
    k = (ratio - 1) / math.log(ratio)
    h, run = threshold(ert_events / mini_events, mean, by_span[span], k)
    return TailCalibration(p0, by_span[span], mini_events, ratio, h, run * mini_events,
                           by_span[mini_events], span)


@dataclass(frozen=True)
class Alarm:
    """One crossing of ``h``: where, and the run of mini-blocks since S last left 0."""

    index: int  # into the events of the update call that crossed
    statistic: float
    run_events: int
    run_rate: float  # observed rate of high scores over the run
    reference_rate: float  # what the reference expected over the same events
    run_start_us: int


@dataclass
class TailCusum:
    """The online CUSUM; its whole state is a few numbers (``state`` / ``load``)."""

    cal: TailCalibration
    s: float = 0.0
    t: int = 0  # mini-blocks seen
    run_events: int = 0  # events since S was last 0, and their exceedances / expected count
    run_count: float = 0.0
    run_expected: float = 0.0
    run_start_us: int | None = None
    # The current mini-block's events so far: summed only once it is whole, in one order, so a
    # restart mid-mini-block gives bit-identical sums.
    pending: dict[str, Any] = field(default_factory=lambda: {"exceed": [], "expected": [],
                                                              "start_us": -1})

    def update(self, exceed: np.ndarray, expected: np.ndarray, times_us: np.ndarray) -> list[Alarm]:
        """Feed events in order; returns its alarms (S restarts from 0 after each)."""
        alarms: list[Alarm] = []
        m = self.cal.mini_events
        pend, i, n = self.pending, 0, len(exceed)
        while i < n:
            take = min(m - len(pend["exceed"]), n - i)
            if not pend["exceed"]:
                pend["start_us"] = int(times_us[i])
            pend["exceed"] += [float(v) for v in exceed[i:i + take]]
            pend["expected"] += [float(v) for v in expected[i:i + take]]
            i += take
            if len(pend["exceed"]) == m:
                count, mean = float(np.sum(pend["exceed"])), float(np.sum(pend["expected"]))
                if self._step(count, mean, int(pend["start_us"])):
                    alarms.append(Alarm(i - 1, self.s, self.run_events, self.run_rate,
                                        self.run_reference_rate, int(self.run_start_us or 0)))
                    self.reset_state()
                self.pending = pend = {"exceed": [], "expected": [], "start_us": -1}
        return alarms

    def _step(self, count: float, expected: float, start_us: int) -> bool:
        self.t += 1
        if self.s == 0.0:
            self.run_events, self.run_count, self.run_expected = 0, 0.0, 0.0
            self.run_start_us = start_us
        self.s = max(0.0, self.s + count - self.cal.k * expected)
        self.run_events += self.cal.mini_events
        self.run_count += count
        self.run_expected += expected
        return self.s >= self.cal.h

    @property
    def run_rate(self) -> float:
        return self.run_count / self.run_events if self.run_events else float("nan")

    @property
    def run_reference_rate(self) -> float:
        return self.run_expected / self.run_events if self.run_events else float("nan")

    def reset_state(self) -> None:
        self.s, self.run_events, self.run_count, self.run_expected = 0.0, 0, 0.0, 0.0
        self.run_start_us = None

    def state(self) -> dict[str, Any]:
        return {"s": self.s, "t": self.t, "run_events": self.run_events, "run_count": self.run_count,
                "run_expected": self.run_expected, "run_start_us": self.run_start_us,
                "pending": {k: list(v) if isinstance(v, list) else v for k, v in self.pending.items()}}

    def load(self, state: dict[str, Any]) -> None:
        self.s, self.t = float(state["s"]), int(state["t"])
        self.run_events, self.run_count = int(state["run_events"]), float(state["run_count"])
        self.run_expected, self.run_start_us = float(state["run_expected"]), state["run_start_us"]
        self.pending = {k: list(v) if isinstance(v, list) else v for k, v in state["pending"].items()}
