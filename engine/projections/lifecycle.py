"""Lifecycle rules as pure functions of a customer's facts and a point in time.

`evaluate(facts, T)` gives the stage and health as of T from touchpoints with
occurred_at <= T. `timeline(facts, start, end)` walks forward through the only
moments at which they can change (a relevant touchpoint, a purchase or an advocacy
signal leaving the window, a health threshold passing) and returns the transitions.

The walk is a `Sweep`: what counts as a purchase, and the sorted gaps between purchases (for
the median), are kept as time moves, so a step costs O(log n) and not a fresh evaluation of
the whole history. The sweep of the hot path stays beside the customer's facts between
batches, told of every change to an order (late ones too), so a touchpoint's cost does not
grow with its customer's history. When nothing lies ahead but time, when the status next
changes is computed, not walked to.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..money import minor_digits
from ..rules import LifecycleRules
from ..vocabulary import HEALTHS, STAGES  # noqa: F401 - re-exported
from .facts import Facts, Order

TICK = timedelta(microseconds=1)  # "more than N days": the threshold passes just after N days
LAST = "\U0010ffff"  # sorts after every event id: (t, LAST) is "the end of instant t"
DAY = 86400


def _count(n: float, noun: str) -> str:
    """'1 day', '2 days', '1,204 days' (n rounded to whole units)."""
    whole = round(n)
    return f"{whole:,} {noun}" + ("" if whole == 1 else "s")


@dataclass(slots=True)
class Status:
    stage: str | None  # None before the customer's first touchpoint
    health: str | None  # None without a purchase
    count: int  # purchases that count at `at`
    first: Order | None  # the oldest of them, and the newest
    last: Order | None
    health_causes: tuple[str, ...]
    # What the reasons are worded from (only when asked for: most statuses are never shown).
    at: datetime | None = None
    recent: int = 0  # purchases in the window
    signal: tuple[datetime, str, str, int | None] | None = None  # the latest advocacy signal
    limit: float = 0.0  # the at-risk threshold in days
    rules: LifecycleRules | None = None

    def get(self, dimension: str) -> str | None:
        return self.stage if dimension == "stage" else self.health

    @property
    def stage_reason(self) -> str:
        if self.stage is None or self.rules is None or self.at is None:
            return "no touchpoint yet"
        n, w, r, T = self.count, self.rules.window_days, self.rules, self.at
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
            assert self.first is not None
            return f"one purchase on {self.first.at:%Y-%m-%d}"
        return "no purchase that still counts"

    @property
    def health_reason(self) -> str:
        if self.health is None or self.rules is None or self.at is None or self.last is None:
            return ""
        T = self.at
        days = (T - self.last.at).total_seconds() / DAY
        since = f"last purchase {_count(days, 'day')} before {T:%Y-%m-%d}"
        if self.health == "lapsed":
            return f"{since}, more than {self.rules.lapsed_days:,} (lapsed threshold)"
        if self.health == "at_risk":
            return f"{since}, more than {self.limit:,.0f} (at-risk threshold)"
        return f"{since}, within {self.limit:,.0f} (at-risk threshold)"


_NOBODY = Status(None, None, 0, None, None, ())


@dataclass(frozen=True, slots=True)
class Transition:
    dimension: str  # "stage" or "health"
    from_value: str | None
    to_value: str | None
    effective_at: datetime
    causes: tuple[str, ...]  # ids of the touchpoints that caused it
    reason: str


Bought = tuple[datetime, str, str]  # (placed at, event id, order id) of an order that counts


def _gap(a: Bought, b: Bought) -> float:
    # In days, as statistics.median would be given them: the same floats, the same due times.
    return (b[0] - a[0]).total_seconds() / DAY


class Sweep:
    """The purchases that count, and the sorted gaps between them, at a time `t` that moves
    (`to`); `status(T)` reads the rest (window, signals, thresholds) from them. Moving costs
    O(log n) per placement or void passed; so does a change to an order, at any time."""

    __slots__ = (
        "facts",
        "rules",
        "t",
        "bought",
        "gaps",
        "starts",
        "ends",
        "placed",
        "si",
        "ei",
        "indexed",
        "__weakref__",
    )

    def __init__(self, facts: Facts, rules: LifecycleRules, attach: bool = False):
        self.facts, self.rules = facts, rules
        self.indexed = False
        self.t: datetime | None = None
        if attach:  # kept between batches: the facts tell it of every change to an order
            facts.listener = weakref.ref(self)

    # -- the orders' placements and voids, in time order ------------------------------------

    def _index(self) -> None:
        f = self.facts
        self.placed: dict[str, tuple[datetime, str, datetime | None]] = {}
        starts, ends = [], []
        voidable = f.cancels.keys() | f.refunds.keys() if (f.cancels or f.refunds) else ()
        for oid, o in f.orders.items():
            void = f.void_of(oid) if oid in voidable else None
            self.placed[oid] = (o.at, o.event_id, void)
            starts.append((o.at, o.event_id, oid))
            if void is not None and void > o.at:
                ends.append((void, o.event_id, oid))
        starts.sort()
        ends.sort()
        self.starts, self.ends = starts, ends
        self.indexed = True

    def order_changed(self, oid: str) -> None:
        """An order was placed (earlier), cancelled or refunded: keep the index and, where the
        sweep stands, the purchases that count."""
        if not self.indexed:
            return
        f = self.facts
        o = f.orders.get(oid)
        if o is None:  # a cancellation or refund of an order not (yet) seen placed
            return
        new = (o.at, o.event_id, f.void_of(oid))
        old = self.placed.get(oid)
        if new == old:
            return
        t = self.t
        if t is not None:
            was = old is not None and _counts(old, t)
            now = _counts(new, t)
            moved = old is None or old[:2] != new[:2]
            if was and (moved or not now):
                assert old is not None  # it counted, so it was placed
                self._remove((old[0], old[1], oid))
            if now and (moved or not was):
                self._add((new[0], new[1], oid))
        if old is not None:
            self.starts.remove((old[0], old[1], oid))
            if old[2] is not None and old[2] > old[0]:
                self.ends.remove((old[2], old[1], oid))
        insort(self.starts, (new[0], new[1], oid))
        if new[2] is not None and new[2] > new[0]:
            insort(self.ends, (new[2], new[1], oid))
        self.placed[oid] = new
        if t is not None:  # the placements and voids at or before t are the ones applied
            self.si = bisect_right(self.starts, (t, LAST))
            self.ei = bisect_right(self.ends, (t, LAST))

    # -- moving ------------------------------------------------------------------------------

    def to(self, T: datetime) -> Sweep:
        """Stand at T: every placement and void at or before T applied, none after."""
        if not self.indexed:
            self._index()
        starts, ends, placed = self.starts, self.ends, self.placed
        si, ei = bisect_right(starts, (T, LAST)), bisect_right(ends, (T, LAST))
        if self.t is None:
            # From the start in one go: the purchases at T, and their gaps, with two sorts.
            self.bought = bought = [s for s in starts[:si] if _counts(placed[s[2]], T)]
            self.gaps = sorted(_gap(a, b) for a, b in zip(bought, bought[1:]))
        elif T >= self.t:
            for s in starts[self.si : si]:  # placed in (t, T]: counts unless voided by T
                if _counts(placed[s[2]], T):
                    self._add(s)
            for e in ends[self.ei : ei]:  # voided in (t, T]: no longer counts
                p = placed[e[2]]
                self._remove((p[0], p[1], e[2]))
        else:
            for s in starts[si : self.si]:  # placed in (T, t]: did not count yet
                self._remove(s)
            for e in ends[ei : self.ei]:  # voided in (T, t]: counted still, if placed by T
                p = placed[e[2]]
                if p[0] <= T:
                    self._add((p[0], p[1], e[2]))
        self.si, self.ei, self.t = si, ei, T
        return self

    def _add(self, x: Bought) -> None:
        bought, i = self.bought, bisect_left(self.bought, x)
        prev = bought[i - 1] if i else None
        nxt = bought[i] if i < len(bought) else None
        if prev is not None and nxt is not None:
            self._drop_gap(_gap(prev, nxt))
        if prev is not None:
            insort(self.gaps, _gap(prev, x))
        if nxt is not None:
            insort(self.gaps, _gap(x, nxt))
        bought.insert(i, x)

    def _remove(self, x: Bought) -> None:
        bought, i = self.bought, bisect_left(self.bought, x)
        if i >= len(bought) or bought[i] != x:
            return  # it did not count
        prev = bought[i - 1] if i else None
        nxt = bought[i + 1] if i + 1 < len(bought) else None
        if prev is not None:
            self._drop_gap(_gap(prev, x))
        if nxt is not None:
            self._drop_gap(_gap(x, nxt))
        if prev is not None and nxt is not None:
            insort(self.gaps, _gap(prev, nxt))
        del bought[i]

    def _drop_gap(self, g: float) -> None:
        j = bisect_left(self.gaps, g)
        del self.gaps[j]

    def copy(self) -> Sweep:
        """A sweep standing where this one stands, to walk ahead without moving this one."""
        other = Sweep.__new__(Sweep)
        other.facts, other.rules, other.t, other.indexed = self.facts, self.rules, self.t, self.indexed
        other.starts, other.ends, other.placed = self.starts, self.ends, self.placed  # read only
        other.bought, other.gaps, other.si, other.ei = list(self.bought), list(self.gaps), self.si, self.ei
        return other

    # -- what the rules conclude -------------------------------------------------------------

    def limit(self) -> float:
        """The at-risk threshold in days: max(at_risk_min_days, factor x median purchase gap)."""
        n, rules = len(self.bought), self.rules
        if n < 2:
            return float(rules.at_risk_min_days)
        gaps, mid = self.gaps, (n - 1) // 2
        gap = gaps[mid] if n % 2 == 0 else (gaps[mid - 1] + gaps[mid]) / 2
        return max(float(rules.at_risk_min_days), rules.at_risk_gap_factor * gap)

    def status(self, T: datetime) -> Status:
        """The status at T, where the sweep stands."""
        f, rules = self.facts, self.rules
        if f.first_seen is None or f.first_seen > T:
            return _NOBODY
        bought, orders = self.bought, f.orders
        n = len(bought)
        recent = n - bisect_right(bought, (T - rules.window, LAST))
        signal = None
        if n >= rules.loyal_min_purchases and recent >= rules.loyal_min_recent_purchases:
            signal = advocacy(f, T, rules)
            stage = "advocate" if signal is not None else "loyal"
        else:
            stage = "repeat" if n >= 2 else "first_buyer" if n == 1 else "prospect"
        if not n:
            return Status(stage, None, 0, None, None, (), T, recent, signal, 0.0, rules)
        first, last = orders[bought[0][2]], orders[bought[-1][2]]
        days = (T - last.at).total_seconds() / DAY
        limit = self.limit()
        return Status(
            stage, _health(days, limit, rules), n, first, last, (last.event_id,), T, recent, signal, limit, rules
        )

    def next_moment(self, t: datetime, status: Status) -> datetime | None:
        """The first time after t (where the sweep stands) at which the status could change:
        the next relevant touchpoint, the first touchpoint, the purchase whose leaving the window
        ends loyalty, the advocacy signal whose leaving ends advocacy, a health threshold
        passing. (Other purchases and signals leaving the window change no stage: not a step.)"""
        f, rules = self.facts, self.rules
        candidates = []
        i = bisect_right(f.moments, (t, LAST))
        if i < len(f.moments):
            candidates.append(f.moments[i][0])
        if f.first_seen is not None and f.first_seen > t:
            candidates.append(f.first_seen)
        candidates += _stage_ends(self.bought, status, rules)
        if status.last is not None:
            for due in _thresholds(status.last.at, status.limit, rules):
                if due > t:
                    candidates.append(due)
        return min(candidates) if candidates else None


def _thresholds(last: datetime, limit: float, rules: LifecycleRules) -> tuple[datetime, datetime]:
    """When the health passes the at-risk threshold and the lapsed one after the last purchase.
    An at-risk threshold beyond the lapsed one never matters (lapsed comes first), and capped
    there it cannot run past the year 9999 (a factor of 100 on a gap of a century would)."""
    return last + timedelta(days=min(limit, rules.lapsed_days)) + TICK, last + rules.lapsed + TICK


def _stage_ends(bought: list[Bought], status: Status, rules: LifecycleRules) -> list[datetime]:
    """When the stage ends by time alone: loyalty when the purchase that keeps the window's count
    at loyal_min_recent_purchases leaves it; advocacy when the latest signal does."""
    out = []
    if status.stage in ("loyal", "advocate"):
        need = rules.loyal_min_recent_purchases
        if need >= 1:
            out.append(bought[len(bought) - need][0] + rules.window)
        if status.stage == "advocate" and status.signal is not None:
            out.append(status.signal[0] + rules.window)
    return out


def _counts(placed: tuple[datetime, str, datetime | None], T: datetime) -> bool:
    """Whether an order (placed at, event id, void) counts as a purchase at T (one voided at or
    before its placement never does)."""
    return placed[0] <= T and (placed[2] is None or placed[2] > T)


def _health(days: float, limit: float, rules: LifecycleRules) -> str:
    """The health of a customer whose last purchase was `days` ago, at-risk threshold `limit`."""
    return "lapsed" if days > rules.lapsed_days else "at_risk" if days > limit else "active"


def _ahead_of(facts: Facts, t: datetime) -> bool:
    """Whether a touchpoint (or the customer's first) is dated after t."""
    return bool(facts.moments and facts.moments[-1][0] > t) or (facts.first_seen is not None and facts.first_seen > t)


def advocacy(facts: Facts, T: datetime, rules: LifecycleRules) -> tuple[datetime, str, str, int | None] | None:
    """The latest advocacy signal in (T - window, T] that meets the rules' thresholds."""
    signals, since = facts.signals, T - rules.window
    for i in range(bisect_right(signals, (T, LAST)) - 1, -1, -1):
        s = signals[i]
        if s[0] <= since:
            return None
        at, _, kind, value = s
        if (
            kind == "referral.converted"
            or (kind == "review.posted" and value is not None and value >= rules.advocate_min_rating)
            or (kind == "survey.answered" and value is not None and value >= rules.advocate_min_nps)
        ):
            return s
    return None


def evaluate(facts: Facts, T: datetime, rules: LifecycleRules) -> Status:
    return Sweep(facts, rules).to(T).status(T)


def purchases(facts: Facts, T: datetime) -> list[Order]:
    """Orders placed by T that were neither cancelled nor fully refunded by T, oldest first."""
    return [facts.orders[oid] for _, _, oid in Sweep(facts, _ANY_RULES).to(T).bought]


def net_purchases(facts: Facts, T: datetime) -> list[tuple[Order, float]]:
    """The purchases as of T, oldest first, each with its net amount in its own currency: the
    order's amount less the refunds made on it by T."""
    out = []
    for _, _, oid in Sweep(facts, _ANY_RULES).to(T).bought:
        order = facts.orders[oid]
        refunded = sum(r[2] for r in facts.refunds.get(oid, ()) if r[0] <= T)
        out.append((order, order.amount - refunded))
    return out


def revenue(facts: Facts, T: datetime) -> dict[str, float]:
    """Net revenue as of T, per currency (amounts in two currencies are never added up): the
    amounts of the purchases (orders placed by T, neither cancelled nor fully refunded by T)
    less the refunds made on them by T. The one definition of revenue, for every reader."""
    out: dict[str, float] = {}
    for order, net in net_purchases(facts, T):
        out[order.currency] = out.get(order.currency, 0.0) + net
    return {currency: round(out[currency], minor_digits(currency)) for currency in sorted(out)}


_ANY_RULES = LifecycleRules()  # what counts as a purchase does not depend on the rules


def timeline(
    facts: Facts,
    rules: LifecycleRules,
    start: datetime | None,
    end: datetime,
    status: Status | None = None,
    sweep: Sweep | None = None,
) -> tuple[list[Transition], Status]:
    """Transitions with effective time in (start, end], and the status at end (the sweep, if
    given, ends standing at end).

    With start=None the walk begins before the first touchpoint, so the customer's
    appearance (None -> prospect) is the first transition.
    """
    sweep = sweep or Sweep(facts, rules)
    if start is None:
        if facts.first_seen is None:
            return [], sweep.to(end).status(end)
        start = facts.first_seen - TICK
    t = start
    sweep.to(t)
    status = status or sweep.status(t)
    out: list[Transition] = []
    while (nxt := sweep.next_moment(t, status)) is not None and nxt <= end:
        new = sweep.to(nxt).status(nxt)
        out += changes(status, new, nxt, sweep)
        t, status = nxt, new
    # Nothing changes stage or health between the last moment and `end` (purchases may have left
    # the window): the status as of `end`.
    return out, sweep.to(end).status(end)


def changes(old: Status, new: Status, at: datetime, sweep: Sweep) -> list[Transition]:
    out = []
    for dim in ("stage", "health"):
        before, after = old.get(dim), new.get(dim)
        if before == after:
            continue
        trigger, trigger_ids = _trigger(sweep, at)
        why = new.stage_reason if dim == "stage" else (new.health_reason or "no purchase counts any more")
        # Every stage change has a touchpoint or a window exit at its moment (its trigger); only
        # a health threshold passes with none, and then the last purchase is the cause.
        causes = trigger_ids or new.health_causes
        out.append(Transition(dim, before, after, at, tuple(dict.fromkeys(causes)), f"{trigger}: {why}"))
    return out


def _trigger(sweep: Sweep, at: datetime) -> tuple[str, tuple[str, ...]]:
    """What happened at `at` (where the sweep stands): touchpoints that occurred then, else what
    left the window (orders, by their earliest placement, and signals, in time and id order)."""
    facts, rules = sweep.facts, sweep.rules
    lo = bisect_right(facts.moments, (at - TICK, LAST))
    hi = bisect_right(facts.moments, (at, LAST))
    here = facts.moments[lo:hi]
    if here:
        return (", ".join(f"{kind} {eid}" for _, eid, kind in here), tuple(eid for _, eid, _ in here))
    if at == facts.first_seen:
        return f"first touchpoint {facts.first_seen_id}", (facts.first_seen_id or "",)
    then = at - rules.window
    left = [
        eid for _, eid, _ in sweep.starts[bisect_left(sweep.starts, (then,)) : bisect_right(sweep.starts, (then, LAST))]
    ]
    left += [
        eid
        for _, eid, *_ in facts.signals[bisect_left(facts.signals, (then,)) : bisect_right(facts.signals, (then, LAST))]
    ]
    if left:
        return f"{', '.join(left)} left the {rules.window_days}-day window", tuple(left)
    return "time passed without a purchase", ()


def next_change(facts: Facts, now: datetime, status: Status, rules: LifecycleRules) -> datetime | None:
    """When the status will next change if nothing new arrives: the due time of a timer."""
    return ahead(Sweep(facts, rules).to(now), now, status)[1]


def ahead(sweep: Sweep, now: datetime, status: Status) -> tuple[datetime | None, datetime | None]:
    """(the next moment after now at which the status could change, the first at which it does),
    for a sweep standing at now, which is left where it stands."""
    first = sweep.next_moment(now, status)
    if first is None:
        return None, None
    facts, t = sweep.facts, now
    if _ahead_of(facts, now):
        # Touchpoints dated ahead of now: walk through them on a copy, as they change things.
        walk = sweep.copy()
        while _ahead_of(facts, t):
            nxt = walk.next_moment(t, status)
            assert nxt is not None
            new = walk.to(nxt).status(nxt)
            if (new.stage, new.health) != (status.stage, status.health):
                return first, nxt
            t, status = nxt, new
        sweep = walk
    return first, _settled_change(sweep, t, status)


def _settled_change(sweep: Sweep, t: datetime, status: Status) -> datetime | None:
    """When the status first changes after t, when nothing is left to happen but time: the
    purchases are settled, so the stage can only fall (purchases or the signal leaving the
    window) and the health only worsen (thresholds passing)."""
    rules = sweep.rules
    times = _stage_ends(sweep.bought, status, rules)
    if status.last is not None:
        last = status.last.at
        for due in sorted(_thresholds(last, status.limit, rules)):
            if due > t:
                days = (due - last).total_seconds() / DAY
                if _health(days, status.limit, rules) != status.health:
                    times.append(due)
                    break
    return min(times) if times else None


def live_transitions(
    facts: Facts,
    recorded: tuple[str | None, str | None],
    evaluated_until: datetime | None,
    now: datetime,
    rules: LifecycleRules,
    sweep: Sweep | None = None,
    late: str | None = None,
) -> tuple[list[Transition], Status]:
    """The changes to record now, given what the feed has recorded up to `evaluated_until`.

    First a correction where late touchpoints (or `late`, another cause: a link between two
    identifiers) changed the status as of evaluated_until (effective at the corrected transition's
    time), then every transition in (evaluated_until, now] in order of effective time. The sweep,
    if given, ends at now.
    """
    sweep = sweep or Sweep(facts, rules)
    if evaluated_until is None:
        return timeline(facts, rules, None, now, sweep=sweep)
    status = sweep.to(evaluated_until).status(evaluated_until)
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
        out.append(
            Transition(dim, was, status.get(dim), at, causes, f"{late or 'late touchpoint'}, history corrected: {why}")
        )
    more, status = timeline(facts, rules, evaluated_until, now, status, sweep)
    return out + more, status


@dataclass(frozen=True, slots=True)
class Memo:
    """What the rules concluded from one version of a customer's facts: `status` holds from
    `at` until `valid_until` (the next moment it could change), and `due` is when stage or
    health next change if nothing new arrives. `sweep` stands at `at`, for the next call."""

    facts_version: int
    rules: LifecycleRules
    at: datetime
    status: Status
    valid_until: datetime | None
    due: datetime | None
    sweep: Sweep | None = field(default=None, compare=False, repr=False)


def advance(
    facts: Facts,
    recorded: tuple[str | None, str | None],
    evaluated_until: datetime | None,
    now: datetime,
    rules: LifecycleRules,
    memo: Memo | None,
    late: str | None = None,
) -> tuple[list[Transition], Status, Memo]:
    """`live_transitions`, and the memo for the next call. Most touchpoints change no lifecycle
    fact and arrive before anything is due: then the memo answers, and nothing is walked."""
    if evaluated_until is not None and now < evaluated_until:
        now = evaluated_until  # a clock gone back (skewed workers): nothing is walked back
    if (
        memo is not None
        and memo.facts_version == facts.version
        and memo.rules is rules
        and evaluated_until is not None
        and memo.at <= evaluated_until
        and (memo.valid_until is None or evaluated_until < memo.valid_until)
    ):
        if (memo.status.stage, memo.status.health) == recorded and (memo.valid_until is None or now < memo.valid_until):
            return [], memo.status, memo
    kept = memo.sweep if memo is not None and memo.rules is rules else None
    sweep = (
        kept
        if kept is not None and facts.listener is not None and facts.listener() is kept
        else Sweep(facts, rules, attach=True)
    )
    transitions, status = live_transitions(facts, recorded, evaluated_until, now, rules, sweep, late)
    return transitions, status, Memo(facts.version, rules, now, status, *ahead(sweep, now, status), sweep)
