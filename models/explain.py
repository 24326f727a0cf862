"""Occlusion reasons: which fields of the transaction, and which earlier transactions, drove a score.

Each field of the scored transaction is replaced by ``MISSING``, each earlier transaction removed and
each numeric aggregate set to its training mean, in one batch; the score drop is that element's
contribution. One ONNX call of ``fields + history + aggregates + 2`` rows: cheap enough for alerted
transactions, not meant for every score.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from models.features import ModelInput
from models.numeric import NUMERIC
from models.tokenise import MISSING, PAD
from txmon.contracts import Reason


def _describe(field: str, r: dict[str, Any], risk: str) -> str:
    amt = r.get("amt")
    text = {
        "amount": f"amount {amt:,.2f} {r.get('cur') or ''}".strip() if amt is not None else "amount",
        "rel_amount": ("amount vs the account's usual: "
                       + ("no usual yet" if r.get("rel") is None else f"{np.expm1(r['rel']) + 1:.1f}x")),
        "direction": f"money {'in' if r.get('dir') == 'credit' else 'out'}",
        "currency": f"currency {r.get('cur')}",
        "channel": f"channel {r.get('ch')}",
        "tx_type": f"transaction type {r.get('typ')}",
        "mcc": f"merchant category {r.get('mcc') or 'not given'}",
        "country": f"country {r.get('ctry') or 'not given'}",
        "geo": "outside the account's home country" if r.get("foreign") else "in the home country",
        "cp_geo": ("counterparty in another country" if r.get("cp_foreign")
                   else "counterparty in the same country"),
        "hour": f"at {(r['ts'] // 3600) % 24:02d}h UTC",
        "weekday": f"on a {dt.datetime.fromtimestamp(r['ts'], dt.UTC):%A}",
        "since_prev": ("first transaction of the account" if r.get("dtp") is None
                       else f"{r['dtp'] / 60:,.0f} min after the previous transaction"),
        "new_cp": "first payment to/from this counterparty" if r.get("ncp") else "known counterparty",
        "new_device": "new device for the account" if r.get("ndev") else "known device",
        "vel_1h": f"{r.get('v1h', 0)} transactions in the previous hour",
        "vel_24h": f"{r.get('v24h', 0)} transactions in the previous 24 hours",
        "sum_24h": f"{r.get('s24', 0):,.2f} moved in the previous 24 hours",
        "distinct_cp_7d": f"{r.get('dcp7', 0)} distinct counterparties in 7 days",
        "cp_risk": f"counterparty's confirmed-fraud history: {risk}",
    }
    return text.get(field, field)


def _describe_aggregate(name: str, value: float) -> str:
    if name.endswith("_missing"):
        return f"{name.removesuffix('_missing').replace('_', ' ')} not available"
    return f"{name.replace('_', ' ')} = {value:,.3g}"


def _describe_earlier(r: dict[str, Any]) -> str:
    when = dt.datetime.fromtimestamp(r["ts"], dt.UTC).strftime("%Y-%m-%d %H:%M") if r else "?"
    return f"earlier transaction {when}: {_describe('amount', r, '')}, {_describe('direction', r, '')}"


def explain(scorer: Any, model_input: ModelInput, top: int = 5) -> list[Reason]:
    """The ``top`` elements whose removal lowers the score most, as analyst-readable reasons."""
    spec = scorer.encoder.spec
    base = model_input.tokens
    n_fields = len(spec.fields)
    hist_rows = [i for i in range(base.shape[0] - 1) if base[i, 0] != PAD]
    numeric = model_input.numeric_row()
    n_num = len(numeric) if numeric is not None and len(scorer.numeric_baseline) else 0
    rows = 1 + n_fields + len(hist_rows) + 1 + n_num
    variants = np.repeat(base[None], rows, axis=0)
    for f in range(n_fields):
        variants[1 + f, -1, f] = MISSING
    for j, i in enumerate(hist_rows):
        variants[1 + n_fields + j, i, :] = PAD
    whole = 1 + n_fields + len(hist_rows)
    variants[whole, :-1, :] = PAD  # the whole history at once
    batch = {"tokens": variants}
    if numeric is not None:
        nums = np.repeat(numeric[None].astype(np.float32), rows, axis=0)
        for a in range(n_num):
            nums[whole + 1 + a, a] = scorer.numeric_baseline[a]
        batch["numeric"] = nums
    scores, _ = scorer.score(batch)
    drop = scores[0] - scores[1:]
    target = model_input.records[-1] if model_input.records else {}
    # (drop, feature, its description): texts are written only for the top reasons, ~40% of an
    # explanation's time when every candidate's was formatted.
    reasons: list[tuple[Any, str, Callable[[], str]]] = []
    for f, name in enumerate(spec.fields):
        reasons.append((drop[f], name, partial(_describe, name, target, model_input.risk)))
    for j, i in enumerate(hist_rows):
        r = model_input.records[i - (base.shape[0] - len(model_input.records))] \
            if model_input.records else {}
        reasons.append((drop[n_fields + j], f"history_{base.shape[0] - 1 - i}",
                        partial(_describe_earlier, r)))
    reasons.append((drop[whole - 1], "history",
                    partial(str.format, "the account's last {} transactions together", len(hist_rows))))
    for a in range(n_num):
        name = NUMERIC[a]
        reasons.append((drop[whole + a], f"agg_{name}",
                        partial(_describe_aggregate, name, float(numeric[a]))))
    reasons.sort(key=lambda t: -t[0])
    return [Reason(feature=name, description=describe(), contribution=round(float(c), 6))
            for c, name, describe in reasons[:top] if c > 1e-6]
