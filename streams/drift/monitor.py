"""The drift monitor the streaming worker feeds after each scored micro-batch.

Events accumulate into blocks of ``config.block_events``; each full block, its weekly cycle removed
when the reference has a seasonal profile, is one step of every block detector (LSDD on the mean
embedding, Cramér-von Mises on feature, score and binary-rate summaries). Every event also feeds
the tail CUSUM (:mod:`streams.drift.cusum`: high scores per mini-block), which reacts within a few
mini-blocks of a fraud wave instead of a window of blocks. Labels, whenever they arrive, feed
ADWIN on the log loss (its ``delta`` calibrated for its budget share on the reference's losses,
:mod:`streams.drift.adwin_budget`). A detection becomes a :class:`txmon.contracts.Drift` event naming the
columns that moved most; the detector then restarts from the reference, and its group stays quiet
for ``rearm_blocks`` blocks so one lasting change does not flood the drift topic (its detections
are still counted in ``status``).

Cost and delay: per event, observe_batch only appends to buffers; per block it runs four detector
steps. A detection therefore comes at a block boundary, up to ``block_events`` events late, plus
the time a window of blocks needs to fill.
"""

from __future__ import annotations

import json
import pickle
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streams.drift.blocks import SCORE, block_jitter, summarise
from streams.drift.config import DriftConfig, Group
from streams.drift.cusum import TailCusum
from streams.drift.detectors import Check, UnivariateDetector
from streams.drift.outcomes import OutcomeTracker
from streams.drift.reference import DriftReference
from streams.drift.state import SUMMARY, latest_checkpoint, read_summary, write_checkpoint
from txmon.contracts import Drift, FeatureShift, Severity, Window

SCOPES: dict[Group, str] = {"embedding": "embedding", "features": "feature", "score": "score",
                            "binary": "feature", "tail": "score"}
TAIL_NAME = "cusum.tail"
REARM_BLOCKS = 120


def _severity(statistic: float, threshold: float) -> Severity:
    ratio = statistic / threshold if threshold > 0 else float("inf")
    return "critical" if ratio >= 3 else "high" if ratio >= 1.5 else "medium"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def _micros(event_times: Sequence[datetime] | np.ndarray | pd.DatetimeIndex) -> np.ndarray:
    """Epoch microseconds. A list of aware datetimes (every scored batch) is converted exactly
    without pandas, whose ``to_datetime`` cost ~10 us per event on batches of ~45."""
    if isinstance(event_times, list) and all(
            isinstance(t, datetime) and t.tzinfo is not None for t in event_times):
        return np.fromiter(((t - _EPOCH) // _MICRO for t in event_times), dtype=np.int64,
                           count=len(event_times))
    return pd.DatetimeIndex(pd.to_datetime(event_times, utc=True)).as_unit("us").asi8


def _dt(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1e6, tz=UTC)


def _only_drops(event: Drift) -> bool:
    """Every column past the threshold moved below its reference mean."""
    moved = [e for e in event.evidence if e.threshold is not None and e.statistic > e.threshold]
    return bool(moved) and all(e.current_mean is not None and e.reference_mean is not None
                               and e.current_mean < e.reference_mean for e in moved)


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class DriftMonitor:
    """Online drift detection over blocks of scored events, plus ADWIN on delayed labels."""

    def __init__(self, reference: DriftReference, config: DriftConfig, state_dir: Path,
                 champion_version: str, rearm_blocks: int = REARM_BLOCKS):
        self.config, self.state_dir = config, Path(state_dir)
        self.rearm_blocks = rearm_blocks
        self._start(reference, champion_version)

    def _start(self, reference: DriftReference, champion_version: str) -> None:
        self.reference, self.champion_version = reference, champion_version
        self._detectors = reference.detectors(self.config)  # cached thresholds, no simulation
        tail = reference.tail()
        self._tail_q, self._tail = (None, None) if tail is None else (tail[0], TailCusum(tail[1]))
        self._feature_names = sorted({c.rsplit(".", 1)[0] for c in reference.columns.get("features", [])})
        self._binary_names = sorted({c.rsplit(".", 1)[0] for c in reference.columns.get("binary", [])})
        self._ref_mean = {g: b.mean(axis=0) for g, b in reference.blocks.items()}
        self._ref_std = {g: b.std(axis=0) + 1e-12 for g, b in reference.blocks.items()}
        width = max((d.max_window for d in self._detectors.values()), default=1)
        self._history: dict[Group, deque[np.ndarray]] = {g: deque(maxlen=d.max_window)
                                                         for g, d in self._detectors.items()}
        self._block_times: deque[tuple[int, int]] = deque(maxlen=width)
        self._pending: dict[str, np.ndarray] = {}
        self.blocks_seen = 0
        self.events_seen = 0
        self._last: dict[str, dict[str, Any]] = {}
        self._detections: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}
        self._quiet_until: dict[str, int] = {}
        # ADWIN's delta calibrated on the reference's losses for its share of the budget; without
        # labels in the reference, the configured per-test delta (outside the budget).
        self._adwin_cal = reference.adwin()
        delta = self.config.adwin_delta if self._adwin_cal is None else self._adwin_cal.delta
        self._outcomes = OutcomeTracker(delta, self.config.adwin_min_outcomes,
                                        self.config.outcome_window)

    # -- feeding ---------------------------------------------------------------------------------

    def observe_batch(self, embeddings: np.ndarray | None, features: dict[str, np.ndarray],
                      binary: dict[str, np.ndarray], scores: np.ndarray,
                      event_times: Sequence[datetime] | np.ndarray) -> list[Drift]:
        """Add one scored micro-batch; returns the drift events of every block it completed."""
        n = len(scores)
        columns = self._columns(embeddings, features, binary, scores, event_times, n)
        if n == 0:
            return []
        for k, v in columns.items():
            old = self._pending.get(k)
            self._pending[k] = v if old is None or not len(old) else np.concatenate([old, v])
        self.events_seen += n
        out: list[Drift] = self._feed_tail(columns) if self._tail is not None else []
        size = self.config.block_events
        before = self.blocks_seen
        while len(self._pending["t"]) >= size:
            block = {k: v[:size] for k, v in self._pending.items()}
            self._pending = {k: v[size:] for k, v in self._pending.items()}
            out += self._step(block)
        every = self.config.checkpoint_every_blocks
        if every and self.blocks_seen // every > before // every:
            self.save()
        return out

    def _columns(self, embeddings: np.ndarray | None, features: dict[str, np.ndarray],
                 binary: dict[str, np.ndarray], scores: np.ndarray,
                 event_times: Sequence[datetime] | np.ndarray, n: int) -> dict[str, np.ndarray]:
        cols: dict[str, np.ndarray] = {"t": _micros(event_times)}
        if "score" in self._detectors:
            cols[SCORE] = np.asarray(scores, dtype=np.float64)
        if "embedding" in self._detectors:
            if embeddings is None:
                raise ValueError("the reference has an embedding detector: pass embeddings")
            cols["embedding"] = np.asarray(embeddings, dtype=np.float32)
        for prefix, names, given in (("f:", self._feature_names, features),
                                     ("b:", self._binary_names, binary)):
            missing = set(names) - set(given)
            if missing:
                raise ValueError(f"missing inputs the reference was built with: {sorted(missing)}")
            for name in names:
                cols[prefix + name] = np.asarray(given[name])
        bad = {k: len(v) for k, v in cols.items() if len(v) != n}
        if bad:
            raise ValueError(f"every input needs {n} rows (one per scored event); got {bad}")
        return cols

    def _feed_tail(self, columns: dict[str, np.ndarray]) -> list[Drift]:
        """Events in arrival order into the tail CUSUM (per mini-block, not per block)."""
        assert self._tail is not None and self._tail_q is not None
        cal = self._tail.cal
        expected = np.full(len(columns["t"]), cal.p0)  # flat: see streams.drift.cusum
        exceed = columns[SCORE] > self._tail_q
        out = []
        for a in self._tail.update(exceed, expected, columns["t"]):
            at = _dt(int(columns["t"][a.index]))
            shift = FeatureShift(feature="score.tail_rate", statistic=a.statistic, threshold=cal.h,
                                 reference_mean=a.reference_rate, current_mean=a.run_rate)
            event = Drift(detector=TAIL_NAME, scope="score", statistic=a.statistic, threshold=cal.h,
                          detected_at=at, window=Window(start=_dt(a.run_start_us), end=at,
                                                        events=a.run_events),
                          champion_version=self.champion_version, evidence=[shift],
                          severity=_severity(a.run_rate, a.reference_rate))
            self._record(TAIL_NAME, event)
            if self.blocks_seen >= self._quiet_until.get(TAIL_NAME, 0):
                self._quiet_until[TAIL_NAME] = self.blocks_seen + self.rearm_blocks
                out.append(event)
        self._last[TAIL_NAME] = {"statistic": self._tail.s, "threshold": cal.h, "steps": self._tail.t}
        return out

    def _step(self, block: dict[str, np.ndarray]) -> list[Drift]:
        self.blocks_seen += 1
        self._block_times.append((int(block["t"][0]), int(block["t"][-1])))
        if self.reference.seasonal is not None:  # compare like with like: weekly cycle removed
            block = self.reference.seasonal.adjust(block, block["t"] // 1_000_000)
        inputs: dict[Group, dict[str, np.ndarray]] = {
            "embedding": {"embedding": block.get("embedding")},
            "features": {n: block["f:" + n] for n in self._feature_names},
            "score": {SCORE: block.get(SCORE)},
            "binary": {n: block["b:" + n] for n in self._binary_names},
        }
        out = []
        for group, det in self._detectors.items():
            jitter = block_jitter(self.config, self.blocks_seen, len(self._binary_names))
            x = summarise(group, inputs[group], jitter)
            self._history[group].append(x)
            check = det.predict(x)
            name = f"{det.kind}.{group}"
            self._last[name] = {"statistic": _num(check.statistic), "threshold": _num(check.threshold),
                                "steps": det.t}
            if not check.is_drift:
                continue
            event = self._evidence(group, name, check, det.max_window)
            det.reset_state()
            self._history[group].clear()
            if group == "score" and _only_drops(event):
                # Fewer fraud-like scores than the reference is not news for the retrain
                # controller (on the simulator: quiet stretches between incidents, 3 alarms in
                # ~490k stationary events); counted, not published.
                self._counts[name + ".drops"] = self._counts.get(name + ".drops", 0) + 1
                continue
            self._record(name, event)
            if self.blocks_seen >= self._quiet_until.get(name, 0):
                self._quiet_until[name] = self.blocks_seen + self.rearm_blocks
                out.append(event)
        return out

    def observe_outcome(self, score: float, positive: bool, alerted: bool,
                        label_time: datetime | None = None) -> list[Drift]:
        """Feed one labelled transaction (its score, its truth, whether it was alerted)."""
        shift = self._outcomes.update(score, positive, alerted)
        name = "adwin.loss"
        self._last[name] = {"statistic": _num(self._outcomes.last_loss_mean), "threshold": None,
                            "steps": self._outcomes.seen}
        if shift is None:
            return []
        o = self._outcomes
        evidence = [FeatureShift(feature="log_loss", statistic=shift.after - shift.before,
                                 reference_mean=shift.before, current_mean=shift.after)]
        evidence += [FeatureShift(feature=k, statistic=v, current_mean=v)
                     for k, v in (("alert_precision", o.precision), ("alert_recall", o.recall))
                     if np.isfinite(v)]
        now = label_time or datetime.now(UTC)
        event = Drift(detector=name, scope="performance", statistic=shift.after,
                      threshold=shift.before, detected_at=now,
                      window=Window(end=now, events=shift.width),
                      champion_version=self.champion_version, evidence=evidence,
                      severity=_severity(shift.after, shift.before))
        self._record(name, event)
        return [event]

    # -- evidence --------------------------------------------------------------------------------

    def _evidence(self, group: Group, name: str, check: Check, width: int) -> Drift:
        cols = self.reference.columns[group]
        current = np.mean(np.stack(self._history[group]), axis=0)
        ref_mean = self._ref_mean[group]
        top = self.config.evidence_top
        if check.per_feature is not None:  # CVM: each column's own statistic against the threshold
            order = np.argsort(-np.nan_to_num(check.per_feature, nan=-np.inf))[:top]
            shifts = [FeatureShift(feature=cols[j], statistic=float(check.per_feature[j]),
                                   threshold=check.threshold, reference_mean=float(ref_mean[j]),
                                   current_mean=float(current[j])) for j in order]
        else:  # LSDD: which embedding dimensions moved, in reference standard deviations
            z = (current - ref_mean) / self._ref_std[group]
            order = np.argsort(-np.abs(z))[:top]
            shifts = [FeatureShift(feature=cols[j], statistic=float(z[j]),
                                   reference_mean=float(ref_mean[j]), current_mean=float(current[j]))
                      for j in order]
        blocks = min(len(self._history[group]), len(self._block_times))
        start, end = self._block_times[-blocks][0], self._block_times[-1][1]
        return Drift(detector=name, scope=SCOPES[group], statistic=check.statistic,  # type: ignore[arg-type]
                     threshold=check.threshold, detected_at=_dt(end),
                     window=Window(start=_dt(start), end=_dt(end),
                                   events=blocks * self.config.block_events),
                     champion_version=self.champion_version, evidence=shifts,
                     severity=_severity(check.statistic, check.threshold))

    def _record(self, name: str, event: Drift) -> None:
        self._counts[name] = self._counts.get(name, 0) + 1
        self._detections[name] = json.loads(event.model_dump_json())

    # -- status, persistence, promotion ----------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """One row per detector: statistic vs threshold, ERT, detections, the last one."""
        rows = []
        for group, det in self._detectors.items():
            name = f"{det.kind}.{group}"
            rows.append({"detector": name, "scope": SCOPES[group], **self._last.get(name, {}),
                         "ert_events": self.config.ert_events_for(group),
                         "n_bootstraps": det.n_bootstraps, "detections": self._counts.get(name, 0),
                         "last_detection": self._detections.get(name),
                         **({"drops_not_reported": self._counts.get(name + ".drops", 0)}
                            if group == "score" else {}),
                         **({"blind": self.blind(group)} if det.kind == "cvm" else {})})
        if self._tail is not None:
            cal = self._tail.cal
            rows.append({"detector": TAIL_NAME, "scope": "score", **self._last.get(
                TAIL_NAME, {"statistic": 0.0, "threshold": cal.h, "steps": 0}),
                "ert_events": self.config.ert_events_for("tail"), "reference_rate": cal.p0,
                "score_threshold": self._tail_q, "dispersion": cal.dispersion,
                "mini_block_dispersion": cal.mini_dispersion,
                "detections": self._counts.get(TAIL_NAME, 0),
                "last_detection": self._detections.get(TAIL_NAME)})
        o = self._outcomes
        rows.append({"detector": "adwin.loss", "scope": "performance",
                     **self._last.get("adwin.loss", {"statistic": None, "threshold": None, "steps": 0}),
                     "delta": o.delta, "delta_calibrated": self._adwin_cal is not None,
                     **({"ert_events": self.config.ert_events_for("performance"),
                         "reference_loss": self._adwin_cal.reference_loss}
                        if self._adwin_cal is not None else {}),
                     "adwin_width": o.width,
                     "alert_precision": _num(o.precision), "alert_recall": _num(o.recall),
                     "detections": self._counts.get("adwin.loss", 0),
                     "last_detection": self._detections.get("adwin.loss")})
        return rows

    def blind(self, group: Group) -> list[str]:
        """Columns of a CVM group whose statistic, divided by their block dependence, can never
        cross the threshold at this ERT (:meth:`UnivariateDetector.reachable`)."""
        det = self._detectors[group]
        if not isinstance(det, UnivariateDetector):
            return []
        return [c for c, ok in zip(self.reference.columns[group], det.reachable(), strict=True) if not ok]

    def save(self) -> Path:
        """Checkpoint everything a restarted worker needs to continue exactly where this one is."""
        def write(d: Path) -> None:
            for group, det in self._detectors.items():
                det.save_state(d / "detectors" / group)
            np.savez(d / "pending.npz", **self._pending)
            np.savez(d / "history.npz", **{g: np.asarray(list(h)) for g, h in self._history.items()})
            with open(d / "outcomes.pkl", "wb") as f:
                pickle.dump(self._outcomes.state(), f)
            summary = {"champion_version": self.champion_version,
                       "reference_fingerprint": self.reference.fingerprint,
                       "config_fingerprint": self.config.fingerprint(),
                       "saved_at": datetime.now(UTC).isoformat(),
                       "blocks_seen": self.blocks_seen, "events_seen": self.events_seen,
                       "block_times": list(self._block_times), "last": self._last,
                       "detections": self._detections, "counts": self._counts,
                       "quiet_until": self._quiet_until, "status": self.status(),
                       "tail": None if self._tail is None else self._tail.state()}
            (d / SUMMARY).write_text(json.dumps(summary, indent=1, default=str))
        return write_checkpoint(self.state_dir, write)

    @classmethod
    def restore(cls, reference: DriftReference, config: DriftConfig, state_dir: Path,
                champion_version: str, rearm_blocks: int = REARM_BLOCKS) -> DriftMonitor:
        """A monitor continuing from the last checkpoint in ``state_dir``, if it was taken for
        this reference and champion; otherwise a fresh one (t=0)."""
        m = cls(reference, config, state_dir, champion_version, rearm_blocks)
        path = latest_checkpoint(state_dir)
        if path is None:
            return m
        s = json.loads((path / SUMMARY).read_text())
        if (s["reference_fingerprint"] != reference.fingerprint
                or s["champion_version"] != champion_version):
            return m  # a promotion happened while we were down: start on the new reference
        for group, det in m._detectors.items():
            det.load_state(path / "detectors" / group)
        with np.load(path / "pending.npz", allow_pickle=False) as z:
            m._pending = {k: z[k] for k in z.files}
        with np.load(path / "history.npz", allow_pickle=False) as z:
            for g in m._history:
                m._history[g].extend(list(z[g]) if g in z.files else [])
        with open(path / "outcomes.pkl", "rb") as f:
            # Our own checkpoint, in an owner-only directory (see streams.drift.state).
            m._outcomes.load(pickle.load(f))
        m.blocks_seen, m.events_seen = int(s["blocks_seen"]), int(s["events_seen"])
        m._block_times.extend(tuple(t) for t in s["block_times"])
        m._last, m._detections = s["last"], s["detections"]
        m._counts, m._quiet_until = s["counts"], s["quiet_until"]
        if m._tail is not None and s.get("tail"):
            m._tail.load(s["tail"])
        return m

    def reset(self, new_reference: DriftReference, champion_version: str) -> None:
        """A promotion: every detector restarts on the new champion's reference, then checkpoint."""
        self._start(new_reference, champion_version)
        self.save()


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last checkpoint's summary (status rows included), for ``txmon drift status``."""
    return read_summary(state_dir)
