"""Deterministic rule hits reported on an alert next to the model's reasons. Pure.

Rules never decide an alert on their own here: they tell an analyst which well-known patterns the
transaction also matches (the model decides; the rules explain in the analyst's vocabulary).

>>> from datetime import datetime, UTC
>>> from txmon.contracts import Transaction
>>> tx = Transaction(tx_id="t", event_time=datetime(2026, 1, 1, tzinfo=UTC), account_id="a",
...                  counterparty_id="c", amount="9500.00", country="DE", counterparty_country="IR")
>>> rule_hits(tx, counterparty_positive_rate=0.0, config=RuleConfig())
['structuring_below_reporting_threshold', 'cross_border', 'high_risk_country']
"""

from __future__ import annotations

from streams.config import RuleConfig
from txmon.contracts import Transaction


def rule_hits(tx: Transaction, counterparty_positive_rate: float, config: RuleConfig) -> list[str]:
    amount = float(abs(tx.amount))
    hits = []
    if amount >= config.large_amount:
        hits.append("large_amount")
    low = config.reporting_threshold * (1 - config.structuring_band)
    if low <= amount < config.reporting_threshold:
        hits.append("structuring_below_reporting_threshold")
    if tx.country and tx.counterparty_country and tx.country != tx.counterparty_country:
        hits.append("cross_border")
    if tx.counterparty_country in config.high_risk_countries or tx.country in config.high_risk_countries:
        hits.append("high_risk_country")
    if counterparty_positive_rate >= config.risky_counterparty_rate:
        hits.append("counterparty_with_confirmed_fraud")
    return hits
