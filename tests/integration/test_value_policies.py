"""Policies on customer value: conditions scored with the value model in force when the decision
is taken, the model and the scores in the trail, the same decisions in a rebuild, the default
set's top-customer call, and config errors that name the segment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.clock import FixedClock
from engine.config import Config, ConfigError, load_config
from engine.ids import customer_uuid
from engine.service import Engine
from engine.value.model import predict, row_at
from engine.value_view import fit
from replay.rebuild import rebuild

from ..conftest import NOW
from ..helpers import day, facts_of, order, tp

CARE = {
    "name": "valued_care",
    "trigger": {"on": "touchpoint", "kind": "complaint.filed"},
    "conditions": {
        "value_segment": ["top"],
        "rfm_segment": ["Champions", "Loyal"],
        "p_alive_below": 1.0,
        "clv_at_least": 1.0,
    },
    "action": "care_call",
    "channel": "phone",
    "purpose": "service",
    "priority": 5,
}


def shop(engine) -> None:
    """Ten customers: the first buy often and much, the later ones less, the last once."""
    records = []
    for i in range(10):
        for k in range(10 - i):
            records.append(order(f"o{i}-{k}", day(5 + 9 * k + i), customer=f"c{i}", amount=20.0 * (10 - i)))
    assert engine.ingest(records).rejected == 0


def complaint(eid: str, at, customer: str) -> dict:
    return tp(eid, "complaint.filed", at, customer=customer, complaint_id=eid, severity="low")


def care(engine, customer: str) -> list[dict]:
    return [a for a in engine.actions(limit=1000, customer_id=customer) if a["policy"] == "valued_care"]


def test_value_conditions_use_the_model_in_force_and_name_it(tmp_path):
    clock = FixedClock(day(100))
    config = Config.model_validate({"data_dir": str(tmp_path / "live"), "policies": [CARE]})
    with Engine(config, clock) as engine:
        shop(engine)
        assert engine.ingest([complaint("x0", day(100), "c0")]).accepted == 1
        assert care(engine, "c0") == []  # no model yet: no value condition holds, nothing is decided
        fitted = fit(engine, day(100))
        clock.advance(hours=1)
        assert engine.ingest([complaint(f"y{i}", clock.now(), f"c{i}") for i in (0, 9)]).accepted == 2
        [best] = care(engine, "c0")
        assert best["status"] == "issued" and all(c["ok"] for c in best["conditions"])
        assert {c["model_id"] for c in best["conditions"]} == {fitted["model_id"]}
        # The scores in the trail are the model's for the person at that time.
        model = engine.value_models.in_force()
        facts = engine.store.customer(customer_uuid("c0")).facts
        p = predict(model, {"": row_at(facts, clock.now(), config.value)})[""]
        scored = best["conditions"][0]
        assert (scored["clv"], scored["p_alive"]) == (round(p.clv, 2), round(p.p_alive, 4))
        assert care(engine, "c9") == []  # one order, long ago: not top
        out = CliRunner().invoke(main, ["why", best["action_id"]], env={"JOURNEY_DATA_DIR": str(tmp_path / "live")})
        assert f"value model {fitted['model_id']}" in out.output and "CLV " in out.output
        # A rebuild redoes every decision with the model in force at the live write's time.
        with Engine(
            Config.model_validate({"data_dir": str(tmp_path / "rebuilt"), "policies": [CARE]}), FixedClock(NOW)
        ) as target:
            rebuild(engine, target)
            assert facts_of(target) == facts_of(engine)


def test_the_default_top_customer_call_replaces_the_coupon_for_top_customers(tmp_path):
    clock = FixedClock(day(130))
    with Engine(Config(data_dir=str(tmp_path)), clock) as engine:
        shop(engine)
        # a big spender who buys monthly: still top by CLV when two months pass without an order
        engine.ingest([order(f"v{k}", day(30 * k + 1), customer="vip", amount=5000.0) for k in range(5)])
        fit(engine, day(130))
        clock.at = day(121 + 61)  # at risk after max(60, 2 x 30) days without a purchase
        engine.run_due()
        got = {a["policy"]: a for a in engine.actions(limit=1000, customer_id="vip")}
        assert "churn_risk_outreach" not in got  # not_value_segment top does not hold: no coupon
        call = got["top_customer_call"]
        assert (call["action"], call["channel"], call["status"]) == ("personal_service_call", "phone", "issued")
        assert call["conditions"][0]["value"] == "top" and call["conditions"][0]["p_alive"] < 1
        coupons = [a for a in engine.actions(limit=1000) if a["policy"] == "churn_risk_outreach"]
        assert coupons and all(a["conditions"][0]["value"] != "top" for a in coupons)


def test_value_conditions_name_segments_the_config_has(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        '[[policies]]\nname = "x"\ntrigger = { on = "touchpoint", kind = "complaint.filed" }\n'
        'conditions = { value_segment = ["vip"] }\naction = "a"\nchannel = "email"\npurpose = "service"\n'
    )
    with pytest.raises(
        ConfigError, match="value_segment 'vip' is no segment of \\[value\\]; the segments: top, middle"
    ):
        load_config(cfg)
    cfg.write_text(cfg.read_text().replace('value_segment = ["vip"]', 'rfm_segment = ["Champs"]'))
    with pytest.raises(ConfigError, match="rfm_segment 'Champs'"):
        load_config(cfg)


WELCOME_TOP = {
    "name": "top_welcome",
    "trigger": {"on": "value_segment_entered", "segment": "top"},
    "action": "top_tier_welcome",
    "channel": "email",
    "purpose": "service",
    "priority": 5,
}
FAREWELL_TOP = {**WELCOME_TOP, "name": "top_farewell", "trigger": {"on": "value_segment_left", "segment": "top"}}


def value_changes(engine, customer: str) -> list[dict]:
    return [c for c in engine.changes(limit=10_000, customer_id=customer) if c["dimension"] == "value_segment"]


def test_value_segment_changes_are_recorded_and_trigger_policies(tmp_path):
    clock = FixedClock(day(130))
    config = Config.model_validate({"data_dir": str(tmp_path / "live"), "policies": [WELCOME_TOP, FAREWELL_TOP]})
    with Engine(config, clock) as engine:
        shop(engine)
        assert value_changes(engine, "c0") == []  # no model: no value segment
        fitted = fit(engine, day(130))
        clock.advance(hours=1)
        # A purchase scores the person at once: c0 enters top.
        engine.ingest([order("n0", clock.now(), customer="c0", amount=200.0)])
        engine.ingest([order("n9", clock.now(), customer="c9", amount=20.0)])
        [entered] = value_changes(engine, "c0")
        assert (entered["from"], entered["to"], entered["model_id"]) == (None, "top", fitted["model_id"])
        assert entered["reason"].startswith("CLV ") and "top from" in entered["reason"]
        assert [c["from"] for c in value_changes(engine, "c9")] == [None]
        welcome = [a for a in engine.actions(limit=100, customer_id="c0") if a["policy"] == "top_welcome"]
        assert [a["trigger"]["id"] for a in welcome] == [entered["change_id"]]
        assert engine.ingest([tp("pv", "page.viewed", clock.now(), customer="c0")]).accepted == 1
        assert len(value_changes(engine, "c0")) == 1  # a page view changes nothing the value reads
        # Silence: CLV falls with time; c0's timers (at risk, lapsed) score them again, and they leave top.
        clock.at = day(130) + timedelta(days=400)
        engine.run_due()
        left = value_changes(engine, "c0")[-1]
        assert left["from"] == "top" and left["to"] != "top"
        farewell = [a for a in engine.actions(limit=100, customer_id="c0") if a["policy"] == "top_farewell"]
        assert [a["trigger"]["id"] for a in farewell] == [left["change_id"]]
        # The value changes are on the change feed, and a rebuild records the same.
        with Engine(
            Config.model_validate({"data_dir": str(tmp_path / "rebuilt"), "policies": [WELCOME_TOP, FAREWELL_TOP]}),
            FixedClock(NOW),
        ) as target:
            rebuild(engine, target)
            assert facts_of(target) == facts_of(engine)
