"""The Customer aggregate: one immutable event per accepted touchpoint, per lifecycle change,
and per retention decision.

Pure domain: no I/O and no clock; every time in an event body comes from the caller.
Event bodies hold JSON types only (times as ISO strings) so the orjson transcoder stores
them as they are. PII arrives already sealed (see engine/privacy.py).

The events are explicit classes with an `apply` method (eventsourcing's explicit style):
triggering one costs a third of a decorated method call, and the ingest hot path records
one event per touchpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Self
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.domain import Snapshot as AggregateSnapshot

from ..identity import is_visitor
from ..ids import customer_uuid
from ..ladders.default import CUSTOMER
from ..projections import contact
from ..projections.facts import KEPT, LIFECYCLE_KINDS, Facts, joins_of

# In memory only, never in a snapshot: the lifecycle facts folded from `lifecycle` (with
# parsed times), what the lifecycle rules last concluded from them, the id as text, the
# due time last written to the timers table, and the version of the newest snapshot stored.
# All are rebuilt or re-read when missing.
TRANSIENT = ("_facts", "_memo", "_memos", "_key", "_due", "_snap")
# The properties the lifecycle facts read (engine.projections.facts): all a lifecycle entry keeps,
# so the state (and each snapshot) holds what was folded, not every property a service sent. The
# other kinds' are those the ladders read (facts.KEPT).
ORDER_FOLDED = {
    "order.placed": ("order_id", "amount", "currency"),
    "order.refunded": ("order_id", "amount", "currency"),
    "order.cancelled": ("order_id",),
}


class Customer(Aggregate):
    # The person's value segment, as last recorded (engine.ingest.Ingestor.value_change); a class
    # default, so a snapshot taken before value segments existed loads with none.
    value_segment: str | None = None
    # The [stage, health] recorded on each ladder besides the customer ladder (stage and health
    # above), by ladder name; a class default likewise.
    on_ladders: dict[str, list[str | None]] | None = None
    # The version of each ladder the person's last change on it was derived with.
    ladder_versions: dict[str, str] | None = None

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return customer_uuid(customer_id)

    # Declared rather than named in @event, so that Customer.Registered is known before run time.
    class Registered(Aggregate.Created):
        customer_id: str

    @event(Registered)
    def __init__(self, customer_id: str):
        self.customer_id = customer_id
        self.touchpoints = 0
        # Lifecycle-relevant touchpoints only, compact: [occurred_at, event_id, kind, properties].
        self.lifecycle: list[list[Any]] = []
        self.first_seen: list[str] | None = None  # [occurred_at, event_id]
        self.stage: str | None = None
        self.health: str | None = None
        self.changes = 0
        # When the recorded stage and health were last derived: the feed is exact up to here.
        self.evaluated_until: str | None = None
        self.erased = False
        self.stage_since: list[str] | None = None  # [effective_at, change_id] of the current stage
        # What the contact rules need, folded in any order (engine.projections.contact).
        self.consent: dict[str, list[list[Any]]] = {}
        self.complaints: dict[str, list[str | None]] = {}
        self.invoices: dict[str, list[str | None]] = {}
        self.timezone: list[str] | None = None  # [occurred_at, tz]
        self.last_activity: list[str] | None = None  # [occurred_at, event_id]
        self.actions: dict[str, str] = {}  # action_id -> latest status
        self.contacts: list[list[str]] = []  # [at, channel, purpose] of issued actions
        self.deferred: dict[str, dict[str, Any]] = {}  # action_id -> the deferred decision
        # The person's other identifiers with a history of their own (anonymous ids: docs/identity.md),
        # by their aggregate's key: the link that joined each, and a copy of what its touchpoints
        # show (`history`: lifecycle entries, first and last seen), which this customer's
        # derivation counts as its own.
        self.members: dict[str, dict[str, Any]] = {}

    class TouchpointRecorded(Aggregate.Event):
        touchpoint: dict[str, Any]

        def apply(self, customer: Customer) -> None:
            customer._touched(self.touchpoint)

    class LifecycleChanged(Aggregate.Event):
        change: dict[str, Any]

        def apply(self, customer: Customer) -> None:
            customer._changed(self.change)

    class ActionDecided(Aggregate.Event):
        action: dict[str, Any]

        def apply(self, customer: Customer) -> None:
            customer._decided(self.action)

    class Joined(Aggregate.Event):
        """Another identifier's history became this person's (a link was accepted)."""

        member: str
        link: dict[str, Any]
        history: dict[str, Any]
        recorded_at: str

        def apply(self, customer: Customer) -> None:
            customer._joined(self.member, self.link, self.history, self.recorded_at)

    class Borrowed(Aggregate.Event):
        """A member's new touchpoints, as they count for this person."""

        member: str
        history: dict[str, Any]
        recorded_at: str

        def apply(self, customer: Customer) -> None:
            customer._borrowed(self.member, self.history, self.recorded_at)

    class Parted(Aggregate.Event):
        """A member's history is no longer this person's (an unlink, or a link found earlier)."""

        member: str
        reason: str
        recorded_at: str

        def apply(self, customer: Customer) -> None:
            customer._parted(self.member, self.recorded_at)

    class Claimed(Aggregate.Event):
        """A link naming this (anonymous) identifier was recorded: written with the link, so that a
        writer recording the visitor's touchpoints at the same moment, unaware of the link, collides
        with it and decides again (engine.regroup)."""

        evidence: str
        recorded_at: str

        def apply(self, customer: Customer) -> None:
            pass

    class Erased(Aggregate.Event):
        erased_at: str

        def apply(self, customer: Customer) -> None:
            customer.erased = True

    class Snapshot(AggregateSnapshot):  # Aggregate.Snapshot, by a name a type checker can follow
        @classmethod
        def take(cls, aggregate: Any) -> Self:
            snapshot = super().take(aggregate)
            for key in TRANSIENT:
                snapshot.state.pop(key, None)
            return snapshot

    def record_touchpoint(self, touchpoint: dict[str, Any]) -> None:
        self.trigger_event(self.TouchpointRecorded, touchpoint=touchpoint)

    def record_change(self, change: dict[str, Any]) -> None:
        self.trigger_event(self.LifecycleChanged, change=change)

    def record_action(self, action: dict[str, Any]) -> None:
        self.trigger_event(self.ActionDecided, action=action)

    def join(self, member: str, link: dict[str, Any], history: dict[str, Any], recorded_at: str) -> None:
        self.trigger_event(self.Joined, member=member, link=link, history=history, recorded_at=recorded_at)

    def borrow(self, member: str, history: dict[str, Any], recorded_at: str) -> None:
        self.trigger_event(self.Borrowed, member=member, history=history, recorded_at=recorded_at)

    def part(self, member: str, reason: str, recorded_at: str) -> None:
        self.trigger_event(self.Parted, member=member, reason=reason, recorded_at=recorded_at)

    def claim(self, evidence: str, recorded_at: str) -> None:
        self.trigger_event(self.Claimed, evidence=evidence, recorded_at=recorded_at)

    def erase(self, erased_at: str) -> None:
        self.trigger_event(self.Erased, erased_at=erased_at)

    # -- how each event changes the state ----------------------------------------------------

    def _touched(self, touchpoint: dict[str, Any]) -> None:
        self.touchpoints += 1
        at, eid = touchpoint["occurred_at"], touchpoint["event_id"]
        entry = lifecycle_entry(touchpoint)
        if entry is not None:
            self.lifecycle.append(entry)
        if self.first_seen is None or [at, eid] < self.first_seen:
            self.first_seen = [at, eid]
        if self.last_activity is None or [at, eid] > self.last_activity:
            self.last_activity = [at, eid]
        facts = self.__dict__.get("_facts")
        if facts is not None and entry is not None:  # else built from `lifecycle` when first asked for
            fold_entry(facts, entry)
        elif facts is not None:
            facts.saw(eid, datetime.fromisoformat(at))
        self._fold_contact(touchpoint)
        # Touchpoints are recorded only together with a derivation at their recorded time.
        self._evaluated(touchpoint["recorded_at"])

    def _changed(self, change: dict[str, Any]) -> None:
        dimension = change["dimension"]
        ladder = change.get("ladder", CUSTOMER)
        if "ladder_version" in change:
            self.ladder_versions = {**(self.ladder_versions or {}), ladder: change["ladder_version"]}
        if ladder != CUSTOMER:
            ladders = dict(self.on_ladders or {})
            pair = list(ladders.get(ladder) or [None, None])
            pair[0 if dimension == "stage" else 1] = change["to"]
            ladders[ladder] = pair
            self.on_ladders = ladders
        elif dimension == "stage":
            self.stage = change["to"]
            self.stage_since = [change["effective_at"], change["change_id"]]
        elif dimension == "health":
            self.health = change["to"]
        else:  # VALUE_SEGMENT
            self.value_segment = change["to"]
        self.changes += 1
        self._evaluated(change["recorded_at"])

    def _decided(self, action: dict[str, Any]) -> None:
        aid, status = action["action_id"], action["status"]
        self.actions[aid] = status
        if status == "deferred":
            self.deferred[aid] = action
        else:
            self.deferred.pop(aid, None)
        if status == "issued":
            self.contacts.append([action["at"], action["channel"], action["purpose"]])

    def _joined(self, member: str, link: dict[str, Any], history: dict[str, Any], at: str) -> None:
        self.members[member] = {"link": link, "joined_at": at, "history": _empty_history()}
        self._borrowed(member, history, at)

    def _borrowed(self, member: str, history: dict[str, Any], at: str) -> None:
        """Add a member's touchpoints (lifecycle entries, first and last seen) to this person's."""
        mine = self.members[member]["history"]
        facts = self.__dict__.get("_facts")
        for entry in history["lifecycle"]:
            mine["lifecycle"].append(entry)
            if facts is not None:
                fold_entry(facts, entry)
        first, last = history["first_seen"], history["last_activity"]
        if first is not None and (mine["first_seen"] is None or first < mine["first_seen"]):
            mine["first_seen"] = first
            if facts is not None:
                facts.saw(first[1], datetime.fromisoformat(first[0]))
        if last is not None and (mine["last_activity"] is None or last > mine["last_activity"]):
            mine["last_activity"] = last
        mine["touchpoints"] += history["touchpoints"]
        self._evaluated(at)

    def _parted(self, member: str, at: str) -> None:
        self.members.pop(member, None)
        # The facts cannot be unfolded: they are folded again from what remains when next asked for.
        self.__dict__.pop("_facts", None)
        self.__dict__.pop("_memo", None)
        self.__dict__.pop("_memos", None)
        self._evaluated(at)

    def _evaluated(self, at: str) -> None:
        if self.evaluated_until is None or at > self.evaluated_until:
            self.evaluated_until = at

    def _fold_contact(self, tp: dict[str, Any]) -> None:
        contact.fold(self.consent, self.complaints, self.invoices, tp)
        at = tp["occurred_at"]
        tz = (tp.get("traits") or {}).get("timezone")
        if isinstance(tz, str) and (self.timezone is None or at >= self.timezone[0]):
            self.timezone = [at, tz]

    # -- derived, in memory ------------------------------------------------------------------

    @property
    def facts(self) -> Facts:
        """The lifecycle facts, kept folded as touchpoints are recorded."""
        facts = self.__dict__.get("_facts")
        if facts is None:
            facts = Facts()
            for first, lifecycle in [
                (self.first_seen, self.lifecycle),
                *((m["history"]["first_seen"], m["history"]["lifecycle"]) for m in self.members.values()),
            ]:
                if first is not None:
                    facts.saw(first[1], datetime.fromisoformat(first[0]))
                for entry in lifecycle:
                    fold_entry(facts, entry)
            self.__dict__["_facts"] = facts
        return facts

    @property
    def activity(self) -> list[str] | None:
        """The person's last touchpoint [occurred_at, event_id]: its own or a member's."""
        return max(
            (x for x in [self.last_activity, *(m["history"]["last_activity"] for m in self.members.values())] if x),
            default=None,
        )

    @property
    def anonymous(self) -> bool:
        """An anonymous visitor's identifier (`anon@<id>`): its touchpoints are kept, and count for
        the customer it is linked to; alone, nothing is derived or decided for it."""
        return is_visitor(self.customer_id)

    def history(self) -> dict[str, Any]:
        """What this identifier's touchpoints show, as a member's history (Joined)."""
        return {
            "lifecycle": list(self.lifecycle),
            "first_seen": self.first_seen,
            "last_activity": self.last_activity,
            "touchpoints": self.touchpoints,
        }

    def history_of(self, bodies: list[dict[str, Any]]) -> dict[str, Any]:
        """What these touchpoints, just recorded on this identifier, add to a member's history
        (Borrowed)."""
        return {
            "lifecycle": [e for body in bodies if (e := lifecycle_entry(body)) is not None],
            "first_seen": self.first_seen,
            "last_activity": self.last_activity,
            "touchpoints": len(bodies),
        }

    @property
    def key(self) -> str:
        """The aggregate id as text, as the side tables and the key store know it."""
        key = self.__dict__.get("_key")
        if key is None:
            key = self.__dict__["_key"] = str(self.id)
        return key

    @property
    def due_written(self) -> Any:
        """The due time (microseconds or None) last written for this customer, or ... if unknown."""
        return self.__dict__.get("_due", ...)

    @due_written.setter
    def due_written(self, value: int | None) -> None:
        self.__dict__["_due"] = value

    @property
    def snapshotted(self) -> int:
        """The version of the newest snapshot stored of this customer (0: none)."""
        return self.__dict__.get("_snap", 0)

    @snapshotted.setter
    def snapshotted(self, version: int) -> None:
        self.__dict__["_snap"] = version

    def weight(self) -> int:
        """How much state a snapshot of this customer writes, in entries: snapshots are taken
        no more often than every `weight` events, so their cost per event stays bounded."""
        return (
            len(self.lifecycle)
            + len(self.actions)
            + len(self.contacts)
            + len(self.deferred)
            + len(self.complaints)
            + len(self.invoices)
            + sum(len(h) for h in self.consent.values())
            + sum(len(m["history"]["lifecycle"]) for m in self.members.values())
        )

    @property
    def memo(self) -> Any:
        """What the lifecycle rules last concluded (engine.projections.lifecycle.Memo), or None."""
        return self.__dict__.get("_memo")

    @memo.setter
    def memo(self, value: Any) -> None:
        self.__dict__["_memo"] = value

    @property
    def memos(self) -> dict[str, Any]:
        """Likewise on each other ladder, by name."""
        memos = self.__dict__.get("_memos")
        if memos is None:
            memos = self.__dict__["_memos"] = {}
        return memos

    def on(self, ladder: str) -> tuple[str | None, str | None]:
        """The (stage, health) recorded on a ladder."""
        if ladder == CUSTOMER:
            return self.stage, self.health
        pair = (self.on_ladders or {}).get(ladder) or [None, None]
        return pair[0], pair[1]

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and _recorded(self) == _recorded(other)


def lifecycle_entry(touchpoint: dict[str, Any]) -> list[Any] | None:
    """A touchpoint as the lifecycle keeps it: [occurred_at, event_id, kind, the folded properties],
    and the ladders it joins the person to, if any (a fifth item)."""
    kind = touchpoint["kind"]
    joins = joins_of(kind, touchpoint.get("source"), touchpoint.get("traits"))
    if kind not in LIFECYCLE_KINDS and not joins:
        return None
    props = touchpoint["properties"]
    folded: Iterable[str] = ORDER_FOLDED.get(kind) or KEPT.get(kind) or ()
    entry = [touchpoint["occurred_at"], touchpoint["event_id"], kind, {k: props[k] for k in folded if k in props}]
    return [*entry, list(joins)] if joins else entry


def fold_entry(facts: Facts, entry: list[Any]) -> None:
    """A lifecycle entry into the facts."""
    at, eid, kind, props, *joins = entry
    facts.add(eid, kind, datetime.fromisoformat(at), props, tuple(joins[0]) if joins else ())


def _empty_history() -> dict[str, Any]:
    return {"lifecycle": [], "first_seen": None, "last_activity": None, "touchpoints": 0}


def _recorded(customer: Customer) -> dict[str, Any]:
    return {k: v for k, v in customer.__dict__.items() if k not in TRANSIENT}
