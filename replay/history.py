"""One streamed pass over the event store into what analysts ask about: each customer's
lifecycle facts, and the recorded changes and decisions.

Bitemporal: `as_known_at=T` keeps only what had been recorded by T. Nothing personal is
read: sealed fields stay sealed, so erased customers stay erased in everything built here.
The garbage collector is paused while the many small objects are built (it would
otherwise rescan them over and over, ~4x slower).
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator
from uuid import UUID

import orjson

from engine.clock import iso
from engine.projections.facts import LIFECYCLE_KINDS, Facts
from engine.queries import ACTION_TOPIC, CHANGE_TOPIC, TOUCHPOINT_TOPIC, rows
from engine.service import Engine

from .rebuild import ERASED_TOPIC, REGISTERED_TOPIC


@dataclass
class History:
    names: dict[UUID, str] = field(default_factory=dict)
    facts: dict[UUID, Facts] = field(default_factory=dict)
    erased: set[UUID] = field(default_factory=set)
    changes: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0

    def customers(self) -> Iterator[tuple[str, Facts]]:
        for uuid, facts in self.facts.items():
            yield self.names[uuid], facts


@contextmanager
def gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load(engine: Engine, as_known_at: datetime | None = None, touchpoints: Callable[[UUID, dict], None] | None = None,
         progress: Callable[[int], None] | None = None, feeds: bool = True) -> History:
    """Fold the whole log; `touchpoints` sees every visible touchpoint body (for exports);
    without `feeds` the recorded changes and actions are skipped (a fold of stages alone).

    Built for millions of events: bare rows, customers keyed by their id as text until the end,
    and only lifecycle-relevant touchpoints folded as they come (the others just move the
    customer's first touchpoint, kept as text: ISO times in stored form sort as times)."""
    h = History()
    known = iso(as_known_at) if as_known_at else None
    names: dict[str, str] = {}
    facts: dict[str, Facts] = {}
    first: dict[str, tuple[str, str]] = {}         # (occurred_at, event_id) of the earliest other touchpoint
    erased: set[str] = set()
    uuids: dict[str, UUID] = {}
    loads, parse = orjson.loads, datetime.fromisoformat
    events = 0
    with gc_paused():
        for _, customer, topic, state in rows(engine, 0, None):
            events += 1
            if progress and events % 10_000 == 0:
                progress(10_000)
            if topic == TOUCHPOINT_TOPIC:
                tp = loads(state)["touchpoint"]
                if known and tp["recorded_at"] > known:
                    continue
                at, eid, kind = tp["occurred_at"], tp["event_id"], tp["kind"]
                if kind in LIFECYCLE_KINDS:
                    f = facts.get(customer)
                    if f is None:
                        f = facts[customer] = Facts()
                    f.add(eid, kind, parse(at), tp["properties"])
                else:
                    seen = first.get(customer)
                    if seen is None or (at, eid) < seen:
                        first[customer] = (at, eid)
                if touchpoints:
                    uuid = uuids.get(customer) or uuids.setdefault(customer, UUID(customer))
                    touchpoints(uuid, tp)
            elif topic == REGISTERED_TOPIC:
                names[customer] = loads(state)["customer_id"]
            elif topic == CHANGE_TOPIC:
                if feeds:
                    change = loads(state)["change"]
                    if not known or change["recorded_at"] <= known:
                        h.changes.append(change)
            elif topic == ACTION_TOPIC:
                if feeds:
                    action = loads(state)["action"]
                    if not known or action["at"] <= known:
                        h.actions.append(action)
            elif topic == ERASED_TOPIC:
                erased.add(customer)
        for customer, (at, eid) in first.items():
            f = facts.get(customer)
            if f is None:
                f = facts[customer] = Facts()
            f.saw(eid, parse(at))
        uuid_of = lambda text: uuids.get(text) or UUID(text)  # noqa: E731
        h.names = {uuid_of(k): v for k, v in names.items()}
        h.facts = {uuid_of(k): f for k, f in facts.items()}
        h.erased = {uuid_of(k) for k in erased}
        h.events = events
        if progress:
            progress(events % 10_000)
    return h
