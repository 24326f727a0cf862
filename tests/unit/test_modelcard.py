"""Model cards render every governance fact and show failures plainly."""

from __future__ import annotations

from retrain.modelcard import render

CARD = {
    "version": "7", "model_version": "m20260301-abc123", "status": "rejected",
    "artifact_sha256": "cd" * 32, "signature_algorithm": "hmac-sha256", "parent_version": "6",
    "job_id": "job-1", "policy_sha256": "ef" * 32,
    "trigger": {"kind": "drift", "scope": "performance", "detector": "adwin"},
    "snapshot": {"window_start": "2026-02-01T00:00:00+00:00", "rows": 120000, "positives": 340,
                 "content_sha256": "12" * 32, "pseudonym_key_fingerprint": "abcd1234abcd1234"},
    "metrics": {"val_average_precision": 0.61},
    "gates": [{"name": "average_precision", "passed": True, "value": 0.02, "threshold": -0.01,
               "detail": "candidate 0.61 vs champion 0.59"},
              {"name": "segment_parity", "passed": False, "value": 0.2, "threshold": 0.1,
               "detail": "largest recall drop 0.2 in channel=wire | x"}],
    "approvals": [{"at": "2026-03-01T10:00:00", "kind": "rejection", "actor": "retrain-job"}],
}


def test_card_has_lineage_data_gates_and_limitations() -> None:
    md = render(CARD)
    for fact in ("m20260301-abc123", "cd" * 32, "12" * 32, "abcd1234abcd1234", "hmac-sha256",
                 '"detector": "adwin"', "val_average_precision", "## Known limitations",
                 "## Intended use", "rejection by retrain-job"):
        assert fact in md, fact
    assert "| segment_parity | **FAIL** | 0.2 | 0.1 |" in md
    assert "channel=wire / x" in md  # a pipe in a detail must not break the table


def test_card_for_a_hand_registered_model_says_what_is_missing() -> None:
    md = render({"version": "1", "status": "promoted"})
    assert "Not recorded" in md and "No gates run." in md and "None yet." in md
