"""The audit chain: appends verify; edits, deletions, reorderings and truncation-then-append fail."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from retrain.audit import AuditLog, verify


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("trigger", actor="controller", detector="cvm", scope="score")
    log.append("snapshot", actor="job", rows=1200, content_sha256="ab" * 32)
    log.append("gates", actor="job", passed=False, failed=["recall_at_budget"])
    log.append("approval", actor="alice", version="4")
    log.append("promotion", actor="alice", version="4")
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("\n".join(lines) + "\n")


def test_intact_log_verifies_and_chains(log: AuditLog) -> None:
    result = verify(log.path)
    assert result.ok and result.entries == 5
    entries = list(log.entries())
    assert [e["seq"] for e in entries] == [0, 1, 2, 3, 4]
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))


def test_edited_line_is_detected(log: AuditLog) -> None:
    lines = _lines(log)
    entry = json.loads(lines[3])
    entry["actor"] = "mallory"
    lines[3] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    _write(log, lines)
    result = verify(log.path)
    assert not result.ok and result.line == 4 and "edited" in result.problem


def test_edited_line_with_recomputed_hash_breaks_the_next_link(log: AuditLog) -> None:
    from retrain.audit import entry_hash

    lines = _lines(log)
    entry = json.loads(lines[1])
    entry["details"]["rows"] = 5
    entry["hash"] = entry_hash(entry)
    lines[1] = json.dumps(entry)
    _write(log, lines)
    result = verify(log.path)
    assert not result.ok and result.line == 3


def test_deleted_line_is_detected(log: AuditLog) -> None:
    lines = _lines(log)
    del lines[2]
    _write(log, lines)
    result = verify(log.path)
    assert not result.ok and result.line == 3


def test_reordered_lines_are_detected(log: AuditLog) -> None:
    lines = _lines(log)
    lines[1], lines[2] = lines[2], lines[1]
    _write(log, lines)
    result = verify(log.path)
    assert not result.ok and result.line == 2


def test_appending_after_a_good_log_keeps_it_valid(log: AuditLog) -> None:
    log.append("rollback", actor="bob", to_version="3")
    assert verify(log.path).entries == 6


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown audit kind"):
        AuditLog(tmp_path / "a.jsonl").append("coffee", actor="x")


def test_truncation_is_caught_by_anchors_kept_elsewhere(log: AuditLog) -> None:
    from retrain.audit import check_anchors

    last = list(log.entries())[-1]
    anchors = {last["seq"]: last["hash"]}
    assert check_anchors(log.path, anchors).ok
    _write(log, _lines(log)[:-1])  # the chain alone cannot see a cut tail...
    assert verify(log.path).ok
    result = check_anchors(log.path, anchors)  # ...the anchor can
    assert not result.ok and "truncated" in result.problem
