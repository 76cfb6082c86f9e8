"""Rebuild: redo the live history's writes, in order, into a fresh store.

The live log says what happened and when: each ingest wrote a batch of touchpoints (one
`batch` id, one `recorded_at`) with the changes and decisions it derived; each timer run
wrote changes and decisions of customers it did not receive touchpoints for; each
`forget` wrote an Erased event. Replaying those steps at their recorded times, with the
rules of the target's config, gives the same lifecycle changes and the same action ids as
live processing when the rules are the same — and the differences when they are not
(what-if). Stored touchpoint bodies are re-used as they are (personal fields stay sealed),
so a rebuild needs no key and reveals nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from engine.clock import FixedClock
from engine.identity import anonymous_home
from engine.ids import customer_uuid, shard_of
from engine.ingest import Evidence, shard_of_batch
from engine.queries import (
    ACTION_TOPIC,
    BORROWED_TOPIC,
    CHANGE_TOPIC,
    ERASED_TOPIC,
    JOINED_TOPIC,
    PARTED_TOPIC,
    REGISTERED_TOPIC,
    TOUCHPOINT_TOPIC,
    page,
)
from engine.service import Engine

POSITION = "rebuild:source"
PERSON_TOPICS = (JOINED_TOPIC, BORROWED_TOPIC, PARTED_TOPIC)


@dataclass
class Step:
    kind: str  # "ingest", "timers", "erase" or "identity" (an unlink's regrouping)
    at: str  # when it was recorded, live
    position: int  # the last source position it covers
    touchpoints: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # customer_id -> bodies
    customer_id: str | None = None
    shard: tuple[int, int] | None = None  # the live writer's shard of the customers, if sharded
    persons: set[str] = field(default_factory=set)  # customers whose person the write changed


def steps(source: Engine, after: int = 0, until: int | None = None) -> Iterator[Step]:
    """The live writes in (after, until] of the source's log, in log order, streamed."""
    names: dict[Any, str] = {}
    batch: Step | None = None
    batch_id: str | None = None
    loose_at: str | None = None  # when the last timer run or identity step was
    sharded: dict[tuple[int, int], str] = {}  # a sharded writer's (k, n) -> time of its last batch
    for position, uuid, topic, body in page(source, 0, None, ()):
        if until is not None and position > until:
            break
        if topic == REGISTERED_TOPIC:
            names[uuid] = body["customer_id"]
        if position <= after:
            continue
        if topic == TOUCHPOINT_TOPIC:
            tp = body["touchpoint"]
            key = tp.get("batch") or tp["recorded_at"]
            if batch is None or key != batch_id:
                if batch is not None:
                    yield batch
                batch = Step("ingest", tp["recorded_at"], position, shard=shard_of_batch(tp.get("batch")))
                batch_id = key
                if batch.shard:
                    sharded[batch.shard] = batch.at
            batch.touchpoints.setdefault(names[uuid], []).append(tp)
            batch.position = position
        elif topic in PERSON_TOPICS:
            at = body["recorded_at"]
            if batch is not None and at == batch.at:
                batch.persons.add(names[uuid])  # the person changed by that ingest: redone with it
                batch.position = position
                continue
            if batch is not None:
                yield batch
                batch = None
            elif at == loose_at:
                continue
            loose_at = at
            yield Step("identity", at, position)
        elif topic in (CHANGE_TOPIC, ACTION_TOPIC):
            at = body["change"]["recorded_at"] if topic == CHANGE_TOPIC else body["action"]["at"]
            if (
                batch is not None
                and at == batch.at
                and (names[uuid] in batch.touchpoints or names[uuid] in batch.persons)
            ):
                batch.position = position  # derived by that ingest: redone with it
                continue
            if batch is not None:
                yield batch
                batch = None
            elif at == loose_at:
                continue  # the same timer run (or the identity step's derivation)
            loose_at = at
            yield Step("timers", at, position, shard=_timer_shard(sharded, uuid, at))
        elif topic == ERASED_TOPIC:
            if batch is not None:
                yield batch
                batch = None
            yield Step("erase", body["erased_at"], position, customer_id=names[uuid])
    if batch is not None:
        yield batch


def _timer_shard(sharded: dict[tuple[int, int], str], customer: UUID, at: str) -> tuple[int, int] | None:
    """A sharded writer runs the timers of its own customers right after each of its batches:
    a timer run at the time of the last batch of its first customer's shard was that writer's."""
    for k, n in {(shard_of(customer, n), n) for _, n in sharded}:
        if sharded.get((k, n)) == at:
            return k, n
    return None


def apply(
    target: Engine,
    step: Step,
    evidence: dict[str, list[Evidence]] | None = None,
    visitors: dict[str, str] | None = None,
) -> None:
    clock = target.clock
    assert isinstance(clock, FixedClock), "replay() checks it"
    clock.at = datetime.fromisoformat(step.at)
    if step.kind == "ingest":
        stored = step.touchpoints
        fresh = target.store.journal.known_touchpoints([b["event_id"] for bodies in stored.values() for b in bodies])
        todo = {cid: [b for b in bodies if b["event_id"] not in fresh] for cid, bodies in stored.items()}
        todo = {cid: bodies for cid, bodies in todo.items() if bodies}
        if todo:  # a resumed rebuild may have written this step already
            # The same write again, under its own batch id (which says the live writer's shard).
            target.ingestor.append(
                list(todo),
                clock.at,
                lambda _c, recorded_at, batch, _keys: {
                    cid: [{**b, "recorded_at": recorded_at, "batch": b.get("batch") or batch} for b in bodies]
                    for cid, bodies in todo.items()
                },
                evidence=evidence,
                # the anonymous ids of the anonymous touchpoints' homes, as the links name them
                visitors=[v for cid in todo if (v := (visitors or {}).get(cid))],
            )
    elif step.kind == "timers":
        target.run_due(shard=step.shard)
    elif step.kind == "identity":  # an unlink: the persons around it derived again, as live
        unlinks = target.store.journal.unlinks_of(None)
        values = sorted({v for u in unlinks if u[4] == step.at for v in (u[1], u[3])})
        target.ingestor.regroup(values, clock.at)
    else:
        customer = target.store.customer(customer_uuid(step.customer_id or ""))
        if customer is not None and not customer.erased:
            with target.store.writing([customer]):
                customer.erase(step.at)
                target.store.append([customer])


def rebuild(source: Engine, target: Engine, on_step: Callable[[Step], None] | None = None) -> int:
    """Replay the source's history into the target, resuming where a previous run stopped;
    returns the number of steps applied."""
    if not isinstance(target.clock, FixedClock):
        raise TypeError("the target engine needs a FixedClock: the replay sets the time of each step")
    journal = target.store.journal
    # The identity links are facts kept beside the events, their ids sealed in the bodies: each write
    # is told the links its touchpoints showed, and records them as the live one did (so a person is
    # resolved from the links known at that point, as live).
    evidence: dict[str, list[Evidence]] = {}
    visitors: dict[str, str] = {}  # an anonymous id's home -> the id, for those the links name
    for r in source.store.journal.all_links():
        evidence.setdefault(r[6], []).append((*r[:5], *r[6:]))
        for kind, value in ((r[0], r[1]), (r[2], r[3])):
            if kind == "anonymous":
                visitors[anonymous_home(value)] = value
    for row in source.store.journal.unlinks_of(None):  # the unlinks, each recorded once, by their time
        journal.record_unlink(row)
    for model in source.store.journal.models():  # the fitted value models: scores and decisions name them
        journal.record_model(model)
    after = journal.get_position(POSITION)
    until = source.store.journal.max_notification_id() or 0
    n = 0
    for step in steps(source, after, until):
        apply(target, step, evidence, visitors)
        journal.set_position(POSITION, step.position)
        n += 1
        if on_step:
            on_step(step)
    if until > after:
        journal.set_position(POSITION, until)
    return n
