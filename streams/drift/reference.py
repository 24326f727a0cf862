"""The drift reference: block summaries of the champion's validation window, and the detector
calibrations (simulated thresholds) computed from them once and cached next to them.

``DriftReference.build`` runs alibi-detect's threshold simulation — the expensive part, seconds to
minutes depending on the ERT. ``save`` writes it; ``load`` reads it back and checks it was built for
the same configuration and has not been altered, so a restarted worker never simulates again.

The Cramér-von Mises thresholds are rank-based and distribution-free: alibi simulates them on
Gaussian noise, so they depend on the reference size, windows, ERT, feature count, bootstrap count
and seed, never on the data. ``build(..., threshold_cache=DIR)`` keeps them in ``DIR`` under a key of
exactly those, so only the first reference of a drift configuration pays for them; the next
champion's reference simulates only the data-dependent LSDD thresholds.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from streams.drift import adwin_budget, cusum
from streams.drift.blocks import (
    SCORE,
    all_blocks,
    column_names,
    dependence,
    independent_blocks,
    reference_blocks,
)
from streams.drift.config import DriftConfig, Group
from streams.drift.detectors import Calibration, MultivariateDetector, UnivariateDetector
from streams.drift.seasonal import SeasonalProfile, cross_fitted, fits

META = "reference.json"
SEASONAL = "seasonal.npz"
Detector = UnivariateDetector | MultivariateDetector
Progress = Callable[[str], None]
log = logging.getLogger(__name__)


class ReferenceError(RuntimeError):
    """A cached reference that must not be used: missing, altered, or built for another config."""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_detector(group: Group, x_ref: np.ndarray, config: DriftConfig, n_bootstraps: int,
                   calibration: Calibration | None) -> Detector:
    ert = config.ert_steps(group)
    if group == "embedding":
        return MultivariateDetector(x_ref, ert, config.lsdd_window, n_bootstraps, calibration,
                                    seed=config.seed)
    return UnivariateDetector(x_ref, ert, config.cvm_windows, n_bootstraps, calibration,
                              seed=config.seed)


def _cvm_cache_key(group: Group, n_ref: int, n_features: int, config: DriftConfig,
                   n_bootstraps: int) -> str:
    import alibi_detect

    shaping = {"kind": "cvm", "n_ref": n_ref, "n_features": n_features, "windows": config.cvm_windows,
               "ert": config.ert_steps(group), "n_bootstraps": n_bootstraps, "seed": config.seed,
               "alibi_detect": alibi_detect.__version__}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=list).encode()).hexdigest()[:32]


def _calibrate(group: Group, x_ref: np.ndarray, config: DriftConfig, n_bootstraps: int,
               cache: Path | None) -> Calibration:
    """Simulate ``group``'s thresholds, or take distribution-free CVM ones from ``cache``."""
    path = None
    if cache is not None and group != "embedding":
        path = Path(cache) / f"cvm-{_cvm_cache_key(group, *x_ref.shape, config, n_bootstraps)}.npy"
        if path.is_file():
            try:
                return {"thresholds": np.load(path, allow_pickle=False)}
            except (OSError, ValueError):
                pass  # unreadable: simulate again and overwrite
    calibration = _make_detector(group, x_ref, config, n_bootstraps, None).calibration
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{id(calibration)}.tmp.npy")
        np.save(tmp, calibration["thresholds"])
        tmp.replace(path)  # atomic: a concurrent builder never reads half a file
    return calibration


def _flat(inputs: dict[Group, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-event numeric columns under the names the monitor's blocks use (``f:``, ``b:``)."""
    prefix = {"features": "f:", "binary": "b:", "score": ""}  # the tail's rate is flat (cusum)
    return {prefix[g] + k: np.asarray(v, dtype=np.float64)
            for g, cols in inputs.items() if g in prefix for k, v in cols.items()}


def _unflat(flat: dict[str, np.ndarray], inputs: dict[Group, dict[str, np.ndarray]]
            ) -> dict[Group, dict[str, np.ndarray]]:
    out = dict(inputs)
    for g, p in (("features", "f:"), ("binary", "b:"), ("score", "")):
        if g in inputs:
            out[g] = {k: flat[p + k] for k in inputs[g]}
    return out


def _losses(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Log loss of every reference event whose label is known, in time order."""
    from streams.drift.outcomes import log_loss

    known = np.isfinite(labels)
    return np.asarray([log_loss(s, y > 0.5) for s, y in zip(scores[known], labels[known], strict=True)],
                      dtype=np.float64)


@dataclass
class DriftReference:
    """Reference block summaries per detector group, their column names and calibrations."""

    config_fingerprint: str
    blocks: dict[Group, np.ndarray]
    columns: dict[Group, list[str]]
    calibrations: dict[Group, Calibration]
    n_bootstraps: dict[Group, int]
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    source: str = ""
    seasonal: SeasonalProfile | None = None  # weekly profile removed from live columns

    @classmethod
    def build(cls, embeddings: np.ndarray | None, features: dict[str, np.ndarray],
              binary: dict[str, np.ndarray], scores: np.ndarray | None, config: DriftConfig,
              progress: Progress | None = None, source: str = "",
              threshold_cache: Path | None = None,
              times: np.ndarray | None = None,
              labels: np.ndarray | None = None) -> DriftReference:
        """Summarise the reference events into blocks and simulate every detector's thresholds
        (CVM ones from ``threshold_cache`` when an earlier build left them there).

        Any input may be empty/None: its detector group is then left out (its share of the
        false-alarm budget goes unused, which only makes the monitor quieter). Rows are events
        in time order (reference blocks are contiguous, :func:`reference_blocks`). ``times``
        (epoch seconds, one per row): with ``config.seasonal`` and two weeks of them, a weekly
        profile is fitted and removed (cross-fitted, :mod:`streams.drift.seasonal`).
        ``labels`` (1, 0, or NaN when not known, one per row): the reference's log losses, on which
        ADWIN's ``delta`` is calibrated for the ``performance`` share (:mod:`.adwin_budget`).
        """
        inputs: dict[Group, dict[str, np.ndarray]] = {}
        if embeddings is not None and len(embeddings):
            inputs["embedding"] = {"embedding": np.asarray(embeddings, dtype=np.float32)}
        if features:
            inputs["features"] = {k: np.asarray(v, dtype=np.float64) for k, v in features.items()}
        if scores is not None and len(scores):
            inputs["score"] = {SCORE: np.asarray(scores, dtype=np.float64)}
        if binary:
            inputs["binary"] = {k: np.asarray(v).astype(bool) for k, v in binary.items()}
        score_q, exceed = None, np.zeros(0)
        if "tail" in config.groups and "score" in inputs:
            score_q = float(np.quantile(inputs["score"][SCORE], config.tail_quantile))
            exceed = (inputs["score"][SCORE] > score_q).astype(np.float64)
        profile = None
        if config.seasonal and times is not None and fits(times):
            flat = _flat(inputs)
            if any(len(v) != len(times) for v in flat.values()):
                raise ValueError("times: one per reference event")
            profile = SeasonalProfile.fit(flat, np.asarray(times))
            adjusted, _ = cross_fitted(flat, np.asarray(times))
            inputs = _unflat(adjusted, inputs)
        elif config.seasonal:
            log.info("drift reference %s: no two weeks of event times, no weekly profile", source)
        rng = np.random.default_rng(config.seed)
        blocks, columns, calibrations, n_boot = {}, {}, {}, {}
        if "performance" in config.groups and labels is not None and scores is not None:
            losses = _losses(np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64))
            if len(losses) >= adwin_budget.MIN_LOSSES:
                if progress:
                    progress(f"performance: simulating ADWIN on {len(losses):,} reference losses")
                adwin = adwin_budget.calibrate(losses, config.ert_events_for("performance"),
                                               config.adwin_min_outcomes, seed=config.seed)
                blocks["performance"] = losses[:, None]
                columns["performance"] = ["log_loss"]
                calibrations["performance"] = adwin.arrays()
                n_boot["performance"] = 0
            else:
                log.warning("drift reference %s: %d labelled events are too few to calibrate ADWIN "
                            "(%d); it keeps adwin_delta", source, len(losses), adwin_budget.MIN_LOSSES)
        for group in config.groups:
            if group == "tail" and score_q is not None:
                if len(exceed) // config.tail_mini_events < cusum.MIN_MINI_BLOCKS:
                    log.warning("drift reference %s: %d events are too few for the tail CUSUM "
                                "(%d mini-blocks of %d); it is left out", source, len(exceed),
                                cusum.MIN_MINI_BLOCKS, config.tail_mini_events)
                    continue
                cal = cusum.calibrate(exceed, config.tail_mini_events, config.tail_ratio,
                                      config.ert_events_for("tail"))
                m = len(exceed) // config.tail_mini_events
                blocks["tail"] = exceed[: m * config.tail_mini_events].reshape(m, -1).sum(1)[:, None]
                columns["tail"] = ["score.tail_rate"]
                calibrations["tail"] = {**cal.arrays(), "score_threshold": np.asarray(score_q)}
                n_boot["tail"] = 0
                continue
            if group not in inputs:
                continue
            n_events = len(next(iter(inputs[group].values())))
            if independent_blocks(n_events, config) < config.reference_blocks:
                log.warning("drift reference %s: %d events hold %d non-overlapping blocks of %d, "
                            "not %d: its %s blocks overlap", source, n_events,
                            independent_blocks(n_events, config), config.block_events,
                            config.reference_blocks, group)
            blocks[group] = reference_blocks(group, inputs[group], config, rng)
            columns[group] = column_names(group, inputs[group])
            n_boot[group] = config.n_bootstraps(group, len(columns[group]))
            if progress:
                progress(f"{group}: simulating {n_boot[group]:,} streams for thresholds")
            calibrations[group] = _calibrate(group, blocks[group], config, n_boot[group],
                                             threshold_cache)
            if group != "embedding":
                every = all_blocks(group, inputs[group], config, np.random.default_rng(config.seed))
                calibrations[group]["dependence"] = dependence(every, config.cvm_windows)
                det = _make_detector(group, blocks[group], config, n_boot[group], calibrations[group])
                blind = [c for c, ok in zip(columns[group], det.reachable(), strict=True) if not ok]
                if blind:
                    log.warning("drift reference %s: %s can never cross the %s threshold at this ERT: "
                                "their blocks are dependent (consecutive ones move together) beyond "
                                "what the longest window's statistic can overcome; longer windows "
                                "or more reference blocks would see them", source,
                                ", ".join(blind), group)
        return cls(config.fingerprint(), blocks, columns, calibrations, n_boot, source=source,
                   seasonal=profile)

    def detectors(self, config: DriftConfig) -> dict[Group, Detector]:
        """Fresh block detectors (t=0) from the cached calibrations: no threshold simulation."""
        if config.fingerprint() != self.config_fingerprint:
            raise ReferenceError("reference was calibrated for another drift configuration; rebuild it")
        return {g: _make_detector(g, self.blocks[g], config, self.n_bootstraps[g], self.calibrations[g])
                for g in self.blocks if g not in ("tail", "performance")}

    def tail(self) -> tuple[float, cusum.TailCalibration] | None:
        """(score threshold, CUSUM calibration) of the tail group, if it has one."""
        cal = self.calibrations.get("tail")
        if cal is None:
            return None
        return float(cal["score_threshold"]), cusum.TailCalibration.from_arrays(cal)

    def adwin(self) -> adwin_budget.AdwinCalibration | None:
        """ADWIN's calibrated delta for the performance share, if the reference had labels."""
        cal = self.calibrations.get("performance")
        return None if cal is None else adwin_budget.AdwinCalibration.from_arrays(cal)

    @property
    def fingerprint(self) -> str:
        """Identity of this reference: its config and the digest of its arrays."""
        h = hashlib.sha256(self.config_fingerprint.encode())
        for g in sorted(self.blocks):
            h.update(g.encode())
            h.update(np.ascontiguousarray(self.blocks[g]).tobytes())
            for k in sorted(self.calibrations[g]):
                h.update(np.ascontiguousarray(self.calibrations[g][k]).tobytes())
        if self.seasonal is not None:
            for k, v in sorted(self.seasonal.arrays().items()):
                h.update(k.encode())
                h.update(np.ascontiguousarray(v).tobytes())
        return h.hexdigest()

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {}
        for g in self.blocks:
            path = directory / f"{g}.npz"
            np.savez(path, blocks=self.blocks[g],
                     **{f"cal_{k}": v for k, v in self.calibrations[g].items()})
            files[path.name] = _digest(path)
        if self.seasonal is not None:
            path = directory / SEASONAL
            np.savez(path, **self.seasonal.arrays())
            files[path.name] = _digest(path)
        meta = {"config_fingerprint": self.config_fingerprint, "columns": self.columns,
                "n_bootstraps": self.n_bootstraps, "created_at": self.created_at,
                "source": self.source, "files": files, "fingerprint": self.fingerprint}
        (directory / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: Path, config: DriftConfig | None = None) -> DriftReference:
        """Read a saved reference; with ``config``, refuse one calibrated for another config."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / META).read_text())
        except (OSError, ValueError) as exc:
            raise ReferenceError(f"{directory}: no readable {META} ({exc})") from None
        blocks, calibrations, seasonal = {}, {}, None
        for name, digest in meta["files"].items():
            path = directory / name
            if not path.is_file() or _digest(path) != digest:
                raise ReferenceError(f"{path}: missing or altered since it was saved")
            if name == SEASONAL:
                with np.load(path, allow_pickle=False) as z:
                    seasonal = SeasonalProfile.from_arrays({k: z[k] for k in z.files})
                continue
            group = name.removesuffix(".npz")
            with np.load(path, allow_pickle=False) as z:
                blocks[group] = z["blocks"]
                calibrations[group] = {k[4:]: z[k] for k in z.files if k.startswith("cal_")}
        ref = cls(meta["config_fingerprint"], blocks, meta["columns"], calibrations,
                  meta["n_bootstraps"], meta["created_at"], meta.get("source", ""), seasonal)
        if ref.fingerprint != meta["fingerprint"]:
            raise ReferenceError(f"{directory}: contents do not match the recorded fingerprint")
        if config is not None and config.fingerprint() != ref.config_fingerprint:
            raise ReferenceError(f"{directory}: calibrated for another drift configuration")
        return ref
