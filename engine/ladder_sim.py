"""Synthetic histories for any declared ladder (`journey simulate --config`, `journey demo --config`).

Read from the ladder's definition, not written per example: each person joins the ladder as its
`applies_to` says, lives some months of noise (touchpoints of the kinds the ladder reads, with
plausible values), and is then given what it takes to stand on a stage picked evenly among the
ladder's stages (the touchpoints each condition of that stage asks for, inside its windows, as
the last things that happen), so that every stage is populated; some persons stop early, so that
absences (at risk, dormant) happen, and some get what a counted health rule asks for (departed).
Reproducible from the seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from .ladders.model import Absent, All, AnyOf, Count, Counted, LadderDef, Latest, Sum
from .rules import CustomKind

CHANNELS = ("web", "email", "phone", "in_store", "partner")
# The ranges of the built-in kinds' scores (engine.catalog); any other number: 0-10.
BOUNDS = {"rating": (1, 5), "nps": (0, 10), "csat": (1, 5)}


class _Person:
    def __init__(self, d: LadderDef, kinds: dict[str, CustomKind], pid: str, rng: random.Random, source: str):
        self.d, self.kinds, self.pid, self.rng, self.source = d, kinds, pid, rng, source
        self.out: list[dict[str, Any]] = []
        self.n = 0

    def emit(self, kind: str, at: datetime, props: dict[str, Any], traits: dict[str, Any] | None = None) -> None:
        self.n += 1
        full = self.props(kind, at, props)
        self.out.append(
            {
                "event_id": f"{self.pid}-{self.n:04d}",
                "customer_id": self.pid,
                "kind": kind,
                "occurred_at": at.isoformat(),
                "channel": self.rng.choice(CHANNELS),
                "source": self.source,
                "properties": full,
                **({"traits": traits} if traits else {}),
            }
        )

    def props(self, kind: str, at: datetime, given: dict[str, Any]) -> dict[str, Any]:
        """The given properties, and a plausible value for each other field the kind requires."""
        out = dict(given)
        if kind == "order.placed":
            out.setdefault("order_id", f"{self.pid}-o{self.n}")
            out.setdefault("amount", round(self.rng.uniform(40, 400), 2))
            out.setdefault("currency", "EUR")
        elif kind in ("order.cancelled", "order.refunded"):
            out.setdefault("order_id", f"{self.pid}-o{self.n}")
            if kind == "order.refunded":
                out.setdefault("amount", 10.0)
        custom = self.kinds.get(kind)
        for name, f in custom.fields.items() if custom else ():
            if name not in out and f.required:
                out[name] = self.value(kind, name, None, None, at)
        return out

    def typed(self, kind: str, prop: str, x: float) -> Any:
        """A number as the field takes it (a whole one for an integer field, rounded up)."""
        custom = self.kinds.get(kind)
        field = custom.fields.get(prop) if custom else None
        return math.ceil(x) if field is not None and field.type == "integer" else round(x, 2)

    def value(self, kind: str, prop: str, lo: float | None, hi: float | None, at: datetime | None = None) -> Any:
        """A value of a property within [lo, hi] (either may be open), of the field's type."""
        custom = self.kinds.get(kind)
        field = custom.fields.get(prop) if custom else None
        typ = field.type if field else ("number" if prop == "amount" else "integer")
        rng = self.rng
        if typ == "string":
            return f"{prop}-{rng.randint(1, 6)}"
        if typ == "boolean":
            return rng.random() < 0.5
        if typ == "datetime":
            return (at or datetime(2026, 1, 1)).isoformat()
        floor_, ceiling = BOUNDS.get(prop, (0, 10))
        low = lo if lo is not None else max(floor_, (hi if hi is not None else ceiling) - 5)
        high = hi if hi is not None else max(low, ceiling)
        if typ == "integer":
            return rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))
        return round(rng.uniform(low, high), 2)

    def item(self, spec: Counted, at: datetime, extra: dict[str, Any] | None = None) -> None:
        kind = self.rng.choice(spec.kinds)
        props = {p: self.typed(kind, p, v) for p, v in (extra or {}).items()}
        w = spec.where
        if w is not None and not (w.property in props and w.test(props[w.property])):
            props[w.property] = (
                w.equals if w.equals is not None else self.value(kind, w.property, w.at_least, w.at_most)
            )
        if spec.once_per and spec.once_per not in props:
            props[spec.once_per] = f"{spec.once_per}-{self.pid}-{self.n}"
        self.emit(kind, at, props)

    def satisfy(self, c: Any, end: datetime, start: datetime) -> None:
        """Touchpoints that make `c` hold at `end` (after `start`)."""
        d, rng = self.d, self.rng

        def when(days: int | None) -> datetime:
            earliest = max(start, end - timedelta(days=days)) if days else start
            return earliest + (end - earliest) * rng.uniform(0.3, 0.95)

        if isinstance(c, All):
            for p in c.all:
                self.satisfy(p, end, start)
        elif isinstance(c, AnyOf):
            self.satisfy(rng.choice(c.any), end, start)
        elif isinstance(c, Count):
            spec = d.counted(c.count)
            for _ in range(c.at_least):
                self.item(spec, when(c.within_days))
        elif isinstance(c, Sum):
            spec = d.counted(c.of)
            k = 3
            for _ in range(k):
                self.item(spec, when(c.within_days), {c.sum: c.at_least / k * 1.1 + 1})
        elif isinstance(c, Latest):
            kind = c.of[0]
            at = end - timedelta(hours=rng.uniform(1, 20))  # the last of its kind
            self.emit(kind, at, {c.latest: self.value(kind, c.latest, c.at_least, c.at_most)})
        # Absent: holds by what does not happen (the person's history ends early)

    def noise(self, start: datetime, end: datetime, up_to: int) -> None:
        """Touchpoints of the kinds the stages up to `up_to` read (those above would lift everyone),
        about one a month, with values of any kind."""
        reads = self.d.model_copy(update={"stages": self.d.stages[: up_to + 1], "health": ()}).reads()
        kinds = sorted(k for k in reads if k not in ("order.cancelled", "order.refunded"))
        if not kinds:
            return
        t = start
        while True:
            t += timedelta(days=self.rng.expovariate(1 / 30))
            if t >= end - timedelta(days=2):
                return
            kind = self.rng.choice(kinds)
            props = {p: self.value(kind, p, None, None) for p in reads[kind] if p not in ("order_id", "amount")}
            self.emit(kind, t, props)


def _absent_days(c: Any) -> int:
    if isinstance(c, Absent):
        return c.more_than_days
    parts = getattr(c, "all", None) or getattr(c, "any", None) or ()
    return max((_absent_days(p) for p in parts), default=0)


def simulate_ladder(
    d: LadderDef, kinds: tuple[CustomKind, ...], persons: int, seed: int, until: datetime, history_days: int = 730
) -> Iterator[dict[str, Any]]:
    """Records of `persons` persons on ladder `d`, in time order."""
    rng = random.Random(f"{seed}:{d.name}")
    custom = {k.name: k for k in kinds}
    a = d.applies_to
    out: list[dict[str, Any]] = []
    for i in range(persons):
        pid = f"{d.name[:12]}-{i + 1:05d}"
        p = _Person(d, custom, pid, rng, a.source if a is not None and a.source else "simulator")
        join = until - timedelta(days=rng.uniform(200, history_days))
        end = until - timedelta(days=rng.uniform(0, 10))
        health = rng.choice([None, *d.health])
        gone = _absent_days(health.when) if health is not None else 0
        if gone:
            end = max(join + timedelta(days=60), until - timedelta(days=gone + rng.uniform(20, 60)))
        if a is not None and a.kinds:
            p.emit(a.kinds[0], join, {})
        elif a is not None and a.trait is not None:
            p.emit("customer.registered", join, {}, {a.trait: a.equals})
        else:
            p.emit("customer.registered", join, {})
        k = rng.randrange(len(d.stages))
        stage = d.stages[k]
        p.noise(join, end - timedelta(days=30), k)
        if stage.when is not None:
            p.satisfy(stage.when, end, join + timedelta(hours=1))
        if health is not None and not gone:
            p.satisfy(health.when, end, join + timedelta(hours=1))
        out += p.out
    out.sort(key=lambda r: (r["occurred_at"], r["event_id"]))
    yield from out
