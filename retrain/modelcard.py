"""Model cards: one Markdown page per model version, for model risk, auditors and operations.

Structured after the model-card practice (intended use, data, metrics, evaluation, limitations) with
the lifecycle evidence ISO/IEC 42001 and the NIST AI RMF ask for: who or what triggered the model,
on which data window (and its hash), which gates it passed, who approved it, and its artifact
identity. Only pseudonymised or aggregate facts appear — never an account identifier.

>>> card = render({"version": "3", "model_version": "m-1", "status": "promoted",
...                "artifact_sha256": "ab" * 32, "gates": [{"name": "average_precision",
...                "passed": True, "value": 0.01, "threshold": -0.01, "detail": "ok"}]})
>>> "## Gate results" in card and "| average_precision | pass |" in card
True
"""

from __future__ import annotations

import json
from typing import Any

INTENDED_USE = (
    "Ranks payment and transfer transactions by the likelihood that they are fraud or suspicious "
    "activity, so analysts review the riskiest first within their alert budget. It supports, and "
    "does not replace, an analyst's decision: no customer is blocked, reported or refused on its "
    "score alone.")

LIMITATIONS = [
    "Trained on labels that arrive late (chargebacks, case outcomes): recent fraud patterns are "
    "under-represented until their labels arrive.",
    "Labels reflect what was investigated; patterns no analyst reviewed are learned as legitimate.",
    "Segments with few positive labels are reported but not gated for parity (too few to measure).",
    "Scores are calibrated on the holdout period; calibration drifts with the fraud rate.",
    "Identifiers are pseudonymised with a keyed hash: the model cannot explain decisions in terms "
    "of named accounts, and a key rotation breaks continuity of account history.",
]


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render(card: dict[str, Any]) -> str:
    """Markdown for one version; ``card`` holds what the registry tags and audit log know."""
    g = card.get
    lines = [f"# Model card — txmon scorer, registry version {g('version')}", "",
             "| | |", "|---|---|",
             f"| Model version | `{g('model_version', '–')}` |",
             f"| Status | {g('status', 'candidate')} |",
             f"| Artifact sha256 | `{g('artifact_sha256', '–')}` |",
             f"| Signature | {g('signature_algorithm') or 'unsigned'} |",
             f"| Parent (champion at training) | {_fmt(g('parent_version'))} |",
             f"| Created by job | {_fmt(g('job_id'))} |",
             f"| Policy sha256 | `{_fmt(g('policy_sha256'))}` |", "",
             "## Intended use", "", INTENDED_USE, "",
             "## Trigger", "", "```json", json.dumps(g("trigger") or {}, indent=2, sort_keys=True),
             "```", "",
             "## Training data", ""]
    snap = g("snapshot") or {}
    if snap:
        lines += ["| | |", "|---|---|"]
        for key in ("window_start", "snapshot_time", "holdout_start", "rows", "labelled", "positives",
                    "train_rows", "train_positives", "holdout_rows", "holdout_positives", "accounts",
                    "content_sha256", "pseudonym_key_fingerprint"):
            if key in snap:
                lines.append(f"| {key.replace('_', ' ')} | {_fmt(snap[key])} |")
        lines += ["", "Identifiers are pseudonymised (HMAC-SHA256, key held outside the data and "
                  "model; only its fingerprint is recorded)."]
    else:
        lines.append("Not recorded (a model registered outside the governed job).")
    metrics = g("metrics") or {}
    lines += ["", "## Metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(metrics.items())]
    else:
        lines.append("None recorded.")
    lines += ["", "## Gate results", ""]
    gates = g("gates") or []
    if gates:
        lines += ["| gate | verdict | value | threshold | detail |", "|---|---|---|---|---|"]
        for r in gates:
            detail = str(r.get("detail", "")).replace("|", "/")
            lines.append(f"| {r['name']} | {'pass' if r['passed'] else '**FAIL**'} | "
                         f"{_fmt(r.get('value'))} | {_fmt(r.get('threshold'))} | {detail} |")
    else:
        lines.append("No gates run.")
    lines += ["", "## Approvals and promotion", ""]
    events = g("approvals") or []
    if events:
        lines += [f"- {e.get('at', '')}: {e.get('kind')} by {e.get('actor')}"
                  + (f" — {e['note']}" if e.get("note") else "") for e in events]
    else:
        lines.append("None yet.")
    lines += ["", "## Known limitations", "", *[f"- {x}" for x in LIMITATIONS], ""]
    return "\n".join(lines)
