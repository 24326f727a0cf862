"""ADWIN on the delayed-label loss, tied to the monitor's false-alarm budget.

river's ADWIN takes a ``delta`` that bounds each cut test, not a run time between false alarms, and
its bound assumes independent values in [0, 1]. Log losses are neither: a missed fraud costs up to
9.2, and incidents and label batches arrive in clumps. With ``delta=1e-5`` ADWIN raised 1 false
alarm in 403k stationary simulator events, far off the share of the budget it should have.

So ``delta`` is calibrated by simulation, as alibi-detect's thresholds are, on the reference's
own losses (the champion's validation window with its labels): stationary streams are drawn from
them by a moving-block bootstrap (blocks of consecutive outcomes keep the clumps), ADWIN runs on
them at a grid of ``delta`` and its alarms per outcome are counted, exactly as
:class:`streams.drift.outcomes.OutcomeTracker` counts them (rises only, after ``min_outcomes``).
The group's ERT (its share of the budget, counted in outcomes — at most one per event, so no
shorter in events) is out of reach of a direct simulation (100M outcomes at ERT 5M and share
0.05), so the rate is extrapolated from the smallest simulated ``delta`` that still alarmed,
along the fitted log-log slope capped at 1 (the union-bound rate of i.i.d. values is linear in
``delta``; a steeper fitted slope would give a larger, less safe ``delta``). The result is cached
with the reference's other calibrations and restored, never simulated again, at a restart.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
MIN_ALARMS = 3  # a rate estimated from fewer alarms is too noisy to extrapolate from
MIN_LOSSES = 2_000


@dataclass(frozen=True)
class AdwinCalibration:
    """The calibrated ``delta`` and the simulation behind it."""

    delta: float
    ert_outcomes: float
    slope: float  # log-log slope used to extrapolate (fitted, at most 1)
    grid: tuple[float, ...]
    rates: tuple[float, ...]  # alarms per outcome at each grid delta
    simulated_outcomes: int  # per grid delta
    reference_loss: float  # mean log loss of the reference outcomes

    def arrays(self) -> dict[str, np.ndarray]:
        return {"delta": np.asarray(self.delta), "ert_outcomes": np.asarray(self.ert_outcomes),
                "slope": np.asarray(self.slope), "grid": np.asarray(self.grid),
                "rates": np.asarray(self.rates), "simulated_outcomes": np.asarray(self.simulated_outcomes),
                "reference_loss": np.asarray(self.reference_loss)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> AdwinCalibration:
        return cls(float(a["delta"]), float(a["ert_outcomes"]), float(a["slope"]),
                   tuple(float(v) for v in a["grid"]), tuple(float(v) for v in a["rates"]),
                   int(a["simulated_outcomes"]), float(a["reference_loss"]))


def block_bootstrap(losses: np.ndarray, length: int, block: int,
                    rng: np.random.Generator) -> np.ndarray:
    """One stationary stream of ``length`` outcomes: random runs of ``block`` consecutive losses."""
    block = min(block, len(losses))
    starts = rng.integers(0, len(losses) - block + 1, size=math.ceil(length / block))
    return np.concatenate([losses[s:s + block] for s in starts])[:length]


def count_alarms(losses: np.ndarray, delta: float, min_outcomes: int) -> int:
    """Loss rises ADWIN reports on ``losses``, counted as the monitor counts them."""
    from streams.drift.outcomes import OutcomeTracker

    t = OutcomeTracker(delta, min_outcomes, window=1)
    return sum(t.update_loss(v) is not None for v in losses.tolist())


def streams(losses: np.ndarray, n: int, length: int, block: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield block_bootstrap(losses, length, block, rng)


def calibrate(losses: np.ndarray, ert_outcomes: float, min_outcomes: int, seed: int = 0,
              n_streams: int = 6, length: int | None = None, block: int = 1_000,
              grid: tuple[float, ...] = GRID) -> AdwinCalibration:
    """The ``delta`` whose false-alarm rate on resampled reference losses is 1/``ert_outcomes``.

    ``length`` of each stream defaults to the ERT spread over the streams, within 10k-50k
    outcomes (about 1.5-7 s of simulation here; a longer one would only sharpen rates at deltas
    far above the answer).
    """
    losses = np.asarray(losses, dtype=np.float64)
    if len(losses) < MIN_LOSSES:
        raise ValueError(f"{len(losses)} labelled reference outcomes; ADWIN calibration needs "
                         f"{MIN_LOSSES}")
    if length is None:
        length = int(min(max(ert_outcomes / n_streams, 10_000), 50_000))
    sims = list(streams(losses, n_streams, length, block, seed))
    total = n_streams * length
    counts: list[int] = []
    for d in sorted(grid, reverse=True):
        # A smaller delta only widens ADWIN's cut bound: once none alarmed, none will.
        counts.append(sum(count_alarms(s, d, min_outcomes) for s in sims)
                      if not counts or counts[-1] > 0 else 0)
    grid = tuple(sorted(grid, reverse=True))
    rates = tuple(c / total for c in counts)
    target = 1.0 / ert_outcomes
    alarmed = [i for i, r in enumerate(rates) if r * total >= MIN_ALARMS]
    if alarmed:
        anchor = max(alarmed, key=lambda i: -grid[i])  # smallest delta that still alarmed enough
        slope = 1.0
        if len(alarmed) >= 2:
            x = np.log([grid[i] for i in alarmed])
            y = np.log([rates[i] for i in alarmed])
            slope = min(1.0, max(float(np.polyfit(x, y, 1)[0]), 0.1))
        d0, r0 = grid[anchor], rates[anchor]
    else:  # no delta alarmed: the 95% upper bound of a rate with no event, at the largest delta
        slope, d0, r0 = 1.0, max(grid), 3.0 / total
    delta = d0 * (target / r0) ** (1.0 / slope) if r0 > target else d0
    return AdwinCalibration(float(delta), float(ert_outcomes), slope, tuple(grid), rates, total,
                            float(losses.mean()))
