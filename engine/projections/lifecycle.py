"""A person's lifecycle over time on a ladder (engine.projections.ladder): the transitions, the
changes to record live, and when the status next changes.

`evaluate(facts, T, ladder)` gives the stage and health as of T from touchpoints with
occurred_at <= T. `timeline(facts, ladder, start, end)` walks forward through the only moments
at which they can change (a relevant touchpoint, a counted touchpoint leaving a window, an
absence passing its threshold) and returns the transitions. The walk of the hot path stays beside
the person's facts between batches, told of every touchpoint it reads (late ones too), so a
touchpoint's cost does not grow with its person's history.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from ..ladders.default import customer_ladder as _customer_definition
from ..ladders.model import LadderDef
from ..money import minor_digits
from ..rules import LifecycleRules
from ..vocabulary import HEALTHS, STAGES  # noqa: F401 - re-exported
from .facts import JOINS, ORDER_KINDS, Facts, Order, keep
from .ladder import TICK, Ladder, Status, Walk, health_words, stage_words

__all__ = ["TICK", "Ladder", "Status", "Walk", "Transition", "customer_ladder", "compile_ladder"]


@dataclass(frozen=True, slots=True)
class Transition:
    dimension: str  # "stage" or "health"
    from_value: str | None
    to_value: str | None
    effective_at: datetime
    causes: tuple[str, ...]  # ids of the touchpoints that caused it
    reason: str


def compile_ladder(definition: LadderDef) -> Ladder:
    """A ladder definition compiled, with its version: a hash of its canonical definition."""
    keep({k: v for k, v in definition.reads().items() if k not in ORDER_KINDS})  # folded from now on
    if definition.applies_to is not None:
        JOINS[definition.applies_to.join_id(definition.name)] = definition.applies_to.key()
    canonical = definition.model_dump_json(exclude={"description"}, exclude_defaults=True)
    return Ladder(definition, hashlib.sha256(canonical.encode()).hexdigest()[:12])


_COMPILED: dict[LifecycleRules, Ladder] = {}
_DECLARED: dict[str, Ladder] = {}


def compiled(definition: LadderDef) -> Ladder:
    """A declared ladder compiled once per process (equal definitions, one ladder)."""
    key = definition.model_dump_json()
    ladder = _DECLARED.get(key)
    if ladder is None:
        ladder = _DECLARED[key] = compile_ladder(definition)
    return ladder


def customer_ladder(rules: LifecycleRules) -> Ladder:
    """The customer ladder of these [lifecycle] rules, compiled once (equal rules, one ladder)."""
    ladder = _COMPILED.get(rules)
    if ladder is None:
        ladder = _COMPILED[rules] = compile_ladder(_customer_definition(rules))
    return ladder


def evaluate(facts: Facts, T: datetime, ladder: Ladder) -> Status:
    return Walk(facts, ladder).to(T).status(T)


# What counts as a purchase, as a tally of its own (revenue and the value model read it).
_PURCHASES = Ladder(
    LadderDef.model_validate(
        {
            "name": "purchases",
            "stages": [{"name": "any"}, {"name": "bought", "when": {"count": "purchases", "at_least": 1}}],
        }
    )
)


def purchases(facts: Facts, T: datetime) -> list[Order]:
    """Orders placed by T that were neither cancelled nor fully refunded by T, oldest first."""
    return [facts.orders[key] for _, _, key in Walk(facts, _PURCHASES).to(T).tally(0).bought]


def net_purchases(facts: Facts, T: datetime) -> list[tuple[Order, float]]:
    """The purchases as of T, oldest first, each with its net amount in its own currency: the
    order's amount less the refunds made on it by T."""
    tally = Walk(facts, _PURCHASES).to(T).tally(0)
    return [(facts.orders[item[2]], tally.value(item, "amount", T) or 0.0) for item in tally.bought]


def revenue(facts: Facts, T: datetime) -> dict[str, float]:
    """Net revenue as of T, per currency (amounts in two currencies are never added up): the
    amounts of the purchases (orders placed by T, neither cancelled nor fully refunded by T)
    less the refunds made on them by T. The one definition of revenue, for every reader."""
    out: dict[str, float] = {}
    for order, net in net_purchases(facts, T):
        out[order.currency] = out.get(order.currency, 0.0) + net
    return {currency: round(out[currency], minor_digits(currency)) for currency in sorted(out)}


def timeline(
    facts: Facts,
    ladder: Ladder,
    start: datetime | None,
    end: datetime,
    status: Status | None = None,
    walk: Walk | None = None,
) -> tuple[list[Transition], Status]:
    """Transitions with effective time in (start, end], and the status at end (the walk, if
    given, ends standing at end).

    With start=None the walk begins before the first touchpoint, so the person's appearance
    (None -> the first stage) is the first transition.
    """
    walk = walk or Walk(facts, ladder)
    if start is None:
        begin = walk.start()
        if begin is None:
            return [], walk.to(end).status(end)
        start = begin[0] - TICK
    t = start
    walk.to(t)
    status = status or walk.status(t)
    out: list[Transition] = []
    while (nxt := walk.next_moment(t, status)) is not None and nxt <= end:
        new = walk.to(nxt).status(nxt)
        out += changes(status, new, nxt, walk)
        t, status = nxt, new
    # Nothing changes stage or health between the last moment and `end`: the status as of `end`.
    return out, walk.to(end).status(end)


def changes(old: Status, new: Status, at: datetime, walk: Walk) -> list[Transition]:
    out = []
    for dim in ("stage", "health"):
        before, after = old.get(dim), new.get(dim)
        if before == after:
            continue
        trigger, trigger_ids = walk.trigger(at)
        if dim == "stage":
            why = stage_words(walk, at, after) if after is not None else "no touchpoint"
        else:
            why = health_words(walk, at, after) if after is not None else "no health rule holds any more"
        # Every stage change has a touchpoint or a window exit at its moment (its trigger); only
        # an absence passes with none, and then what it is measured from is the cause.
        causes = trigger_ids or new.health_causes
        out.append(Transition(dim, before, after, at, tuple(dict.fromkeys(causes)), f"{trigger}: {why}"))
    return out


def next_change(facts: Facts, now: datetime, status: Status, ladder: Ladder) -> datetime | None:
    """When the status will next change if nothing new arrives: the due time of a timer."""
    return ahead(Walk(facts, ladder).to(now), now, status)[1]


def ahead(walk: Walk, now: datetime, status: Status) -> tuple[datetime | None, datetime | None]:
    """(the next moment after now at which the status could change, the first at which it does),
    for a walk standing at now, which is left standing there."""
    first = walk.next_moment(now, status)
    t, nxt = now, first
    while nxt is not None:
        new = walk.to(nxt).status(nxt)
        if (new.stage, new.health) != (status.stage, status.health):
            break
        t, status = nxt, new
        nxt = walk.next_moment(t, status)
    walk.to(now)
    return first, nxt


def live_transitions(
    facts: Facts,
    recorded: tuple[str | None, str | None],
    evaluated_until: datetime | None,
    now: datetime,
    ladder: Ladder,
    walk: Walk | None = None,
    late: str | None = None,
) -> tuple[list[Transition], Status]:
    """The changes to record now, given what the feed has recorded up to `evaluated_until`.

    First a correction where late touchpoints (or `late`, another cause: a link between two
    identifiers) changed the status as of evaluated_until (effective at the corrected transition's
    time), then every transition in (evaluated_until, now] in order of effective time. The walk,
    if given, ends at now.
    """
    walk = walk or Walk(facts, ladder)
    if evaluated_until is None:
        return timeline(facts, ladder, None, now, walk=walk)
    status = walk.to(evaluated_until).status(evaluated_until)
    out: list[Transition] = []
    history = None
    for dim, was in zip(("stage", "health"), recorded):
        if status.get(dim) == was:
            continue
        history = history or timeline(facts, ladder, None, evaluated_until)[0]
        last = [tr for tr in history if tr.dimension == dim]
        at = last[-1].effective_at if last else evaluated_until
        causes = last[-1].causes if last else ()
        why = last[-1].reason if last else "the history was corrected"
        out.append(
            Transition(dim, was, status.get(dim), at, causes, f"{late or 'late touchpoint'}, history corrected: {why}")
        )
    more, status = timeline(facts, ladder, evaluated_until, now, status, walk)
    return out + more, status


@dataclass(frozen=True, slots=True)
class Memo:
    """What the ladder concluded from one version of a person's facts: `status` holds from `at`
    until `valid_until` (the next moment it could change), and `due` is when stage or health next
    change if nothing new arrives. `walk` stands at `at`, for the next call."""

    facts_version: int
    ladder: Ladder
    at: datetime
    status: Status
    valid_until: datetime | None
    due: datetime | None
    walk: Walk | None = field(default=None, compare=False, repr=False)


def advance(
    facts: Facts,
    recorded: tuple[str | None, str | None],
    evaluated_until: datetime | None,
    now: datetime,
    ladder: Ladder,
    memo: Memo | None,
    late: str | None = None,
) -> tuple[list[Transition], Status, Memo]:
    """`live_transitions`, and the memo for the next call. Most touchpoints change no fact the
    ladder reads and arrive before anything is due: then the memo answers, and nothing is walked."""
    if evaluated_until is not None and now < evaluated_until:
        now = evaluated_until  # a clock gone back (skewed workers): nothing is walked back
    if (
        memo is not None
        and memo.facts_version == facts.version
        and memo.ladder is ladder
        and evaluated_until is not None
        and memo.at <= evaluated_until
        and (memo.valid_until is None or evaluated_until < memo.valid_until)
    ):
        if (memo.status.stage, memo.status.health) == recorded and (memo.valid_until is None or now < memo.valid_until):
            return [], memo.status, memo
    kept = memo.walk if memo is not None and memo.ladder is ladder else None
    walk = kept if kept is not None and kept.attached and kept.facts is facts else Walk(facts, ladder, attach=True)
    transitions, status = live_transitions(facts, recorded, evaluated_until, now, ladder, walk, late)
    return transitions, status, Memo(facts.version, ladder, now, status, *ahead(walk, now, status), walk)
