"""Batch ingestion: dedup, append, derive lifecycle changes and timers, all in one transaction.

A batch is written in one transaction: the new events of every touched customer, with the
touchpoint ids and the customers' next due times. If another writer committed any of
the same touchpoints or customers first, the unique keys make the save fail as a whole;
the batch is then re-read and re-decided, so every touchpoint is counted exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from types import EllipsisType
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError

from .aggregates.customer import Customer
from .clock import iso
from .identity import Guards, is_visitor, trait_identifier
from .ids import change_id, customer_uuid
from .keys import ERASED_KEY, KeyStore
from .persistence.journal import LinkRow
from .policies.decide import PolicyEngine
from .privacy import PersonalFields, seal
from .projections.facts import currency_clash
from .projections.lifecycle import Ladder, Transition, advance, customer_ladder
from .regroup import Regrouper
from .retry import at_once, retry
from .rules import LifecycleRules
from .store import JourneyStore, to_us
from .touchpoints import Rejection, Touchpoint
from .vocabulary import VALUE_SEGMENT

MAX_ATTEMPTS = 8
# What a person's value reads: a derivation with one of these among its touchpoints scores it.
PURCHASE_KINDS = frozenset({"order.placed", "order.cancelled", "order.refunded"})
ALIAS_KIND = "customer.aliased"
# The name the identifying traits' hash secret is kept under among the personal-data keys (not a
# customer uuid, so no customer's key and no forget ever meets it).
IDENTITY_SECRET = "identity-trait-hash-secret"  # Segment's alias: its previous_id and customer_id are one person
DUE_BATCH = 500  # due customers derived with one batch of touchpoints; more wait for run_due


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    duplicate_records: list[int] = field(default_factory=list)  # their record numbers
    rejected: list[Rejection] = field(default_factory=list)
    changes: int = 0  # appended to the change feed for the batch's customers
    actions: int = 0  # ...and to the action feed
    timer_changes: int = 0  # appended for customers whose timers were due (no touchpoint in the batch)
    timer_actions: int = 0

    def add(self, other: BatchResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.duplicate_records += other.duplicate_records
        self.rejected += other.rejected
        self.changes += other.changes
        self.actions += other.actions
        self.timer_changes += other.timer_changes
        self.timer_actions += other.timer_actions

    def plus(self, other: BatchResult) -> BatchResult:
        self.add(other)
        return self


class Ingestor:
    def __init__(
        self,
        store: JourneyStore,
        keys: KeyStore,
        personal: PersonalFields,
        rules: LifecycleRules,
        policies: PolicyEngine,
        regrouper: Regrouper,
        shard: tuple[int, int] | None = None,
        identifying: tuple[str, ...] = (),
        guards: Guards = Guards(),
        ladders: tuple[Ladder, ...] = (),
    ):
        self.store = store
        self.regrouper = regrouper  # identity: whose histories count for whom
        self.keys = keys
        self.personal = personal
        self.rules = rules
        self.ladder = customer_ladder(rules)
        self.ladders = ladders  # the [[ladders]] besides the customer ladder
        self.policies = policies
        self.shard = shard  # (k, n): this writer owns shard k of n of the customers (due timers)
        # traits whose equal values link identifiers (identity), by their names in any case
        self.identifying = {name.lower(): name for name in identifying}
        self.guards = guards  # placeholder values ("none", "test") link nobody
        self._secret: bytes | None = None  # their keyed hash's secret, read when first needed

    def trait_links(self, customer_id: str, tp: Touchpoint) -> list[Evidence]:
        """Links by the configured identifying traits (an e-mail address...): to the keyed hash of the
        value, never the value; the secret is kept with the personal-data keys (engine.keys), made
        once per store."""
        if not self.identifying or not tp.traits:
            return []
        out = []
        for key, value in tp.traits.items():
            name = self.identifying.get(key.lower())
            if name is not None and isinstance(value, str) and value.strip() and self.guards.refusal(value) is None:
                if self._secret is None:
                    self._secret = self.keys.create_many([IDENTITY_SECRET])[IDENTITY_SECRET]
                trait = trait_identifier(name, value, self._secret)
                out.append(("customer", customer_id, "trait", trait.value, tp.occurred, tp.event_id, f"trait:{name}"))
        return out

    def ingest(
        self, items: list[tuple[int, Touchpoint]], now: datetime, due_timers: bool = False, by_id: bool = False
    ) -> BatchResult:
        """Ingest validated touchpoints in one transaction; with `due_timers`, the customers whose
        timers are due by `now` are derived and written in the same transaction. With `by_id`, a
        touchpoint whose event id this customer already has is a duplicate whatever its content
        (Segment's rule for a messageId: a resent message's time is worked out again from when it
        arrived, so only its id says it is the same message)."""
        return retrying(self.store, lambda: self._write(items, now, due_timers, by_id))

    def _write(self, items: list[tuple[int, Touchpoint]], now: datetime, due_timers: bool, by_id: bool) -> BatchResult:
        result = BatchResult()
        known = self.store.journal.known_touchpoints(list({tp.event_id: None for _, tp in items})) if items else {}
        fresh: dict[str, tuple[int, Touchpoint]] = {}
        by_customer: dict[str, list[Touchpoint]] = {}
        for record, tp in items:
            # Compared with the accepted original: the stored one, else the first of this batch.
            if tp.event_id in known:
                customer, digest = known[tp.event_id]
                if customer != str(customer_uuid(tp.customer_id)):
                    result.rejected.append(_conflict(record, tp, "a touchpoint of another customer, accepted earlier"))
                elif digest != tp.digest and not by_id:
                    result.rejected.append(
                        _conflict(record, tp, "a touchpoint of this customer accepted earlier, with other content")
                    )
                else:
                    result.duplicates += 1
                    result.duplicate_records.append(record)
                continue
            seen = fresh.get(tp.event_id)
            if seen is not None:
                if seen[1].digest == tp.digest or (by_id and seen[1].customer_id == tp.customer_id):
                    result.duplicates += 1
                    result.duplicate_records.append(record)
                else:
                    result.rejected.append(
                        _conflict(record, tp, f"record {seen[0]}, accepted in this batch, with other content")
                    )
                continue
            fresh[tp.event_id] = (record, tp)
            by_customer.setdefault(tp.customer_id, []).append(tp)
        if not by_customer:
            return result

        refused: list[Rejection] = []

        def bodies(
            customers: dict[str, Customer], recorded_at: str, batch: str, known: dict[str, bytes]
        ) -> dict[str, list[dict[str, Any]]]:
            refused.clear()  # decided again on every attempt, against the customers as read
            parts = {
                cid: [
                    (tp, sealing_identifiers(tp, self.personal.split(tp.kind, tp.properties, tp.traits)))
                    for tp in self._sound(customers[cid], tps, fresh, refused)
                ]
                for cid, tps in by_customer.items()
            }
            keys = self._keys(
                [
                    customers[cid].key
                    for cid, made in parts.items()
                    if not customers[cid].erased and any(pii for _, (_, _, pii) in made)
                ],
                known,
            )
            out = {}
            for cid, made in parts.items():
                uuid = customers[cid].key
                key = keys.get(uuid)
                out[cid] = [
                    self._body(uuid, tp, props, traits, pii, key, recorded_at, batch)
                    for tp, (props, traits, pii) in made
                ]
            return out

        evidence = {
            tp.event_id: found
            for cid, tps in by_customer.items()
            for tp in tps
            if not is_visitor(cid) and (found := links_of(cid, tp) + self.trait_links(cid, tp))
        }
        visitors = sorted(
            {tp.anonymous_id for _, tp in fresh.values() if tp.anonymous_id and is_visitor(tp.customer_id)}
        )
        written = self.append(list(by_customer), now, bodies, due_timers, evidence, visitors)
        written.duplicates, written.duplicate_records = result.duplicates, result.duplicate_records
        written.rejected = sorted(result.rejected + refused, key=lambda r: r.record)
        return written

    @staticmethod
    def _sound(
        customer: Customer, tps: list[Touchpoint], fresh: dict[str, tuple[int, Touchpoint]], refused: list[Rejection]
    ) -> list[Touchpoint]:
        """A customer's touchpoints of a batch in time order, without those that contradict what
        was recorded before them (an order and its refund in two currencies), each of which is
        refused. Judged in arrival order, as across batches: which of the two is refused does not
        depend on where the batches happen to end."""
        pending: dict[str, tuple[str | None, set[str]]] = {}
        out = []
        for tp in tps:  # in arrival order
            clash = currency_clash(customer.facts, tp.kind, tp.properties, pending)
            if clash is None:
                out.append(tp)
            else:
                refused.append(Rejection(fresh[tp.event_id][0], "properties.currency", clash, tp.event_id))
        return sorted(out, key=lambda t: (t.occurred_at, t.event_id))

    def append(
        self,
        customer_ids: list[str],
        now: datetime,
        bodies: Callable[[dict[str, Customer], str, str, dict[str, bytes]], dict[str, list[dict[str, Any]]]],
        due_timers: bool = False,
        evidence: dict[str, list[Evidence]] | None = None,
        visitors: Sequence[str] = (),
    ) -> BatchResult:
        """Record touchpoint bodies on their customers, derive, and save it all in one transaction.

        `bodies(customers, recorded_at, batch, keys)` makes the bodies once the customers are
        loaded: from validated touchpoints when ingesting (sealed with `keys`, the customers' keys
        as read for this batch), as they were stored when replaying. `evidence`: the identity links
        each touchpoint shows (by event id), recorded with those recorded; `visitors`: the
        anonymous ids of the anonymous touchpoints (their bodies hold them sealed).
        """
        result = BatchResult()
        uuids = {cid: customer_uuid(cid) for cid in customer_ids}
        found = self.store.customers(uuids.values())
        customers = {cid: found.get(uuid) or Customer(cid) for cid, uuid in uuids.items()}
        due: list[Customer] = []
        if due_timers:
            batch = set(uuids.values())
            due = [
                c
                for c in self.store.customers(
                    u
                    for u in map(UUID, self.store.journal.due_customers(to_us(now), DUE_BATCH, self.shard))
                    if u not in batch
                ).values()
            ]
        loaded: list[Customer] = []  # the customers the identity step reads besides
        with self.store.writing(chain(customers.values(), due, loaded)):  # evicted as they are by then
            recorded_at = iso(now)
            keys = self.settle_erasures([*customers.values(), *due], recorded_at)
            ids = []
            links: list[LinkRow] = []  # identity: what the touchpoints say of the customer's other ids
            timers: list[tuple[str, int | None]] = []  # (customer, next due time): JourneyStore.append
            made = bodies(customers, recorded_at, batch_id(self.shard), keys)
            # The feed is exact up to here, before this batch (recording moves it).
            since = {cid: customers[cid].evaluated_until for cid in made}
            for cid, bodies_ in made.items():
                customer = customers[cid]
                uuid = customer.key
                for body in bodies_:
                    customer.record_touchpoint(body)
                    ids.append((body["event_id"], uuid, body["digest"]))
                    links += [(*x[:5], recorded_at, *x[5:]) for x in (evidence or {}).get(body["event_id"], ())]
                result.accepted += len(bodies_)
            persons = self.regrouper.regroup(customers, made, links, recorded_at, loaded, visitors)
            for cid, bodies_ in made.items():
                customer = customers[cid]
                if customer.anonymous:
                    continue  # counts for the customer it is linked to (persons), if any
                person = persons.pop(cid, None)
                more, late = (person.bodies, person.cause) if person else ([], None)
                changes, actions = self.derive(customer, now, recorded_at, timers, [*bodies_, *more], since[cid], late)
                result.changes += changes
                result.actions += actions
            for person in persons.values():  # customers whose members' touchpoints came in
                changes, actions = self.derive(
                    person.customer, now, recorded_at, timers, person.bodies, person.since, person.cause
                )
                result.changes += changes
                result.actions += actions
            for customer in due:
                if customer.customer_id in persons:
                    continue  # derived above, with its members
                changes, actions = self.derive(customer, now, recorded_at, timers)
                result.timer_changes += changes
                result.timer_actions += actions
            # In this order in the log, which a rebuild reads back as one write (replay.rebuild.steps).
            self.store.append([*customers.values(), *loaded, *due], touchpoint_ids=ids, timers=timers, links=links)
        return result

    def regroup(self, values: list[str], now: datetime) -> tuple[int, int]:
        """Bring the persons around these identifiers to what the links and unlinks recorded by now
        say (after an unlink), in one write; returns the changes and decisions recorded."""
        loaded: list[Customer] = []
        with self.store.writing(loaded):
            recorded_at = iso(now)
            persons = self.regrouper.regroup({}, {}, [], recorded_at, loaded, values)
            timers: list[tuple[str, int | None]] = []
            changes = actions = 0
            for p in persons.values():
                c, a = self.derive(p.customer, now, recorded_at, timers, p.bodies, p.since, p.cause)
                changes, actions = changes + c, actions + a
            self.store.append(loaded, timers=timers)
        return changes, actions

    def settle_erasures(self, customers: list[Customer], at: str) -> dict[str, bytes]:
        """Finish a forget that destroyed a customer's key but did not get to record the Erased
        event (it failed, or was killed, in between): the key's tombstone says so, and from now
        on the customer is erased for the contact rules too. Returns the keys read, one query for
        the whole batch."""
        live = [c for c in customers if not c.erased]
        keys = self.keys.get_many([c.key for c in live]) if live else {}
        for customer in live:
            if keys.get(customer.key) == ERASED_KEY:
                customer.erase(at)
        return keys

    def _keys(self, needed: list[str], known: dict[str, bytes]) -> dict[str, bytes]:
        """Keys of these customers (whose touchpoints carry PII): those read for the batch, and
        new ones for the rest."""
        keys = {c: known[c] for c in needed if c in known}
        missing = [c for c in needed if c not in known]
        if missing:
            keys.update(self.keys.create_many(missing))
        return keys

    def _body(
        self,
        customer: str,
        tp: Touchpoint,
        props: dict[str, Any],
        traits: dict[str, Any] | None,
        pii: dict[str, Any],
        key: bytes | None,
        recorded_at: str,
        batch: str,
    ) -> dict[str, Any]:
        sealed = None
        if pii and key:
            sealed = seal(key, pii, f"{customer}/{tp.event_id}")
        # Without a key (a forgotten customer: none, or its tombstone) the personal fields are
        # dropped, never stored in clear.
        body = {
            "event_id": tp.event_id,
            "kind": tp.kind,
            "occurred_at": tp.occurred,
            "recorded_at": recorded_at,
            "channel": tp.channel,
            "source": tp.source,
            "properties": props,
            "traits": traits,
            "sealed": sealed,
            "digest": tp.digest,
            # The write that recorded it: a replay redoes the same writes in the same order.
            "batch": batch,
        }
        return body

    def derive(
        self,
        customer: Customer,
        now: datetime,
        recorded_at: str,
        timers: list[tuple[str, int | None]],
        touchpoints: Sequence[dict[str, Any]] = (),
        since: str | None | EllipsisType = ...,
        late: str | None = None,
    ) -> tuple[int, int]:
        """Record the lifecycle changes and retention decisions known now, and set the
        customer's next due time; returns how many of each were recorded. `since` is when
        the customer was last evaluated, if something was just recorded (it moves it); `late`
        names the cause of corrections when it is not a late touchpoint (a link, an unlink)."""
        facts = customer.facts
        last = customer.evaluated_until if since is ... else since

        def cause(ladder: Ladder) -> str | None:
            """What corrects the past, if anything does: `late` (a link), a late touchpoint, or else
            the ladder's new version (its last change on record was derived with another)."""
            was = (customer.ladder_versions or {}).get(ladder.name)
            if (
                late is None
                and was is not None
                and was != ladder.version
                and not (last is not None and any(tp["occurred_at"] <= last for tp in touchpoints))
            ):
                return f"the {ladder.name} ladder changed (version {was} → {ladder.version})"
            return late

        until = datetime.fromisoformat(last) if last else None
        transitions, status, customer.memo = advance(
            facts, (customer.stage, customer.health), until, now, self.ladder, customer.memo, cause(self.ladder)
        )
        changes = []
        for tr in transitions:
            changes.append(self.change(customer, tr, recorded_at, self.ladder))
            customer.record_change(changes[-1])
        due = customer.memo.due
        for ladder in self.ladders:  # the person's stage on each other ladder they stand on
            if (
                ladder.join_id is not None
                and ladder.join_id not in facts.joined
                and customer.on(ladder.name) == (None, None)
            ):
                continue  # not on it and never was (one who lost their join is walked back to none)
            memos = customer.memos
            more, _, memos[ladder.name] = advance(
                facts, customer.on(ladder.name), until, now, ladder, memos.get(ladder.name), cause(ladder)
            )
            for tr in more:
                changes.append(self.change(customer, tr, recorded_at, ladder))
                customer.record_change(changes[-1])
            d = memos[ladder.name].due
            if d is not None and (due is None or d < due):
                due = d
        if (moved := self.value_change(customer, now, recorded_at, touchpoints, changes, late)) is not None:
            changes.append(moved)
            customer.record_change(moved)
        actions, policy_due = self.policies.decide(customer, status, changes, list(touchpoints), now, recorded_at)
        due = min((d for d in (due, policy_due) if d), default=None)
        due_us = to_us(due) if due else None
        if due_us != customer.due_written:  # most batches leave it where it was: no row to rewrite
            timers.append((customer.key, due_us))
            customer.due_written = due_us
        return len(changes), len(actions)

    def value_change(
        self,
        customer: Customer,
        now: datetime,
        recorded_at: str,
        touchpoints: Sequence[dict[str, Any]],
        changes: list[dict[str, Any]],
        late: str | None = None,
    ) -> dict[str, Any] | None:
        """The person's value segment change now, if it moved (docs/value.md): with the value model
        in force, scored at the derivations that are recorded steps of the history — a purchase,
        cancellation or refund among the touchpoints, a lifecycle change recorded now, a merge or
        unlink (`late`) — so a replay scores at the same moments (a due timer that records nothing
        is no step a replay can redo). CLV falls with time: a silent customer moves at their next
        lifecycle change (at risk, lapsed)."""
        purchase = any(tp["kind"] in PURCHASE_KINDS for tp in touchpoints)
        if not (purchase or changes or late):
            return None
        model = self.policies.model_at(recorded_at)
        if model is None or customer.erased:
            return None
        from .value.person import segment_reason, valued  # numpy and scipy: loaded once a model exists

        v = valued(customer.facts, now, model, self.policies.value_rules, with_rfm=False)
        to = v.value_segment if v else None
        if to == customer.value_segment:
            return None
        effective = iso(now)
        return {
            "change_id": change_id(customer.id, customer.changes + 1, VALUE_SEGMENT, to, effective),
            "customer_id": customer.customer_id,
            "dimension": VALUE_SEGMENT,
            "from": customer.value_segment,
            "to": to,
            "effective_at": effective,
            "recorded_at": recorded_at,
            "rules_version": self.rules.rules_version,
            "model_id": model.model_id,
            "causes": [model.model_id],
            "reason": segment_reason(v, model),
        }

    def change(self, customer: Customer, tr: Transition, recorded_at: str, ladder: Ladder) -> dict[str, Any]:
        effective = iso(tr.effective_at)
        return {
            "change_id": change_id(customer.id, customer.changes + 1, tr.dimension, tr.to_value, effective),
            "customer_id": customer.customer_id,
            "ladder": ladder.name,
            "ladder_version": ladder.version,
            "dimension": tr.dimension,
            "from": tr.from_value,
            "to": tr.to_value,
            "effective_at": effective,
            "recorded_at": recorded_at,
            "rules_version": self.rules.rules_version,
            "causes": list(tr.causes),
            "reason": tr.reason,
        }


def retrying(store: JourneyStore, write: Callable[[], Any]) -> Any:
    """Run a read-decide-write round; if a concurrent writer committed to the same customers or
    touchpoints first, the unique keys make the write fail as a whole (and its customers leave
    the cache), and the round runs again on fresh reads, holding off the other writers
    (JourneyStore.exclusive), so every touchpoint, change and decision is counted exactly once."""

    def round_(attempt: int) -> Any:
        if attempt == 0:
            return write()
        with store.exclusive():
            return write()

    return retry(round_, IntegrityError, attempts=MAX_ATTEMPTS, pause=at_once)


def batch_id(shard: tuple[int, int] | None) -> str:
    """A new batch's id; a sharded writer's says its shard ("<hex>@k/n"), so that a rebuild runs
    the timers of that batch's time for the same shard of customers (replay.rebuild)."""
    return uuid4().hex + (f"@{shard[0]}/{shard[1]}" if shard else "")


def shard_of_batch(batch: str | None) -> tuple[int, int] | None:
    if not batch or "@" not in batch:
        return None
    k, n = batch.rsplit("@", 1)[1].split("/")
    return int(k), int(n)


# An identity link a touchpoint shows, before it is recorded: a LinkRow without its recorded_at.
Evidence = tuple[str, str, str, str, str, str, str]


def links_of(customer_id: str, tp: Touchpoint) -> list[Evidence]:
    """The identity links a touchpoint is evidence of (docs/identity.md): its anonymous id, and for
    an alias the id it was known by before (taken as an anonymous id). Recorded for every
    touchpoint; the guards (engine.identity) decide which make one person."""
    out = []
    if tp.anonymous_id:
        out.append(("customer", customer_id, "anonymous", tp.anonymous_id, tp.occurred, tp.event_id, "both ids"))
    previous = tp.properties.get("previous_id") if tp.kind == ALIAS_KIND else None
    if isinstance(previous, str) and previous:
        out.append(("customer", customer_id, "anonymous", previous, tp.occurred, tp.event_id, "alias"))
    return out


def sealing_identifiers(
    tp: Touchpoint, split: tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """The touchpoint's other identifiers (its anonymous id, an alias's previous id) go with its
    personal fields, sealed under the customer's key: `forget` erases them with the rest."""
    props, traits, pii = split
    if not tp.anonymous_id and tp.kind != ALIAS_KIND:  # the common case: nothing more to seal
        return split
    fields = list(pii.get("fields", ()))
    if tp.anonymous_id:
        fields.append([["anonymous_id"], tp.anonymous_id])
    if tp.kind == ALIAS_KIND and "previous_id" in props:
        fields.append([["properties", "previous_id"], props["previous_id"]])
        props = {k: v for k, v in props.items() if k != "previous_id"}
    return props, traits, ({"fields": fields} if fields else {})


def _conflict(record: int, tp: Touchpoint, original: str) -> Rejection:
    return Rejection(
        record,
        "event_id",
        f"{tp.event_id!r} was already used by {original}; an event_id must "
        "identify one touchpoint (a true duplicate, in any key order, is accepted as such)",
        tp.event_id,
    )
