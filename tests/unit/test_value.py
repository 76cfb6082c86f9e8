"""Customer value, the pure part (engine.value): conversion to the base currency, historical value,
RFM scores and segments, the Pareto share, each against an independent computation written here."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.projections.facts import Facts
from engine.rules import DEFAULT_RFM_SEGMENTS, RfmSegment, ValueRules
from engine.value import historical, pareto_share, score_rfm
from engine.value.rfm import OTHER

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bought(*orders: tuple[str, float, str, int]) -> Facts:
    """Facts of orders (id, amount, currency, day after T0)."""
    f = Facts()
    for oid, amount, currency, day in orders:
        f.add(oid, "order.placed", T0 + timedelta(days=day), {"order_id": oid, "amount": amount, "currency": currency})
    return f


def test_amounts_without_a_rate_are_named_apart_never_added():
    rules = ValueRules(base_currency="EUR", rates={"USD": 0.5})
    v = historical(
        bought(("a", 10.0, "EUR", 0), ("b", 4.0, "USD", 1), ("c", 1000.0, "JPY", 2)), T0 + timedelta(3), rules
    )
    assert (v.net_revenue, v.unconverted, v.purchases) == (12.0, {"JPY": 1000.0}, 3)
    assert ValueRules(base_currency="USD").table == {}  # the illustrative euro rates are for a euro base
    with pytest.raises(ValueError, match="positive"):
        ValueRules(rates={"USD": 0})
    with pytest.raises(ValueError, match="ISO 4217"):
        ValueRules(base_currency="EURO")


def test_historical_value_counts_net_revenue_purchases_and_tenure():
    f = Facts()
    f.saw("v0", T0)
    f.add("o1", "order.placed", T0 + timedelta(days=1), {"order_id": "a", "amount": 100.0, "currency": "EUR"})
    f.add("o2", "order.placed", T0 + timedelta(days=3), {"order_id": "b", "amount": 50.0, "currency": "USD"})
    f.add("r1", "order.refunded", T0 + timedelta(days=4), {"order_id": "a", "amount": 40.0})
    f.add("o3", "order.placed", T0 + timedelta(days=5), {"order_id": "c", "amount": 30.0, "currency": "EUR"})
    f.add("c3", "order.cancelled", T0 + timedelta(days=6), {"order_id": "c"})
    v = historical(f, T0 + timedelta(days=10), ValueRules(rates={"USD": 0.5}))
    assert (v.net_revenue, v.purchases, v.average_order_value) == (100 - 40 + 25, 2, 42.5)
    assert (v.first_purchase, v.last_purchase, v.tenure_days) == (T0 + timedelta(days=1), T0 + timedelta(days=3), 10)
    before = historical(f, T0 + timedelta(days=2), ValueRules())
    assert (before.net_revenue, before.purchases) == (100.0, 1)  # as of a time: the refund came later


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1, 500), min_size=1, max_size=5), st.floats(0.01, 1), st.integers(0, 4))
def test_a_refund_lowers_net_revenue_and_never_raises_it(amounts, part, which):
    f = Facts()
    for i, a in enumerate(amounts):
        f.add(f"o{i}", "order.placed", T0 + timedelta(days=i), {"order_id": f"x{i}", "amount": a, "currency": "EUR"})
    T = T0 + timedelta(days=30)
    before = historical(f, T, ValueRules()).net_revenue
    k = which % len(amounts)
    f.add("r", "order.refunded", T0 + timedelta(days=10), {"order_id": f"x{k}", "amount": amounts[k] * part})
    assert historical(f, T, ValueRules()).net_revenue <= before


def independent_scores(values: dict[str, float]) -> dict[str, int]:
    """Quintile scores as docs/value.md words them: the fifth where a value starts, from the worst."""
    n = len(values)
    return {p: 1 + math.floor(5 * sum(1 for w in values.values() if w < v) / n) for p, v in values.items()}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text("abcdef", min_size=1, max_size=3),
        st.tuples(st.integers(0, 400), st.integers(1, 12), st.integers(0, 2000)),
        min_size=1,
        max_size=40,
    )
)
def test_rfm_scores_and_segments_match_an_independent_computation(rows):
    got = score_rfm({p: (float(r), f, float(m)) for p, (r, f, m) in rows.items()}, DEFAULT_RFM_SEGMENTS)
    r = independent_scores({p: -v[0] for p, v in rows.items()})
    f = independent_scores({p: v[1] for p, v in rows.items()})
    m = independent_scores({p: v[2] for p, v in rows.items()})
    for p in rows:
        x = got[p]
        assert (x.r, x.f, x.m) == (r[p], f[p], m[p])
        assert x.code == f"{r[p]}{f[p]}{m[p]}"
        covering = [s.name for s in DEFAULT_RFM_SEGMENTS if s.covers(x.r, x.f, x.m)]
        assert covering[0] == x.segment  # the first that covers it: the defaults cover every score


def test_equal_values_share_a_score_and_the_first_matching_segment_wins():
    got = score_rfm({"a": (10.0, 1, 5.0), "b": (10.0, 1, 5.0), "c": (1.0, 3, 9.0)}, DEFAULT_RFM_SEGMENTS)
    assert got["a"].code == got["b"].code == "111" and got["c"].code == "444"
    mine = (RfmSegment(name="Everyone", r=(1, 5)), RfmSegment(name="Never", r=(1, 5)))
    assert {x.segment for x in score_rfm({"a": (1.0, 1, 1.0)}, mine).values()} == {"Everyone"}
    assert score_rfm({"a": (1.0, 1, 1.0)}, (RfmSegment(name="Top", r=(5, 5), f=(5, 5)),))["a"].segment == OTHER
    with pytest.raises(ValueError, match="within 1..5"):
        RfmSegment(name="x", r=(0, 3))


@given(st.lists(st.floats(0, 1000), min_size=1, max_size=50), st.sampled_from([0.1, 0.2, 0.25, 0.5]))
def test_the_pareto_share_is_the_top_ceil_share_of_buyers(revenues, top):
    share = pareto_share(revenues, top)
    total = sum(revenues)
    if total <= 0:
        assert share is None
        return
    k = max(1, math.ceil(len(revenues) * top - 1e-9))
    assert share == pytest.approx(sum(sorted(revenues)[::-1][:k]) / total)


def test_the_default_segments_name_every_score():
    cells = [(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
    assert all(any(s.covers(*c) for s in DEFAULT_RFM_SEGMENTS) for c in cells)
