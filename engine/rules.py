"""Domain rules of the configuration: the lifecycle thresholds and the custom touchpoint kinds.

What the aggregates, projections and policies may read of the configuration (the contact rules
and policies live in engine.policies.model); the infrastructure settings are engine.settings.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

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


class RfmSegment(Section):
    """A named RFM segment: the scores (1-5) it covers, each as [lowest, highest]."""

    name: str = Field(min_length=1, max_length=100)
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)

    @field_validator("r", "f", "m")
    @classmethod
    def _scores(cls, v: tuple[int, int]) -> tuple[int, int]:
        lo, hi = v
        if not 1 <= lo <= hi <= 5:
            raise ValueError(f"[{lo}, {hi}] is no range of scores: give [lowest, highest] within 1..5")
        return v

    def covers(self, r: int, f: int, m: int) -> bool:
        return self.r[0] <= r <= self.r[1] and self.f[0] <= f <= self.f[1] and self.m[0] <= m <= self.m[1]


# The usual RFM segments on the recency-frequency grid (monetary splits the lapsed frequent buyers),
# covering every score; the first that covers a customer's scores names it (Loyal: the rest of the
# frequent, recent ones after Champions).
DEFAULT_RFM_SEGMENTS = tuple(
    RfmSegment(name=n, r=r, f=f, m=m)
    for n, r, f, m in (
        ("Champions", (4, 5), (4, 5), (1, 5)),
        ("Loyal", (3, 5), (3, 5), (1, 5)),
        ("Potential Loyalist", (4, 5), (2, 2), (1, 5)),
        ("New", (5, 5), (1, 1), (1, 5)),
        ("Promising", (4, 4), (1, 1), (1, 5)),
        ("Need Attention", (3, 3), (2, 2), (1, 5)),
        ("About to Sleep", (3, 3), (1, 1), (1, 5)),
        ("At Risk", (1, 2), (3, 5), (1, 3)),
        ("Can't Lose Them", (1, 2), (3, 5), (4, 5)),
        ("Hibernating", (1, 2), (2, 2), (1, 5)),
        ("Lost", (1, 2), (1, 1), (1, 5)),
    )
)


class ValueSegment(Section):
    """A value segment: the next `share` of the persons with a purchase, ranked by CLV."""

    name: str = Field(min_length=1, max_length=100)
    share: float = Field(gt=0, le=1)


DEFAULT_VALUE_SEGMENTS = (ValueSegment(name="top", share=0.2), ValueSegment(name="middle", share=0.3))


# Euros per unit, late 2026, rounded: illustrative only (the demo's currencies), never a source.
ILLUSTRATIVE_RATES = {"GBP": 1.15, "USD": 0.86, "CHF": 1.07, "SEK": 0.091}


class ValueRules(Section):
    """Customer value (engine.value, docs/value.md): the currency value is counted in, the rates
    that convert the others to it, and the RFM segments."""

    base_currency: str = "EUR"
    # Units of the base currency one unit of each other currency is worth (a fixed table); an
    # amount in a currency with no rate still counts as a purchase, and is named apart, never added.
    # Unset: ILLUSTRATIVE_RATES when the base is EUR (the demo's currencies), else none.
    rates: dict[str, float] | None = None
    # Or dated rates: a CSV file of `date,currency,rate` rows (a header first), each rate in force
    # from its date (UTC) until the next of its currency; a purchase is converted at the rate of
    # its day, and one before its currency's first date has no rate. Relative to the config file.
    rates_file: str | None = None
    _dated: dict[str, tuple[list[date], list[float]]] = PrivateAttr(default_factory=dict)
    # The Pareto figure: the share of net revenue from this top share of persons with a purchase.
    top_share: float = Field(0.2, gt=0, lt=1)
    rfm_segments: tuple[RfmSegment, ...] = DEFAULT_RFM_SEGMENTS  # first matching segment wins
    # Predictions with the fitted model (engine.value.model): expected transactions over the next
    # `expected_weeks`; CLV over `clv_months`, each month's expected spend discounted at the annual
    # rate; value segments by CLV, best first (the persons left over are `rest_segment`).
    expected_weeks: float = Field(13.0, gt=0, le=520)
    clv_months: int = Field(12, ge=1, le=120)
    annual_discount_rate: float = Field(0.10, ge=0, le=1)
    value_segments: tuple[ValueSegment, ...] = DEFAULT_VALUE_SEGMENTS
    rest_segment: str = Field("rest", min_length=1, max_length=100)

    @property
    def table(self) -> dict[str, float]:
        """The fixed rates (see `rates`); none with a rates file."""
        if self.rates is not None:
            return self.rates
        if self.rates_file is not None:
            return {}
        return ILLUSTRATIVE_RATES if self.base_currency == "EUR" else {}

    def rate(self, currency: str, on: date) -> float | None:
        """Units of the base currency one unit of `currency` is worth on that day; None without a rate."""
        if currency == self.base_currency:
            return 1.0
        dated = self._dated.get(currency)
        if dated is not None:
            i = bisect_right(dated[0], on) - 1
            return dated[1][i] if i >= 0 else None
        return self.table.get(currency)

    @model_validator(mode="after")
    def _read_rates(self) -> ValueRules:
        if self.rates and self.base_currency in self.rates:
            raise ValueError(f"[value.rates] has {self.base_currency}, the base currency: its rate is 1")
        if self.rates_file is not None:
            if self.rates is not None:
                raise ValueError("give [value] rates (a fixed table) or rates_file (dated rates), not both")
            self._dated = read_rates(Path(self.rates_file), self.base_currency)
        return self

    @field_validator("base_currency")
    @classmethod
    def _base(cls, v: str) -> str:
        from .money import currency_problem

        if (problem := currency_problem(v)) is not None:
            raise ValueError(problem)
        return v

    @field_validator("value_segments")
    @classmethod
    def _segments(cls, v: tuple[ValueSegment, ...]) -> tuple[ValueSegment, ...]:
        names = [s.name for s in v]
        if len(set(names)) < len(names):
            raise ValueError(f"value segment names repeat: {names}")
        if sum(s.share for s in v) > 1 + 1e-9:
            raise ValueError(f"the value segments' shares add up to {sum(s.share for s in v):g}: at most 1")
        return v

    @model_validator(mode="after")
    def _rest(self) -> ValueRules:
        if self.rest_segment in {s.name for s in self.value_segments}:
            raise ValueError(f"rest_segment {self.rest_segment!r} is also the name of a value segment")
        return self

    @field_validator("rates")
    @classmethod
    def _rates(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        from .money import currency_problem

        for code, rate in (v or {}).items():
            if (problem := currency_problem(code)) is not None:
                raise ValueError(problem)
            if not rate > 0 or rate != rate or rate == float("inf"):
                raise ValueError(f"the rate of {code} is {rate}: a rate is a positive number")
        return v


def read_rates(path: Path, base: str) -> dict[str, tuple[list[date], list[float]]]:
    """A dated rates file: currency -> (dates, rates), by date. A ValueError names the file, the
    line and what is wrong with it."""
    from .money import currency_problem

    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ValueError(f"rates_file {path}: {e.strerror or e}") from None
    rows: dict[str, dict[date, float]] = {}
    lines = text.splitlines()
    if not lines or [c.strip().lower() for c in lines[0].split(",")] != ["date", "currency", "rate"]:
        raise ValueError(f"rates_file {path}: the first line must be the header date,currency,rate")
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        where = f"rates_file {path}, line {n}"
        if len(cells) != 3:
            raise ValueError(f"{where}: {line!r} is not date,currency,rate")
        try:
            day = date.fromisoformat(cells[0])
        except ValueError:
            raise ValueError(f"{where}: {cells[0]!r} is not a date (YYYY-MM-DD)") from None
        if (problem := currency_problem(cells[1])) is not None:
            raise ValueError(f"{where}: {problem}")
        if cells[1] == base:
            raise ValueError(f"{where}: {base} is the base currency (its rate is 1)")
        try:
            rate = float(cells[2])
        except ValueError:
            rate = float("nan")
        if not (rate > 0 and rate != float("inf")):
            raise ValueError(f"{where}: the rate {cells[2]!r} is not a positive number")
        if day in rows.setdefault(cells[1], {}):
            raise ValueError(f"{where}: {cells[1]} has a rate for {day} already")
        rows[cells[1]][day] = rate
    return {c: ([d for d in sorted(r)], [r[d] for d in sorted(r)]) for c, r in rows.items()}


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
