"""The customer ladder declared as data (engine.ladders.default), walked incrementally, gives
exactly what the rules gave when they were code, one full evaluation per moment (the oracle,
tests/support/oracle_lifecycle.py): the same statuses as of any time, the same history (changes,
effective times, causes), the same due times, and the same changes when touchpoints arrive in
batches, late and out of order, with a walk kept between batches. The reasons are worded from the
ladder's conditions now, so their words are checked on their own (test_ladders)."""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import LifecycleRules
from engine.projections import lifecycle as new
from engine.projections.facts import Facts

from ..support import oracle_lifecycle as old

L = new.customer_ladder  # the customer ladder of these [lifecycle] rules

START = datetime(2024, 1, 1, tzinfo=UTC)
KINDS = ["order.placed"] * 6 + [
    "order.cancelled",
    "order.refunded",
    "order.refunded",
    "review.posted",
    "survey.answered",
    "referral.converted",
    "page.viewed",
]


@st.composite
def rules(draw):
    return LifecycleRules(
        window_days=draw(st.sampled_from([30, 90, 365])),
        loyal_min_purchases=draw(st.integers(1, 5)),
        loyal_min_recent_purchases=draw(st.integers(0, 3)),
        advocate_min_nps=draw(st.integers(0, 10)),
        advocate_min_rating=draw(st.integers(1, 5)),
        at_risk_min_days=draw(st.sampled_from([1, 20, 60])),
        at_risk_gap_factor=draw(st.sampled_from([0.5, 1.0, 2.0, 3.7])),
        lapsed_days=draw(st.sampled_from([10, 90, 365])),
    )


@st.composite
def events(draw, max_events: int = 40):
    """(event id, kind, at, properties): many orders, voids, signals; times on a coarse grid, so
    that ties (several touchpoints at one instant, exits at one instant) happen."""
    out = []
    for i in range(draw(st.integers(1, max_events))):
        at = START + timedelta(hours=6 * draw(st.integers(0, 4 * 400)))
        kind = draw(st.sampled_from(KINDS))
        oid = f"o{draw(st.integers(0, 12))}"
        props = {
            "order.placed": {"order_id": oid, "amount": float(draw(st.integers(0, 4)) * 10)},
            "order.cancelled": {"order_id": oid},
            "order.refunded": {"order_id": oid, "amount": float(draw(st.integers(0, 4)) * 5)},
            "review.posted": {"rating": draw(st.integers(1, 5))},
            "survey.answered": {"nps": draw(st.integers(0, 10))},
        }.get(kind, {})
        out.append((f"e{i:03d}", kind, at, props))
    return out


def plain(transitions) -> list[tuple]:
    """What a transition says, but its reason's words; its causes as a set (a window exit lists
    what left in the ladder's order of its conditions)."""
    return [astuple(t)[:4] + (frozenset(t.causes),) for t in transitions]  # the two modules' classes differ


def fold(evs) -> Facts:
    f = Facts()
    for e in evs:
        f.add(*e)
    return f


def same_status(a: new.Status, b: old.Status, worded: bool = True) -> None:
    """The same conclusions; with `worded`, the same time, and reasons given (a memo's status is
    as of when it was concluded, which differs where the walk skips moments that change nothing)."""
    assert (a.stage, a.health) == (b.stage, b.health)
    assert a.count == len(b.purchases)
    assert (a.first, a.last) == ((b.purchases[0], b.purchases[-1]) if b.purchases else (None, None))
    assert a.health_causes == b.health_causes
    if worded:
        assert a.at == b.at
        assert bool(a.stage_reason) and bool(a.health_reason) == bool(b.health_reason)


@settings(max_examples=400, deadline=None)
@given(evs=events(), r=rules(), data=st.data())
def test_as_of_history_and_due_times_equal_the_oracle(evs, r, data):
    f = fold(evs)
    end = START + timedelta(days=900)
    assert plain(new.timeline(f, L(r), None, end)[0]) == plain(old.timeline(f, r, None, end)[0])
    for _ in range(12):
        T = START + timedelta(
            hours=data.draw(st.integers(-10, 4 * 900)) * 6 + data.draw(st.sampled_from([0, 1])),
            microseconds=data.draw(st.sampled_from([0, 1, -1])),
        )
        a, b = new.evaluate(f, T, L(r)), old.evaluate(f, T, r)
        same_status(a, b)
        assert new.next_change(f, T, a, L(r)) == old.next_change(f, T, b, r)
        assert [o.event_id for o in new.purchases(f, T)] == [o.event_id for o in old.purchases(f, T)]


@settings(max_examples=300, deadline=None)
@given(evs=events(max_events=60), r=rules(), data=st.data())
def test_batches_with_a_kept_sweep_record_what_the_oracle_records(evs, r, data):
    """A live customer: touchpoints arrive in batches (in any order, late ones too), the clock
    moves on, and timers fire; each derivation is compared, memo and all."""
    order = data.draw(st.permutations(evs))
    steps, now, i = [], START, 0
    for _ in range(len(order) + 6):  # every touchpoint, then a few timer runs
        now += timedelta(hours=6 * data.draw(st.integers(0, 4 * 40)))  # on the events' grid: ties with now
        batch = order[i : i + data.draw(st.integers(1, 5))]
        i += len(batch)
        steps.append((now, [e for e in batch if e[2] <= now + timedelta(days=1)]))  # nothing beyond tomorrow
    run_both(r, steps)


def test_a_heavy_history_walks_in_time_that_does_not_grow_with_its_length():
    """Not a timing test: counts the work. Appending a purchase to a history of 4,000 and
    deriving costs as many steps of the walk as appending one to a history of 40."""
    r = LifecycleRules()
    steps = {}
    for n in (40, 4000):
        f = Facts()
        memo = None
        recorded, until = (None, None), None
        for k in range(n):
            at = START + timedelta(hours=3 * k)
            f.add(f"o{k}", "order.placed", at, {"order_id": f"o{k}", "amount": 10.0})
            if k % 50 == 0 or k == n - 2:
                trs, status, memo = new.advance(f, recorded, until, at, L(r), memo)
                for tr in trs:
                    recorded = (tr.to_value, recorded[1]) if tr.dimension == "stage" else (recorded[0], tr.to_value)
                until = at
        at = START + timedelta(hours=3 * n)
        f.add("last", "order.placed", at, {"order_id": "last", "amount": 10.0})
        calls = []
        original = new.Walk.status

        def counting(self, T):
            calls.append(T)  # noqa: B023 - used and undone within this iteration
            return original(self, T)  # noqa: B023

        new.Walk.status = counting
        try:
            new.advance(f, recorded, until, at, L(r), memo)
        finally:
            new.Walk.status = original
        steps[n] = len(calls)
    assert steps[4000] == steps[40], steps


def run_both(r: LifecycleRules, steps: list[tuple[datetime, list]]) -> None:
    """Deliver (now, touchpoints) steps to a kept sweep and to the oracle, as the engine derives a
    live customer; compare each derivation, memo and all."""
    fa, fb = Facts(), Facts()
    memo_a = memo_b = None
    recorded, until = (None, None), None
    for now, batch in steps:
        for e in batch:
            fa.add(*e)
            fb.add(*e)
        ta, sa, memo_a = new.advance(fa, recorded, until, now, L(r), memo_a)
        tb, sb, memo_b = old.advance(fb, recorded, until, now, r, memo_b)
        assert plain(ta) == plain(tb)
        same_status(sa, sb, worded=False)
        assert memo_a.due == memo_b.due  # (valid_until may lie later: the walk skips moments that change nothing)
        for tr in ta:  # what the feed now says
            recorded = (tr.to_value, recorded[1]) if tr.dimension == "stage" else (recorded[0], tr.to_value)
        if batch or ta:  # recorded touchpoints or changes: the feed is exact up to now
            until = now


def buy(eid: str, at: datetime, oid: str | None = None, amount: float = 10.0) -> tuple:
    return (eid, "order.placed", at, {"order_id": oid or eid, "amount": amount})


def test_a_second_order_at_the_very_instant_the_sweep_stands_on():
    t = START + timedelta(days=10)
    r = LifecycleRules()
    run_both(
        r,
        [
            (t, [buy("o1", START), buy("z", t)]),
            (t, [buy("a", t)]),  # sorts before "z", at the sweep's instant
            (
                t + timedelta(hours=1),
                [buy("b", t + timedelta(hours=1)), ("c", "order.cancelled", t + timedelta(hours=1), {"order_id": "a"})],
            ),
            (t + timedelta(days=400), []),
        ],
    )


def test_voids_and_earlier_placements_after_and_before_the_sweep():
    r = LifecycleRules(at_risk_min_days=5)
    d = lambda n: START + timedelta(days=n)  # noqa: E731
    run_both(
        r,
        [
            (d(10), [buy("o1", d(1), amount=30), buy("o2", d(5)), buy("o3", d(9))]),
            (d(12), [("r1", "order.refunded", d(12), {"order_id": "o1", "amount": 20.0})]),  # not enough
            (d(14), [("r2", "order.refunded", d(14), {"order_id": "o1", "amount": 10.0})]),  # voids o1 now
            (d(20), [("r3", "order.refunded", d(3), {"order_id": "o2", "amount": 10.0})]),  # late: before
            (d(30), [buy("o4", d(25), oid="o3", amount=5)]),  # a later placement: no change
            (d(40), [buy("o5", d(2), oid="o3", amount=50)]),  # an earlier one: moves the order
            (d(50), [("c1", "order.cancelled", d(60), {"order_id": "o3"})]),  # a void ahead of now
            (d(70), []),
            (d(500), []),
        ],
    )


@settings(max_examples=300, deadline=None)
@given(evs=events(), r=rules(), data=st.data())
def test_one_sweep_moved_back_and_forth_stands_where_a_fresh_one_would(evs, r, data):
    f = fold(evs)
    walk = new.Walk(f, L(r))
    for _ in range(10):
        T = START + timedelta(hours=6 * data.draw(st.integers(-4, 4 * 420)))
        a, b = walk.to(T).status(T), old.evaluate(f, T, r)
        same_status(a, b)
        fresh = new.Walk(f, L(r)).to(T)
        for i in range(len(walk.tallies)):
            assert walk.tally(i).bought == fresh.tally(i).bought
            assert walk.tally(i).gaps == fresh.tally(i).gaps
