"""`txmon demo --quick`: the whole loop on a real broker, judged by what it observed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_quick_demo_closes_the_loop(tmp_path: Path):
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "txmon.cli", "demo", "--quick", "--report-out", str(report),
         "--home", str(tmp_path / "home")],
        env={**os.environ, "COLUMNS": "160"}, capture_output=True, text=True, timeout=1200)
    summary = json.loads((report / "summary.json").read_text())
    stages = {s["stage"]: s["status"] for s in summary["stages"]}
    assert proc.returncode == 0, (stages, summary["verdict"], proc.stdout[-3000:], proc.stderr[-3000:])
    assert summary["ok"], summary["verdict"]
    for stage in ("drift detected", "retrain job", "gates passed", "shadow", "promoted", "hot swap"):
        assert stages[stage] == "done", stages
    fig = summary["figures"]
    # The candidate beat the champion on the same shadow events, with evidence.
    same = fig["same_events"]
    assert same["ap_gap_low"] > 0, same
    assert same["candidate_precision_at_budget"] > same["champion_precision_at_budget"], same
    assert fig["duplicates"] == 0
    html = (report / "report.html").read_text()
    assert "<svg" in html and "Model lineage" in html and "Audit trail" in html
    # Everything the demo started is gone: no broker or worker of its home is left running.
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "home")], capture_output=True, text=True)
    assert left.stdout.strip() == ""
