"""Persons: the connected components of identifiers under the accepted links.

Links are taken in one fixed order, by when what proves them happened (then when they were
recorded, their evidence, their id), whatever order they arrived in, and a link seen twice counts
once: so the same facts always give the same persons, the same refusals and the same survivors.
Each link is accepted unless a guard refuses it:

- an end is a blocked value (engine.identity.guards);
- the two identifiers were unlinked (an Unlink recorded by then, as known);
- the joined person would hold more known customer ids than `max_customer_ids` (1 by default: two
  signed-in customers on one device stay two persons; the anonymous id stays with the customer it
  was linked to first, by event time), more anonymous ids than `max_anonymous_ids`, or more
  identifiers than `max_identifiers`.

A person's id is deterministic: its known customer id (of several, the one linked first); else, for
an anonymous-only person, `anon@` and a hash of its identifier linked first (anonymous_home). Only
accepted links count for "first".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ..asof import known
from .guards import Guards
from .links import Identifier, Link, Unlink


@dataclass(frozen=True)
class Limits:
    max_customer_ids: int = 1
    max_anonymous_ids: int = 100
    max_identifiers: int = 1000


@dataclass(frozen=True)
class Refusal:
    link: Link
    reason: str


@dataclass
class _Component:
    members: list[Identifier]
    customers: int  # known customer ids
    anonymous: int


@dataclass
class Resolution:
    """The persons the links make: each linked identifier's person id, each person's identifiers,
    and which links were accepted or refused (with the reason)."""

    person_of: dict[Identifier, str] = field(default_factory=dict)
    members: dict[str, list[Identifier]] = field(default_factory=dict)
    accepted: list[Link] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    def person(self, identifier: Identifier) -> str:
        """The person id of any identifier; one that no link names is a person of its own."""
        return self.person_of.get(identifier) or person_id_of(identifier)


ANONYMOUS = "anon@"


def anonymous_home(anonymous_id: str) -> str:
    """The person id of an anonymous visitor known by no customer id, and the name under which its
    touchpoints are kept: `anon@` and a hash of the id (`@` is never in a customer id, so the two
    cannot meet). A hash, as the aggregate ids are: an anonymous id is personal data (a device's),
    kept sealed in the touchpoints and erased by forget, never in clear in the log."""
    return ANONYMOUS + hashlib.sha256(anonymous_id.encode()).hexdigest()[:32]


def is_visitor(name: str) -> bool:
    """Whether an aggregate's name (a customer id, or an anonymous id's home) is a visitor's."""
    return name.startswith(ANONYMOUS)


def person_id_of(identifier: Identifier) -> str:
    return identifier.value if identifier.kind == "customer" else anonymous_home(identifier.value)


def _order(link: Link) -> tuple[str, str, str, str]:
    return (link.at, link.recorded_at, link.evidence, link.id)


def resolve(
    links: Iterable[Link],
    unlinks: Iterable[Unlink] = (),
    limits: Limits = Limits(),
    guards: Guards = Guards(),
    as_known: str | None = None,
) -> Resolution:
    """The persons of these facts; with `as_known` (ISO time), of those recorded by then."""
    kept = [x for x in links if known(x.recorded_at, as_known)]
    revoked = {
        u.pair: u.reason
        for u in sorted(unlinks, key=lambda u: (u.recorded_at, u.reason))
        if known(u.recorded_at, as_known)
    }
    unique: dict[str, Link] = {}
    for x in sorted(kept, key=_order):  # a link recorded twice counts once, at its earliest
        # ...and its ends in a fixed order, however it was written
        unique.setdefault(x.id, replace(x, a=x.pair[0], b=x.pair[1]))

    parent: dict[Identifier, Identifier] = {}
    parts: dict[Identifier, _Component] = {}
    seen: dict[Identifier, str] = {}  # when each identifier was first in an accepted link

    def root(x: Identifier) -> Identifier:
        if x not in parent:
            parent[x] = x
            parts[x] = _Component([x], int(x.kind == "customer"), int(x.kind == "anonymous"))
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    out = Resolution()
    for link in unique.values():
        reason = _blocked(link, guards) or (f"unlinked: {revoked[link.pair]}" if link.pair in revoked else None)
        if reason is None:
            ra, rb = root(link.a), root(link.b)
            if ra != rb:
                reason = _too_big(parts[ra], parts[rb], limits)
                if reason is None:
                    a, b = parts.pop(ra), parts.pop(rb)
                    parent[rb] = ra
                    parts[ra] = _Component(a.members + b.members, a.customers + b.customers, a.anonymous + b.anonymous)
        if reason is None:
            out.accepted.append(link)
            for end in link.pair:
                seen.setdefault(end, link.at)  # links come in time order: the first is the earliest
        else:
            out.refused.append(Refusal(link, reason))
    for c in parts.values():
        # The survivor: the known customer id linked first (of several, when allowed), else the
        # identifier linked first; ties by value.
        customers = [m for m in c.members if m.kind == "customer"]
        first = min(customers or c.members, key=lambda m: (seen.get(m, "~"), m.value))
        person = person_id_of(first)
        out.members[person] = sorted(c.members)
        for m in c.members:
            out.person_of[m] = person
    return out


def _blocked(link: Link, guards: Guards) -> str | None:
    for end in link.pair:
        if end.kind != "trait" and (why := guards.refusal(end.value)):
            return f"{end.kind} id {why}"
    if link.a == link.b:
        return "links an identifier to itself"
    return None


def _too_big(a: _Component, b: _Component, limits: Limits) -> str | None:
    customers = a.customers + b.customers
    if customers > limits.max_customer_ids:
        return (
            f"would join {customers} known customers into one person (identity.max_customer_ids = "
            f"{limits.max_customer_ids}): a shared device or a shared id"
        )
    if a.anonymous + b.anonymous > limits.max_anonymous_ids:
        return f"the person would hold more anonymous ids than {limits.max_anonymous_ids} (identity.max_anonymous_ids)"
    if len(a.members) + len(b.members) > limits.max_identifiers:
        return f"the person would hold more than {limits.max_identifiers} identifiers (identity.max_identifiers)"
    return None
