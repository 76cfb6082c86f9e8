"""Retention policies end to end from touchpoints: each default policy on its trigger, the
contact rules with their reasons, and exactly-once decisions."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.clock import FixedClock
from engine.config import Config
from engine.policies.model import Cap, ContactRules
from engine.service import Engine

from ..conftest import NOW
from ..helpers import order, tp
from ..support.vip import VIP_CARE

ago = lambda d: NOW - timedelta(days=d)  # noqa: E731


def consent(eid, at, customer="c1", channel="email", purpose="promotional", granted=True):
    return {
        **tp(eid, "consent.changed", at, customer=customer),
        "properties": {"channel": channel, "purpose": purpose, "granted": granted},
    }


def invoice(eid, kind, at, customer="c1", invoice_id="inv-1"):
    return tp(eid, kind, at, customer=customer, invoice_id=invoice_id, amount=30, currency="EUR")


def decisions(engine, customer="c1", policy=None):
    return [a for a in engine.actions(limit=10_000, customer_id=customer) if policy in (None, a["policy"])]


def by_policy(engine, customer="c1"):
    return {a["policy"]: a["status"] for a in decisions(engine, customer)}


def test_seed_scenario_overdue_invoice_suppresses_the_second_purchase_nudge(tmp_path):
    clock = FixedClock(NOW)
    env = {"JOURNEY_DATA_DIR": str(tmp_path)}
    with Engine(Config(data_dir=str(tmp_path)), clock) as engine:
        for c in ("ann", "bob"):
            engine.ingest(
                [
                    tp(f"{c}-r", "customer.registered", NOW, customer=c),
                    consent(f"{c}-c", NOW, customer=c),
                    order(f"{c}-o1", NOW, customer=c),
                    invoice(f"{c}-i", "invoice.issued", NOW, customer=c),
                ]
            )
        clock.advance(days=20)
        engine.ingest([invoice("ann-late", "invoice.overdue", clock.now(), customer="ann")])
        clock.advance(days=11)  # 31 days after the first purchase
        assert engine.run_due().total > 0
        ann = decisions(engine, "ann", "second_purchase_nudge")
        bob = decisions(engine, "bob", "second_purchase_nudge")
        assert [a["status"] for a in ann] == ["suppressed"] and [a["status"] for a in bob] == ["issued"]
        assert "invoice inv-1 overdue" in ann[0]["reason"]
        assert ann[0]["trigger"]["type"] == "absence" and ann[0]["causes"] == ["ann-o1"]
        assert engine.run_due().total == 0  # a timer fires once
    why_ann = CliRunner().invoke(main, ["why", ann[0]["action_id"]], env=env).output
    why_bob = CliRunner().invoke(main, ["why", bob[0]["action_id"]], env=env).output
    assert "SUPPRESSED" in why_ann and "✗ overdue_invoice: invoice inv-1 overdue since" in why_ann
    assert "no second purchase 30 days after the first" in why_ann
    assert "ISSUED" in why_bob and "Every check passed" in why_bob
    feed = [json.loads(x) for x in CliRunner().invoke(main, ["actions", "--json"], env=env).output.splitlines()]
    assert {"action_id", "customer_id", "policy", "status", "reason", "channel", "at", "position"} <= set(feed[0])


def live(engine, clock, records):
    """Deliver records one by one at their own time, running due timers first, as a live engine would."""
    for r in records:
        clock.at = datetime.fromisoformat(r["occurred_at"]) + timedelta(minutes=1)
        engine.run_due()
        engine.ingest([r])


def test_each_default_policy_fires_on_its_trigger_and_not_otherwise(engine, clock):
    S = NOW - timedelta(days=400)
    at = lambda d: S + timedelta(days=d)  # noqa: E731
    live(engine, clock, [tp("r", "customer.registered", at(0)), consent("c", at(0))])
    assert by_policy(engine) == {"welcome": "issued"}  # a service action: no consent needed
    live(engine, clock, [order("o1", at(1)), order("o2", at(20))])
    assert by_policy(engine) == {"welcome": "issued"}  # second purchase in time: no nudge
    live(engine, clock, [order("o3", at(60)), order("o4", at(90))])
    assert by_policy(engine)["loyalty_enrolment"] == "issued"  # 4 purchases, recent: loyal
    assert "referral_ask" not in by_policy(engine)
    live(engine, clock, [tp("v", "page.viewed", at(125))])  # loyal for 30 days by now
    assert by_policy(engine)["referral_ask"] == "issued"
    live(engine, clock, [tp("rv", "review.posted", at(130), rating=5)])
    assert by_policy(engine)["advocate_reward"] == "issued"
    assert "churn_risk_outreach" not in by_policy(engine)
    live(engine, clock, [tp("v2", "page.viewed", at(160))])  # 70 days after the last purchase
    assert by_policy(engine)["churn_risk_outreach"] == "issued"  # threshold max(60, 2 x median 30)
    assert "win_back" not in by_policy(engine)
    clock.at = at(460)
    engine.run_due()
    assert by_policy(engine)["win_back"] == "issued"  # lapsed: 365 days without a purchase
    assert set(by_policy(engine)) == {
        "welcome",
        "loyalty_enrolment",
        "referral_ask",
        "advocate_reward",
        "churn_risk_outreach",
        "win_back",
    }
    assert len(decisions(engine)) == 6  # each once


def test_second_purchase_nudge_only_without_a_second_purchase(engine, clock):
    S = NOW - timedelta(days=100)
    live(
        engine,
        clock,
        [
            consent("c", S, customer="c2"),
            order("a1", S, customer="c2"),
            consent("c3x", S, customer="c3"),
            order("b1", S, customer="c3"),
            order("b2", S + timedelta(days=29), customer="c3"),
        ],
    )
    clock.at = S + timedelta(days=31)
    engine.run_due()
    assert by_policy(engine, "c2")["second_purchase_nudge"] == "issued"
    assert "second_purchase_nudge" not in by_policy(engine, "c3")


def test_service_recovery_is_issued_and_overrides_a_promotion_on_the_same_day(engine):
    engine.ingest([consent("c", ago(50)), order("o1", ago(40)), order("o2", ago(30)), order("o3", ago(20))])
    engine.ingest(
        [order("o4", ago(0)), tp("f", "complaint.filed", NOW, channel="phone", complaint_id="k1", severity="high")]
    )
    got = {a["policy"]: a for a in decisions(engine)}
    assert got["service_recovery"]["status"] == "issued" and got["service_recovery"]["channel"] == "phone"
    assert got["loyalty_enrolment"]["status"] == "suppressed"
    assert "complaint k1 open since" in got["loyalty_enrolment"]["reason"]
    order_of = [a["policy"] for a in decisions(engine)]
    assert order_of.index("service_recovery") < order_of.index("loyalty_enrolment")


def test_consent_is_opt_in_for_promotions_and_revocable_for_service(engine):
    engine.ingest([tp("r", "customer.registered", ago(90)), *(order(f"o{i}", ago(60 - i)) for i in range(4))])
    a = {x["policy"]: x for x in decisions(engine)}
    assert a["loyalty_enrolment"]["status"] == "suppressed"
    assert "no promotional consent recorded on email (promotional: opt-in)" in a["loyalty_enrolment"]["reason"]
    assert a["welcome"]["status"] == "issued"
    engine.ingest(
        [
            consent("rev", ago(1), customer="c2", purpose="service", granted=False),
            tp("r2", "customer.registered", NOW, customer="c2"),
        ]
    )
    w = decisions(engine, "c2", "welcome")[0]
    assert w["status"] == "suppressed" and "service consent on email withdrawn" in w["reason"]


def test_unsubscribe_blocks_later_promotions(engine):
    engine.ingest(
        [consent("c", ago(100)), consent("u", ago(10), granted=False), *(order(f"o{i}", ago(9 - i)) for i in range(4))]
    )
    loyal = decisions(engine, policy="loyalty_enrolment")[0]
    assert loyal["status"] == "suppressed" and "withdrawn" in loyal["reason"]


BROWSE = {
    "name": "browse_offer",
    "trigger": {"on": "touchpoint", "kind": "product.viewed"},
    "action": "offer",
    "channel": "email",
    "purpose": "promotional",
    "priority": 5,
}


def test_per_channel_caps(tmp_path, clock):
    rules = ContactRules(caps=(Cap(channel="any", max=5, days=7), Cap(channel="email", max=1, days=7)))
    config = Config.model_validate({"data_dir": str(tmp_path), "contact": rules.model_dump(), "policies": [BROWSE]})
    with Engine(config, clock) as engine:
        engine.ingest([consent("c", ago(30))])
        engine.ingest([tp("v1", "product.viewed", NOW)])
        engine.ingest([tp("v2", "product.viewed", NOW)])
        second = decisions(engine, policy="browse_offer")[1]
        assert second["status"] == "suppressed"
        assert "1 of 1 promotional actions in 7 days on email" in second["reason"]
        assert [c["used"] for c in second["caps"]] == [1, 1]


def test_caps_block_the_third_promotion_in_seven_days_and_release_after(tmp_path):
    clock = FixedClock(NOW)
    config = Config.model_validate({"data_dir": str(tmp_path), "policies": [BROWSE]})
    with Engine(config, clock) as engine:
        engine.ingest([consent("c", ago(30))])
        for day in range(4):
            engine.ingest([tp(f"v{day}", "product.viewed", clock.now())])
            clock.advance(days=1)
        got = [a["status"] for a in decisions(engine, policy="browse_offer")]
        assert got == ["issued", "issued", "suppressed", "suppressed"]
        blocked = decisions(engine, policy="browse_offer")[2]
        assert "2 of 2 promotional actions in 7 days" in blocked["reason"]
        assert blocked["caps"][0]["used"] == 2
        clock.advance(days=4)  # the first two leave the 7-day window
        engine.ingest([tp("v9", "product.viewed", clock.now())])
        assert decisions(engine, policy="browse_offer")[-1]["status"] == "issued"


def test_quiet_hours_defer_then_issue_in_the_customers_time_zone(engine, clock):
    clock.at = NOW.replace(hour=20, minute=30)  # 22:30 in Berlin (summer time)
    engine.ingest(
        [
            tp("r", "customer.registered", ago(5), traits={"timezone": "Europe/Berlin"}),
            consent("c", ago(5)),
            *(order(f"o{i}", clock.now() - timedelta(days=4 - i)) for i in range(4)),
        ]
    )
    loyal = decisions(engine, policy="loyalty_enrolment")
    assert [a["status"] for a in loyal] == ["deferred"]
    assert loyal[0]["release_at"].startswith(f"{NOW.date() + timedelta(days=1)}T06:00")  # 08:00 Berlin
    assert [c["check"] for c in loyal[0]["checks"] if c["blocked"]] == ["quiet_hours"]
    assert decisions(engine, policy="welcome")[0]["status"] == "issued"  # service: no quiet hours
    clock.advance(hours=9)  # 07:30 in Berlin: still quiet
    assert engine.run_due().total == 0
    clock.advance(hours=1)
    assert engine.run_due().total >= 1
    loyal = decisions(engine, policy="loyalty_enrolment")
    assert [a["status"] for a in loyal] == ["deferred", "issued"]
    assert loyal[0]["action_id"] == loyal[1]["action_id"]
    assert engine.run_due().total == 0


def test_suppression_names_every_blocking_check_and_wins_over_deferral(engine, clock):
    clock.at = NOW.replace(hour=23)  # quiet hours in UTC
    engine.ingest([invoice("i", "invoice.overdue", ago(3)), *(order(f"o{i}", ago(3 - i)) for i in range(4))])
    loyal = decisions(engine, policy="loyalty_enrolment")[0]
    assert loyal["status"] == "suppressed"
    blocked = [c["check"] for c in loyal["checks"] if c["blocked"]]
    assert blocked == ["consent", "overdue_invoice", "quiet_hours"]
    assert [c["check"] for c in loyal["checks"]] == [
        "forgotten",
        "consent",
        "open_complaint",
        "overdue_invoice",
        "cap",
        "quiet_hours",
    ]


def test_a_forgotten_customer_gets_nothing(engine):
    engine.ingest([tp("r", "customer.registered", ago(10)), consent("c", ago(10))])
    engine.forget("c1")
    engine.ingest([tp("f", "complaint.filed", NOW, complaint_id="k", severity="high")])
    recovery = decisions(engine, policy="service_recovery")[0]
    assert recovery["status"] == "suppressed" and "forgotten" in recovery["reason"]


def test_redelivery_restart_and_replay_decide_exactly_once(config, tmp_path):
    records = [
        tp("r", "customer.registered", ago(200)),
        consent("c", ago(200)),
        *(order(f"o{i}", ago(190 - 40 * i)) for i in range(5)),
        tp("f", "complaint.filed", ago(5), complaint_id="k", severity="low"),
    ]
    clock = FixedClock(NOW)
    with Engine(config, clock) as engine:
        engine.ingest(records)
        first = decisions(engine)
        engine.ingest(records)  # redelivery
        assert decisions(engine) == first
    with Engine(config, clock) as engine:  # restart
        engine.ingest(records[::-1])
        assert engine.run_due().total == 0
        assert decisions(engine) == first
    with Engine(Config(data_dir=str(tmp_path / "replay")), FixedClock(NOW)) as engine:  # replay elsewhere
        engine.ingest(records)
        replayed = decisions(engine)
    strip = lambda xs: [{k: v for k, v in x.items() if k != "position"} for x in xs]  # noqa: E731
    assert strip(replayed) == strip(first)
    assert len({a["action_id"] for a in first}) == len(first)


@st.composite
def delivery_plans(draw):
    """A live history (consent, orders, reviews, complaints) and a plan: batches of it, each
    maybe followed by a redelivery of earlier records and maybe by a restart."""
    records = [consent("c", ago(400))]
    for i in range(draw(st.integers(1, 9))):
        at = ago(399 - draw(st.integers(0, 398)))
        kind = draw(st.sampled_from(["order", "order", "review", "complaint", "refund"]))
        if kind == "order":
            records.append(order(f"o{i}", at))
        elif kind == "review":
            records.append(tp(f"rv{i}", "review.posted", at, rating=draw(st.integers(1, 5))))
        elif kind == "complaint":
            records.append(tp(f"k{i}", "complaint.filed", at, complaint_id=f"k{i}", severity="low"))
        else:
            records.append(tp(f"rf{i}", "order.refunded", at, order_id=f"o{draw(st.integers(0, i))}", amount=10))
    records.sort(key=lambda r: r["occurred_at"])
    cuts = sorted(draw(st.lists(st.integers(1, len(records)), max_size=4)))
    batches = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)]) if records[a:b]]
    plan = [(b, draw(st.booleans()), draw(st.booleans())) for b in batches]  # (batch, redeliver, restart)
    return plan


def run_plan(data_dir, plan, noisy: bool) -> list[dict]:
    clock = FixedClock(NOW - timedelta(days=400))
    engine = Engine(Config(data_dir=data_dir), clock)
    delivered: list = []
    for batch, redeliver, restart in plan:
        clock.at = max(datetime.fromisoformat(r["occurred_at"]) for r in batch) + timedelta(hours=1)
        engine.run_due()
        engine.ingest(batch)
        delivered += batch
        if noisy and redeliver:
            engine.ingest(delivered[::-1])
        if noisy and restart:
            engine.close()
            engine = Engine(Config(data_dir=data_dir), clock)
    clock.at = NOW + timedelta(days=400)
    engine.run_due()
    out = [{k: v for k, v in a.items() if k != "position"} for a in engine.actions(limit=10_000)]
    engine.close()
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=delivery_plans())
def test_exactly_once_under_redelivery_restart_and_replay(plan):
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, tempfile.TemporaryDirectory() as c:
        clean = run_plan(a, plan, noisy=False)
        noisy = run_plan(b, plan, noisy=True)
        replay = run_plan(c, plan, noisy=False)
    assert clean and noisy == clean == replay  # welcome at least: the first touchpoint makes a prospect
    issued = [x["action_id"] for x in clean if x["status"] == "issued"]
    assert len(issued) == len(set(issued))


def custom(tmp_path, *policies, **kw) -> Config:
    return Config.model_validate({"data_dir": str(tmp_path), "policies": list(policies), **kw})


def test_date_absence_and_stage_left_triggers(tmp_path, clock):
    config = custom(
        tmp_path,
        {
            "name": "anniversary_card",
            "trigger": {"on": "date", "date": "first_purchase_anniversary"},
            "action": "card",
            "channel": "mail",
            "purpose": "service",
        },
        {
            "name": "wake_up",
            "trigger": {"on": "absence", "absence": "activity", "days": 90},
            "action": "nudge",
            "channel": "email",
            "purpose": "service",
        },
        {
            "name": "sorry_to_see",
            "trigger": {"on": "stage_left", "stage": "first_buyer"},
            "action": "survey",
            "channel": "email",
            "purpose": "service",
            "conditions": {"stage": ["prospect"]},
        },
    )
    S = NOW - timedelta(days=800)
    with Engine(config, clock) as engine:
        live(engine, clock, [order("o1", S), tp("v", "page.viewed", S + timedelta(days=10))])
        assert by_policy(engine) == {}
        clock.at = S + timedelta(days=101)
        engine.run_due()
        assert by_policy(engine) == {"wake_up": "issued"}
        clock.at = S + timedelta(days=366)
        engine.run_due()
        cards = decisions(engine, policy="anniversary_card")
        assert [a["trigger"]["id"] for a in cards] == ["anniversary:o1:1"]
        clock.at = S + timedelta(days=740)
        engine.run_due()
        assert [a["trigger"]["id"] for a in decisions(engine, policy="anniversary_card")][-1] == "anniversary:o1:2"
        live(engine, clock, [tp("x", "order.cancelled", clock.now(), order_id="o1")])
        left = decisions(engine, policy="sorry_to_see")
        assert left[0]["status"] == "issued" and left[0]["conditions"][0]["value"] == "prospect"
        assert engine.run_due().total == 0


def test_custom_python_condition_is_the_hook_for_value_based_policies(tmp_path, clock):
    config = custom(tmp_path, VIP_CARE)
    with Engine(config, clock) as engine:
        engine.ingest([order("o1", ago(3), amount=100)])
        engine.ingest([order("o2", ago(2), amount=450)])
        vip = decisions(engine, policy="vip_care")
        assert [a["trigger"]["id"] for a in vip] == ["o2"]
        assert vip[0]["conditions"][-1] == {
            "condition": "tests.support.vip:big_spender",
            "expected": True,
            "value": True,
            "ok": True,
        }


def test_bad_policies_are_named(tmp_path):
    import pytest

    from engine.config import ConfigError, load_config

    cfg = tmp_path / "p.toml"
    cfg.write_text(
        '[[policies]]\nname = "x"\ntrigger = { on = "absence", absence = "activity" }\n'
        'action = "a"\nchannel = "email"\npurpose = "service"\n'
    )
    with pytest.raises(ConfigError, match="needs days"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="not a known touchpoint kind"):
        Engine(custom(tmp_path, {**BROWSE, "trigger": {"on": "touchpoint", "kind": "complaint.filled"}}))


def test_first_time_policies_decide_once_per_customer(engine, clock):
    S = NOW - timedelta(days=100)
    live(
        engine,
        clock,
        [
            consent("c", S),
            *(order(f"o{i}", S + timedelta(days=i)) for i in range(4)),
            tp("x", "order.cancelled", S + timedelta(days=10), order_id="o3"),  # loyal → repeat
            order("o9", S + timedelta(days=20)),
        ],
    )  # loyal again
    entered = [c for c in engine.changes(limit=1000) if c["to"] == "loyal"]
    assert len(entered) == 2
    assert len(decisions(engine, policy="loyalty_enrolment")) == 1
    assert len(decisions(engine, policy="welcome")) == 1


def test_a_forget_that_stopped_after_the_key_is_finished_by_the_next_write(engine, clock):
    # forget destroys the key first, then records Erased; stopped in between (killed, or the
    # store failing), the customer kept getting promotions. The tombstone says it is erased.
    from engine.ids import customer_uuid

    engine.ingest([consent("k1", ago(40)), order("o1", ago(20), traits={"email": "x@mail.test"})])
    engine.keys.delete(str(customer_uuid("c1")))  # the first half of a forget, and no more
    assert not engine.customer("c1")["erased"]
    clock.advance(days=40)  # the second-purchase nudge falls due
    engine.run_due()
    assert engine.customer("c1")["erased"]
    nudge = decisions(engine, policy="second_purchase_nudge")
    assert [a["status"] for a in nudge] == ["suppressed"] and "forgotten" in nudge[0]["reason"]
    engine.ingest([tp("p1", "profile.updated", ago(-41), traits={"email": "again@mail.test"})])
    assert engine.customer("c1")["traits"].get("email") is None


def test_a_customer_whose_timers_fail_is_skipped_and_the_others_go_on(tmp_path, clock):
    from engine.policies.model import PolicySpec, Trigger

    policy = PolicySpec(
        name="broken_timer",
        trigger=Trigger(on="absence", absence="activity", days=10),
        action="call",
        channel="phone",
        purpose="service",
        python="tests.support.vip:broken_for_c2",
    )
    with Engine(Config(data_dir=str(tmp_path), policies=(policy,)), clock) as engine:
        engine.ingest([tp(f"v{i}", "page.viewed", ago(1), customer=f"c{i}") for i in range(1, 4)])
        clock.advance(days=30)
        assert engine.run_due().total == 2  # c1 and c3 decided, c2 skipped
        assert sorted(a["customer_id"] for a in engine.actions()) == ["c1", "c3"]
        assert engine.run_due().total == 0  # c2 is tried again, and skipped again
