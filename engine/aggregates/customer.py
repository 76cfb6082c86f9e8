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

from datetime import datetime
from typing import Any, Self
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.domain import Snapshot as AggregateSnapshot

from ..ids import customer_uuid
from ..projections import contact
from ..projections.facts import LIFECYCLE_KINDS, Facts

# In memory only, never in a snapshot: the lifecycle facts folded from `lifecycle` (with
# parsed times), what the lifecycle rules last concluded from them, the id as text, the
# due time last written to the timers table, and the version of the newest snapshot stored.
# All are rebuilt or re-read when missing.
TRANSIENT = ("_facts", "_memo", "_key", "_due", "_snap")
# The properties the lifecycle facts read (engine.projections.facts): all a lifecycle entry keeps,
# so the state (and each snapshot) holds what was folded, not every property a service sent.
FOLDED = {
    "order.placed": ("order_id", "amount", "currency"),
    "order.refunded": ("order_id", "amount", "currency"),
    "order.cancelled": ("order_id",),
    "review.posted": ("rating",),
    "survey.answered": ("nps",),
    "referral.converted": (),
}


class Customer(Aggregate):
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

    def erase(self, erased_at: str) -> None:
        self.trigger_event(self.Erased, erased_at=erased_at)

    # -- how each event changes the state ----------------------------------------------------

    def _touched(self, touchpoint: dict[str, Any]) -> None:
        self.touchpoints += 1
        at, eid = touchpoint["occurred_at"], touchpoint["event_id"]
        kind = touchpoint["kind"]
        if kind in LIFECYCLE_KINDS:
            props = touchpoint["properties"]
            self.lifecycle.append([at, eid, kind, {k: props[k] for k in FOLDED[kind] if k in props}])
        if self.first_seen is None or [at, eid] < self.first_seen:
            self.first_seen = [at, eid]
        if self.last_activity is None or [at, eid] > self.last_activity:
            self.last_activity = [at, eid]
        facts = self.__dict__.get("_facts")
        if facts is not None:  # else built from `lifecycle` when first asked for
            facts.add(eid, touchpoint["kind"], datetime.fromisoformat(at), touchpoint["properties"])
        self._fold_contact(touchpoint)
        # Touchpoints are recorded only together with a derivation at their recorded time.
        self._evaluated(touchpoint["recorded_at"])

    def _changed(self, change: dict[str, Any]) -> None:
        if change["dimension"] == "stage":
            self.stage = change["to"]
            self.stage_since = [change["effective_at"], change["change_id"]]
        else:
            self.health = change["to"]
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
            if self.first_seen is not None:
                at, eid = self.first_seen
                facts.saw(eid, datetime.fromisoformat(at))
            for at, eid, kind, props in self.lifecycle:
                facts.add(eid, kind, datetime.fromisoformat(at), props)
            self.__dict__["_facts"] = facts
        return facts

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
        )

    @property
    def memo(self) -> Any:
        """What the lifecycle rules last concluded (engine.projections.lifecycle.Memo), or None."""
        return self.__dict__.get("_memo")

    @memo.setter
    def memo(self, value: Any) -> None:
        self.__dict__["_memo"] = value

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and _recorded(self) == _recorded(other)


def _recorded(customer: Customer) -> dict[str, Any]:
    return {k: v for k, v in customer.__dict__.items() if k not in TRANSIENT}
