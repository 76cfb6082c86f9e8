"""Ladders declared in config ([[ladders]]) through the engine, on both stores: a person joins a
ladder by trait or source, stands on two at once, the changes carry the ladder and its version,
timers fire on each ladder, the funnel and the 360 view know the ladders, a rebuild records the
same, and the recorded changes equal a plain evaluation of the example's ladder."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.clock import EventTimeClock, FixedClock
from engine.config import ConfigError, load_config
from engine.ladders.model import LadderDef
from engine.service import Engine

from ..helpers import day, facts_of, order, tp
from ..support import oracle_ladder as plain

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def employees(config, tmp_path):
    """The shipped employees example on the test's store."""
    example = load_config(EXAMPLES / "employees.toml")
    return example.model_copy(update={"data_dir": config.data_dir, "store": config.store})


def staff(person: str, start: float) -> list[dict]:
    """An employee's year: applies (the trait joins the ladder), signs, trains, answers pulses,
    is reviewed well, goes quiet; and buys twice as a customer."""
    d = lambda n: day(start + n)  # noqa: E731
    emp = {"customer_type": "employee"}
    return [
        tp(f"{person}-app", "application.submitted", d(0), person, traits=emp, position="engineer"),
        tp(f"{person}-sign", "contract.signed", d(10), person, contract_id=f"{person}-k1"),
        tp(f"{person}-t1", "training.completed", d(20), person, course="safety"),
        tp(f"{person}-t2", "training.completed", d(30), person, course="tools"),
        tp(f"{person}-t2b", "training.completed", d(31), person, course="tools"),  # once per course
        tp(f"{person}-p1", "pulse.answered", d(40), person, enps=8),
        tp(f"{person}-r1", "review.completed", d(60), person, rating=5),
        tp(f"{person}-p2", "pulse.answered", d(70), person, enps=10),
        order(f"{person}-o1", d(80), customer=person),
        order(f"{person}-o2", d(95), customer=person),
        tp(f"{person}-p3", "pulse.answered", d(100), person, enps=3),
    ]


def test_two_ladders_at_once_recorded_as_a_plain_evaluation_says(employees, clock):
    records = staff("e1", 0) + [order("c-o1", day(5), customer="shopper")]
    end = day(400)
    with Engine(employees, EventTimeClock()) as engine:
        r = engine.ingest(sorted(records, key=lambda x: x["occurred_at"]))
        assert r.rejected == 0, r.rejections
        engine.clock = FixedClock(end)
        engine.run_due()
        changes = engine.changes(limit=10_000)
        ladder = engine.ladders[1]
        mine = [c for c in changes if c["customer_id"] == "e1" and c["ladder"] == "employees"]
        assert {c["ladder_version"] for c in mine} == {ladder.version}
        assert [c for c in changes if c["customer_id"] == "shopper" and c["ladder"] != "customer"] == []
        # the recorded history of the employees ladder is the plain evaluation's
        tps = [
            (x["event_id"], x["kind"], datetime.fromisoformat(x["occurred_at"]), x["properties"])
            for x in records
            if x["customer_id"] == "e1"
        ]
        want = plain.timeline(ladder.definition, tps, end)
        # the plain oracle starts the ladder at the first touchpoint; here the application joins it
        assert [(c["dimension"], c["from"], c["to"], datetime.fromisoformat(c["effective_at"])) for c in mine] == want
        stages = [c["to"] for c in mine if c["dimension"] == "stage"]
        assert stages == ["candidate", "onboarding", "engaged", "champion", "onboarding"]  # eNPS 3: neither
        healths = [c["to"] for c in mine if c["dimension"] == "health"]
        assert healths == ["active", "at_risk"]
        # the customer ladder saw the same person buy twice
        assert [c["to"] for c in changes if c["customer_id"] == "e1" and c["ladder"] == "customer"][:3] == [
            "prospect",
            "first_buyer",
            "active",
        ]
        view = engine.customer("e1")
        assert view["stage"] == "repeat" and view["ladders"]["employees"]["stage"] == "onboarding"
        assert "contracts: 1 (at least 1)" in view["ladders"]["employees"]["stage_reason"]
        from engine import queries

        f = queries.funnel(engine, end, ladder="employees")
        assert list(f["stages"]) == ["candidate", "onboarding", "engaged", "champion"]
        assert (f["customers"], f["not_on_ladder"], f["stages"]["onboarding"]) == (1, 1, 1)
        with pytest.raises(ValueError, match="no ladder 'staff'; the ladders: customer, employees"):
            queries.funnel(engine, end, ladder="staff")
        before = facts_of(engine)
        from replay.export import frames

        changes = frames(engine, end)["changes"]  # the export says which ladder each change is on
        on = changes[changes["customer_id"] == "e1"].groupby("ladder")["ladder_version"].unique()
        assert {k: list(v) for k, v in on.items()} == {
            "customer": [engine.ladders[0].version],
            "employees": [ladder.version],
        }
    with Engine(employees, FixedClock(end)) as again:  # a restart records nothing twice
        again.run_due()
        assert facts_of(again) == before


def test_a_dealer_joins_by_source_and_falls_dormant_by_a_timer(config, tmp_path):
    example = load_config(EXAMPLES / "dealers.toml")
    cfg = example.model_copy(update={"data_dir": config.data_dir, "store": config.store})
    portal = lambda record: {**record, "source": "dealer_portal"}  # noqa: E731
    records = [
        portal(tp("d-auth", "dealer.authorised", day(0), "d1", territory="north")),
        *(portal(order(f"d-o{i}", day(10 + 20 * i), customer="d1", amount=4000.0)) for i in range(6)),
        order("x-o1", day(3), customer="walk-in"),  # not from the portal: no dealer
    ]
    with Engine(cfg, EventTimeClock()) as engine:
        assert engine.ingest(records).rejected == 0
        engine.clock = FixedClock(day(500))
        engine.run_due()
        mine = [c for c in engine.changes(limit=1000) if c["ladder"] == "dealers"]
    assert {c["customer_id"] for c in mine} == {"d1"}
    stages = [(c["to"], c["effective_at"][:10]) for c in mine if c["dimension"] == "stage"]
    assert stages == [
        ("authorised", "2025-01-01"),  # joined and authorised at one instant: never a prospect
        ("active", "2025-01-11"),
        ("key_account", "2025-04-21"),  # the sixth order: 24,000 in the year (active ends below it)
        ("authorised", "2026-01-11"),  # the first order is a year old, and none in 90 days
    ]
    health = [(c["to"], datetime.fromisoformat(c["effective_at"])) for c in mine if c["dimension"] == "health"]
    # dormant just after max(60, 3 x the 20-day median gap) days without an order
    assert health == [("ordering", day(10)), ("dormant", day(110) + timedelta(days=60, microseconds=1))]


@pytest.mark.parametrize(
    "text, words",
    [
        (
            '[[ladders]]\nname = "customer"\n[[ladders.stages]]\nname = "a"\n[[ladders.stages]]\nname = "b"\n'
            'when = { count = "purchases", at_least = 1 }\n',
            "ladder customer is the customer ladder, which [lifecycle] declares",
        ),
        (
            '[[ladders]]\nname = "staff"\n[[ladders.stages]]\nname = "a"\n[[ladders.stages]]\nname = "b"\n'
            'when = { count = { kinds = ["shift.done"] }, at_least = 1 }\n',
            "ladder staff, stage b: count shift.done: kinds: unknown kind 'shift.done': declare it under [[kinds]]",
        ),
        (
            '[[policies]]\nname = "hello"\naction = "welcome_email"\nchannel = "email"\npurpose = "promotional"\n'
            'trigger = { on = "stage_entered", stage = "vip", ladder = "dealers" }\n',
            "policy hello: no ladder 'dealers'; the ladders: customer",
        ),
    ],
)
def test_a_config_with_a_broken_ladder_says_what_and_where(tmp_path, text, words):
    """(More of them, each condition's problems, in tests/unit/test_ladders.py.)"""
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_config(path)


def test_a_policy_fires_on_another_ladders_stage(employees, tmp_path):
    from engine.policies.model import PolicySpec

    spec = PolicySpec.model_validate(
        {
            "name": "champion_thanks",
            "action": "thank_you_note",
            "channel": "email",
            "purpose": "service",
            "trigger": {"on": "stage_entered", "stage": "champion", "ladder": "employees"},
        }
    )
    cfg = employees.model_copy(update={"policies": (spec,)})
    with Engine(cfg, EventTimeClock()) as engine:
        engine.ingest(staff("e2", 0))
        actions = [a for a in engine.actions(limit=100) if a["policy"] == "champion_thanks"]
    assert len(actions) == 1 and actions[0]["customer_id"] == "e2"


def _stricter(employees):
    """The employees ladder with engaged needing an eNPS of 9, not 7: another version."""
    d = employees.ladders[0]
    stages = list(d.stages)
    engaged = stages[2].when.model_copy(
        update={
            "all": tuple(
                p.model_copy(update={"at_least": 9}) if hasattr(p, "latest") else p for p in stages[2].when.all
            )
        }
    )
    stages[2] = stages[2].model_copy(update={"when": engaged})
    return employees.model_copy(update={"ladders": (d.model_copy(update={"stages": tuple(stages)}),)})


def test_a_changed_ladder_records_its_new_version_and_whatif_diffs_it(employees):
    from replay.whatif import whatif

    stricter = _stricter(employees)
    records = staff("e1", 0) + staff("e2", 5)
    early = [r for r in records if r["occurred_at"] < day(45).isoformat()]
    late = [r for r in records if r not in early]
    with Engine(employees, EventTimeClock()) as engine:
        engine.ingest(early)
        v1 = engine.ladders[1].version
        before = len(engine.changes(limit=1000))
    with Engine(stricter, EventTimeClock()) as engine:
        engine.ingest(late)
        v2 = engine.ladders[1].version
        assert v1 != v2
        feed = engine.changes(limit=1000)
        assert {c["ladder_version"] for c in feed[:before] if c["ladder"] == "employees"} == {v1}
        after = [c for c in feed[before:] if c["ladder"] == "employees"]
        assert after and {c["ladder_version"] for c in after} == {v2}
        # e1 was engaged under the old ladder (eNPS 8); the new one corrects that, in the past
        fix = next(c for c in after if c["customer_id"] == "e1")
        # effective when the corrected history says: onboarding since the contract (day 10)
        assert (fix["from"], fix["to"], fix["effective_at"][:10]) == ("engaged", "onboarding", "2025-01-11")
        assert fix["reason"].startswith(f"the employees ladder changed (version {v1} → {v2}), history corrected")
        # as of day 60 e1 and e2 are engaged on the live (stricter) ladder? No: eNPS 8 is below 9
        T = day(60)
        f = engine.funnel(T, ladder="employees")
        result = whatif(engine, employees, T)
    assert f["stages"]["engaged"] == 0 and f["stages"]["onboarding"] == 2
    lad = result["ladders"]["employees"]
    assert lad["versions"] == {"live": v2, "alternative": v1}
    assert (lad["persons"], lad["changed"], lad["by_transition"]) == (2, 2, {"onboarding->engaged": 2})


@pytest.mark.parametrize(
    "ladder, words",
    [
        ('applies_to = "everyone"', "ladder members, applies_to: applies_to is a table: { kinds = [...] }"),
        ("applies_to = {}", "ladder members, applies_to: applies_to names kinds, a source or a trait"),
        ('name = "Members"', "ladder Members, name: a name is lowercase letters, digits and _, starting with a letter"),
    ],
)
def test_a_ladders_own_keys_are_named_by_the_ladder(tmp_path, ladder, words):
    """Errors name the ladder and the stage by their names, not pydantic's indexes, and cascades
    (a tuple "too short after validation" because an item failed) are left out."""
    text = (
        f'[[ladders]]\nname = "members"\n{ladder}\n[[ladders.stages]]\nname = "trial"\n[[ladders.stages]]\n'
        'name = "regular"\nwhen = { all = [ { count = "purchases", at_lest = 2 } ] }\n'
    )
    text = text.replace('name = "members"\nname = "Members"', 'name = "Members"')
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert words in message, message
    assert "stage regular, when.all.0.at_lest: 'at_lest' is not a key here" in message
    assert "too short" not in message and "at least 1 item" not in message
    if ladder.startswith("applies_to"):  # once well formed, what it names is checked: an undeclared kind
        path.write_text(text.replace("at_lest", "at_least").replace(ladder, 'applies_to = { kinds = ["gym.visit"] }'))
        with pytest.raises(ConfigError, match="ladder members, applies_to: kinds: unknown kind 'gym.visit'"):
            load_config(path)


def test_a_person_who_loses_the_touchpoint_that_joined_a_ladder_leaves_it(config):
    """A guest order on a device joins its signed-in owner to a ladder of buyers; when an earlier
    sign-in by someone else on that device arrives late, the device (and its order) is theirs, and
    the first owner's stage on the ladder is corrected to none."""
    from ..integration.test_persons import anon

    buyers = LadderDef.model_validate(
        {
            "name": "buyers",
            "applies_to": {"kinds": ["order.placed"]},
            "stages": [{"name": "joined"}, {"name": "bought", "when": {"count": "purchases", "at_least": 1}}],
        }
    )
    cfg = config.model_copy(update={"ladders": (buyers,)})
    with Engine(cfg, EventTimeClock()) as engine:
        for batch in (
            [anon(order("g1", day(4), order_id="guest-1"), "web-2")],
            [anon(tp("b1", "page.viewed", day(5), customer="bob"), "web-2", customer=True)],
        ):
            assert not engine.ingest(batch).rejected
        assert engine.customer("bob")["ladders"]["buyers"]["stage"] == "bought"
        late = anon(tp("a1", "page.viewed", day(3), customer="ann"), "web-2", customer=True)
        assert not engine.ingest([late]).rejected
        bob = [c for c in engine.changes(limit=1000, customer_id="bob") if c["ladder"] == "buyers"]
        assert [(c["from"], c["to"]) for c in bob if c["dimension"] == "stage"][-1] == ("bought", None)
        assert "buyers" not in engine.customer("bob")["ladders"]
        assert engine.customer("ann")["ladders"]["buyers"]["stage"] == "bought"
