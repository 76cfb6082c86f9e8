"""THE ORACLE: the lifecycle rules as they were before incremental evaluation (one full
evaluation per moment, O(n) each). Kept only to test that the engine's rules give identical
results; never imported by the engine.

Lifecycle rules as pure functions of a customer's facts and a point in time.

`evaluate(facts, T)` gives the stage and health as of T from touchpoints with
occurred_at <= T. `timeline(facts, start, end)` walks forward through the only
moments at which they can change (a relevant touchpoint, a purchase or an advocacy
signal leaving the window, a health threshold passing) and returns the transitions.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.config import LifecycleRules
from engine.projections.facts import Facts, Order

TICK = timedelta(microseconds=1)


def signals(facts: Facts) -> list[tuple[datetime, str, str, int | None]]:
    """The advocacy signals (at, event id, kind, rating or NPS), in time order."""
    out = []
    for kind in ("referral.converted", "review.posted", "survey.answered"):
        for at, eid, props in facts.kept.get(kind, ()):
            out.append((at, eid, kind, props.get("rating") if kind == "review.posted" else props.get("nps")))
    return sorted(out)


def ledger(facts: Facts) -> list[tuple[Order, datetime | None]]:
    """Every order, oldest first, with the time it stopped counting as a purchase."""
    out = []
    for oid, order in facts.orders.items():
        voids = [at for at, _ in facts.cancels.get(oid, ())]
        refunded = 0.0
        for at, _, amount, _ in facts.refunds.get(oid, ()):
            refunded += amount
            if refunded >= order.amount:
                voids.append(at)
                break
        out.append((order, min(voids) if voids else None))
    out.sort(key=lambda ov: (ov[0].at, ov[0].event_id))
    return out  # "more than N days": the threshold passes just after N days


def _count(n: float, noun: str) -> str:
    """'1 day', '2 days', '1,204 days' (n rounded to whole units)."""
    whole = round(n)
    return f"{whole:,} {noun}" + ("" if whole == 1 else "s")


@dataclass(slots=True)
class Status:
    stage: str | None  # None before the customer's first touchpoint
    health: str | None  # None without a purchase
    purchases: tuple[Order, ...]
    stage_causes: tuple[str, ...]
    health_causes: tuple[str, ...]
    # What the reasons are worded from (only when asked for: most statuses are never shown).
    at: datetime | None = None
    recent: int = 0  # purchases in the window
    signal: tuple[datetime, str, str, int | None] | None = None  # the latest advocacy signal
    limit: float = 0.0  # the at-risk threshold in days
    rules: LifecycleRules | None = None

    def get(self, dimension: str) -> str | None:
        return self.stage if dimension == "stage" else self.health

    def retimed(self, at: datetime) -> Status:
        """The same status as of a later time before anything could change it."""
        return Status(
            self.stage,
            self.health,
            self.purchases,
            self.stage_causes,
            self.health_causes,
            at,
            self.recent,
            self.signal,
            self.limit,
            self.rules,
        )

    @property
    def stage_reason(self) -> str:
        if self.stage is None or self.rules is None or self.at is None:
            return "no touchpoint yet"
        n, w, r, T = len(self.purchases), self.rules.window_days, self.rules, self.at
        if self.stage in ("loyal", "advocate"):
            why = f"{_count(n, 'purchase')}, {self.recent:,} of them in the {w:,} days to {T:%Y-%m-%d}"
            if self.signal is None:
                return why
            at, _, kind, value = self.signal
            what = {
                "referral.converted": "a converted referral",
                "review.posted": f"a review rated {value}",
                "survey.answered": f"an NPS answer of {value}",
            }[kind]
            return f"loyal ({why}) and {what} on {at:%Y-%m-%d}"
        if self.stage == "repeat":
            if n < r.loyal_min_purchases:
                return _count(n, "purchase")
            return (
                f"{_count(n, 'purchase')}, but only {self.recent:,} in the {w:,} days to {T:%Y-%m-%d} "
                f"(loyal needs {r.loyal_min_recent_purchases})"
            )
        if self.stage == "first_buyer":
            return f"one purchase on {self.purchases[0].at:%Y-%m-%d}"
        return "no purchase that still counts"

    @property
    def health_reason(self) -> str:
        if self.health is None or self.rules is None or self.at is None:
            return ""
        T = self.at
        days = (T - self.purchases[-1].at).total_seconds() / 86400
        since = f"last purchase {_count(days, 'day')} before {T:%Y-%m-%d}"
        if self.health == "lapsed":
            return f"{since}, more than {self.rules.lapsed_days:,} (lapsed threshold)"
        if self.health == "at_risk":
            return f"{since}, more than {self.limit:,.0f} (at-risk threshold)"
        return f"{since}, within {self.limit:,.0f} (at-risk threshold)"


@dataclass(frozen=True, slots=True)
class Memo:
    """What the rules concluded from one version of a customer's facts: `status` holds from
    `at` until `valid_until` (the next moment it could change), and `due` is when stage or
    health next change if nothing new arrives."""

    facts_version: int
    rules: LifecycleRules
    at: datetime
    status: Status
    valid_until: datetime | None
    due: datetime | None


@dataclass(frozen=True, slots=True)
class Transition:
    dimension: str  # "stage" or "health"
    from_value: str | None
    to_value: str | None
    effective_at: datetime
    causes: tuple[str, ...]  # ids of the touchpoints that caused it
    reason: str


def purchases(facts: Facts, T: datetime) -> list[Order]:
    """Orders placed by T that were neither cancelled nor fully refunded by T, oldest first."""
    return [order for order, void in ledger(facts) if order.at <= T and (void is None or void > T)]


def _advocacy(facts: Facts, T: datetime, rules: LifecycleRules) -> list[tuple[datetime, str, str, int | None]]:
    since = T - rules.window
    out = []
    for at, eid, kind, value in signals(facts):
        if not since < at <= T:
            continue
        if (
            kind == "referral.converted"
            or (kind == "review.posted" and value is not None and value >= rules.advocate_min_rating)
            or (kind == "survey.answered" and value is not None and value >= rules.advocate_min_nps)
        ):
            out.append((at, eid, kind, value))
    return out


def at_risk_days(bought: list[Order] | tuple[Order, ...], rules: LifecycleRules) -> float:
    n = len(bought)
    if n < 2:
        return float(rules.at_risk_min_days)
    # The median gap in days, computed as statistics.median does (same floats, same due times).
    gaps = sorted((bought[i + 1].at - bought[i].at).total_seconds() / 86400 for i in range(n - 1))
    mid = (n - 1) // 2
    gap = gaps[mid] if n % 2 == 0 else (gaps[mid - 1] + gaps[mid]) / 2
    return max(float(rules.at_risk_min_days), rules.at_risk_gap_factor * gap)


_NOBODY = Status(None, None, (), (), ())


def evaluate(facts: Facts, T: datetime, rules: LifecycleRules) -> Status:
    if facts.first_seen is None or facts.first_seen > T:
        return _NOBODY
    bought = tuple(order for order, void in ledger(facts) if order.at <= T and (void is None or void > T))
    n = len(bought)
    since = T - rules.window
    recent = [o for o in bought if o.at > since]
    signal = None
    if n >= rules.loyal_min_purchases and len(recent) >= rules.loyal_min_recent_purchases:
        signals = _advocacy(facts, T, rules)
        if signals:
            signal = signals[-1]
            stage, causes = "advocate", tuple(o.event_id for o in recent) + (signal[1],)
        else:
            stage, causes = "loyal", tuple(o.event_id for o in recent)
    elif n >= 2:
        stage, causes = "repeat", tuple(o.event_id for o in bought)
    elif n == 1:
        stage, causes = "first_buyer", (bought[0].event_id,)
    else:
        stage, causes = "prospect", (facts.first_seen_id or "",)
    health, limit, health_causes = None, 0.0, ()
    if bought:
        last = bought[-1]
        days = (T - last.at).total_seconds() / 86400
        limit = at_risk_days(bought, rules)
        health = "lapsed" if days > rules.lapsed_days else "at_risk" if days > limit else "active"
        health_causes = (last.event_id,)
    return Status(stage, health, bought, causes, health_causes, T, len(recent), signal, limit, rules)


def next_moment(facts: Facts, t: datetime, status: Status, rules: LifecycleRules) -> datetime | None:
    """The first time after t at which the status could change, given what is known: the next
    relevant touchpoint, the first touchpoint, a purchase or advocacy signal leaving the window,
    a health threshold passing."""
    candidates = []
    i = bisect_right(facts.moments, (t, "\U0010ffff"))
    if i < len(facts.moments):
        candidates.append(facts.moments[i][0])
    if facts.first_seen is not None and facts.first_seen > t:
        candidates.append(facts.first_seen)
    window = rules.window
    since = t - window
    for o in status.purchases:  # oldest first: the first one still in the window leaves it first
        if o.at > since:
            candidates.append(o.at + window)
            break
    for at, *_ in signals(facts):  # likewise, if it has happened by t
        if at > since:
            if at <= t:
                candidates.append(at + window)
            break
    if status.purchases:
        last = status.purchases[-1].at
        for due in (last + timedelta(days=status.limit) + TICK, last + rules.lapsed + TICK):
            if due > t:
                candidates.append(due)
    return min(candidates) if candidates else None


def timeline(
    facts: Facts, rules: LifecycleRules, start: datetime | None, end: datetime, status: Status | None = None
) -> tuple[list[Transition], Status]:
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
    # Nothing can change between the last moment and `end`: the same status, worded as of `end`.
    return out, status.retimed(end) if status.at is not None else evaluate(facts, end, rules)


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
    window = rules.window
    left = []
    if rules.loyal_min_recent_purchases >= 1:  # (was: also when no rule reads purchases in the window)
        left = sorted(o.event_id for o in facts.orders.values() if o.at + window == at)  # (was: arrival order)
    # The signals that count (was: every advocacy touchpoint, a review rated 1 too)
    left += [eid for s_at, eid, *_ in _advocacy(facts, at - TICK, rules) if s_at + window == at]
    if left:
        return f"{', '.join(left)} left the {rules.window_days}-day window", tuple(left)
    return "time passed without a purchase", ()


def next_change(facts: Facts, now: datetime, status: Status, rules: LifecycleRules) -> datetime | None:
    """When the status will next change if nothing new arrives: the due time of a timer."""
    return _ahead(facts, now, status, rules)[1]


def _ahead(
    facts: Facts, now: datetime, status: Status, rules: LifecycleRules
) -> tuple[datetime | None, datetime | None]:
    """(the next moment after now at which the status could change, the first at which it does)."""
    t, first = now, None
    while (nxt := next_moment(facts, t, status, rules)) is not None:
        first = first or nxt
        new = evaluate(facts, nxt, rules)
        if (new.stage, new.health) != (status.stage, status.health):
            return first, nxt
        t, status = nxt, new
    return first, None


def live_transitions(
    facts: Facts,
    recorded: tuple[str | None, str | None],
    evaluated_until: datetime | None,
    now: datetime,
    rules: LifecycleRules,
    then: Status | None = None,
) -> tuple[list[Transition], Status]:
    """The changes to record now, given what the feed has recorded up to `evaluated_until`.

    First a correction where late touchpoints changed the status as of evaluated_until
    (effective at the corrected transition's time), then every transition in
    (evaluated_until, now] in order of effective time. `then`, if known, is the status
    as of evaluated_until.
    """
    if evaluated_until is None:
        return timeline(facts, rules, None, now)
    status = then or evaluate(facts, evaluated_until, rules)
    out: list[Transition] = []
    history = None
    for dim, was in zip(("stage", "health"), recorded):
        if status.get(dim) == was:
            continue
        history = history or timeline(facts, rules, None, evaluated_until)[0]
        last = [tr for tr in history if tr.dimension == dim]
        at = last[-1].effective_at if last else evaluated_until
        causes = last[-1].causes if last else ()
        why = last[-1].reason if last else "the history was corrected"
        out.append(Transition(dim, was, status.get(dim), at, causes, f"late touchpoint, history corrected: {why}"))
    more, status = timeline(facts, rules, evaluated_until, now, status)
    return out + more, status


def advance(
    facts: Facts,
    recorded: tuple[str | None, str | None],
    evaluated_until: datetime | None,
    now: datetime,
    rules: LifecycleRules,
    memo: Memo | None,
) -> tuple[list[Transition], Status, Memo]:
    """`live_transitions`, and the memo for the next call. Most touchpoints change no lifecycle
    fact and arrive before anything is due: then the memo answers, and nothing is walked."""
    current = memo is not None and memo.facts_version == facts.version and memo.rules is rules
    then = None
    if (
        current
        and evaluated_until is not None
        and memo.at <= evaluated_until
        and (memo.valid_until is None or evaluated_until < memo.valid_until)
    ):
        if (memo.status.stage, memo.status.health) == recorded and (memo.valid_until is None or now < memo.valid_until):
            return [], memo.status, memo
        then = memo.status  # a timer fell due: the walk starts from what is known
    transitions, status = live_transitions(facts, recorded, evaluated_until, now, rules, then)
    return transitions, status, Memo(facts.version, rules, now, status, *_ahead(facts, now, status, rules))
