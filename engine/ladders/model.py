"""A ladder as data: its stages, each with an entry condition, and its health rules, from a closed
set of conditions (docs/ladders.md). No user code runs in the hot path: a ladder is validated
here and compiled into a walk by engine.projections.ladder.

The conditions:

- `count`: touchpoints of some kinds (optionally once per a property, with kinds that void them
  or reduce their amount) at least n, overall or within a window;
- `sum`: a numeric property of counted touchpoints, at least x, overall or within a window;
- `latest`: the latest value of a property of some kinds compared to a number;
- `absent`: no counted touchpoint for more than d days (optionally max(d, factor x the median gap
  between them)): a timer;
- `all` / `any` of conditions.

A stage holds when its condition holds; a person stands on the last stage in the ladder's order
whose condition holds (the first stage needs none: anyone on the ladder). Health rules likewise:
the last one whose condition holds names the health; none, no health.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Discriminator, Field, Strict, Tag, field_validator, model_validator

from ..limits import MAX_SPAN_DAYS
from ..vocabulary import Section

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$")]
Kind = Annotated[str, Field(min_length=3, max_length=100)]
Days = Annotated[int, Strict(), Field(gt=0, le=MAX_SPAN_DAYS)]
# Numbers as numbers: "4" in a config is a typo for 4, not a number (no coercion in ladders).
Whole = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
Flag = Annotated[bool, Strict()]


class Where(Section):
    """A test of one property of a touchpoint: at least / at most a number, or equal to a value."""

    property: str = Field(min_length=1, max_length=100)
    at_least: Number | None = None
    at_most: Number | None = None
    equals: str | int | bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Where:
        if self.at_least is None and self.at_most is None and self.equals is None:
            raise ValueError(f"where on {self.property!r} needs at_least, at_most or equals")
        if self.equals is not None and (self.at_least is not None or self.at_most is not None):
            raise ValueError(f"where on {self.property!r}: equals, or a range (at_least / at_most), not both")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(
                f"where on {self.property!r}: at_least {self.at_least:g} is above at_most {self.at_most:g}"
            )
        return self

    def test(self, value: Any) -> bool:
        if self.equals is not None:
            return value == self.equals and type(value) is type(self.equals)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (self.at_least is None or value >= self.at_least) and (self.at_most is None or value <= self.at_most)

    def words(self) -> str:
        if self.equals is not None:
            return f"{self.property} = {self.equals!r}"
        parts = []
        if self.at_least is not None:
            parts.append(f"{self.property} >= {_num(self.at_least)}")
        if self.at_most is not None:
            parts.append(f"{self.property} <= {_num(self.at_most)}")
        return " and ".join(parts)


class Counted(Section):
    """Which touchpoints count: of these kinds, passing `where`; with `once_per`, one per value of
    that property (the earliest), which a touchpoint of a `voided_by` kind with the same value voids
    and those of `reduced_by` kinds reduce (their `amount` from the counted one's `amount`: it stops
    counting once they add up to it)."""

    kinds: tuple[Kind, ...] = Field(min_length=1)
    once_per: str | None = None
    where: Where | None = None
    voided_by: tuple[Kind, ...] = ()
    reduced_by: tuple[Kind, ...] = ()

    @model_validator(mode="after")
    def _keyed(self) -> Counted:
        if (self.voided_by or self.reduced_by) and self.once_per is None:
            raise ValueError(
                "voided_by / reduced_by match the counted touchpoint by a property: set once_per "
                '(e.g. once_per = "order_id")'
            )
        clash = set(self.kinds) & set(self.voided_by + self.reduced_by)
        if clash:
            raise ValueError(f"{', '.join(sorted(clash))} both counts and voids")
        for what, listed in (("kinds", self.kinds), ("voided_by and reduced_by", self.voided_by + self.reduced_by)):
            twice = sorted({k for k in listed if listed.count(k) > 1})
            if twice:
                raise ValueError(f"{', '.join(twice)} is listed twice in {what}")
        return self

    def words(self) -> str:
        out = " or ".join(self.kinds)
        if self.where is not None:
            out += f" with {self.where.words()}"
        if self.once_per:
            out += f", once per {self.once_per}"
        if self.voided_by:
            out += f", voided by {' or '.join(self.voided_by)}"
        if self.reduced_by:
            out += f", reduced by {' or '.join(self.reduced_by)}"
        return out


# The one definition of a purchase: an order counts once, from its earliest placement, until it is
# cancelled or refunded in full. Every reader of purchases and revenue uses it (named "purchases").
PURCHASES = Counted(
    kinds=("order.placed",),
    once_per="order_id",
    voided_by=("order.cancelled",),
    reduced_by=("order.refunded",),
)
BUILTIN_COUNTS = {"purchases": PURCHASES}

CountRef = Annotated[str, Field(min_length=1, max_length=100)] | Counted


class Count(Section):
    count: CountRef
    at_least: Whole = Field(ge=1)
    within_days: Days | None = None


class Sum(Section):
    sum: str = Field(min_length=1, max_length=100)  # the property
    of: CountRef
    at_least: Number
    within_days: Days | None = None


class Latest(Section):
    latest: str = Field(min_length=1, max_length=100)  # the property
    of: tuple[Kind, ...] = Field(min_length=1)
    at_least: Number | None = None
    at_most: Number | None = None
    within_days: Days | None = None

    @model_validator(mode="after")
    def _bound(self) -> Latest:
        if self.at_least is None and self.at_most is None:
            raise ValueError(f"latest {self.latest!r} needs at_least or at_most")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(f"latest {self.latest!r}: at_least {self.at_least:g} is above at_most {self.at_most:g}")
        return self


class Absent(Section):
    absent: CountRef
    more_than_days: Days
    # The threshold is max(more_than_days, gap_factor x the median gap between the counted ones).
    gap_factor: Number | None = Field(None, gt=0, le=100)
    # With none counted yet: absent since the person stepped on the ladder (else not absent).
    since_first: Flag = False


class All(Section):
    all: tuple[Condition, ...] = Field(min_length=1)


class AnyOf(Section):
    any: tuple[Condition, ...] = Field(min_length=1)


SHAPES = ("count", "sum", "latest", "absent", "all", "any")


def _shape(v: Any) -> str | None:
    if isinstance(v, dict):
        keys = [k for k in SHAPES if k in v]
        return keys[0] if len(keys) == 1 else None
    shapes: dict[type, str] = {Count: "count", Sum: "sum", Latest: "latest", Absent: "absent", All: "all", AnyOf: "any"}
    return shapes.get(type(v))


Condition = Annotated[
    Annotated[Count, Tag("count")]
    | Annotated[Sum, Tag("sum")]
    | Annotated[Latest, Tag("latest")]
    | Annotated[Absent, Tag("absent")]
    | Annotated[All, Tag("all")]
    | Annotated[AnyOf, Tag("any")],
    Discriminator(
        _shape,
        custom_error_type="condition",
        custom_error_message="a condition has exactly one of the keys count, sum, latest, absent, all, any",
    ),
]
All.model_rebuild()
AnyOf.model_rebuild()


class AppliesTo(Section):
    """Who stands on a ladder: a person joins it at their first touchpoint that has one of these
    kinds, or comes from this source, or carries this trait with this value (any that is given);
    nothing given: everyone, from their first touchpoint."""

    kinds: tuple[Kind, ...] = ()
    source: str | None = Field(None, min_length=1, max_length=100)
    trait: str | None = Field(None, min_length=1, max_length=100)
    equals: str | int | bool | None = None

    @model_validator(mode="after")
    def _trait(self) -> AppliesTo:
        if not self.kinds and self.source is None and self.trait is None:
            raise ValueError(
                "applies_to names kinds, a source or a trait (leave applies_to out for a ladder everyone is on)"
            )
        if (self.trait is None) != (self.equals is None):
            raise ValueError('applies_to: a trait and the value it equals go together (trait = "customer_type", '
                             'equals = "employee")')  # fmt: skip
        return self

    def key(self) -> tuple[frozenset[str], str | None, str | None, Any]:
        return frozenset(self.kinds), self.source, self.trait, self.equals

    def join_id(self, ladder: str) -> str:
        """What a person's facts call their joining a ladder: its name and what joins them, so that
        two ladders of one name joined differently (a what-if) are told apart."""
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:8]
        return f"{ladder}#{digest}"


class Stage(Section):
    name: Name
    when: Condition | None = None  # None: the first stage only


class HealthRule(Section):
    name: Name
    when: Condition


class LadderDef(Section):
    """One ladder as config.toml declares it ([[ladders]])."""

    name: Name
    description: str = ""
    applies_to: AppliesTo | None = None
    # Named counted touchpoints that conditions refer to by name ("purchases" is built in).
    counts: dict[Name, Counted] = {}
    stages: tuple[Stage, ...] = Field(min_length=2)
    health: tuple[HealthRule, ...] = ()

    @field_validator("stages")
    @classmethod
    def _first_open(cls, stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
        if stages[0].when is not None:
            raise ValueError(f"the first stage ({stages[0].name}) is where everyone on the ladder starts: no `when`")
        for s in stages[1:]:
            if s.when is None:
                raise ValueError(f"stage {s.name} needs `when`, its entry condition (only the first stage has none)")
        names = [s.name for s in stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage {', '.join(dupes)} is listed twice")
        return stages

    @field_validator("health")
    @classmethod
    def _health_once(cls, rules: tuple[HealthRule, ...]) -> tuple[HealthRule, ...]:
        names = [h.name for h in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"health rule {', '.join(dupes)} is listed twice")
        return rules

    def conditions(self) -> list[Any]:
        """Every condition of the ladder, nested ones too, stages first."""
        return [c for s in self.stages[1:] for c in nested(s.when)] + [c for h in self.health for c in nested(h.when)]

    def reads(self) -> dict[str, frozenset[str]]:
        """The kinds this ladder reads, each with the properties it reads of them."""
        out: dict[str, set[str]] = {}

        def spec(c: Counted, prop: str | None = None) -> None:
            for k in c.kinds:
                out.setdefault(k, set()).update(
                    p for p in (c.once_per, c.where.property if c.where else None, prop) if p
                )
                if c.reduced_by:
                    out[k].add("amount")
            for k in c.voided_by + c.reduced_by:
                out.setdefault(k, set()).update([c.once_per] if c.once_per else [])
                if k in c.reduced_by:
                    out[k].add("amount")

        for c in self.conditions():
            if isinstance(c, Count):
                spec(self.counted(c.count))
            elif isinstance(c, Sum):
                spec(self.counted(c.of), c.sum)
            elif isinstance(c, Absent):
                spec(self.counted(c.absent))
            elif isinstance(c, Latest):
                for k in c.of:
                    out.setdefault(k, set()).add(c.latest)
        return {k: frozenset(v) for k, v in out.items()}

    def counted(self, ref: str | Counted) -> Counted:
        if isinstance(ref, Counted):
            return ref
        found = self.counts.get(ref) or BUILTIN_COUNTS.get(ref)
        if found is None:
            raise KeyError(ref)
        return found


def nested(c: Any) -> Iterator[Any]:
    """A condition and those inside it (all, any), depth first."""
    yield c
    for p in getattr(c, "all", None) or getattr(c, "any", None) or ():
        yield from nested(p)


def _num(x: float) -> str:
    return f"{x:g}"
