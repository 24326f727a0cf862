"""`txmon audit verify`: exit 0 on an intact log, exit 1 naming the line of an edited one."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from retrain.audit import AuditLog
from txmon.cli import app


def test_audit_verify_command(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(3):
        log.append("approval", actor=f"user{i}", version=str(i))
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--path", str(log.path)])
    assert ok.exit_code == 0 and "3 entries" in ok.output

    lines = log.path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["actor"] = "someone-else"
    lines[1] = json.dumps(entry)
    log.path.write_text("\n".join(lines) + "\n")
    bad = runner.invoke(app, ["audit", "verify", "--path", str(log.path)])
    assert bad.exit_code == 1 and "line 2" in bad.output
