"""The lifecycle-relevant facts of one customer, folded from touchpoints in any order.

The fold is commutative and idempotent (keyed by event id, ties broken by event id), so
any arrival order and any duplicates give the same facts: the basis of exact replays.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

ORDER_KINDS = ("order.placed", "order.cancelled", "order.refunded")
# The other kinds a ladder reads, with the properties it reads of them, kept per person (the
# customer ladder's advocacy signals by default; config adds the kinds its [[ladders]] read, see
# `keep`). The set only grows in a process: keeping a kind no ladder reads changes no answer.
KEPT: dict[str, frozenset[str]] = {
    "referral.converted": frozenset(),
    "review.posted": frozenset({"rating"}),
    "survey.answered": frozenset({"nps"}),
}
LIFECYCLE_KINDS: set[str] = set(ORDER_KINDS) | KEPT.keys()
# Each relevant kind as one shared string: the facts of millions of touchpoints keep a kind each,
# and a kind decoded from a stored body is a new string every time.
_KINDS = {kind: kind for kind in LIFECYCLE_KINDS}


# Ladders that only some persons stand on (engine.ladders.model.AppliesTo), by join id (the name
# and a hash of what joins): what joins a person to each, as (kinds, source, trait, value).
# Registered when a ladder is compiled.
JOINS: dict[str, tuple[frozenset[str], str | None, str | None, Any]] = {}


def joins_of(kind: str, source: str | None, traits: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The join ids of the ladders a touchpoint joins its person to."""
    if not JOINS:
        return ()
    return tuple(
        name
        for name, (kinds, src, trait, value) in JOINS.items()
        if kind in kinds
        or (src is not None and source == src)
        or (trait is not None and traits is not None and trait in traits and traits[trait] == value)
    )


def keep(kinds: dict[str, frozenset[str]]) -> None:
    """Fold these kinds (and these properties of them) into every person's facts from now on."""
    for kind, props in kinds.items():
        KEPT[kind] = KEPT.get(kind, frozenset()) | props
        LIFECYCLE_KINDS.add(kind)
        _KINDS.setdefault(kind, kind)


_CURRENCIES: dict[str, str] = {}  # likewise each currency code (a few hundred at most)
# Most customers never cancel, refund or review: until their first such touchpoint they share
# this read-only empty map (or an empty tuple), ~200 bytes a customer saved at millions of them.
_NONE: Mapping[Any, Any] = MappingProxyType({})
K = TypeVar("K")
V = TypeVar("V")


def _own(m: Mapping[K, V]) -> dict[K, V]:
    """A map of the customer's own to write into: a new one in place of the shared empty one."""
    if m is _NONE:
        return {}
    assert isinstance(m, dict)  # any other map is the customer's own, made here
    return m


# Orders folded from states written before currencies were kept: ISO 4217's "no currency".
NO_CURRENCY = "XXX"


@dataclass(slots=True)
class Order:
    at: datetime
    event_id: str
    amount: float
    currency: str


@dataclass(slots=True)
class Facts:
    first_seen: datetime | None = None
    first_seen_id: str | None = None
    orders: Mapping[str, Order] = field(default_factory=lambda: _NONE)  # earliest placement per order
    cancels: Mapping[str, list[tuple[datetime, str]]] = field(default_factory=lambda: _NONE)
    # (at, event id, amount, currency as given or None: the order's)
    refunds: Mapping[str, list[tuple[datetime, str, float, str | None]]] = field(default_factory=lambda: _NONE)
    # (at, event id, the properties ladders read) of the KEPT kinds, per kind, in time order
    kept: Mapping[str, list[tuple[datetime, str, Mapping[str, Any]]]] = field(default_factory=lambda: _NONE)
    # (at, event_id, kind) of every lifecycle-relevant touchpoint, sorted: the times a stage can move,
    # and (an event id having one time) the record of which touchpoints are folded in.
    moments: list[tuple[datetime, str, str]] = field(default_factory=list)
    # Per ladder that only some persons stand on, by join id: the touchpoint that joined this
    # person to it (occurred_at, event id), the earliest.
    joined: Mapping[str, tuple[datetime, str]] = field(default_factory=lambda: _NONE)
    # Bumped by every change, so what was concluded from these facts knows when it is stale.
    version: int = field(default=0, compare=False)
    # The walks kept beside these facts (ladder.Walk, one per ladder), told of every touchpoint
    # folded; weak references: a walk refers to the facts, and a cycle would outlive its customer
    # (the collector never rescans what gc.freeze() froze).
    listeners: list[Any] | None = field(default=None, compare=False, repr=False)

    def saw(self, event_id: str, at: datetime) -> None:
        """The customer exists from its earliest touchpoint of any kind."""
        if self.first_seen is None or (at, event_id) < (self.first_seen, self.first_seen_id):
            self.first_seen, self.first_seen_id = at, event_id
            self.version += 1

    def join(self, ladders: tuple[str, ...], event_id: str, at: datetime) -> None:
        """This touchpoint joins the person to these ladders (the earliest joining one counts)."""
        for name in ladders:
            old = self.joined.get(name)
            if old is None or (at, event_id) < old:
                self.joined = joined = _own(self.joined)
                joined[name] = (at, event_id)
                self.version += 1

    def add(self, event_id: str, kind: str, at: datetime, props: dict[str, Any], joins: tuple[str, ...] = ()) -> None:
        self.saw(event_id, at)
        if joins:
            self.join(joins, event_id, at)
        shared = _KINDS.get(kind)
        if shared is None:
            return
        kind = shared
        moments = self.moments
        i = bisect_left(moments, (at, event_id))
        if i < len(moments) and moments[i][1] == event_id and moments[i][0] == at:
            return  # folded already
        moments.insert(i, (at, event_id, kind))
        self.version += 1
        if kind == "order.placed":
            self.orders = orders = _own(self.orders)
            oid = props["order_id"]
            old = orders.get(oid)
            if old is not None and (at, event_id) > (old.at, old.event_id):
                return  # a later placement of an order already placed: nothing changes
            currency = props.get("currency") or NO_CURRENCY
            orders[oid] = Order(at, event_id, float(props["amount"]), _CURRENCIES.setdefault(currency, currency))
        elif kind == "order.cancelled":
            self.cancels = cancels = _own(self.cancels)
            oid = props["order_id"]
            insort(cancels.setdefault(oid, []), (at, event_id))
        elif kind == "order.refunded":
            self.refunds = refunds = _own(self.refunds)
            oid = props["order_id"]
            insort(refunds.setdefault(oid, []), (at, event_id, float(props["amount"]), props.get("currency")))
        else:
            self.kept = kept = _own(self.kept)
            wanted = KEPT[kind]
            props = {k: v for k, v in props.items() if k in wanted} if wanted else {}
            items = kept.get(kind)
            if items is None:
                items = kept[kind] = []
            insort(items, (at, event_id, props), key=lambda x: x[:2])
        if self.listeners is not None:
            for ref in self.listeners:
                walk = ref()
                if walk is not None:
                    walk.touched(kind, at, event_id, props)


def currency_clash(
    facts: Facts, kind: str, props: dict[str, Any], pending: dict[str, tuple[str | None, set[str]]]
) -> str | None:
    """Why an order or a refund cannot be recorded: an order has one currency, and its refunds
    are in it. The first of them to arrive with a currency sets it (the order, or else its first
    refund); one that arrives later in another currency is refused. `pending` holds, per order id,
    the (order currency, refund currencies) accepted in the same batch before this touchpoint;
    this one is added to it when it is accepted. Orders folded from states written before
    currencies were kept (NO_CURRENCY) set nothing."""
    if kind not in ("order.placed", "order.refunded"):
        return None
    oid, currency = props["order_id"], props.get("currency")
    ordered, refunded = pending.get(oid, (None, set()))
    order = facts.orders.get(oid)
    if ordered is None and order is not None and order.currency != NO_CURRENCY:
        ordered = order.currency
    refunded = refunded | {r[3] for r in facts.refunds.get(oid, ()) if r[3]}
    expected = ordered or min(refunded, default=None)
    if currency and expected and currency != expected:
        if kind == "order.refunded":
            set_by = f"which was placed in {ordered}" if ordered else f"whose earlier refunds are in {expected}"
            return (
                f"refund in {currency} of order {oid!r}, {set_by}: a refund is in its order's currency "
                "(or leave currency out)"
            )
        if ordered:
            return f"order {oid!r} placed again in {currency}; it was placed in {ordered}: an order has one currency"
        return (
            f"order {oid!r} placed in {currency}, but refunds of it were recorded in {expected}: "
            "a refund is in its order's currency"
        )
    if kind == "order.refunded":
        pending[oid] = (ordered, refunded | ({currency} if currency else set()))
    else:
        pending[oid] = (ordered or currency, refunded)
    return None


class Folds:
    """Facts of many customers from stored touchpoint bodies, for folds over millions of them:
    only lifecycle-relevant touchpoints are parsed and folded as they come; the others can only
    move a customer's first touchpoint, kept as text (stored ISO times sort as times) and applied
    at the end."""

    def __init__(self) -> None:
        self.facts: dict[Any, Facts] = {}
        self.first: dict[Any, tuple[str, str]] = {}

    def add(self, customer: Any, tp: dict[str, Any]) -> None:
        at, eid, kind = tp["occurred_at"], tp["event_id"], tp["kind"]
        joins = joins_of(kind, tp.get("source"), tp.get("traits"))
        if kind in LIFECYCLE_KINDS or joins:
            f = self.facts.get(customer)
            if f is None:
                f = self.facts[customer] = Facts()
            f.add(eid, kind, datetime.fromisoformat(at), tp["properties"], joins)
        else:
            seen = self.first.get(customer)
            if seen is None or (at, eid) < seen:
                self.first[customer] = (at, eid)

    def done(self) -> dict[Any, Facts]:
        for customer, (at, eid) in self.first.items():
            f = self.facts.get(customer)
            if f is None:
                f = self.facts[customer] = Facts()
            f.saw(eid, datetime.fromisoformat(at))
        self.first = {}
        return self.facts
