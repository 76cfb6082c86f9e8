"""The writer's side of identity resolution: which identifiers' histories count for which customer.

Touchpoints stay on the identifier that sent them: a customer id's on its customer, an anonymous
visitor's on its home `anon@<hash of the id>` (engine.identity.anonymous_home). When the links
(engine.identity) make an anonymous id part of a customer's person, the customer records `Joined`
with a copy of what the visitor's touchpoints show, then `Borrowed` for each later batch of them,
and `Parted` when the link goes (an unlink, or an earlier link found later that gives the id to
another customer). The customer's lifecycle, policies and views then work on the person's whole
history, and a merge is late-arriving history: corrected like any other, with the link named as
the reason.

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

FIRSTS = 200_000  # pairs whose earliest link a writer remembers


def links_around(
    journal: JourneyRecorder,
    values: Iterable[str],
    guards: Guards,
    most: int,
    extra: Sequence[LinkRow] = (),
    earliest: bool = False,
    as_known: str | None = None,
) -> tuple[list[Link], list[Unlink]]:
    """The links of the identifiers reachable from `values` (with `extra`, links not yet written),
    read outward until `most` identifiers are reached: never through a blocked value (a
    placeholder every visitor shares would reach everyone). The unlinks of every identifier
    reached come with them.

    With `earliest`, only the first link of each pair (in the resolver's order), which alone
    decides the persons: a later link of two identifiers finds them joined already, or refused
    for good (the guards look at the pair, or at components, which only grow along the order).
    A device seen at every sign-in has a link per visit: this keeps one. With `as_known`, only the
    links recorded by then (before choosing the first)."""
    rows: dict[tuple[str, ...], LinkRow] = {}
    pending = {(r[6], r[7], r[0], r[1], r[2], r[3]): r for r in extra}
    seen = set(values)
    frontier = sorted(seen)
    while frontier and len(seen) < most:
        found = journal.links_of(frontier)
        asked = set(frontier)
        found += [r for r in pending.values() if r[1] in asked or r[3] in asked]
        frontier = []
        for r in found:
            rows[(r[6], r[7], r[0], r[1], r[2], r[3])] = r
            for v in (r[1], r[3]):
                if v not in seen and guards.refusal(v) is None:
                    seen.add(v)
                    frontier.append(v)
    kept = [r for r in rows.values() if as_known is None or r[5] <= as_known]
    if earliest:
        kept = list(_earliest(kept).values())
    links = [Link(Identifier(r[0], r[1]), Identifier(r[2], r[3]), r[4], r[5], r[6], r[7]) for r in kept]  # type: ignore[arg-type]
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
        self._firsts: dict[tuple[str, ...], tuple[str, ...]] = {}  # pair -> its earliest link seen (_news)

    def resolution(self, values: Iterable[str], at: str | None, extra: Sequence[LinkRow] = ()) -> Resolution:
        """The persons of the links around these identifiers' values, as known at `at` (all: None)."""
        links, unlinks = links_around(
            self.store.journal, values, self.guards, 4 * self.rules.max_identifiers, extra, earliest=True, as_known=at
        )
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
        news = self._news(links)
        # The visitors claimed here are read once: the joins below find them with this write's homes.
        homes = {**homes, **self._claim(homes, news, at, loaded)}
        # Never from a blocked value either: its links are refused, and it may name everyone.
        around = {v for v in {v for r in news for v in (r[1], r[3])} | set(values) if self.guards.refusal(v) is None}
        if not around:
            return {}
        res = self.resolution(around, at, links)
        links_seen = [*res.accepted, *(r.link for r in res.refused)]
        wanted = sorted({end.value for x in links_seen for end in x.pair if end.kind == "customer"})
        anonymous = {member_key(end.value): end for x in links_seen for end in x.pair if end.kind == "anonymous"}
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
            if c.erased:
                continue  # forgotten: its links are gone, and its person stays as it was
            for key in sorted(set(c.members) - set(desired[cid])):
                reason = self._parting(res, cid, c.members[key], anonymous.get(key))
                touched(c).causes.append(reason)
                c.part(key, reason, at)
            for key, m in sorted(desired[cid].items()):
                visitor = visitors.get(anonymous_home(m.value))
                if key not in c.members:
                    if visitor is None or not visitor.touchpoints or visitor.erased:
                        continue  # no touchpoint of its own yet, or forgotten: nothing to join
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

    def _news(self, links: Sequence[LinkRow]) -> list[LinkRow]:
        """The links of a write that can change a person: those of a pair not linked before them in
        the resolver's order (engine.identity.persons). A device seen at every sign-in shows its
        link again and again: after the first, the pair is joined (or refused) for good, and the
        graph around it need not be read again."""
        if not links:
            return []
        # A link with a blocked end is refused for good: never new.
        links = [r for r in links if not _blocked(self.guards, r[0], r[1]) and not _blocked(self.guards, r[2], r[3])]
        if not links:
            return []
        # A pair seen before (by this writer) with a link no later than this one: nothing to read. Safe
        # with other writers too: a stored link no later than this one proves this one is not the
        # first, whatever they add. (A forget drops a pair's links: its identifiers are frozen then.)
        unsure = [r for r in links if (seen := self._firsts.get(_pair(r))) is None or _order(r) < seen]
        if unsure:
            # The pairs' links so far, read by their end that has the fewest links (not the customer).
            ends = sorted({r[3] if r[0] == "customer" else r[1] for r in unsure})
            for r in self.store.journal.links_of(ends):
                self._first(r)
        # The write's own, the first of each pair among them too (they are remembered once read back
        # from the store: this write may fail).
        return [
            r for pair, r in _earliest(links).items() if (known := self._firsts.get(pair)) is None or _order(r) < known
        ]

    def _first(self, r: LinkRow) -> None:
        """Remember the earliest link seen of a pair (bounded: forgotten all at once when full)."""
        pair, order = _pair(r), _order(r)
        seen = self._firsts.get(pair)
        if seen is None or order < seen:
            if len(self._firsts) >= FIRSTS:
                self._firsts.clear()
            self._firsts[pair] = order

    def _claim(
        self, homes: dict[str, Customer], news: list[LinkRow], at: str, loaded: list[Customer]
    ) -> dict[str, Customer]:
        """Write an event on the anonymous end of each new link (made if it has no touchpoint yet), in
        this write: a writer that records the visitor's touchpoints meanwhile, reading the links
        before this one, then collides on the visitor's version and decides again, seeing the link;
        else both could miss the other, and the visitor's history would wait for its next write."""
        ends = {
            anonymous_home(v): e
            for r in news
            for k, v, e in ((r[0], r[1], r[6]), (r[2], r[3], r[6]))
            if k == "anonymous"
        }
        names = sorted(n for n in ends if n not in homes)  # a home of this write is written anyway
        found = self._load(homes, names, loaded)
        for name in names:
            visitor = found.get(name)
            if visitor is None:
                visitor = found[name] = Customer(name)
                loaded.append(visitor)
            visitor.claim(ends[name], at)
        return found

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
    def _parting(res: Resolution, customer: str, member: dict[str, Any], anonymous: Identifier | None) -> str:
        """Why a member leaves: the refusal of its link to the customer, as the links now say."""
        evidence = member["link"]["evidence"]
        pair = {Identifier("customer", customer), anonymous}
        for r in res.refused:
            if set(r.link.pair) == pair:
                return f"anonymous history parted, link by touchpoint {r.link.evidence} refused: {r.reason}"
        return f"anonymous history parted: the link by touchpoint {evidence} no longer stands"


def _blocked(guards: Guards, kind: str, value: str) -> bool:
    """A blocked value as an end of a link (engine.identity.persons: trait hashes are never blocked)."""
    return kind != "trait" and guards.refusal(value) is not None


def _order(r: LinkRow) -> tuple[str, ...]:
    """A stored link's place in the resolver's order (engine.identity.persons): its time, when it was
    recorded, its evidence, its rule."""
    return (r[4], r[5], r[6], r[7])


def _earliest(rows: Iterable[LinkRow]) -> dict[tuple[str, ...], LinkRow]:
    """The first link of each pair among these, in the resolver's order."""
    first: dict[tuple[str, ...], LinkRow] = {}
    for r in rows:
        pair = _pair(r)
        if pair not in first or _order(r) < _order(first[pair]):
            first[pair] = r
    return first


def _pair(r: LinkRow) -> tuple[str, ...]:
    return (r[0], r[1], r[2], r[3]) if (r[0], r[1]) <= (r[2], r[3]) else (r[2], r[3], r[0], r[1])


def _joining(res: Resolution, member: Identifier) -> dict[str, Any]:
    """The earliest accepted link of a member: what made it the person's."""
    link = min((x for x in res.accepted if member in x.pair), key=lambda x: (x.at, x.recorded_at, x.evidence))
    return {"at": link.at, "evidence": link.evidence, "rule": link.rule}
