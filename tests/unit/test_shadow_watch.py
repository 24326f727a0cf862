"""The controller's shadow watch: waits for enough evidence, then records the shadow gate once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from retrain.policy import load_policy
from retrain.shadow import ShadowSummary
from retrain.shadow_watch import ShadowWatch

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@dataclass
class Version:
    version: str
    status: str
    created_ms: int
    tags: dict[str, str] = field(default_factory=dict)


class Registry:
    def __init__(self, challenger: Version | None):
        self.aliases = {"champion": Version("1", "champion", 0, {"model_version": "v1"}),
                        "challenger": challenger}

    def alias(self, name: str) -> Version | None:
        return self.aliases[name]


class Gov:
    def __init__(self, challenger: Version | None):
        self.registry = Registry(challenger)
        self.policy = load_policy()
        self.recorded: list[tuple[str, Any]] = []

    def record_shadow(self, version: str, gate: Any, summary: dict) -> str:
        self.recorded.append((version, gate))
        self.registry.aliases["challenger"] = None
        return "promoted" if gate.passed else "rejected"


def summary(events: int, labelled: int, challenger_ap: float = 0.5) -> ShadowSummary:
    return ShadowSummary("v1", "v2", events=events, hours=1.0, labelled=labelled,
                         positives=load_policy().shadow.min_positives,
                         champion_ap=0.3, challenger_ap=challenger_ap, champion_alert_rate=0.01,
                         challenger_alert_rate=0.011, mean_abs_diff=0.05,
                         ap_gap_low=challenger_ap - 0.3 - 0.01, ap_gap_high=challenger_ap - 0.3 + 0.01,
                         confidence=0.95)


def watch(gov: Gov, evidence: list[ShadowSummary], started: datetime = NOW) -> ShadowWatch:
    def reader(*_args: Any, **_kwargs: Any) -> ShadowSummary:
        return evidence.pop(0)

    return ShadowWatch(settings=None, governance=lambda: gov, interval_s=0, reader=reader,
                       clock=lambda: started + timedelta(minutes=5))


def test_waits_for_enough_evidence_then_records_once():
    p = load_policy().shadow
    gov = Gov(Version("2", "awaiting_shadow", int(NOW.timestamp() * 1000), {"model_version": "v2"}))
    w = watch(gov, [summary(p.min_events // 2, p.min_labelled), summary(p.min_events, p.min_labelled)])
    assert w.check() is None and gov.recorded == []
    assert w.check() == "promoted"
    assert [v for v, _ in gov.recorded] == ["2"] and gov.recorded[0][1].passed
    assert w.check() is None, "nothing waits any more"


def test_a_worse_challenger_is_rejected_and_nothing_happens_without_one():
    p = load_policy().shadow
    gov = Gov(Version("2", "awaiting_shadow", int(NOW.timestamp() * 1000)))
    assert watch(gov, [summary(p.min_events, p.min_labelled, challenger_ap=0.05)]).check() == "rejected"
    assert watch(Gov(None), []).check() is None
    validated_only = Gov(Version("3", "validated", int(NOW.timestamp() * 1000)))
    assert watch(validated_only, []).check() is None


def test_an_overdue_shadow_is_judged_on_what_it_has():
    gov = Gov(Version("2", "awaiting_shadow", int((NOW - timedelta(days=10)).timestamp() * 1000)))
    w = watch(gov, [summary(5, 1)], started=NOW)
    assert w.check() == "rejected"
