"""The Customer aggregate: one immutable event per accepted touchpoint, one per lifecycle change.

Pure domain: no I/O and no clock; every time in an event body comes from the caller.
Event bodies hold JSON types only (times as ISO strings) so the orjson transcoder stores
them as they are. PII arrives already sealed (see engine/privacy.py).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ..ids import customer_uuid
from ..projections.facts import LIFECYCLE_KINDS, Facts


class Customer(Aggregate):
    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return customer_uuid(customer_id)

    @event("Registered")
    def __init__(self, customer_id: str):
        self.customer_id = customer_id
        self.touchpoints = 0
        # Lifecycle-relevant touchpoints only, compact: [occurred_at, event_id, kind, properties].
        self.lifecycle: list[list[Any]] = []
        self.first_seen: list[str] | None = None   # [occurred_at, event_id]
        self.stage: str | None = None
        self.health: str | None = None
        self.changes = 0
        # When the recorded stage and health were last derived: the feed is exact up to here.
        self.evaluated_until: str | None = None
        self.erased = False

    @event("TouchpointRecorded")
    def record_touchpoint(self, touchpoint: dict[str, Any]) -> None:
        self.touchpoints += 1
        at, eid = touchpoint["occurred_at"], touchpoint["event_id"]
        if touchpoint["kind"] in LIFECYCLE_KINDS:
            self.lifecycle.append([at, eid, touchpoint["kind"], touchpoint["properties"]])
        if self.first_seen is None or [at, eid] < self.first_seen:
            self.first_seen = [at, eid]

    @event("LifecycleChanged")
    def record_change(self, change: dict[str, Any]) -> None:
        if change["dimension"] == "stage":
            self.stage = change["to"]
        else:
            self.health = change["to"]
        self.changes += 1
        if self.evaluated_until is None or change["recorded_at"] > self.evaluated_until:
            self.evaluated_until = change["recorded_at"]

    @event("Erased")
    def erase(self, erased_at: str) -> None:
        self.erased = True

    def facts(self) -> Facts:
        facts = Facts()
        if self.first_seen is not None:
            at, eid = self.first_seen
            facts.saw(eid, datetime.fromisoformat(at))
        for at, eid, kind, props in self.lifecycle:
            facts.add(eid, kind, datetime.fromisoformat(at), props)
        return facts
