"""Control groups through the engine, on both stores: a promotional policy's held-out persons get
a held_out decision with its reason and trail (never issued), the same persons across a
redelivery, a restart and a rebuild; a service policy is never held out."""

from __future__ import annotations

from engine.clock import FixedClock
from engine.policies.holdout import share
from engine.policies.model import ContactRules, PolicySpec
from engine.service import Engine
from replay.rebuild import rebuild

from ..conftest import NOW
from ..helpers import day, facts_of, tp

HELLO = PolicySpec.model_validate(
    {
        "name": "hello",
        "action": "hello_email",
        "channel": "email",
        "purpose": "promotional",
        "holdout": 0.3,
        "trigger": {"on": "touchpoint", "kind": "customer.registered"},
    }
)
THANKS = PolicySpec.model_validate(
    {
        "name": "thanks",
        "action": "thank_you",
        "channel": "email",
        "purpose": "service",
        "trigger": {"on": "touchpoint", "kind": "customer.registered"},
    }
)


def test_held_out_persons_are_the_hashed_ones_and_stay_so(config, tmp_path):
    rules = ContactRules(promotional_consent_default=True, quiet_hours_start="00:00", quiet_hours_end="00:00")
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
