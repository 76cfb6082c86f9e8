"""The writer's side of identity resolution: which identifiers' histories count for which customer.

Touchpoints stay on the identifier that sent them: a customer id's on its customer, an anonymous
visitor's on its home `anon@<hash of the id>` (engine.identity.anonymous_home). When the links (engine.identity) make an
anonymous id part of a customer's person, the customer records `Joined` with a copy of what the
visitor's touchpoints show, then `Borrowed` for each later batch of them, and `Parted` when the link
goes (an unlink, or an earlier link found later that gives the id to another customer). The
customer's lifecycle, policies and views then work on the person's whole history, and a merge is
late-arriving history: corrected like any other, with the link named as the reason.

After each batch, the persons around its identifiers are resolved again from every link recorded by
then (engine.identity.resolve, order-independent), and each customer's recorded members are brought
to what the links say. So the members depend only on the links, not on the order they came in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .aggregates.customer import Customer
from .identity import Guards, Identifier, Limits, Link, Resolution, Unlink, anonymous_home, resolve
from .ids import customer_uuid
from .persistence.journal import JourneyRecorder, LinkRow
from .rules import IdentityRules
from .store import JourneyStore


def links_around(
    journal: JourneyRecorder, values: Iterable[str], guards: Guards, most: int, extra: Sequence[LinkRow] = ()
) -> tuple[list[Link], list[Unlink]]:
    """The links of the identifiers reachable from `values` (with `extra`, links not yet written),
    read outward until `most` links: never through a blocked value (a placeholder every visitor
    shares would reach everyone). The unlinks of every identifier reached come with them."""
    rows: dict[tuple[str, ...], LinkRow] = {}
    pending = {(r[6], r[7], r[0], r[1], r[2], r[3]): r for r in extra}
    seen = set(values)
    frontier = sorted(seen)
    while frontier and len(rows) < most:
        found = journal.links_of(frontier)
        found += [r for r in pending.values() if r[1] in frontier or r[3] in frontier]
        frontier = []
        for r in found:
            rows[(r[6], r[7], r[0], r[1], r[2], r[3])] = r
            for v in (r[1], r[3]):
                if v not in seen and guards.refusal(v) is None:
                    seen.add(v)
                    frontier.append(v)
    links = [Link(Identifier(r[0], r[1]), Identifier(r[2], r[3]), r[4], r[5], r[6], r[7]) for r in rows.values()]  # type: ignore[arg-type]
    unlinks = [
        Unlink(Identifier(u[0], u[1]), Identifier(u[2], u[3]), u[4], u[5])  # type: ignore[arg-type]
        for u in journal.unlinks_of(sorted(seen))
    ]
    return links, unlinks


def limits_of(rules: IdentityRules) -> Limits:
    return Limits(rules.max_customer_ids, rules.max_anonymous_ids, rules.max_identifiers)


def member_key(anonymous_id: str) -> str:
    """A member's key in its customer's events: its aggregate's id, never the anonymous id itself
    (that is personal data, sealed in the touchpoints and erased by forget)."""
    return str(customer_uuid(anonymous_home(anonymous_id)))


@dataclass
class Regrouped:
    """A customer whose person changed in this write: its state before it (for the feed's
    corrections), its members' touchpoints just recorded (for the policies), and what to name as
    the cause of the corrections."""

    customer: Customer
    since: str | None
    bodies: list[dict[str, Any]] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)

    @property
    def cause(self) -> str | None:
        return "; ".join(self.causes) or None


class Regrouper:
    def __init__(self, store: JourneyStore, rules: IdentityRules, guards: Guards):
        self.store = store
        self.rules = rules
        self.guards = guards
        self.limits = limits_of(rules)

    def resolution(self, values: Iterable[str], at: str | None, extra: Sequence[LinkRow] = ()) -> Resolution:
        """The persons of the links around these identifiers' values, as known at `at` (all: None)."""
        links, unlinks = links_around(self.store.journal, values, self.guards, 4 * self.rules.max_identifiers, extra)
        return resolve(links, unlinks, self.limits, self.guards, as_known=at)

    def regroup(
        self,
        homes: dict[str, Customer],
        made: dict[str, list[dict[str, Any]]],
        links: Sequence[LinkRow],
        at: str,
        loaded: list[Customer],
        values: Iterable[str] = (),
    ) -> dict[str, Regrouped]:
        """Bring the members of the customers around this write's identifiers to what the links
        recorded by `at` say: `homes` are the aggregates its touchpoints (`made`: bodies by home)
        were just recorded on, `links` the links they showed, `values` more identifiers to look
        around (the anonymous ids of the write's anonymous touchpoints, an unlink's ends). Every
        customer loaded here is added to `loaded` (saved with the write, evicted if it fails).
        Returns the customers whose person changed, by customer id."""
        around = {v for r in links for v in (r[1], r[3])} | set(values)
        if not around:
            return {}
        res = self.resolution(around, at, links)
        links_seen = [*res.accepted, *(r.link for r in res.refused)]
        wanted = sorted({end.value for x in links_seen for end in x.pair if end.kind == "customer"})
        customers = self._load(homes, wanted, loaded)
        out: dict[str, Regrouped] = {}

        def touched(c: Customer) -> Regrouped:
            if c.customer_id not in out:
                out[c.customer_id] = Regrouped(c, c.evaluated_until)
            return out[c.customer_id]

        # The members each customer should have, and the candidates among them not yet joined.
        desired = {
            cid: {member_key(m.value): m for m in res.members.get(cid, ()) if m.kind == "anonymous"}
            for cid in customers
        }
        new = sorted({m.value for cid, c in customers.items() for k, m in desired[cid].items() if k not in c.members})
        visitors = self._load(homes, [anonymous_home(v) for v in new], loaded)
        for cid, c in customers.items():
            for key in sorted(set(c.members) - set(desired[cid])):
                reason = self._parting(res, cid, c.members[key])
                touched(c).causes.append(reason)
                c.part(key, reason, at)
            for key, m in sorted(desired[cid].items()):
                visitor = visitors.get(anonymous_home(m.value))
                if key not in c.members:
                    if visitor is None:
                        continue  # no touchpoint of its own yet: nothing to join until it has one
                    link = _joining(res, m)
                    r = touched(c)
                    r.causes.append(f"anonymous history joined by touchpoint {link['evidence']} ({link['rule']})")
                    r.bodies += made.get(visitor.customer_id, [])
                    c.join(key, link, visitor.history(), at)
                elif made.get(anonymous_home(m.value)):
                    visitor = homes[anonymous_home(m.value)]
                    bodies = made[visitor.customer_id]
                    touched(c).bodies += bodies
                    c.borrow(key, visitor.history_of(bodies), at)
        return out

    def _load(self, homes: dict[str, Customer], names: list[str], loaded: list[Customer]) -> dict[str, Customer]:
        """These aggregates that exist: those of this write's homes, the rest from the store."""
        out = {n: homes[n] for n in names if n in homes}
        rest = {customer_uuid(n): n for n in names if n not in homes}
        if rest:
            found = self.store.customers(rest)
            for uuid, c in found.items():
                out[rest[uuid]] = c
                loaded.append(c)
        return out

    @staticmethod
    def _parting(res: Resolution, customer: str, member: dict[str, Any]) -> str:
        """Why a member leaves: the refusal of the link that joined it, as the links now say."""
        evidence = member["link"]["evidence"]
        for r in res.refused:
            if r.link.evidence == evidence and customer in (r.link.a.value, r.link.b.value):
                return f"anonymous history parted, link by touchpoint {evidence} refused: {r.reason}"
        return f"anonymous history parted: the link by touchpoint {evidence} no longer stands"


def _joining(res: Resolution, member: Identifier) -> dict[str, Any]:
    """The earliest accepted link of a member: what made it the person's."""
    link = min((x for x in res.accepted if member in x.pair), key=lambda x: (x.at, x.recorded_at, x.evidence))
    return {"at": link.at, "evidence": link.evidence, "rule": link.rule}
