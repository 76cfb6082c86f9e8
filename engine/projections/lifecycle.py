"""Lifecycle rules as pure functions of a customer's facts and a point in time.

`evaluate(facts, T)` gives the stage and health as of T from touchpoints with
occurred_at <= T. `timeline(facts, start, end)` walks forward through the only
moments at which they can change (a relevant touchpoint, a purchase or an advocacy
signal leaving the window, a health threshold passing) and returns the transitions.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from ..config import LifecycleRules
from ..vocabulary import HEALTHS, STAGES  # noqa: F401 - re-exported
from .facts import Facts, Order

TICK = timedelta(microseconds=1)  # "more than N days": the threshold passes just after N days


@dataclass(frozen=True, slots=True)
class Status:
    stage: str | None          # None before the customer's first touchpoint
    health: str | None         # None without a purchase
    purchases: tuple[Order, ...]
    stage_reason: str
    health_reason: str
    stage_causes: tuple[str, ...]
    health_causes: tuple[str, ...]

    def get(self, dimension: str) -> str | None:
        return self.stage if dimension == "stage" else self.health


@dataclass(frozen=True, slots=True)
class Transition:
    dimension: str             # "stage" or "health"
    from_value: str | None
    to_value: str | None
    effective_at: datetime
    causes: tuple[str, ...]    # ids of the touchpoints that caused it
    reason: str


def purchases(facts: Facts, T: datetime) -> list[Order]:
    """Orders placed by T that were neither cancelled nor fully refunded by T, oldest first."""
    out = []
    for oid, order in facts.orders.items():
        if order.at > T:
            continue
        if any(at <= T for at, _ in facts.cancels.get(oid, ())):
            continue
        refunded = [amount for at, _, amount in facts.refunds.get(oid, ()) if at <= T]
        if refunded and sum(refunded) >= order.amount:
            continue
        out.append(order)
    out.sort(key=lambda o: (o.at, o.event_id))
    return out


def _advocacy(facts: Facts, T: datetime, rules: LifecycleRules) -> list[tuple[datetime, str, str, int | None]]:
    since = T - timedelta(days=rules.window_days)
    out = []
    for at, eid, kind, value in facts.signals:
        if not since < at <= T:
            continue
        if (kind == "referral.converted"
                or (kind == "review.posted" and value is not None and value >= rules.advocate_min_rating)
                or (kind == "survey.answered" and value is not None and value >= rules.advocate_min_nps)):
            out.append((at, eid, kind, value))
    return out


def at_risk_days(bought: list[Order], rules: LifecycleRules) -> float:
    if len(bought) < 2:
        return float(rules.at_risk_min_days)
    gaps = [(b.at - a.at).total_seconds() / 86400 for a, b in zip(bought, bought[1:])]
    return max(float(rules.at_risk_min_days), rules.at_risk_gap_factor * median(gaps))


def evaluate(facts: Facts, T: datetime, rules: LifecycleRules) -> Status:
    if facts.first_seen is None or facts.first_seen > T:
        return Status(None, None, (), "no touchpoint yet", "", (), ())
    bought = purchases(facts, T)
    n = len(bought)
    w = rules.window_days
    recent = [o for o in bought if o.at > T - timedelta(days=w)]
    if n >= rules.loyal_min_purchases and len(recent) >= rules.loyal_min_recent_purchases:
        signals = _advocacy(facts, T, rules)
        loyal_why = f"{n} purchases, {len(recent)} of them in the {w} days to {T:%Y-%m-%d}"
        if signals:
            at, eid, kind, value = signals[-1]
            what = {"referral.converted": "a converted referral",
                    "review.posted": f"a review rated {value}",
                    "survey.answered": f"an NPS answer of {value}"}[kind]
            stage, why = "advocate", f"loyal ({loyal_why}) and {what} on {at:%Y-%m-%d}"
            causes = tuple(o.event_id for o in recent) + (eid,)
        else:
            stage, why = "loyal", loyal_why
            causes = tuple(o.event_id for o in recent)
    elif n >= 2:
        stage, why = "repeat", f"{n} purchases"
        causes = tuple(o.event_id for o in bought)
        if n >= rules.loyal_min_purchases:
            why += (f", but only {len(recent)} in the {w} days to {T:%Y-%m-%d} "
                    f"(loyal needs {rules.loyal_min_recent_purchases})")
    elif n == 1:
        stage, why, causes = "first_buyer", f"one purchase on {bought[0].at:%Y-%m-%d}", (bought[0].event_id,)
    else:
        stage, why, causes = "prospect", "no purchase that still counts", (facts.first_seen_id or "",)
    health, health_why, health_causes = _health(bought, T, rules)
    return Status(stage, health, tuple(bought), why, health_why, causes, health_causes)


def _health(bought: list[Order], T: datetime, rules: LifecycleRules) -> tuple[str | None, str, tuple[str, ...]]:
    if not bought:
        return None, "", ()
    last = bought[-1]
    days = (T - last.at).total_seconds() / 86400
    limit = at_risk_days(bought, rules)
    since = f"last purchase {days:.0f} days before {T:%Y-%m-%d}"
    if days > rules.lapsed_days:
        return "lapsed", f"{since}, more than {rules.lapsed_days}", (last.event_id,)
    if days > limit:
        return "at_risk", f"{since}, more than {limit:.0f} (at-risk threshold)", (last.event_id,)
    return "active", f"{since}, within {limit:.0f} (at-risk threshold)", (last.event_id,)


def next_moment(facts: Facts, t: datetime, status: Status, rules: LifecycleRules) -> datetime | None:
    """The first time after t at which the status could change, given what is known."""
    candidates = []
    i = bisect_right(facts.moments, (t, "\U0010ffff"))
    if i < len(facts.moments):
        candidates.append(facts.moments[i][0])
    if facts.first_seen is not None and facts.first_seen > t:
        candidates.append(facts.first_seen)
    window = timedelta(days=rules.window_days)
    candidates += [o.at + window for o in status.purchases if o.at + window > t]
    candidates += [at + window for at, *_ in facts.signals if t < at + window and at <= t]
    if status.purchases:
        last = status.purchases[-1].at
        for days in (at_risk_days(list(status.purchases), rules), rules.lapsed_days):
            due = last + timedelta(days=days) + TICK
            if due > t:
                candidates.append(due)
    return min(candidates) if candidates else None


def timeline(facts: Facts, rules: LifecycleRules, start: datetime | None, end: datetime,
             status: Status | None = None) -> tuple[list[Transition], Status]:
    """Transitions with effective time in (start, end], and the status at end.

    With start=None the walk begins before the first touchpoint, so the customer's
    appearance (None -> prospect) is the first transition.
    """
    if start is None:
        if facts.first_seen is None:
            return [], evaluate(facts, end, rules)
        start = facts.first_seen - TICK
    t = start
    status = status or evaluate(facts, t, rules)
    out: list[Transition] = []
    while (nxt := next_moment(facts, t, status, rules)) is not None and nxt <= end:
        new = evaluate(facts, nxt, rules)
        out += changes(status, new, nxt, facts, rules)
        t, status = nxt, new
    # Same stage and health as at the last moment, but the reasons are worded as of `end`.
    return out, evaluate(facts, end, rules)


def changes(old: Status, new: Status, at: datetime, facts: Facts, rules: LifecycleRules) -> list[Transition]:
    out = []
    for dim in ("stage", "health"):
        before, after = old.get(dim), new.get(dim)
        if before == after:
            continue
        trigger, trigger_ids = _trigger(facts, at, rules)
        why = new.stage_reason if dim == "stage" else (new.health_reason or "no purchase counts any more")
        causes = trigger_ids or (new.stage_causes if dim == "stage" else new.health_causes)
        out.append(Transition(dim, before, after, at, tuple(dict.fromkeys(causes)), f"{trigger}: {why}"))
    return out


def _trigger(facts: Facts, at: datetime, rules: LifecycleRules) -> tuple[str, tuple[str, ...]]:
    """What happened at `at`: touchpoints that occurred then, else what left the window."""
    lo = bisect_right(facts.moments, (at - TICK, "\U0010ffff"))
    hi = bisect_right(facts.moments, (at, "\U0010ffff"))
    here = facts.moments[lo:hi]
    if here:
        return (", ".join(f"{kind} {eid}" for _, eid, kind in here), tuple(eid for _, eid, _ in here))
    if at == facts.first_seen:
        return f"first touchpoint {facts.first_seen_id}", (facts.first_seen_id or "",)
    window = timedelta(days=rules.window_days)
    left = [o.event_id for o in facts.orders.values() if o.at + window == at]
    left += [eid for s_at, eid, *_ in facts.signals if s_at + window == at]
    if left:
        return f"{', '.join(left)} left the {rules.window_days}-day window", tuple(left)
    return "time passed without a purchase", ()


def next_change(facts: Facts, now: datetime, status: Status, rules: LifecycleRules) -> datetime | None:
    """When the status will next change if nothing new arrives: the due time of a timer."""
    t = now
    while (nxt := next_moment(facts, t, status, rules)) is not None:
        new = evaluate(facts, nxt, rules)
        if (new.stage, new.health) != (status.stage, status.health):
            return nxt
        t, status = nxt, new
    return None


def live_transitions(facts: Facts, recorded: tuple[str | None, str | None], evaluated_until: datetime | None,
                     now: datetime, rules: LifecycleRules) -> tuple[list[Transition], Status]:
    """The changes to record now, given what the feed has recorded up to `evaluated_until`.

    First a correction where late touchpoints changed the status as of evaluated_until
    (effective at the corrected transition's time), then every transition in
    (evaluated_until, now] in order of effective time.
    """
    if evaluated_until is None:
        return timeline(facts, rules, None, now)
    status = evaluate(facts, evaluated_until, rules)
    out: list[Transition] = []
    for dim, was in zip(("stage", "health"), recorded):
        if status.get(dim) == was:
            continue
        history, _ = timeline(facts, rules, None, evaluated_until)
        last = [tr for tr in history if tr.dimension == dim]
        at = last[-1].effective_at if last else evaluated_until
        causes = last[-1].causes if last else ()
        why = last[-1].reason if last else "the history was corrected"
        out.append(Transition(dim, was, status.get(dim), at, causes, f"late touchpoint, history corrected: {why}"))
    more, status = timeline(facts, rules, evaluated_until, now, status)
    return out + more, status
