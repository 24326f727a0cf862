"""The command line: discoverable, and errors that say what to do."""

from __future__ import annotations

import os
import subprocess
import sys


def _txmon(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "txmon.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **env}, timeout=120)


def test_help_lists_the_operator_commands():
    out = _txmon("--help").stdout
    for command in ("kafka", "schemas"):
        assert command in out


def test_unreachable_broker_names_the_command_that_starts_it():
    r = _txmon("kafka", "smoke", "--count", "1", TXMON_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert r.returncode == 2
    assert "txmon kafka up" in r.stderr and "Traceback" not in r.stderr
