"""Crash-safe checkpoints of the drift monitor: written to a staging directory, then swapped in.

A reader (a restarted worker, ``txmon drift status``) sees either the previous checkpoint or the
new one, never a half-written mix. Detector state files are pickles (alibi-detect writes its
pytorch state with ``torch.save``; ADWIN is a river object): the state directory must be as
trusted as the code, so it is created owner-only.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

CURRENT, STAGING, PREVIOUS = "current", ".staging", ".previous"
SUMMARY = "monitor.json"


def write_checkpoint(state_dir: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(directory)`` on an empty staging directory, then make it the current one."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging, current, previous = state_dir / STAGING, state_dir / CURRENT, state_dir / PREVIOUS
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    write(staging)
    shutil.rmtree(previous, ignore_errors=True)
    if current.exists():
        os.replace(current, previous)
    os.replace(staging, current)
    shutil.rmtree(previous, ignore_errors=True)
    return current


def latest_checkpoint(state_dir: Path) -> Path | None:
    """The newest complete checkpoint (``previous`` if a crash hit between the two renames)."""
    for name in (CURRENT, PREVIOUS):
        path = Path(state_dir) / name
        if (path / SUMMARY).is_file():
            return path
    return None


def read_summary(state_dir: Path) -> dict[str, Any] | None:
    path = latest_checkpoint(state_dir)
    return json.loads((path / SUMMARY).read_text()) if path else None
