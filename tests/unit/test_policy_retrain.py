"""The retraining policy file: shipped default loads, typos are errors, rules match in order."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from retrain.policy import load_policy, parse_policy


def test_shipped_policy_loads_and_names_itself() -> None:
    p = load_policy()
    assert p.controller.action_for("performance", "high") == "retrain"
    assert p.controller.action_for("feature", "low") == "ignore"
    assert p.controller.action_for("feature", "medium") == "watch"  # default action
    assert len(p.source_sha256) == 64


def test_first_matching_rule_wins_and_wildcards() -> None:
    p = parse_policy("""
controller:
  rules:
    - {scope: score, severity: [critical], action: retrain}
    - {scope: "*", action: ignore}
  default_action: watch
""")
    assert p.controller.action_for("score", "critical") == "retrain"
    assert p.controller.action_for("score", "high") == "ignore"
    assert p.controller.action_for("embedding", "low") == "ignore"


def test_unknown_key_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(ValidationError, match="max_ecee"):
        parse_policy("gates:\n  max_ecee: 0.1\n")


def test_bad_values_are_errors() -> None:
    with pytest.raises(ValidationError):
        parse_policy("controller:\n  rules:\n    - {scope: weather, action: retrain}\n")
    with pytest.raises(ValidationError):
        parse_policy("gates:\n  alert_budget: 1.5\n")
    with pytest.raises(ValueError, match="holdout_days"):
        parse_policy("snapshot:\n  window_days: 7\n  holdout_days: 7\n")


def test_policy_hash_changes_with_content() -> None:
    a = parse_policy("gates:\n  max_ece: 0.05\n")
    b = parse_policy("gates:\n  max_ece: 0.06\n")
    assert a.source_sha256 != b.source_sha256 and b.gates.max_ece == 0.06
