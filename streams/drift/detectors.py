"""Adapters over alibi-detect's online detectors: build once (threshold simulation), restore from a
cached calibration without simulating again, check one step, persist online state.

alibi-detect's detectors draw random reference splits and simulate thresholds in their
constructors. A :class:`Calibration` holds everything those steps produced (thresholds, the LSDD
kernel centres, regulariser and reference split), so a restart rebuilds the same detector in
milliseconds and its saved online state stays consistent with the split it was computed on.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Calibration = dict[str, np.ndarray]


@dataclass(frozen=True)
class Check:
    """One detector step: its overall statistic and threshold, and the per-feature statistics."""

    is_drift: bool
    statistic: float
    threshold: float
    per_feature: np.ndarray | None = None  # statistic of each feature (max over windows)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed numpy's and torch's global generators (alibi uses them) and restore them after."""
    import torch

    state = np.random.get_state()
    np.random.seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _cvm_class() -> type:
    from alibi_detect.cd import CVMDriftOnline

    class CachedCVM(CVMDriftOnline):
        """CVMDriftOnline whose thresholds can come from a cache instead of a simulation."""

        def __init__(self, x_ref: np.ndarray, calibration: Calibration | None = None, **kw: Any):
            self._calibration = calibration
            super().__init__(x_ref, **kw)

        def _configure_thresholds(self) -> None:
            if self._calibration is None:
                super()._configure_thresholds()
            else:
                self.thresholds = np.asarray(self._calibration["thresholds"], dtype=np.float64)

    return CachedCVM


def _lsdd_class() -> type:
    import torch
    from alibi_detect.cd.pytorch.lsdd_online import LSDDDriftOnlineTorch

    class CachedLSDD(LSDDDriftOnlineTorch):
        """LSDDDriftOnlineTorch whose random choices and thresholds can come from a cache."""

        def __init__(self, x_ref: np.ndarray, calibration: Calibration | None = None, **kw: Any):
            self._calibration = calibration
            super().__init__(x_ref, **kw)

        def _configure_kernel_centers(self) -> None:
            cal = self._calibration
            if cal is None:
                return super()._configure_kernel_centers()
            self.c_inds = torch.from_numpy(cal["c_inds"])
            self.non_c_inds = torch.from_numpy(cal["non_c_inds"])
            self.kernel_centers = torch.from_numpy(cal["kernel_centers"]).to(self.device)
            self.x_ref_eff = torch.from_numpy(self.x_ref[self.non_c_inds]).to(self.device)
            self.k_xc = self.kernel(self.x_ref_eff, self.kernel_centers)
            return None

        def _configure_thresholds(self) -> None:
            cal = self._calibration
            if cal is None:
                return super()._configure_thresholds()
            self.thresholds = [float(v) for v in cal["thresholds"]]
            self.H_lam_inv = torch.from_numpy(cal["H_lam_inv"]).to(self.device)
            return None

        def _configure_ref_subset(self) -> None:
            cal = self._calibration
            if cal is None:
                return super()._configure_ref_subset()
            self.ref_inds = torch.from_numpy(cal["ref_inds"])
            self.init_test_inds = torch.from_numpy(cal["init_test_inds"])
            self._initialise_state()
            self.c2s = self.k_xc[self.ref_inds].mean(0)
            return None

    return CachedLSDD


class UnivariateDetector:
    """Cramér-von Mises online test over several features at once (Šidák-corrected thresholds)."""

    kind = "cvm"

    def __init__(self, x_ref: np.ndarray, ert: float, windows: tuple[int, ...], n_bootstraps: int,
                 calibration: Calibration | None = None, seed: int = 0):
        with seeded(seed), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._det = _cvm_class()(
                np.asarray(x_ref, dtype=np.float64), calibration=calibration, ert=ert,
                window_sizes=list(windows), n_bootstraps=n_bootstraps,
                batch_size=min(n_bootstraps, 256), verbose=False)
        self.ert, self.n_bootstraps = ert, n_bootstraps
        # Per window and feature, how much consecutive blocks inflate the statistic
        # (streams.drift.blocks.dependence); alibi's thresholds assume independent blocks.
        dep = None if calibration is None else calibration.get("dependence")
        self._dependence = None if dep is None else np.asarray(dep, dtype=np.float64)
        self._x_ref, self._windows, self._ceilings = np.asarray(x_ref, dtype=np.float64), windows, None

    @property
    def calibration(self) -> Calibration:
        cal = {"thresholds": np.asarray(self._det.thresholds, dtype=np.float64)}
        return cal if self._dependence is None else {**cal, "dependence": self._dependence}

    @property
    def t(self) -> int:
        return int(self._det.t)

    @property
    def max_window(self) -> int:
        return int(self._det.max_ws)

    def predict(self, x: np.ndarray) -> Check:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-NaN windows before they fill
            out = self._det.predict(np.asarray(x, dtype=np.float64), return_test_stat=True)["data"]
            stats = np.asarray(out["test_stat"], dtype=np.float64)
            if self._dependence is not None:
                stats = stats / self._dependence
            per_feature = np.nanmax(stats, axis=0)
        self._trim()
        threshold = float(np.asarray(out["threshold"]).ravel()[0])
        finite = np.isfinite(per_feature)
        stat = float(np.nanmax(per_feature)) if finite.any() else float("nan")
        return Check(bool(finite.any() and stat > threshold), stat, threshold, per_feature)

    def ceilings(self) -> np.ndarray:
        """Per window, the largest statistic it can reach: every value in it above every reference
        value (rank-based, so the same for every column). A window of 3 among 50 reference blocks
        tops out below a large ERT's threshold; only the longer windows can ever fire."""
        if self._ceilings is None:
            probe = UnivariateDetector(self._x_ref, self.ert, self._windows, self.n_bootstraps,
                                       {"thresholds": self.calibration["thresholds"]})
            top = self._x_ref.max(axis=0)
            for i in range(self.max_window):  # distinct values: ties would lower the statistic
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = probe._det.predict(top + i + 1.0, return_test_stat=True)["data"]
            self._ceilings = np.nanmax(np.asarray(out["test_stat"], dtype=np.float64), axis=1)
        return self._ceilings

    def reachable(self) -> np.ndarray:
        """Per column: can any window's statistic, divided by its dependence, still cross the
        threshold once the windows are full? A column that cannot is blind at this ERT."""
        steady = float(np.asarray(self._det.thresholds).ravel()[-1])
        dep = (np.ones((len(self._windows), self._x_ref.shape[1])) if self._dependence is None
               else self._dependence)
        return (self.ceilings()[:, None] / dep > steady).any(axis=0)

    def _trim(self) -> None:
        # alibi appends every statistic and every input to arrays that are never pruned; left
        # alone they make each step O(t). Only the last max-window inputs are ever read again.
        d = self._det
        d.test_stats, d.drift_preds = d.test_stats[-1:], d.drift_preds[-1:]
        d.xs = d.xs[-d.max_ws:]

    def reset_state(self) -> None:
        self._det.reset_state()

    def save_state(self, directory: Path) -> None:
        self._det.save_state(directory)

    def load_state(self, directory: Path) -> None:
        self._det.load_state(directory)
        self._det.t = int(self._det.t)  # np.load gives a 0-d array back


class MultivariateDetector:
    """Least-squares density difference online test on embeddings (pytorch backend)."""

    kind = "lsdd"

    def __init__(self, x_ref: np.ndarray, ert: float, window: int, n_bootstraps: int,
                 calibration: Calibration | None = None, seed: int = 0):
        import torch

        sigma = calibration.get("sigma") if calibration else None
        with seeded(seed), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._det = _lsdd_class()(
                np.asarray(x_ref, dtype=np.float32), calibration=calibration, ert=ert,
                window_size=window, n_bootstraps=n_bootstraps, sigma=sigma, device="cpu",
                verbose=False)
        self._torch = torch
        self.ert, self.n_bootstraps = ert, n_bootstraps

    @property
    def calibration(self) -> Calibration:
        d = self._det
        return {"thresholds": np.asarray(d.thresholds, dtype=np.float64),
                "H_lam_inv": d.H_lam_inv.cpu().numpy(), "c_inds": d.c_inds.cpu().numpy(),
                "non_c_inds": d.non_c_inds.cpu().numpy(),
                "kernel_centers": d.kernel_centers.cpu().numpy(),
                "ref_inds": d.ref_inds.cpu().numpy(), "init_test_inds": d.init_test_inds.cpu().numpy(),
                "sigma": d.kernel.sigma.detach().cpu().numpy()}

    @property
    def t(self) -> int:
        return int(self._det.t)

    @property
    def max_window(self) -> int:
        return int(self._det.window_size)

    def predict(self, x: np.ndarray) -> Check:
        out = self._det.predict(np.asarray(x, dtype=np.float32), return_test_stat=True)["data"]
        d = self._det
        d.test_stats, d.drift_preds = d.test_stats[-1:], d.drift_preds[-1:]
        return Check(bool(out["is_drift"]), float(out["test_stat"]), float(out["threshold"]))

    def reset_state(self) -> None:
        self._det.reset_state()

    def save_state(self, directory: Path) -> None:
        self._det.save_state(directory)

    def load_state(self, directory: Path) -> None:
        self._det.load_state(directory)
        self._det.t = int(self._det.t)
