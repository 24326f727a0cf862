"""Child processes the demo starts (worker, retrain controller), stopped whatever happens.

Each child runs in its own process group with its output in a log file; :meth:`Supervisor.stop_all`
sends SIGTERM to every group, then SIGKILL after a grace period. It runs on normal exit, on an
exception, and on Ctrl-C (the demo's ``with Supervisor(...)`` block).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    def __init__(self, log_dir: Path, env: dict[str, str]):
        self.log_dir = log_dir
        self.env = env
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> Child:
        """Run ``txmon ARGS`` with this interpreter, so the demo uses the same install."""
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "txmon.cli", *args], env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise if a child died: the demo must not wait on a process that is gone."""
        for c in self.children:
            if not c.alive():
                raise RuntimeError(f"{c.name} exited with code {c.proc.returncode}; last lines of "
                                   f"{c.log}:\n{c.tail()}")

    def stop_all(self, grace: float = 15.0) -> None:
        for c in self.children:
            if c.alive():
                _signal_group(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in self.children:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(c.proc.pid, signal.SIGKILL)
                c.proc.wait(timeout=5)
        self.children.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
