"""The demo's self-contained HTML report: what happened, when, and whether the loop closed.

Charts are inline SVG (matplotlib), so ``report.html`` opens anywhere with no network access.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from txmon.contracts import Drift, ModelEvent


@dataclass
class Stage:
    name: str
    status: str = "pending"  # pending | running | done | failed | skipped
    seconds: float = 0.0
    detail: str = ""


@dataclass
class DemoRecord:
    """Everything the report shows; the demo fills it as the loop runs."""

    stages: list[Stage]
    # One row per time bucket of event time: bucket, transactions, alerts, true_alerts, model_version
    buckets: pd.DataFrame = field(default_factory=pd.DataFrame)
    drift_onset: datetime | None = None
    drift_events: list[Drift] = field(default_factory=list)
    model_events: list[ModelEvent] = field(default_factory=list)
    promoted_at: datetime | None = None
    scores_before: np.ndarray = field(default_factory=lambda: np.empty(0))
    scores_after: np.ndarray = field(default_factory=lambda: np.empty(0))
    audit: list[dict[str, Any]] = field(default_factory=list)
    detectors: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    verdict: str = ""
    ok: bool = False


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg"):]


def _mark(ax: Any, record: DemoRecord) -> None:
    if record.drift_onset is not None:
        ax.axvline(record.drift_onset, color="#d62728", ls="--", label="drift onset (true)")
    for d in record.drift_events[:1]:
        ax.axvline(d.detected_at, color="#ff7f0e", ls=":", label="drift detected")
    if record.promoted_at is not None:
        ax.axvline(record.promoted_at, color="#2ca02c", ls="-.", label="new model serving")


def precision_chart(record: DemoRecord) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = record.buckets
    fig, ax = plt.subplots(figsize=(9, 3.6))
    if len(b):
        ax2 = ax.twinx()
        ax2.bar(b["bucket"], b["alerts"], width=_width(b), color="#c7d7ee", label="alerts")
        ax2.set_ylabel("alerts per bucket")
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        prec = b["true_alerts"] / b["alerts"].where(b["alerts"] > 0)
        ax.plot(b["bucket"], prec, color="#1f77b4", marker="o", ms=3, label="alert precision")
        ax.set_ylim(0, 1.05)
    ax.set_ylabel("alert precision")
    ax.set_xlabel("event time")
    _mark(ax, record)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Alerts and alert precision over time")
    return _svg(fig)


def _width(b: pd.DataFrame) -> Any:
    if len(b) < 2:
        return 0.02
    return (b["bucket"].iloc[1] - b["bucket"].iloc[0]) * 0.8


def drift_chart(record: DemoRecord) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.0))
    names = [d["name"] for d in record.detectors]
    ratio = [d["statistic"] / d["threshold"] if d.get("threshold") else 0.0
             for d in record.detectors]
    if record.drift_events:
        names += [f"{d.detector} (at detection)" for d in record.drift_events]
        ratio += [d.statistic / d.threshold if d.threshold else 0.0 for d in record.drift_events]
    ax.barh(names or ["(no detector)"], ratio or [0.0],
            color=["#d62728" if r >= 1 else "#1f77b4" for r in ratio] or None)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xlabel("statistic / threshold (>= 1 means drift)")
    ax.set_title("Drift detectors")
    return _svg(fig)


def score_chart(record: DemoRecord) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.0))
    bins = np.linspace(0, 1, 41)
    if len(record.scores_before):
        ax.hist(record.scores_before, bins=bins, alpha=0.6, density=True, label="before drift")
    if len(record.scores_after):
        ax.hist(record.scores_after, bins=bins, alpha=0.6, density=True, label="after promotion")
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.legend(fontsize=8)
    ax.set_title("Score distributions")
    return _svg(fig)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;
padding:3px 8px;text-align:left}th{background:#f3f3f3}.ok{color:#2a7d2a}.bad{color:#b22}
code{background:#f3f3f3;padding:0 3px}svg{max-width:100%;height:auto}"""


def _same_events(record: DemoRecord) -> str:
    same = record.figures.get("same_events")
    if not same:
        return "<p>No live event was scored by both models.</p>"
    k = record.figures.get("daily_alert_budget")
    rows = [{"model": name, "AP": f"{same[f'{key}_ap']:.3f}",
             f"top-{k} daily precision": f"{same[f'{key}_precision_at_budget']:.3f}"}
            for name, key in (("champion (serving)", "champion"), ("candidate (shadow)", "candidate"))]
    note = (f"<p>{same['events']:,} shadow events over {same['days']} simulated day(s), "
            f"{same['positives']} positive (simulator truth, labelled or not). AP gap "
            f"(candidate - champion) between {same['ap_gap_low']:+.3f} and "
            f"{same['ap_gap_high']:+.3f}, one-sided bounds at {same['confidence']:.0%} "
            "(paired, stratified bootstrap).</p>")
    return _table(rows, ["model", "AP", f"top-{k} daily precision"]) + note


def render(record: DemoRecord, out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` (and ``summary.json``); returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    verdict_class = "ok" if record.ok else "bad"
    stages = [{"stage": s.name, "status": s.status, "seconds": f"{s.seconds:.1f}",
               "detail": s.detail} for s in record.stages]
    lineage = [{"event": m.event, "version": m.version, "sha256": m.artifact_sha256[:16] + "…",
                "at": m.created_at.isoformat(timespec="seconds"),
                "gates": "; ".join(f"{g.name}:{'pass' if g.passed else 'FAIL'}"
                                   for g in m.gate_results),
                "reason": m.reason} for m in record.model_events]
    gates = [{"version": m.version, "gate": g.name, "passed": g.passed,
              "value": "" if g.value is None else f"{g.value:.4g}",
              "threshold": "" if g.threshold is None else f"{g.threshold:.4g}", "detail": g.detail}
             for m in record.model_events if m.event in ("validated", "rejected")
             for g in m.gate_results]
    drift = [{"detector": d.detector, "scope": d.scope, "statistic": f"{d.statistic:.4g}",
              "threshold": f"{d.threshold:.4g}", "detected_at": d.detected_at.isoformat(),
              "evidence": ", ".join(f"{e.feature} ({e.statistic:.3g})" for e in d.evidence[:5])}
             for d in record.drift_events]
    audit_cols = sorted({k for a in record.audit for k in a} & {"seq", "at", "kind", "actor",
                                                                 "version", "hash"})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>txmon demo report</title>",
        f"<style>{CSS}</style></head><body><h1>txmon demo report</h1>",
        f"<p class='{verdict_class}'><b>{html.escape(record.verdict)}</b></p>",
        "<h2>Stages</h2>", _table(stages, ["stage", "status", "seconds", "detail"]),
        "<h2>Alerts and precision</h2>", precision_chart(record),
        "<h2>Champion and candidate on the same events</h2>", _same_events(record),
        "<h2>Drift</h2>", drift_chart(record),
        _table(drift, ["detector", "scope", "statistic", "threshold", "detected_at", "evidence"]),
        "<h2>Scores</h2>", score_chart(record),
        "<h2>Model lineage</h2>",
        _table(lineage, ["event", "version", "sha256", "at", "gates", "reason"]),
        "<h3>Gate results</h3>",
        _table(gates, ["version", "gate", "passed", "value", "threshold", "detail"]),
        "<h2>Audit trail</h2>", _table(record.audit, audit_cols or ["kind"]),
        "</body></html>",
    ]
    path = out_dir / "report.html"
    path.write_text("\n".join(parts))
    summary = {"ok": record.ok, "verdict": record.verdict, "stages": stages,
               "figures": record.figures}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return path
