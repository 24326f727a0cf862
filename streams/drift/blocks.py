"""Block summaries: what each detector sees for one block of consecutive events.

A block of ``block_events`` events becomes one detector step: the mean embedding, the mean and
standard deviation of each numeric feature and of the score, and the rate of each binary signal.
Rates are count/n plus a uniform fraction of one event (a randomised rate), so that the rank-based
Cramér-von Mises test sees a continuous variable instead of ties; the jitter is drawn from a
generator seeded by the block's index, so a replay or a restart draws the same values.

>>> summarise_numeric({"amount": np.array([1.0, 3.0])})
(array([2., 1.]), ['amount.mean', 'amount.std'])
>>> rates, names = summarise_binary({"alerted": np.array([1, 0, 0, 1])}, jitter=np.array([0.5]))
>>> rates, names
(array([0.625]), ['alerted.rate'])
"""

from __future__ import annotations

import numpy as np

from streams.drift.config import DriftConfig, Group

SCORE = "score"
MIN_WINDOWS = 8  # independent windows a dependence ratio needs (about ±50%)


def summarise_numeric(features: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Mean and standard deviation of each feature over the block, in a fixed column order."""
    values, names = [], []
    for name in sorted(features):
        x = np.asarray(features[name], dtype=np.float64)
        values += [x.mean(), x.std()]
        names += [f"{name}.mean", f"{name}.std"]
    return np.asarray(values), names


def summarise_binary(binary: dict[str, np.ndarray], jitter: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Randomised positive rate of each signal: (count + jitter) / n, jitter uniform on [0, 1).
    A seasonally adjusted signal is 0/1 minus its hour-of-week cycle: its sum stands for the count."""
    names = sorted(binary)
    rates = [(np.sum(binary[n], dtype=np.float64) + jitter[i]) / len(binary[n])
             for i, n in enumerate(names)]
    return np.asarray(rates, dtype=np.float64), [f"{n}.rate" for n in names]


def summarise(group: Group, block: dict[str, np.ndarray], jitter: np.ndarray) -> np.ndarray:
    """The detector input for one block of ``group``; ``block`` holds that group's raw columns."""
    if group == "embedding":
        return np.asarray(block["embedding"], dtype=np.float64).mean(axis=0)
    if group == "binary":
        return summarise_binary(block, jitter)[0]
    return summarise_numeric(block)[0]


def column_names(group: Group, block: dict[str, np.ndarray]) -> list[str]:
    if group == "embedding":
        return [f"embedding[{i}]" for i in range(np.asarray(block["embedding"]).shape[1])]
    if group == "binary":
        return [f"{n}.rate" for n in sorted(block)]
    return summarise_numeric({k: np.zeros(1) for k in block})[1]


def block_jitter(config: DriftConfig, block_index: int, n: int) -> np.ndarray:
    """Tie-breaking fractions for one live block, reproducible from its index alone."""
    return np.random.default_rng([config.seed, 7, block_index]).random(n)


def reference_blocks(group: Group, columns: dict[str, np.ndarray], config: DriftConfig,
                     rng: np.random.Generator) -> np.ndarray:
    """``config.reference_blocks`` summaries of *contiguous* blocks of the reference events (rows
    in time order), at the offsets :func:`block_starts` draws.

    Live blocks are consecutive events, so their summaries carry the time-of-day mix of their hours
    (a block of 1,000 events is a few hours of a small bank's traffic): on the simulator, block
    means of consecutive events vary up to 8 times more than those of events drawn at random, and
    a reference of random draws raised false alarms all day. Contiguous reference blocks vary as
    live ones do.
    """
    n = len(next(iter(columns.values())))
    size = config.block_events
    arrays = {k: np.asarray(v) for k, v in columns.items()}
    out = []
    for start in block_starts(n, config, rng):
        if n >= size:
            block = {k: v[start:start + size] for k, v in arrays.items()}
        else:  # fewer events than one block: resample them
            idx = rng.choice(n, size=size, replace=True)
            block = {k: v[idx] for k, v in arrays.items()}
        out.append(summarise(group, block, rng.random(len(columns))))
    return np.stack(out)


def all_blocks(group: Group, columns: dict[str, np.ndarray], config: DriftConfig,
               rng: np.random.Generator) -> np.ndarray:
    """Summaries of every non-overlapping block of the reference events, in time order."""
    n = len(next(iter(columns.values())))
    size = config.block_events
    return np.stack([summarise(group, {k: np.asarray(v)[s:s + size] for k, v in columns.items()},
                               rng.random(len(columns)))
                     for s in range(0, n - size + 1, size)]) if n >= size else np.zeros((0, 0))


def dependence(summaries: np.ndarray, windows: tuple[int, ...]) -> np.ndarray:
    """Per window size and column: how much more the mean of ``w`` consecutive blocks varies than
    that of ``w`` independent ones (floored at 1), from overlapping runs of contiguous blocks.

    A CVM window of consecutive blocks that share an incident or a slow day is worth fewer
    independent blocks than it holds; its statistic, for a shift in the mean, grows with that
    ratio, so the detector divides by it (:class:`streams.drift.detectors.UnivariateDetector`).
    The ratio rests on about ``n / w`` independent windows; below ``MIN_WINDOWS`` of them it is
    known to no better than ±50% (relative standard error ``sqrt(2 / (n / w - 1))``), and a small
    reference (a warm-up of 40 blocks, windows of 6) would blind columns on noise: that window
    gets ones, as before the correction existed.

    >>> x = np.repeat(np.random.default_rng(0).normal(size=200), 4)[:, None]  # runs of 4 equal
    >>> r = dependence(x, (4, 150))
    >>> bool(2.5 < r[0, 0] < 4.5), float(r[1, 0])  # 800 blocks hold 5 windows of 150: too few
    (True, 1.0)
    """
    x = np.asarray(summaries, dtype=np.float64)
    out = np.ones((len(windows), x.shape[1] if x.ndim == 2 else 0))
    if x.ndim != 2:
        return out
    var = x.var(axis=0)
    for i, w in enumerate(windows):
        if len(x) // w < MIN_WINDOWS:
            continue
        c = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), x]), axis=0)
        rolling = (c[w:] - c[:-w]) / w
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = rolling.var(axis=0) / (var / w)
        out[i] = np.where(np.isfinite(ratio), np.maximum(ratio, 1.0), 1.0)
    return out


def block_starts(n: int, config: DriftConfig, rng: np.random.Generator) -> np.ndarray:
    """Start offsets of the reference blocks among ``n`` events: ``reference_blocks`` distinct
    non-overlapping block slots drawn at random when the events hold that many (spread over the
    whole window: every hour and weekday); otherwise random offsets that overlap, and the
    reference holds only ``n // block_events`` independent blocks (:func:`independent_blocks`)."""
    size, want = config.block_events, config.reference_blocks
    slots = n // size
    if slots >= want:
        return np.sort(rng.choice(slots, want, replace=False)) * size
    return rng.integers(0, max(n - size, 0) + 1, want)


def independent_blocks(n_events: int, config: DriftConfig) -> int:
    """How many non-overlapping blocks the reference events hold."""
    return n_events // config.block_events
