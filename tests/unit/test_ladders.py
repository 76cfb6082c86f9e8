"""Ladders as data: any ladder the language can say, walked incrementally, gives what a plain
evaluation at every instant gives (tests/support/oracle_ladder.py); each condition at its
boundaries; a person's facts fed late and in batches; the reasons' words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.ladders.model import LadderDef
from engine.projections import lifecycle
from engine.projections.facts import Facts

from ..support import oracle_ladder as plain

START = datetime(2025, 1, 1, tzinfo=UTC)
KINDS = ["shift.done", "shift.done", "pulse.answered", "badge.won", "badge.revoked", "bonus.clawback", "page.viewed"]


def day(n: float) -> datetime:
    return START + timedelta(days=n)


def counted_specs():
    return st.one_of(
        st.just({"kinds": ["shift.done"]}),
        st.just({"kinds": ["shift.done", "badge.won"]}),
        st.builds(
            lambda lo: {"kinds": ["pulse.answered"], "where": {"property": "score", "at_least": lo}},
            st.integers(0, 10),
        ),
        st.just({"kinds": ["badge.won"], "once_per": "badge", "voided_by": ["badge.revoked"]}),
        st.just({"kinds": ["badge.won"], "once_per": "badge", "reduced_by": ["bonus.clawback"]}),
        st.just("purchases"),
    )


def leaves():
    windows = st.one_of(st.none(), st.sampled_from([3, 10, 30]))
    return st.one_of(
        st.builds(
            lambda c, n, w: {"count": c, "at_least": n, "within_days": w}, counted_specs(), st.integers(1, 3), windows
        ),
        st.builds(
            lambda c, x, w: {"sum": "amount", "of": c, "at_least": x, "within_days": w},
            st.sampled_from(
                [{"kinds": ["badge.won"], "once_per": "badge", "reduced_by": ["bonus.clawback"]}, "purchases"]
            ),
            st.sampled_from([5.0, 20.0, 45.0]),
            windows,
        ),
        st.builds(
            lambda lo, hi, w: {
                "latest": "score",
                "of": ["pulse.answered"],
                "at_least": lo,
                "at_most": hi,
                "within_days": w,
            },
            st.sampled_from([None, 3.0, 7.0]),
            st.sampled_from([8.0, 10.0]),
            windows,
        ),
        st.builds(
            lambda c, d, g, f: {"absent": c, "more_than_days": d, "gap_factor": g, "since_first": f},
            counted_specs(),
            st.sampled_from([2, 7, 20]),
            st.sampled_from([None, 0.5, 2.0]),
            st.booleans(),
        ),
    )


conditions = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(lambda ps: {"all": ps}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda ps: {"any": ps}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=4,
)


@st.composite
def ladders(draw):
    n = draw(st.integers(1, 3))
    stages = [{"name": "s0"}] + [{"name": f"s{i + 1}", "when": draw(conditions)} for i in range(n)]
    health = [{"name": f"h{i}", "when": draw(conditions)} for i in range(draw(st.integers(0, 3)))]
    return LadderDef.model_validate({"name": "test", "stages": stages, "health": health})


@st.composite
def touchpoints(draw, max_events: int = 25):
    out = []
    for i in range(draw(st.integers(1, max_events))):
        at = START + timedelta(hours=12 * draw(st.integers(0, 2 * 60)))
        kind = draw(st.sampled_from(KINDS + ["order.placed", "order.cancelled", "order.refunded"]))
        key = f"k{draw(st.integers(0, 4))}"
        props = {
            "shift.done": {},
            "pulse.answered": {"score": draw(st.integers(0, 10))},
            "badge.won": {"badge": key, "amount": float(draw(st.integers(0, 3)) * 10)},
            "badge.revoked": {"badge": key},
            "bonus.clawback": {"badge": key, "amount": float(draw(st.integers(1, 3)) * 5)},
            "order.placed": {"order_id": key, "amount": float(draw(st.integers(0, 3)) * 10), "currency": "EUR"},
            "order.cancelled": {"order_id": key},
            "order.refunded": {"order_id": key, "amount": float(draw(st.integers(1, 3)) * 5)},
        }.get(kind, {})
        out.append((f"e{i:03d}", kind, at, props))
    return out


def fold(tps) -> Facts:
    f = Facts()
    for eid, kind, at, props in tps:
        f.add(eid, kind, at, props)
    return f


def plain_transitions(trs):
    return [(t.dimension, t.from_value, t.to_value, t.effective_at) for t in trs]


@settings(max_examples=300, deadline=None)
@given(d=ladders(), tps=touchpoints(), data=st.data())
def test_any_ladder_walks_to_what_a_plain_evaluation_at_every_instant_gives(d, tps, data):
    ladder = lifecycle.compile_ladder(d)  # before folding: the facts keep the kinds it reads
    f = fold(tps)
    end = day(75)
    got = lifecycle.timeline(f, ladder, None, end)[0]
    assert plain_transitions(got) == plain.timeline(d, tps, end)
    for _ in range(6):
        T = START + timedelta(
            hours=data.draw(st.integers(-2, 150)) * 12, microseconds=data.draw(st.sampled_from([0, 1, -1]))
        )
        s = lifecycle.evaluate(f, T, ladder)
        assert (s.stage, s.health) == plain.status(d, tps, T)
        if s.stage is not None:
            assert s.stage_reason  # worded without error
        later = [t[3] for t in plain.timeline(d, tps, day(400)) if t[3] > T]
        assert lifecycle.next_change(f, T, s, ladder) == (later[0] if later else None)


@settings(max_examples=150, deadline=None)
@given(d=ladders(), tps=touchpoints(max_events=30), data=st.data())
def test_batches_late_and_out_of_order_record_the_same_history(d, tps, data):
    """A live person: touchpoints arrive in batches, in any order, with a walk kept between
    batches; the changes recorded add up to the plain timeline's, corrections included."""
    ladder = lifecycle.compile_ladder(d)
    order = data.draw(st.permutations(tps))
    f = Facts()
    memo, recorded, until = None, (None, None), None
    now = START
    i = 0
    while i < len(order):
        batch = order[i : i + data.draw(st.integers(1, 4))]
        i += len(batch)
        now = max([now] + [tp[2] for tp in batch])
        for eid, kind, at, props in batch:
            f.add(eid, kind, at, props)
        trs, status, memo = lifecycle.advance(f, recorded, until, now, ladder, memo)
        for tr in trs:
            recorded = (tr.to_value, recorded[1]) if tr.dimension == "stage" else (recorded[0], tr.to_value)
        until = now
        assert recorded == plain.status(d, order[:i], now)
    end = day(80)
    trs, status, memo = lifecycle.advance(f, recorded, until, end, ladder, memo)
    for tr in trs:
        recorded = (tr.to_value, recorded[1]) if tr.dimension == "stage" else (recorded[0], tr.to_value)
    assert recorded == plain.status(d, tps, end)


def ladder(**stages) -> lifecycle.Ladder:
    return lifecycle.compile_ladder(
        LadderDef.model_validate(
            {"name": "t", "stages": [{"name": "start"}] + [{"name": n, "when": c} for n, c in stages.items()]}
        )
    )


def test_a_window_count_ends_the_instant_its_oldest_needed_touchpoint_is_window_days_old():
    lad = ladder(busy={"count": {"kinds": ["shift.done"]}, "at_least": 2, "within_days": 10})
    f = Facts()
    for n in (0, 3):
        f.add(f"s{n}", "shift.done", day(n), {})
    trs = lifecycle.timeline(f, lad, None, day(30))[0]
    assert [(t.to_value, t.effective_at) for t in trs] == [("start", day(0)), ("busy", day(3)), ("start", day(10))]
    assert "s0 left the 10-day window" in trs[-1].reason


def test_an_absence_passes_just_after_its_days_and_a_new_touchpoint_ends_it():
    lad = lifecycle.compile_ladder(
        LadderDef.model_validate(
            {
                "name": "t",
                "stages": [
                    {"name": "start"},
                    {"name": "went", "when": {"count": {"kinds": ["shift.done"]}, "at_least": 1}},
                ],
                "health": [
                    {
                        "name": "quiet",
                        "when": {"absent": {"kinds": ["shift.done"]}, "more_than_days": 7, "since_first": True},
                    }
                ],
            }
        )
    )
    f = Facts()
    f.add("r", "customer.registered", day(0), {})
    assert lifecycle.evaluate(f, day(7), lad).health is None
    assert lifecycle.evaluate(f, day(7) + lifecycle.TICK, lad).health == "quiet"  # since the first touchpoint
    f.add("s", "shift.done", day(9), {})
    assert lifecycle.evaluate(f, day(9), lad).health is None
    s = lifecycle.evaluate(f, day(12), lad)
    assert lifecycle.next_change(f, day(12), s, lad) == day(16) + lifecycle.TICK
    assert (
        lifecycle.evaluate(f, day(17), lad).health_reason == "last of shift.done 8 days before 2025-01-18, more than 7"
    )


def test_a_sum_counts_an_order_net_of_its_refunds_and_a_cancelled_one_not_at_all():
    lad = ladder(big={"sum": "amount", "of": "purchases", "at_least": 100})
    f = Facts()
    f.add("o1", "order.placed", day(1), {"order_id": "A", "amount": 80.0, "currency": "EUR"})
    f.add("o2", "order.placed", day(2), {"order_id": "B", "amount": 30.0, "currency": "EUR"})
    assert lifecycle.evaluate(f, day(2), lad).stage == "big"
    f.add("r1", "order.refunded", day(3), {"order_id": "A", "amount": 20.0})
    assert lifecycle.evaluate(f, day(3), lad).stage == "start"  # 60 + 30
    assert lifecycle.evaluate(f, day(2), lad).stage == "big"  # as of before the refund


def test_the_latest_value_decides_not_the_best():
    lad = ladder(happy={"latest": "score", "of": ["pulse.answered"], "at_least": 9})
    f = Facts()
    f.add("p1", "pulse.answered", day(1), {"score": 10})
    f.add("p2", "pulse.answered", day(2), {"score": 6})
    assert lifecycle.evaluate(f, day(1), lad).stage == "happy"
    assert lifecycle.evaluate(f, day(2), lad).stage == "start"


def test_the_customer_ladder_words_its_reasons_from_its_conditions():
    lad = lifecycle.customer_ladder(lifecycle.LifecycleRules())
    f = Facts()
    for n in range(4):
        f.add(f"o{n}", "order.placed", day(40 * n), {"order_id": f"o{n}", "amount": 10.0, "currency": "EUR"})
    s = lifecycle.evaluate(f, day(130), lad)
    assert s.stage == "loyal"
    assert s.stage_reason == (
        "purchases: 4 (at least 4); purchases in the 365 days to 2025-05-11: 4 (at least 2); "
        "not advocate: none of: converted_referrals in the 365 days to 2025-05-11: 0 (at least 1); "
        "good_reviews in the 365 days to 2025-05-11: 0 (at least 1); "
        "promoter_answers in the 365 days to 2025-05-11: 0 (at least 1)"
    )
    assert s.health_reason == "purchases: 4 (at least 1)"
    s = lifecycle.evaluate(f, day(300), lad)
    assert s.health == "at_risk"
    assert s.health_reason == (
        "last of purchases 180 days before 2025-10-28, more than 80 (the larger of 60 and 2 x the median gap)"
    )


@pytest.mark.parametrize(
    "stages, words",
    [
        (
            [
                {"name": "a", "when": {"count": "purchases", "at_least": 1}},
                {"name": "b", "when": {"count": "purchases", "at_least": 2}},
            ],
            "first stage",
        ),
        ([{"name": "a"}, {"name": "b"}], "needs `when`"),
        ([{"name": "a"}, {"name": "b", "when": {"count": "purchases"}}], "at_least"),
        ([{"name": "a"}, {"name": "b", "when": {"cout": "purchases", "at_least": 1}}], "exactly one of the keys"),
        ([{"name": "a"}, {"name": "a", "when": {"count": "purchases", "at_least": 1}}], "listed twice"),
        ([{"name": "a"}, {"name": "b", "when": {"count": "purchases", "at_least": "4"}}], "valid integer"),
        (
            [
                {"name": "a"},
                {
                    "name": "b",
                    "when": {
                        "count": {"kinds": ["x.y"], "once_per": "k", "voided_by": ["x.z"], "reduced_by": ["x.z"]},
                        "at_least": 1,
                    },
                },
            ],
            "x.z is listed twice in voided_by and reduced_by",
        ),
        (
            [{"name": "a"}, {"name": "b", "when": {"latest": "s", "of": ["x.y"], "at_least": 9, "at_most": 3}}],
            "at_least 9 is above at_most 3",
        ),
    ],
)
def test_a_malformed_ladder_is_refused_with_what_to_fix(stages, words):
    with pytest.raises(ValidationError) as e:
        LadderDef.model_validate({"name": "t", "stages": stages})
    assert words in str(e.value)


def test_a_health_rule_named_twice_is_refused():
    """(Its timers would be looked for under one of the two, and the other's missed.)"""
    with pytest.raises(ValidationError, match="health rule ok is listed twice"):
        LadderDef.model_validate(
            {
                "name": "t",
                "stages": [{"name": "a"}, {"name": "b", "when": {"count": "purchases", "at_least": 1}}],
                "health": [
                    {"name": "ok", "when": {"count": "purchases", "at_least": 1}},
                    {"name": "ok", "when": {"count": "purchases", "at_least": 5}},
                ],
            }
        )


def test_a_negative_reduction_reduces_nothing_and_a_void_is_for_good():
    lad = ladder(
        won={"count": {"kinds": ["badge.won"], "once_per": "badge", "reduced_by": ["bonus.clawback"]}, "at_least": 1}
    )
    f = Facts()
    f.add("w", "badge.won", day(1), {"badge": "k", "amount": 10.0})
    f.add("c1", "bonus.clawback", day(2), {"badge": "k", "amount": 10.0})
    f.add("c2", "bonus.clawback", day(3), {"badge": "k", "amount": -5.0})
    assert [lifecycle.evaluate(f, day(n), lad).stage for n in (1, 2, 4)] == ["won", "start", "start"]


KNOWN = {
    "order.placed": {"order_id": "string", "amount": "number", "currency": "other"},
    "order.cancelled": {"order_id": "string"},
    "order.refunded": {"order_id": "string", "amount": "number", "currency": "other"},
    "pulse.answered": {"score": "number", "team": "string"},
    "page.viewed": None,
}


def problems_of(stages, counts=None, health=()):
    from engine.ladders.check import problems

    d = LadderDef.model_validate(
        {"name": "staff", "counts": counts or {}, "stages": [{"name": "new"}, *stages], "health": list(health)}
    )
    return problems(d, KNOWN)


def test_a_sound_ladder_has_no_problem_and_the_customer_ladder_is_sound():
    from engine.ladders.check import problems
    from engine.ladders.default import customer_ladder

    assert problems(customer_ladder(lifecycle.LifecycleRules()), {**KNOWN, **dict.fromkeys(
        ["referral.converted", "review.posted", "survey.answered"], None)}) == []  # fmt: skip
    assert problems_of([{"name": "buyer", "when": {"count": "purchases", "at_least": 1}}]) == []


@pytest.mark.parametrize(
    "stages, counts, words",
    [
        (
            [{"name": "buyer", "when": {"count": "purchase", "at_least": 1}}],
            None,
            "ladder staff, stage buyer: count 'purchase' is not defined (did you mean 'purchases'?): define it "
            "under [ladders.counts] or use one of purchases",
        ),
        (
            [{"name": "engaged", "when": {"count": {"kinds": ["pulse.answerd"]}, "at_least": 1}}],
            None,
            "ladder staff, stage engaged: count pulse.answerd: kinds: unknown kind 'pulse.answerd' (did you mean "
            "'pulse.answered'?): declare it under [[kinds]] (name = 'pulse.answerd') or fix the name",
        ),
        (
            [{"name": "happy", "when": {"latest": "nps", "of": ["pulse.answered"], "at_least": 9}}],
            None,
            "ladder staff, stage happy: latest 'nps': pulse.answered has no property 'nps' (its properties: score, "
            "team)",
        ),
        (
            [{"name": "happy", "when": {"latest": "team", "of": ["pulse.answered"], "at_least": 9}}],
            None,
            "ladder staff, stage happy: latest 'team': pulse.answered's 'team' is a string, not a number",
        ),
        (
            [{"name": "buyer", "when": {"count": "orders", "at_least": 1}}],
            {"orders": {"kinds": ["order.placed"]}},
            "ladder staff, count orders: orders count once per order id: use kinds = "
            '["order.placed"] alone with once_per = "order_id" (or the built-in "purchases")',
        ),
        (
            [{"name": "refunded", "when": {"count": {"kinds": ["order.refunded"]}, "at_least": 1}}],
            None,
            "ladder staff, stage refunded: count order.refunded: cancellations and refunds are not counted",
        ),
        (
            [{"name": "big", "when": {"sum": "qty", "of": "purchases", "at_least": 3}}],
            None,
            "ladder staff, stage big: sum of 'qty': orders add up their amount only",
        ),
        (
            [{"name": "x", "when": {"latest": "amount", "of": ["order.placed"], "at_least": 3}}],
            None,
            "ladder staff, stage x: latest 'amount': orders have no latest value to read",
        ),
        (
            [{"name": "eu", "when": {"count": "orders", "at_least": 1}}],
            {
                "orders": {
                    "kinds": ["order.placed"],
                    "once_per": "order_id",
                    "where": {"property": "channel", "equals": "web"},
                }
            },
            "ladder staff, count orders: where on orders reads amount or currency, not 'channel'",
        ),
        (
            [
                {"name": "repeat", "when": {"count": "purchases", "at_least": 2}},
                {"name": "buyer", "when": {"count": "purchases", "at_least": 1}},
            ],
            None,
            "ladder staff, stage repeat: can never be reached: whoever meets its condition meets that of buyer, "
            "listed after it (the last stage whose condition holds wins): list them from the lowest, or make "
            "repeat's condition narrower",
        ),
        (
            [
                {
                    "name": "loyal",
                    "when": {
                        "all": [
                            {"count": "purchases", "at_least": 4},
                            {"count": "purchases", "at_least": 2, "within_days": 90},
                        ]
                    },
                },
                {
                    "name": "buyer",
                    "when": {
                        "any": [
                            {"count": "purchases", "at_least": 3},
                            {"count": "purchases", "at_least": 1, "within_days": 365},
                        ]
                    },
                },
            ],
            None,
            "ladder staff, stage loyal: can never be reached",
        ),
    ],
)
def test_a_ladder_problem_names_the_ladder_the_stage_the_condition_and_the_fix(stages, counts, words):
    found = problems_of(stages, counts)
    assert any(p.startswith(words) for p in found), found


def test_ladders_show_and_check_from_the_command_line(tmp_path):
    from click.testing import CliRunner

    from engine.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text("[lifecycle]\nloyal_min_purchases = 3\n")
    out = CliRunner().invoke(main, ["ladders", "show", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    assert "    loyal        all of: purchases >= 3; purchases >= 2 in 365 days\n" in out.output
    out = CliRunner().invoke(main, ["ladders", "check", "--config", str(cfg), "--json"])
    assert out.exit_code == 0 and '"problems":[]' in out.output
