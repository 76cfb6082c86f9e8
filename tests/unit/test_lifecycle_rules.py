"""Each lifecycle rule at its boundaries, on the pure functions (no store)."""

from __future__ import annotations

from datetime import datetime

import pytest

from engine.config import LifecycleRules
from engine.projections.facts import Facts
from engine.projections.lifecycle import TICK, customer_ladder, evaluate, next_change, timeline

from ..helpers import day

RULES = customer_ladder(LifecycleRules())  # the customer ladder of the default [lifecycle]


def facts(*events: tuple) -> Facts:
    f = Facts()
    for eid, kind, at, props in events:
        f.add(eid, kind, at, props)
    return f


def buy(eid: str, at: datetime, amount: float = 10.0, order_id: str | None = None) -> tuple:
    return (eid, "order.placed", at, {"order_id": order_id or eid, "amount": amount})


def stage(f: Facts, T: datetime) -> str | None:
    return evaluate(f, T, RULES).stage


def test_no_touchpoint_yet_is_no_stage():
    f = facts(("v", "page.viewed", day(10), {}))
    assert stage(f, day(10) - TICK) is None
    assert stage(f, day(10)) == "prospect"  # occurred_at <= T counts


def test_purchase_counts_stage_by_stage():
    f = facts(buy("o1", day(0)), buy("o2", day(10)), buy("o3", day(20)), buy("o4", day(30)))
    assert [stage(f, day(d)) for d in (0, 10, 20, 29, 30)] == ["first_buyer", "repeat", "repeat", "repeat", "loyal"]


def test_same_order_placed_twice_counts_once_at_the_earliest():
    f = facts(buy("a", day(5), order_id="X"), buy("b", day(1), order_id="X"))
    assert stage(f, day(1)) == "first_buyer"
    assert evaluate(f, day(9), RULES).first.event_id == "b"


def test_loyal_needs_recent_purchases_at_window_boundary():
    # 4 purchases, the last two on days 100 and 200: loyal until day 100 leaves (T - 365, T].
    f = facts(buy("o1", day(0)), buy("o2", day(50)), buy("o3", day(100)), buy("o4", day(200)))
    assert stage(f, day(200)) == "loyal"
    assert stage(f, day(465) - TICK) == "loyal"  # day 100 still inside: T-365 < 100
    assert stage(f, day(465)) == "repeat"  # day 100 == T-365: outside the window


def test_loyal_min_recent_purchases_exactly():
    rules = customer_ladder(LifecycleRules(loyal_min_recent_purchases=3))
    f = facts(buy("o1", day(0)), buy("o2", day(300)), buy("o3", day(310)), buy("o4", day(320)))
    assert evaluate(f, day(320), rules).stage == "loyal"  # 3 recent
    assert evaluate(f, day(665), rules).stage == "repeat"  # day 300 left: 2 recent


@pytest.mark.parametrize(
    "signal, props, advocate",
    [
        ("review.posted", {"rating": 4}, True),
        ("review.posted", {"rating": 3}, False),
        ("survey.answered", {"nps": 9}, True),
        ("survey.answered", {"nps": 8}, False),
        ("survey.answered", {"csat": 5}, False),
        ("referral.converted", {}, True),
        ("referral.made", {}, False),
    ],
)
def test_advocate_signals_and_thresholds(signal, props, advocate):
    f = facts(*(buy(f"o{i}", day(i * 10)) for i in range(4)), ("s", signal, day(40), props))
    assert stage(f, day(40)) == ("advocate" if advocate else "loyal")


def test_advocate_signal_expires_with_the_window():
    f = facts(
        *(buy(f"o{i}", day(i * 10)) for i in range(4)),
        ("s", "referral.converted", day(5), {}),
        buy("o9", day(300)),
        buy("o10", day(360)),
    )
    assert stage(f, day(369)) == "advocate"
    assert stage(f, day(370)) == "loyal"  # the referral of day 5 left the window on day 370


def test_advocacy_requires_loyalty():
    f = facts(buy("o1", day(0)), ("s", "review.posted", day(1), {"rating": 5}))
    assert stage(f, day(2)) == "first_buyer"


def test_demotion_by_cancellation_and_full_refund_but_not_partial():
    base = [buy("o1", day(0), 100), buy("o2", day(10), 100)]
    cancelled = facts(*base, ("c", "order.cancelled", day(20), {"order_id": "o2"}))
    assert stage(cancelled, day(19)) == "repeat" and stage(cancelled, day(20)) == "first_buyer"
    partial = facts(*base, ("r", "order.refunded", day(20), {"order_id": "o2", "amount": 99.99}))
    assert stage(partial, day(30)) == "repeat"
    full = facts(
        *base,
        ("r1", "order.refunded", day(20), {"order_id": "o2", "amount": 60}),
        ("r2", "order.refunded", day(25), {"order_id": "o2", "amount": 40}),
    )
    assert stage(full, day(24)) == "repeat" and stage(full, day(25)) == "first_buyer"


def test_refund_of_unknown_order_changes_nothing():
    f = facts(buy("o1", day(0)), ("r", "order.refunded", day(1), {"order_id": "zzz", "amount": 10}))
    assert stage(f, day(2)) == "first_buyer"


def test_health_single_purchase_boundaries():
    f = facts(buy("o1", day(0)))
    h = lambda T: evaluate(f, T, RULES).health  # noqa: E731
    assert h(day(60)) == "active" and h(day(60) + TICK) == "at_risk"
    assert h(day(365)) == "at_risk" and h(day(365) + TICK) == "lapsed"


def test_health_uses_median_gap_factor():
    # gaps 50, 50, 100 days: median 50, x2.0 = 100 > 60 days
    f = facts(buy("a", day(0)), buy("b", day(50)), buy("c", day(100)), buy("d", day(200)))
    h = lambda T: evaluate(f, T, RULES).health  # noqa: E731
    assert h(day(300)) == "active" and h(day(300) + TICK) == "at_risk"
    # short gaps: the 60-day minimum applies
    g = facts(buy("a", day(0)), buy("b", day(5)), buy("c", day(10)))
    assert evaluate(g, day(70), RULES).health == "active"
    assert evaluate(g, day(70) + TICK, RULES).health == "at_risk"


def test_prospects_have_no_health():
    assert evaluate(facts(("v", "page.viewed", day(0), {})), day(900), RULES).health is None


def test_timeline_walks_every_change_and_next_change_is_the_timer():
    f = facts(("r", "customer.registered", day(0), {}), buy("o1", day(10)))
    changes, status = timeline(f, RULES, None, day(1000))
    assert [(c.dimension, c.from_value, c.to_value, c.effective_at) for c in changes] == [
        ("stage", None, "prospect", day(0)),
        ("stage", "prospect", "first_buyer", day(10)),
        ("health", None, "active", day(10)),
        ("health", "active", "at_risk", day(70) + TICK),
        ("health", "at_risk", "lapsed", day(375) + TICK),
    ]
    assert next_change(f, day(20), evaluate(f, day(20), RULES), RULES) == day(70) + TICK
    assert next_change(f, day(400), status, RULES) is None


def test_timeline_reasons_name_the_causes():
    f = facts(*(buy(f"o{i}", day(i)) for i in range(4)), ("c", "order.cancelled", day(5), {"order_id": "o3"}))
    changes, _ = timeline(f, RULES, None, day(6))
    demotion = [c for c in changes if c.dimension == "stage"][-1]
    assert (demotion.from_value, demotion.to_value, demotion.causes) == ("loyal", "repeat", ("c",))
    assert "order.cancelled c" in demotion.reason
