"""Control groups through the engine, on both stores: a promotional policy's held-out persons get
a held_out decision with its reason and trail (never issued), the same persons across a
redelivery, a restart and a rebuild; a service policy is never held out."""

from __future__ import annotations

import pytest

from engine.clock import EventTimeClock, FixedClock, iso
from engine.policies.holdout import share
from engine.service import Engine
from replay.rebuild import rebuild

from ..conftest import NOW
from ..helpers import day, facts_of, open_contact, tp, welcome_email

HELLO = welcome_email(holdout=0.3)
THANKS = welcome_email(purpose="service", name="thanks")


def test_held_out_persons_are_the_hashed_ones_and_stay_so(config, tmp_path):
    rules = open_contact()
    cfg = config.model_copy(update={"policies": (HELLO, THANKS), "contact": rules})
    records = [tp(f"r{i}", "customer.registered", day(i / 10), customer=f"c-{i:03d}") for i in range(300)]
    with Engine(cfg, FixedClock(NOW)) as engine:
        assert engine.ingest(records).rejected == 0
        actions = engine.actions(limit=10_000)
        hello = {a["customer_id"]: a for a in actions if a["policy"] == "hello"}
        # independently of the engine: the first 8 bytes of the hash, against 30%
        expected = {f"c-{i:03d}" for i in range(300) if share(f"c-{i:03d}", "hello", rules.holdout_salt) < 0.3}
        assert {c for c, a in hello.items() if a["status"] == "held_out"} == expected
        assert 60 < len(expected) < 120  # 90 expected
        assert {a["status"] for c, a in hello.items() if c not in expected} == {"issued"}
        held = hello[min(expected)]
        assert held["reason"].startswith("held out: in the control group of hello (30% of persons")
        assert held["checks"] and held["release_at"] is None
        assert "the person is in the control group of hello" in engine.why(held["action_id"])["explanation"]
        assert {a["status"] for a in actions if a["policy"] == "thanks"} == {"issued"}  # service: everyone
        engine.ingest(records)  # a redelivery decides nothing again
        before = facts_of(engine)
        assert before[1] == [{k: v for k, v in a.items() if k != "position"} for a in engine.actions(limit=10_000)]
    with Engine(cfg, FixedClock(NOW)) as again:  # a restart: the same
        again.run_due()
        assert facts_of(again) == before
        rebuilt_cfg = cfg.model_copy(
            update={"data_dir": str(tmp_path / "rebuilt"), "store": cfg.store.model_copy(update={"backend": "sqlite"})}
        )
        with Engine(rebuilt_cfg, FixedClock(NOW)) as rebuilt:  # a rebuild assigns the same persons
            rebuild(again, rebuilt)
            assert facts_of(rebuilt)[1] == before[1]


def test_uplift_measures_an_action_that_works_against_its_control_group(sqlite_config, tmp_path):
    """Treated persons buy within days of the action, held-out ones rarely: the measured
    conversion difference is the one in the data, and its interval excludes 0; the command says
    so in words, and in JSON."""
    import json

    from click.testing import CliRunner

    from engine.cli import main
    from engine.uplift import uplift
    from replay.history import load

    from ..helpers import order

    hello = HELLO.model_copy(update={"holdout": 0.5})
    rules = open_contact()
    cfg = sqlite_config.model_copy(update={"policies": (hello, THANKS), "contact": rules})
    people = [f"c-{i:03d}" for i in range(300)]
    held = {c for c in people if share(c, "hello", rules.holdout_salt) < 0.5}
    records = [tp(f"r-{c}", "customer.registered", day(1), customer=c) for c in people]
    # the treated buy 3 days later; of the held out, every fifth does
    buyers = [c for c in people if c not in held] + sorted(held)[::5]
    orders = [order(f"o-{c}", day(4), customer=c, amount=20.0) for c in buyers]
    with Engine(cfg, EventTimeClock()) as engine:  # decided as the history unfolds: on day 1
        assert engine.ingest(records).rejected == 0
        assert engine.ingest(orders).rejected == 0
        h = load(engine)
        # the data ends on day 4: a window that ends later is not known to be over, even on day 40
        assert uplift(h.actions, dict(h.customers()), engine.value_rules, engine.ladders[0], day(40))["as_of"] == iso(
            day(4)
        )
        assert engine.ingest([order("late", day(36), customer="someone-else")]).rejected == 0  # now it is
        h = load(engine)
        result = uplift(h.actions, dict(h.customers()), engine.value_rules, engine.ladders[0], day(40), days=30)
        early = uplift(h.actions, dict(h.customers()), engine.value_rules, engine.ladders[0], day(20), days=30)
        from replay.report import build, render

        page, _ = render(build(engine, day(40), history=h))  # the report draws it, with its interval
        assert "Uplift against control groups" in page and "Not an effect: suppressed persons differ" in page
        assert all(outcome in page for outcome in ("purchased", "moved up a stage", "not lapsed"))
    assert list(result["policies"]) == ["hello"]  # a service action has no control group by design
    r = result["policies"]["hello"]
    n0, x0 = len(held), len(sorted(held)[::5])
    assert (r["treated"], r["held_out"]) == (300 - n0, n0)
    assert r["conversion"]["treated"] == 1.0 and r["conversion"]["held_out"] == round(x0 / n0, 6)
    assert r["conversion"]["low"] > 0 and r["verdict"].startswith("it works:")
    assert r["moved_up"] == r["conversion"]  # a first purchase is the move up from prospect
    assert r["not_lapsed"]["difference"] == 0 and r["open"] == 0
    # on day 20 no window of 30 days has closed: every decision is still open, none measured
    assert early["policies"]["hello"] | {"verdict": ""} == {
        "treated": 0, "held_out": 0, "open": 300, "conversion": None, "moved_up": None, "not_lapsed": None,
        "revenue_per_person": None, "verdict": "",
    }  # fmt: skip
    assert r["revenue_per_person"]["difference"] == pytest.approx(20.0 * (1 - x0 / n0), abs=0.01)
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(
        f'data_dir = "{sqlite_config.data_dir}"\n[contact]\npromotional_consent_default = true\n'
        '[[policies]]\nname = "hello"\naction = "hello_email"\nchannel = "email"\npurpose = "promotional"\n'
        'holdout = 0.5\ntrigger = { on = "touchpoint", kind = "customer.registered" }\n'
    )
    out = CliRunner().invoke(main, ["replay", "uplift", "--config", str(cfg_file), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output.splitlines()[-1])["policies"]["hello"]["verdict"] == r["verdict"]
    text = CliRunner().invoke(main, ["replay", "uplift", "--config", str(cfg_file), "--policy", "hello"]).output
    assert "hello: it works:" in text and "purchased within 30 days: treated 100.0%" in text
    bad = CliRunner().invoke(main, ["replay", "uplift", "--config", str(cfg_file), "--policy", "nope"])
    assert bad.exit_code != 0 and "no policy 'nope'; the promotional policies: hello" in bad.output


def test_a_deferred_decision_is_held_out_at_its_release_like_the_treated_are_sent(sqlite_config):
    """Quiet hours defer treated and held-out persons alike; both are decided at the release, so
    that the uplift measures both from the same moment (held out at once, the control group's
    windows started hours or days before the treated persons' sends)."""
    from datetime import timedelta

    from engine import queries
    from engine.policies.model import ContactRules

    rules = ContactRules(promotional_consent_default=True)  # quiet from 21:00 to 08:00 UTC
    cfg = sqlite_config.model_copy(update={"policies": (welcome_email(holdout=0.5),), "contact": rules})
    night = day(1) + timedelta(hours=23)
    people = [f"c-{i:03d}" for i in range(40)]
    with Engine(cfg, EventTimeClock()) as engine:
        engine.ingest([tp(f"r-{c}", "customer.registered", night, customer=c) for c in people])
        engine.ingest([tp("later", "page.viewed", day(3) + timedelta(hours=12), customer="c-999")])  # past 08:00
        records = [body["action"] for _, _, body in queries.scan(engine, queries.ACTION_TOPIC)]
    held = {c for c in people if share(c, "hello", rules.holdout_salt) < 0.5}
    assert 0 < len(held) < len(people)
    for c in people:
        mine = [(a["status"], a["at"][:16]) for a in records if a["customer_id"] == c]
        final = "held_out" if c in held else "issued"
        assert [s for s, _ in mine] == ["deferred", final], (c, mine)
        assert mine[1][1] >= (day(2) + timedelta(hours=8)).isoformat()[:16], (c, mine)  # at the release or after


def test_a_from_date_starts_the_period_and_a_to_date_ends_it(sqlite_config, tmp_path):
    """`replay uplift --from D --to D` is that whole day: --from 2025-01-02 meant its end, and the
    day's decisions were left out."""
    import json

    from click.testing import CliRunner

    from engine.cli import main

    from ..helpers import order

    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(
        f'data_dir = "{sqlite_config.data_dir}"\n[contact]\npromotional_consent_default = true\n'
        'quiet_hours_start = "00:00"\nquiet_hours_end = "00:00"\n'
        '[[policies]]\nname = "hello"\naction = "hello_email"\nchannel = "email"\npurpose = "promotional"\n'
        'holdout = 0.5\ntrigger = { on = "touchpoint", kind = "customer.registered" }\n'
    )
    records = [tp(f"r{i}", "customer.registered", day(1) + (i + 1) * (day(2) - day(1)) / 50, customer=f"c{i}")
               for i in range(40)]  # fmt: skip
    with Engine(sqlite_config.model_copy(update={"policies": (HELLO.model_copy(update={"holdout": 0.5}),),
                                                 "contact": open_contact()}), EventTimeClock()) as engine:  # fmt: skip
        assert engine.ingest(records).rejected == 0  # decided as of the batch's last registration
        assert engine.ingest([order("later", day(60), customer="someone")]).rejected == 0  # the data goes on
    args = ["replay", "uplift", "--from", "2025-01-02", "--to", "2025-01-02", "--config", str(cfg_file), "--json"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    r = json.loads(out.output.splitlines()[-1])
    assert r["from"].startswith("2025-01-02T00:00:00") and r["to"].startswith("2025-01-02T23:59:59")
    assert "hello" in r["policies"], r
    assert r["policies"]["hello"]["treated"] + r["policies"]["hello"]["held_out"] == 40
