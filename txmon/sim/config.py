"""What to simulate: the bank's size and habits, scenario rates, label delays and the drift schedule.

Rates are *incidents per 1,000 accounts per 30 days* — an incident is one attack or one laundering
scheme, which produces several rows. A drift schedule is a YAML or JSON list of :class:`DriftEvent`
(see ``txmon/sim/drift_example.yaml``); ``start`` is a timestamp or an offset such as ``"15d"``.

>>> cfg = SimConfig(accounts=100, days=7, seed=3)
>>> cfg.rate("card_testing") > 0, cfg.end - cfg.start
(True, datetime.timedelta(days=7))
>>> DriftEvent(kind="amount_inflation", start="10d", factor=1.2).resolve_start(cfg.start).day
15
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from txmon.mapping import parse_duration

CARD_SCENARIOS = ("card_testing", "compromised_terminal", "account_takeover", "high_value")
AML_TYPOLOGIES = ("structuring", "fan_in", "fan_out", "rapid_pass_through", "round_tripping")
SCENARIOS = CARD_SCENARIOS + AML_TYPOLOGIES
SEGMENTS = ("retail", "small_business", "high_value")

# Tuned so card fraud is ~0.3-0.6% of card rows and AML rows well under 1% of all rows.
DEFAULT_RATES: dict[str, float] = {
    "card_testing": 14.0,
    "compromised_terminal": 2.0,
    "account_takeover": 10.0,
    "high_value": 20.0,
    "structuring": 1.5,
    "fan_in": 1.0,
    "fan_out": 1.0,
    "rapid_pass_through": 2.0,
    "round_tripping": 0.6,
}

class LabelConfig(BaseModel):
    """When truth arrives. Delays are uniform between the bounds, in days."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    unlabelled_share: float = Field(0.15, ge=0, le=1, description="rows whose label never arrives")
    chargeback_days: tuple[float, float] = (2.0, 30.0)
    legit_days: tuple[float, float] = (1.0, 30.0)
    aml_days: tuple[float, float] = (30.0, 120.0)
    investigated_share: float = Field(
        0.02, ge=0, le=1, description="normal transfers an AML team investigates and clears")

    @field_validator("chargeback_days", "legit_days", "aml_days")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] <= v[1]:
            raise ValueError(f"delay range {v} must satisfy 0 <= low <= high")
        return v


DriftKind = Literal["fraud_pattern", "channel_mix", "merchant_mix", "amount_inflation", "new_region"]


class DriftEvent(BaseModel):
    """One scheduled change of the world.

    - ``fraud_pattern``: ``scenario`` runs at ``rate`` from ``start`` (0 before if it was not
      configured); optionally its rows move to ``channel`` and/or ``country``.
    - ``channel_mix``: a ``share`` of everyday card rows moves to ``channel`` (``ecommerce`` or ``pos``).
    - ``merchant_mix``: a ``share`` of everyday card rows moves to merchants with an MCC in ``mccs``.
    - ``amount_inflation``: everyday amounts are multiplied by ``factor``.
    - ``new_region``: merchants open in ``country`` and take a ``share`` of everyday card rows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: DriftKind
    start: AwareDatetime | str
    end: AwareDatetime | str | None = None
    name: str | None = None
    scenario: str | None = None
    rate: float | None = Field(None, ge=0)
    channel: str | None = None
    country: str | None = Field(None, min_length=2, max_length=2)
    share: float | None = Field(None, ge=0, le=1)
    factor: float | None = Field(None, gt=0)
    mccs: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _parameters(self) -> DriftEvent:
        need = {"fraud_pattern": ("scenario", "rate"), "channel_mix": ("channel", "share"),
                "merchant_mix": ("mccs", "share"), "amount_inflation": ("factor",),
                "new_region": ("country", "share")}[self.kind]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"{self.kind} drift needs {', '.join(missing)}")
        if self.kind == "fraud_pattern" and self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; known: {', '.join(SCENARIOS)}")
        if self.kind == "channel_mix" and self.channel not in ("ecommerce", "pos"):
            raise ValueError("channel_mix moves card rows to 'ecommerce' or 'pos'")
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}:{self.scenario or self.channel or self.country or ''}".rstrip(":")

    def resolve_start(self, sim_start: datetime) -> datetime:
        return _resolve(self.start, sim_start)

    def resolve_end(self, sim_start: datetime) -> datetime | None:
        return None if self.end is None else _resolve(self.end, sim_start)


def _resolve(when: datetime | str, sim_start: datetime) -> datetime:
    if isinstance(when, datetime):
        return when.astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(when)
    except ValueError:
        return sim_start + parse_duration(when)
    if parsed.tzinfo is None:
        raise ValueError(f"drift time {when!r} needs a timezone (e.g. ...Z)")
    return parsed.astimezone(UTC)


class SimConfig(BaseModel):
    """Everything that determines a simulation; the same config gives the same bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    accounts: int = Field(2000, ge=10, le=5_000_000)
    days: int = Field(30, ge=1, le=3650)
    seed: int = Field(0, ge=0)
    start: AwareDatetime = datetime(2026, 1, 5, tzinfo=UTC)
    drift: tuple[DriftEvent, ...] = ()
    rates: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_RATES))
    labels: LabelConfig = LabelConfig()
    home_country: str = Field("NL", min_length=2, max_length=2)
    currency: str = "EUR"
    segment_shares: tuple[float, float, float] = (0.85, 0.10, 0.05)
    reporting_threshold: float = Field(10_000.0, gt=0, description="cash reporting limit structuring avoids")

    @field_validator("rates")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
        if any(r < 0 for r in v.values()):
            raise ValueError("rates must be >= 0")
        return {**dict.fromkeys(SCENARIOS, 0.0), **v}

    @field_validator("start")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def rate(self, scenario: str) -> float:
        return self.rates.get(scenario, 0.0)

    def expected_incidents(self, scenario: str, days: float | None = None) -> float:
        """Mean number of incidents of a scenario over ``days`` (default: the whole run)."""
        return self.rate(scenario) * self.accounts / 1000 * (self.days if days is None else days) / 30


def load_drift_schedule(path: str | Path) -> tuple[DriftEvent, ...]:
    """Read a drift schedule: a YAML or JSON list of events, or a mapping with a ``drift`` list."""
    text = Path(path).read_text()
    data: Any = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    if isinstance(data, dict):
        data = data.get("drift", [])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of drift events")
    return tuple(DriftEvent.model_validate(e) for e in data)
