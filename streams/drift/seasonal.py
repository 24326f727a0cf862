"""Weekly seasonality of the monitored columns: an additive hour-of-day + day-of-week profile.

Bank traffic has daily and weekly cycles (nights, weekends, Monday's 24-hour velocity counts a
quiet Sunday). A block of consecutive events carries the hours it covers, so comparing a Monday
morning block with a reference of all hours reads the cycle as drift. The monitor therefore
compares like with like: each event's value minus its expected value at that hour of the week
(:meth:`SeasonalProfile.adjust`), the overall mean kept, before block summaries are taken.

The profile is fitted on the reference window (at least two whole weeks, ``MIN_SPAN_S``). Its
effects are estimated from only two or three occurrences of each weekday, so residuals of the
very events it was fitted on are too tight (the profile absorbed their day-level noise);
:func:`cross_fitted` adjusts each reference week with the profile of the *other* weeks, so the
reference varies at least as much as live residuals do (no false alarms from an overfitted
reference; the price is a little sensitivity).

>>> t = np.arange(0, 21 * 86_400, 600)  # three weeks, one event every 10 minutes
>>> hour = (t // 3600) % 24
>>> x = {"v": np.where(hour < 6, 0.0, 2.0)}  # quiet nights
>>> p = SeasonalProfile.fit(x, t)
>>> round(float(np.abs(p.adjust(x, t)["v"] - x["v"].mean()).max()), 6)
0.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_S, WEEK_S = 86_400, 7 * 86_400
MIN_SPAN_S = 13 * DAY_S  # two weeks, give or take the reference window's edges
EPOCH_MONDAY_S = 3 * DAY_S  # 1970-01-01 was a Thursday (weekday 3; Monday is 0)


def _cells(times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times_s, dtype=np.int64)
    return ((t + EPOCH_MONDAY_S) // DAY_S) % 7, (t // 3600) % 24


def _effects(x: np.ndarray, cells: np.ndarray, k: int, rest: np.ndarray) -> np.ndarray:
    """Mean of ``x - rest`` per cell (0 for a cell without events)."""
    counts = np.bincount(cells, minlength=k)
    sums = np.stack([np.bincount(cells, weights=c, minlength=k) for c in (x - rest).T], axis=1)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], 0.0)


def _additive(x: np.ndarray, dow: np.ndarray, hod: np.ndarray, sweeps: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares mean + weekday + hour main effects by backfitting (cells are unbalanced)."""
    mean = x.mean(axis=0)
    xc = x - mean
    wd, hr = np.zeros((7, x.shape[1])), np.zeros((24, x.shape[1]))
    for _ in range(sweeps):
        wd = _effects(xc, dow, 7, hr[hod])
        hr = _effects(xc, hod, 24, wd[dow])
    return mean, wd, hr


@dataclass(frozen=True)
class SeasonalProfile:
    """Expected value of each column = mean + weekday effect + hour effect; its variance too
    (a busy Monday's velocity varies more, not only higher), modelled the same way."""

    columns: tuple[str, ...]
    mean: np.ndarray  # (C,)
    weekday: np.ndarray  # (7, C)
    hour: np.ndarray  # (24, C)
    var: np.ndarray  # (C,) overall variance around the expected values
    var_weekday: np.ndarray  # (7, C)
    var_hour: np.ndarray  # (24, C)

    @classmethod
    def fit(cls, values: dict[str, np.ndarray], times_s: np.ndarray, sweeps: int = 4) -> SeasonalProfile:
        names = tuple(sorted(values))
        x = np.stack([np.asarray(values[n], dtype=np.float64) for n in names], axis=1)
        dow, hod = _cells(times_s)
        mean, wd, hr = _additive(x, dow, hod, sweeps)
        var, vwd, vhr = _additive((x - mean - wd[dow] - hr[hod]) ** 2, dow, hod, sweeps)
        return cls(names, mean, wd, hr, var, vwd, vhr)

    def cycle(self, name: str, times_s: np.ndarray) -> np.ndarray:
        """Column ``name``'s deviation from its mean expected at each event's hour of the week."""
        j = self.columns.index(name)
        dow, hod = _cells(times_s)
        return self.weekday[dow, j] + self.hour[hod, j]

    def scale(self, name: str, times_s: np.ndarray) -> np.ndarray:
        """Factor that brings column ``name``'s spread at each event's hour to its overall spread."""
        j = self.columns.index(name)
        if self.var[j] <= 1e-12:
            return np.ones(len(np.asarray(times_s)))
        dow, hod = _cells(times_s)
        local = np.maximum(self.var[j] + self.var_weekday[dow, j] + self.var_hour[hod, j],
                           0.1 * self.var[j])
        return np.sqrt(self.var[j] / local)

    def adjust(self, values: dict[str, np.ndarray], times_s: np.ndarray) -> dict[str, np.ndarray]:
        """Values with their weekly cycle of level and spread removed (overall mean kept); other
        columns unchanged."""
        out = dict(values)
        for k, v in values.items():
            if k in self.columns:
                j = self.columns.index(k)
                dev = np.asarray(v, dtype=np.float64) - self.mean[j] - self.cycle(k, times_s)
                out[k] = self.mean[j] + dev * self.scale(k, times_s)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"columns": np.asarray(self.columns), "mean": self.mean, "weekday": self.weekday,
                "hour": self.hour, "var": self.var, "var_weekday": self.var_weekday,
                "var_hour": self.var_hour}

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray]) -> SeasonalProfile:
        return cls(tuple(str(c) for c in z["columns"]),
                   *(np.asarray(z[k]) for k in ("mean", "weekday", "hour", "var", "var_weekday",
                                                "var_hour")))


def fits(times_s: np.ndarray) -> bool:
    """Whether ``times_s`` span the two weeks a weekly profile needs."""
    t = np.asarray(times_s)
    return len(t) > 0 and int(t.max() - t.min()) >= MIN_SPAN_S


def cross_fitted(values: dict[str, np.ndarray], times_s: np.ndarray
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(adjusted values, level cycles) of the reference events, each week's from the profile
    fitted on the *other* weeks of the reference, as live events are adjusted by a profile they
    did not shape."""
    t = np.asarray(times_s, dtype=np.int64)
    week = (t - t.min()) // WEEK_S
    adjusted = {k: np.zeros(len(t)) for k in values}
    cycles = {k: np.zeros(len(t)) for k in values}
    for w in np.unique(week):
        mine = week == w
        others = SeasonalProfile.fit({k: np.asarray(v)[~mine] for k, v in values.items()}, t[~mine])
        out = others.adjust({k: np.asarray(v)[mine] for k, v in values.items()}, t[mine])
        for k in values:
            adjusted[k][mine] = out[k]
            cycles[k][mine] = others.cycle(k, t[mine])
    return adjusted, cycles
