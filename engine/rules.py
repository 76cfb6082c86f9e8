"""Domain rules of the configuration: the lifecycle thresholds and the custom touchpoint kinds.

What the aggregates, projections and policies may read of the configuration (the contact rules
and policies live in engine.policies.model); the infrastructure settings are engine.settings.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator

from .limits import MAX_SPAN_DAYS
from .vocabulary import Section


class LifecycleRules(Section):
    rules_version: str = "2026-11-v1"
    # Spans stay below a century: added to any accepted time they stay far from year 9999.
    window_days: int = Field(365, gt=0, le=MAX_SPAN_DAYS)
    loyal_min_purchases: int = Field(4, ge=1)
    loyal_min_recent_purchases: int = Field(2, ge=0)
    advocate_min_nps: int = Field(9, ge=0, le=10)
    advocate_min_rating: int = Field(4, ge=1, le=5)
    at_risk_min_days: int = Field(60, gt=0, le=MAX_SPAN_DAYS)
    at_risk_gap_factor: float = Field(2.0, gt=0, le=100)
    lapsed_days: int = Field(365, gt=0, le=MAX_SPAN_DAYS)

    # The same spans as timedeltas, built once (the lifecycle walk adds them all the time).
    @cached_property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)

    @cached_property
    def lapsed(self) -> timedelta:
        return timedelta(days=self.lapsed_days)


FieldType = Literal["string", "integer", "number", "boolean", "datetime"]


class CustomField(Section):
    type: FieldType = "string"
    required: bool = True
    pii: bool = False  # personal: sealed per customer
    free_text: bool = False  # free text, which may hold anything personal: sealed as well


class CustomKind(Section):
    name: str
    fields: dict[str, CustomField] = {}

    @field_validator("name")
    @classmethod
    def dotted(cls, v: str) -> str:
        if "." not in v or v.strip() != v or not v or not v.isprintable() or len(v) > 100:
            raise ValueError("a kind name looks like 'area.verb', e.g. 'webinar.attended'")
        return v


class IdentityRules(Section):
    """Identity resolution (engine.identity): the guards and limits of the links between a
    person's identifiers. See docs/identity.md."""

    # Known customer ids one person may hold: 1 keeps two signed-in customers on a shared device apart.
    max_customer_ids: int = Field(1, ge=1, le=100)
    max_anonymous_ids: int = Field(100, ge=1, le=100_000)
    max_identifiers: int = Field(1000, ge=2, le=1_000_000)  # of every kind, per person
    # Values never taken as identifiers besides the built-in placeholders (any case), and regular
    # expressions an identifier must not match in full (e.g. "qa-.*" for test accounts).
    blocked_values: tuple[str, ...] = ()
    blocked_patterns: tuple[str, ...] = ()
    # Traits whose equal values link identifiers (e.g. ["email"]), by a keyed hash: off by default.
    identifying_traits: tuple[str, ...] = ()

    @field_validator("blocked_patterns")
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        from .identity import Guards

        Guards.of(patterns=patterns)  # raises ValueError naming the pattern that does not compile
        return patterns
