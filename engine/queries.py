"""Read side: the 360° view, the funnel as of any time, and the lifecycle-change feed.

Everything here is computed from the event store on demand (nothing personal is ever
written to a projection), so an as-of answer is exact and an erased customer stays erased.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import orjson
from eventsourcing.utils import get_topic

from .aggregates.customer import Customer
from .asof import known, visible
from .clock import iso
from .identity import is_visitor
from .ids import customer_uuid
from .keys import KeyStore
from .privacy import ERASED, PersonalFields, reveal, unseal
from .projections import contact
from .projections.facts import LIFECYCLE_KINDS, Facts, Folds, joins_of
from .projections.lifecycle import Ladder, customer_ladder, evaluate, revenue, timeline
from .rules import LifecycleRules, ValueRules
from .store import JourneyStore
from .value import historical
from .value_store import RecordedModels

if TYPE_CHECKING:
    from .value.model import Model, Prediction


class Sources(Protocol):
    """What the read side reads (an Engine has it all): the store, the customers' keys, the
    lifecycle rules and which fields are personal."""

    store: JourneyStore
    keys: KeyStore
    rules: LifecycleRules
    ladders: tuple[Ladder, ...]  # the customer ladder, then the [[ladders]]
    value_rules: ValueRules
    value_models: RecordedModels
    personal: PersonalFields


TOUCHPOINT_TOPIC = get_topic(Customer.TouchpointRecorded)
CHANGE_TOPIC = get_topic(Customer.LifecycleChanged)
ACTION_TOPIC = get_topic(Customer.ActionDecided)
ERASED_TOPIC = get_topic(Customer.Erased)
REGISTERED_TOPIC = get_topic(Customer.Registered)
JOINED_TOPIC = get_topic(Customer.Joined)
BORROWED_TOPIC = get_topic(Customer.Borrowed)
PARTED_TOPIC = get_topic(Customer.Parted)
PAGE = 5000


@contextmanager
def gc_paused() -> Iterator[None]:
    """For folds that build millions of objects: the collector would rescan them over and over."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def scan(engine: Sources, topic: str, after: int = 0) -> Iterator[tuple[int, Any, dict[str, Any]]]:
    """(position, customer uuid, event body) for every stored event of a topic, in log order."""
    for position, customer, _, body in page(engine, after, None, (topic,)):
        yield position, customer, body


def page(
    engine: Sources, after: int, limit: int | None, topics: tuple[str, ...]
) -> Iterator[tuple[int, Any, str, dict[str, Any]]]:
    """(position, customer uuid, topic, body) of stored events after a position, in log order."""
    ids: dict[str, UUID] = {}
    for position, customer, topic, state in rows(engine, after, limit, topics):
        uuid = ids.get(customer)
        if uuid is None:
            uuid = ids[customer] = UUID(customer)
        yield position, uuid, topic, orjson.loads(state)


Progress = Callable[[int], None]  # told how far the log was read, in positions, as it goes


def rows(
    engine: Sources, after: int, limit: int | None, topics: tuple[str, ...] = (), progress: Progress | None = None
) -> Iterator[tuple[int, str, str, bytes]]:
    """(position, customer id as text, topic, stored state) after a position, in log order."""
    log = engine.store.journal.log
    left = limit
    while left is None or left > 0:
        chunk = log(after, min(PAGE, left or PAGE), topics)
        if not chunk:
            return
        yield from chunk
        if progress:
            progress(chunk[-1][0] - after)
        after = chunk[-1][0]
        left = None if left is None else left - len(chunk)


def facts_page(engine: Sources, after: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
    """The next lifecycle changes and actions after a position, for relays: (position, feed, fact)."""
    return [
        (p, "stage-changed", body["change"]) if topic == CHANGE_TOPIC else (p, "actions", body["action"])
        for p, _, topic, body in page(engine, after, limit, (CHANGE_TOPIC, ACTION_TOPIC))
    ]


def membership(engine: Sources, as_known: str | None = None) -> dict[str, str]:
    """Whose person each member identifier's touchpoints count for (engine.regroup): the member's
    aggregate id -> its customer's, as text in the log's form (rows); those recorded by `as_known`
    when given."""
    out: dict[UUID, str] = {}
    for _, customer, topic, state in rows(engine, 0, None, (JOINED_TOPIC, PARTED_TOPIC)):
        body = orjson.loads(state)
        if not known(body["recorded_at"], as_known):
            continue
        member = UUID(body["member"])
        if topic == JOINED_TOPIC:
            out[member] = customer
        elif out.get(member) == customer:  # parted from this customer (it may have joined another)
            del out[member]
    # Each store writes ids as text in its own form: the member's in both.
    return {form: c for m, c in out.items() for form in (str(m), m.hex)}


def persons_facts(
    engine: Sources, T: datetime, as_known: bool = False, progress: Progress | None = None
) -> tuple[dict[str, Facts], int]:
    """Each customer's lifecycle facts as of T, by customer id, with the touchpoints of the anonymous
    ids linked to it (as known at T, with `as_known`), and how many anonymous visitors are linked
    to no customer (counted apart: nothing is derived for them)."""
    t = iso(T)
    folds = Folds()
    persons = membership(engine, t if as_known else None)
    names: dict[str, str] = {}
    with gc_paused():
        for _, customer, topic, state in rows(engine, 0, None, (TOUCHPOINT_TOPIC, REGISTERED_TOPIC), progress):
            body = orjson.loads(state)
            if topic == REGISTERED_TOPIC:
                names[customer] = body["customer_id"]
                continue
            tp = body["touchpoint"]
            if visible(tp["occurred_at"], tp["recorded_at"], t, as_known):
                folds.add(persons.get(customer, customer), tp)
        facts = folds.done()
    customers = {names[c]: f for c, f in facts.items() if not is_visitor(names[c])}
    return customers, len(facts) - len(customers)


def ladder_named(engine: Sources, name: str | None) -> Ladder:
    """A ladder of the config by name (None: the customer ladder); a ValueError lists them."""
    for ladder in engine.ladders:
        if name is None or ladder.name == name:
            return ladder
    raise ValueError(f"no ladder {name!r}; the ladders: {', '.join(lad.name for lad in engine.ladders)}")


def funnel(
    engine: Sources, T: datetime, as_known: bool = False, ladder: str | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Customers per stage and health of a ladder (the customer ladder by default) as of T, each
    with its linked anonymous ids' touchpoints; those not on the ladder and the anonymous visitors
    linked to no customer, counted apart."""
    lad = ladder_named(engine, ladder)
    facts, visitors = persons_facts(engine, T, as_known, progress)
    stages = dict.fromkeys(lad.stages, 0)
    health = dict.fromkeys(lad.healths, 0)
    off = 0
    with gc_paused():
        for f in facts.values():
            status = evaluate(f, T, lad)
            if status.stage is None:  # not on this ladder (yet)
                off += 1
                continue
            stages[status.stage] += 1
            if status.health:
                health[status.health] += 1
    return {
        "as_of": iso(T),
        "as_known": as_known,
        "ladder": lad.name,
        "ladder_version": lad.version,
        "customers": len(facts) - off,
        "stages": stages,
        "health": health,
        "not_on_ladder": off,
        "anonymous_visitors": visitors,
    }


def feed(
    engine: Sources,
    topic: str,
    key: str,
    after: int,
    limit: int,
    customer_id: str | None = None,
    where: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """A page of a feed (lifecycle changes or actions) after a position, optionally one customer's,
    and only the entries whose fields have the values `where` gives (e.g. {"policy": "win_back"})."""
    wanted = customer_uuid(customer_id) if customer_id else None
    out: list[dict[str, Any]] = []
    if limit <= 0:
        return out
    for position, customer, body in scan(engine, topic, after):
        entry = body[key]
        if (wanted is None or customer == wanted) and all(entry.get(k) == v for k, v in (where or {}).items()):
            out.append({"position": position, **entry})
            if len(out) >= limit:
                break
    return out


def changes(engine: Sources, after: int, limit: int, customer_id: str | None = None) -> list[dict[str, Any]]:
    return feed(engine, CHANGE_TOPIC, "change", after, limit, customer_id)


def actions(
    engine: Sources, after: int, limit: int, customer_id: str | None = None, policy: str | None = None
) -> list[dict[str, Any]]:
    return feed(engine, ACTION_TOPIC, "action", after, limit, customer_id, {"policy": policy} if policy else None)


def action_history(engine: Sources, action_id: str) -> list[dict[str, Any]]:
    """Every record of one action (a deferral and its later issue share the id), oldest first."""
    return [
        {"position": p, **body["action"]}
        for p, _, body in scan(engine, ACTION_TOPIC)
        if body["action"]["action_id"] == action_id
    ]


def customer_view(
    engine: Sources, customer_id: str, T: datetime, as_known: bool = False, limit: int | None = None, offset: int = 0
) -> dict[str, Any]:
    """The 360° view as of T. Its timeline (touchpoints and recorded changes) comes newest first,
    `limit` entries after skipping the `offset` newest (all with limit=None), beside the total."""
    with gc_paused():  # a heavy customer's view builds tens of thousands of objects
        return _customer_view(engine, customer_id, T, as_known, limit, offset)


def _customer_view(
    engine: Sources, customer_id: str, T: datetime, as_known: bool, limit: int | None, offset: int
) -> dict[str, Any]:
    uuid = customer_uuid(customer_id)
    # The stored bodies as they are: no event objects, which cost more than the view itself.
    events = _bodies(engine, uuid)
    if not events:
        raise KeyError(customer_id)
    t = iso(T)
    # The person's other identifiers' touchpoints count too (engine.regroup): those of the members
    # it has now, or as known at T, those it had then.
    members = [UUID(m) for m in _members(events, t if as_known else None)]
    keys = engine.keys.get_many([str(u) for u in [uuid, *members]])
    sources = [(uuid, events), *((m, _bodies(engine, m)) for m in members)]
    touchpoints = sorted(
        (
            (str(source), body["touchpoint"])
            for source, stored in sources
            for topic, body in stored
            if topic == TOUCHPOINT_TOPIC
            and visible(body["touchpoint"]["occurred_at"], body["touchpoint"]["recorded_at"], t, as_known)
        ),
        key=lambda x: (x[1]["occurred_at"], x[1]["event_id"]),
    )
    erased = any(topic == ERASED_TOPIC for topic, _ in events)
    facts = Facts()
    traits: dict[str, Any] = {}
    consent: dict[str, list[list[Any]]] = {}
    complaints: dict[str, list[str | None]] = {}
    invoices: dict[str, list[str | None]] = {}
    channels: Counter[str] = Counter()
    if touchpoints:  # in time order: the first is where the customer begins
        first = touchpoints[0][1]
        facts.saw(first["event_id"], datetime.fromisoformat(first["occurred_at"]))
    own = str(uuid)
    for source, tp in touchpoints:
        # The others only move the first touchpoint (seen above), or join the person to a ladder.
        joins = joins_of(tp["kind"], tp.get("source"), tp.get("traits"))
        if tp["kind"] in LIFECYCLE_KINDS or joins:
            facts.add(tp["event_id"], tp["kind"], datetime.fromisoformat(tp["occurred_at"]), tp["properties"], joins)
        channels[tp["channel"]] += 1
        if source != own:
            continue  # traits and contact rules are the customer's own: a shared device's visitor may be another
        if tp["sealed"]:
            pii = unseal(keys.get(source), tp["sealed"], f"{source}/{tp['event_id']}")
            if pii is None:
                traits.update(tp["traits"] or {})
                traits["personal_data"] = ERASED
            else:
                _, revealed = reveal(tp["properties"], tp["traits"], pii)
                traits.update(revealed)
        else:
            traits.update(tp["traits"] or {})
        contact.fold(consent, complaints, invoices, tp)
    changed = [
        {
            "type": f"{c['dimension']}_change",
            "ladder": c.get("ladder", "customer") if c["dimension"] in ("stage", "health") else None,
            "at": c["effective_at"],
            "from": c["from"],
            "to": c["to"],
            "change_id": c["change_id"],
            "recorded_at": c["recorded_at"],
            "reason": c["reason"],
            "causes": c["causes"],
        }
        for topic, body in events
        if topic == CHANGE_TOPIC
        for c in (body["change"],)
        if visible(c["effective_at"], c["recorded_at"], t, as_known)
    ]
    # Only the newest entries asked for are built: a dealer's history has tens of thousands.
    wanted = None if limit is None else limit + offset
    items = [
        {
            "type": "touchpoint",
            "at": tp["occurred_at"],
            "kind": tp["kind"],
            "event_id": tp["event_id"],
            "channel": tp["channel"],
            "source": tp["source"],
            "recorded_at": tp["recorded_at"],
            **({} if source == own else {"identifier": "anonymous"}),
        }
        for source, tp in (touchpoints if wanted is None else touchpoints[max(0, len(touchpoints) - wanted) :])
    ]
    items += changed if wanted is None else sorted(changed, key=lambda c: c["at"])[max(0, len(changed) - wanted) :]
    items.sort(key=lambda item: (item["at"], item["type"] != "touchpoint"))  # touchpoints first at one time
    items.reverse()
    items = items[offset:] if wanted is None else items[offset:wanted]
    history, status = timeline(facts, customer_ladder(engine.rules), None, T)
    on_ladders = {}
    for lad in engine.ladders[1:]:  # the person's stage on each other ladder they stand on
        s = evaluate(facts, T, lad)
        if s.stage is not None:
            on_ladders[lad.name] = {
                "version": lad.version,
                "stage": s.stage,
                "stage_reason": s.stage_reason,
                "health": s.health,
                "health_reason": s.health_reason or None,
            }
    if erased:
        traits = engine.personal.split("", {}, traits)[1] or {}  # what was in clear, personal fields out
        traits["personal_data"] = ERASED
    return {
        "customer_id": customer_id,
        "as_of": iso(T),
        "as_known": as_known,
        "stage": status.stage,
        "stage_reason": status.stage_reason,
        "health": status.health,
        "health_reason": status.health_reason or None,
        "ladders": on_ladders,
        "purchases": status.count,
        "revenue": revenue(facts, T),
        "value": _value(engine, facts, T, t if as_known else None),
        "first_purchase": iso(status.first.at) if status.first else None,
        "last_purchase": iso(status.last.at) if status.last else None,
        **_contact(consent, complaints, invoices, t),
        "preferred_channel": min(channels, key=lambda c: (-channels[c], c)) if channels else None,
        "traits": traits,
        "erased": erased,
        "touchpoints": len(touchpoints),
        "timeline": items,
        "timeline_total": len(touchpoints) + len(changed),  # newest first
        # The corrected history: every transition by effective time, from what is known now.
        "history": [
            {
                "dimension": tr.dimension,
                "from": tr.from_value,
                "to": tr.to_value,
                "at": iso(tr.effective_at),
                "reason": tr.reason,
            }
            for tr in history
        ],
    }


def _value(engine: Sources, facts: Facts, T: datetime, known: str | None) -> dict[str, Any]:
    """The value block of a view (engine.value, docs/value.md): in the base currency, with the
    predictions of the value model recorded by now (or by `known`), if there is one."""
    rules = engine.value_rules
    v = historical(facts, T, rules)
    return {
        "base_currency": rules.base_currency,
        "net_revenue": v.net_revenue,
        "unconverted": v.unconverted,
        "average_order_value": v.average_order_value,
        "tenure_days": None if v.tenure_days is None else round(v.tenure_days, 1),
        "predicted": predicted(engine, facts, T, known),
    }


def predicted(engine: Sources, facts: Facts, T: datetime, known: str | None) -> dict[str, Any] | None:
    """One person's predictions as of T with the model in force; None without a model or a purchase."""
    model = engine.value_models.in_force(known)
    if model is None:
        return None
    from .value.model import predict_one

    p = predict_one(model, facts, T, engine.value_rules)
    return None if p is None else prediction_fields(model, p)


def prediction_fields(model: Model, p: Prediction) -> dict[str, Any]:
    """A prediction as readers see it (views, lists, exports): rounded, with the model that made it."""
    h = model.horizon
    return {
        "model_id": model.model_id,
        "p_alive": round(p.p_alive, 4),
        "churn_risk": round(p.churn_risk, 4),
        "expected_transactions": round(p.expected_transactions, 4),
        "expected_weeks": h.expected_weeks,
        "expected_spend": None if p.expected_spend is None else round(p.expected_spend, 2),
        "clv": None if p.clv is None else round(p.clv, 2),
        "clv_months": h.clv_months,
        "value_segment": p.value_segment,
    }


def _members(events: list[tuple[str, Any]], as_known: str | None) -> list[str]:
    """The member keys (engine.regroup) a customer's events give it: now, or as known at a time."""
    members: dict[str, None] = {}
    for topic, body in events:
        if topic in (JOINED_TOPIC, PARTED_TOPIC) and known(body["recorded_at"], as_known):
            if topic == JOINED_TOPIC:
                members[body["member"]] = None
            else:
                members.pop(body["member"], None)
    return list(members)


def _bodies(engine: Sources, customer: UUID) -> list[tuple[str, Any]]:
    return [(topic, orjson.loads(state)) for topic, state in engine.store.journal.history(customer)]


def summary(customer: Customer, T: datetime, rules: LifecycleRules, value_rules: ValueRules) -> dict[str, Any]:
    """What a service needs at a touchpoint, now, from the customer's recorded state (the same
    values customer_view gives, without reading the whole history): stage, health, money, the
    value segment last recorded on the change feed, flags."""
    status = evaluate(customer.facts, T, customer_ladder(rules))
    return {
        "customer_id": customer.customer_id,
        "stage": status.stage,
        "health": status.health,
        "purchases": status.count,
        "revenue": revenue(customer.facts, T),
        "base_currency": value_rules.base_currency,
        "net_revenue": historical(customer.facts, T, value_rules).net_revenue,
        "value_segment": customer.value_segment,
        # the stage and health recorded on each other ladder the person stands on
        "ladders": {name: {"stage": p[0], "health": p[1]} for name, p in (customer.on_ladders or {}).items()},
        "last_purchase": iso(status.last.at) if status.last else None,
        **_contact(customer.consent, customer.complaints, customer.invoices, iso(T)),
        "erased": customer.erased,
    }


def _contact(
    consent: dict[str, list[list[Any]]],
    complaints: dict[str, list[str | None]],
    invoices: dict[str, list[str | None]],
    t: str,
) -> dict[str, Any]:
    """The contact state at t, as both views give it."""
    return {
        "open_complaints": [k for k, _ in contact.open_at(complaints, t)],
        "overdue_invoices": [k for k, _ in contact.open_at(invoices, t)],
        "consent": contact.consents_at(consent, t),
    }
