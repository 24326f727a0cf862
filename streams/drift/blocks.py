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


def summarise_numeric(features: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Mean and standard deviation of each feature over the block, in a fixed column order."""
    values, names = [], []
    for name in sorted(features):
        x = np.asarray(features[name], dtype=np.float64)
        values += [x.mean(), x.std()]
        names += [f"{name}.mean", f"{name}.std"]
    return np.asarray(values), names


def summarise_binary(binary: dict[str, np.ndarray], jitter: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Randomised positive rate of each signal: (count + jitter) / n, jitter uniform on [0, 1)."""
    names = sorted(binary)
    rates = [(np.count_nonzero(binary[n]) + jitter[i]) / len(binary[n]) for i, n in enumerate(names)]
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
    """``config.reference_blocks`` summaries of blocks drawn at random from the reference events.

    Random blocks assume events are exchangeable within the reference window: a feature with a
    daily cycle (hour of day) is not, and would read as drift at every quiet hour.
    """
    n = len(next(iter(columns.values())))
    size = config.block_events
    out = []
    for _ in range(config.reference_blocks):
        idx = rng.choice(n, size=size, replace=size > n)
        block = {k: np.asarray(v)[idx] for k, v in columns.items()}
        out.append(summarise(group, block, rng.random(len(columns))))
    return np.stack(out)
