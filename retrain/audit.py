"""The audit log: append-only JSON lines, each entry carrying the hash of the one before it.

Every governance step (trigger, snapshot, gates, approval, promotion, rollback) appends one entry.
An entry's ``hash`` is the sha256 of its canonical JSON (without ``hash``), and that JSON includes
``prev`` — the previous entry's hash — and ``seq``. Editing, deleting or reordering any line breaks
the chain at that line, which :func:`verify` reports.

>>> import tempfile, pathlib
>>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl")
>>> _ = log.append("trigger", actor="controller", reason="drift on score")
>>> _ = log.append("promotion", actor="alice", version="3")
>>> verify(log.path).ok
True
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
KINDS = frozenset({"trigger", "decision", "job", "snapshot", "candidate", "gates", "shadow",
                   "approval", "promotion", "rejection", "rollback", "refusal"})


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    """sha256 of an entry's canonical JSON, excluding its own ``hash`` field."""
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class Verification:
    """The result of checking a log: ``ok``, how many entries, and the first broken line (1-based)."""

    ok: bool
    entries: int
    line: int | None = None
    problem: str = ""


class AuditLog:
    """An append-only, hash-chained JSON-lines file; safe for several processes appending at once."""

    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.path = Path(path)
        self._clock = clock

    def append(self, kind: str, actor: str, **details: Any) -> dict[str, Any]:
        """Append one entry and return it (with ``seq``, ``prev`` and ``hash`` filled in)."""
        if kind not in KINDS:
            raise ValueError(f"unknown audit kind {kind!r}; known: {', '.join(sorted(KINDS))}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The lock spans read-last + write so two processes never chain onto the same predecessor.
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                last = _last_entry(f)
                entry = {"seq": (last["seq"] + 1) if last else 0,
                         "prev": last["hash"] if last else GENESIS,
                         "at": self._clock().isoformat(), "kind": kind, "actor": actor,
                         "details": details}
                entry["hash"] = entry_hash(entry)
                f.seek(0, os.SEEK_END)
                f.write(_canonical(entry) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return entry

    def entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for raw in f:
                if raw.strip():
                    yield json.loads(raw)


def _last_entry(f: Any) -> dict[str, Any] | None:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size == 0:
        return None
    # Read backwards in blocks until the last complete line is in hand.
    block, data = 4096, b""
    pos = size
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        lines = data.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or pos == 0:
            return json.loads(lines[-1])
    return None


def verify(path: Path) -> Verification:
    """Walk the chain; report the first line whose content, order or predecessor does not fit."""
    path = Path(path)
    if not path.exists():
        return Verification(ok=True, entries=0)
    prev, n = GENESIS, 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                return Verification(False, n, lineno, "blank line inside the log")
            try:
                entry = json.loads(raw)
            except ValueError:
                return Verification(False, n, lineno, "not valid JSON")
            if not isinstance(entry, dict) or "hash" not in entry:
                return Verification(False, n, lineno, "not an audit entry")
            if entry_hash(entry) != entry["hash"]:
                return Verification(False, n, lineno, "content does not match its hash (edited)")
            if entry.get("seq") != n:
                return Verification(False, n, lineno,
                                    f"sequence {entry.get('seq')} where {n} was expected "
                                    "(deleted or reordered)")
            if entry.get("prev") != prev:
                return Verification(False, n, lineno, "does not chain to the previous entry")
            prev, n = entry["hash"], n + 1
    return Verification(ok=True, entries=n)


def check_anchors(path: Path, anchors: dict[int, str]) -> Verification:
    """Entries recorded elsewhere (``seq -> hash``, e.g. in the model registry at each promotion)
    must still be in the log: this catches what a chain alone cannot — a log cut short at its tail
    or rewritten from scratch."""
    found: dict[int, str] = {}
    path = Path(path)
    if path.exists():
        with open(path, "rb") as f:
            for raw in f:
                if raw.strip():
                    e = json.loads(raw)
                    if e.get("seq") in anchors:
                        found[e["seq"]] = e.get("hash", "")
    for seq, digest in sorted(anchors.items()):
        if found.get(seq) != digest:
            return Verification(False, len(found), None,
                                f"entry {seq} recorded in the registry is missing or different "
                                "(log truncated or rewritten)")
    return Verification(True, len(found))

