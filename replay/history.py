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

from engine.clock import iso
from engine.projections.facts import Facts
from engine.queries import ACTION_TOPIC, CHANGE_TOPIC, TOUCHPOINT_TOPIC, page
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
         progress: Callable[[int], None] | None = None) -> History:
    """Fold the whole log; `touchpoints` sees every visible touchpoint body (for exports)."""
    h = History()
    known = iso(as_known_at) if as_known_at else None
    with gc_paused():
        for position, uuid, topic, body in page(engine, 0, None, ()):
            h.events += 1
            if progress and h.events % 10_000 == 0:
                progress(10_000)
            if topic == REGISTERED_TOPIC:
                h.names[uuid] = body["customer_id"]
            elif topic == TOUCHPOINT_TOPIC:
                tp = body["touchpoint"]
                if known and tp["recorded_at"] > known:
                    continue
                f = h.facts.get(uuid)
                if f is None:
                    f = h.facts[uuid] = Facts()
                f.add(tp["event_id"], tp["kind"], datetime.fromisoformat(tp["occurred_at"]), tp["properties"])
                if touchpoints:
                    touchpoints(uuid, tp)
            elif topic == CHANGE_TOPIC:
                if not known or body["change"]["recorded_at"] <= known:
                    h.changes.append(body["change"])
            elif topic == ACTION_TOPIC:
                if not known or body["action"]["at"] <= known:
                    h.actions.append(body["action"])
            elif topic == ERASED_TOPIC:
                h.erased.add(uuid)
        if progress:
            progress(h.events % 10_000)
    return h
