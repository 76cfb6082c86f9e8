"""The simulator answers the engine's actions (engine.reactions), and the uplift measured against
a control group recovers the effect put in: its 95% interval contains the true effect, and
excludes 0 when there is one (docs/policies.md, "Simulated reactions")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import queries
from engine.clock import EventTimeClock
from engine.config import Config
from engine.demo import read_history, write_history
from engine.policies.holdout import share
from engine.policies.model import PolicySpec
from engine.reactions import PREFIX, Answers, answer
from engine.service import Engine
from engine.simulator import simulate
from engine.uplift import population

from ..helpers import open_contact

pytestmark = pytest.mark.integration

UNTIL = datetime(2025, 6, 1, tzinfo=UTC)


def thank_you(holdout: float) -> PolicySpec:
    """A thank-you offer by post after every order, half held out: nobody withdrew consent to post
    (the simulated persons give or refuse e-mail and SMS); many buy again within 30 days on their
    own, so both groups convert and the effect must be told from that; orders at night are
    deferred by the quiet hours (21:00-08:00), for treated and held out alike."""
    return PolicySpec.model_validate(
        {
            "name": "thank_you",
            "action": "thank_you_offer",
            "channel": "mail",
            "purpose": "promotional",
            "holdout": holdout,
            "trigger": {"on": "touchpoint", "kind": "order.placed"},
        }
    )


def simulated(tmp_path_factory, customers: int) -> Path:
    path = tmp_path_factory.mktemp("reactions") / f"simulated-{customers}.jsonl"
    write_history(path, simulate(customers, 11, UNTIL))
    return path


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """Large enough that an effect of 0.10 is told from none (about 1,100 persons on each side)."""
    return simulated(tmp_path_factory, 3000)


@pytest.fixture(scope="module")
def small_history(tmp_path_factory) -> Path:
    """Coverage needs no power: a smaller history, drawn many times."""
    return simulated(tmp_path_factory, 800)


def run(data: Path, history: Path, effect: float, seed: int, salt: str = "journey") -> tuple[dict, float | None]:
    """Ingest the history with persons answering at `effect`; the measured uplift of thank_you
    and the true effect on the persons it measures."""
    from engine.policies.model import ContactRules
    from engine.reactions import true_effect
    from engine.uplift import known_until, measure

    contact = ContactRules(promotional_consent_default=True, holdout_salt=salt)
    cfg = Config(data_dir=str(data), policies=(thank_you(0.5),), contact=contact)
    with Engine(cfg, EventTimeClock()) as engine:
        answers = Answers(engine, read_history(history), effect, seed, UNTIL)
        assert all(r.rejected == 0 for r in answers.ingest_rest(lambda rs: engine.ingest(rs, answers.on_batch)))
        actions = [body["action"] for _, _, body in queries.scan(engine, queries.ACTION_TOPIC)]
        facts, _ = queries.persons_facts(engine, UNTIL)
        now = known_until(facts, UNTIL)
        pop = population(actions, now)
        measured = measure(pop, facts, engine.value_rules, engine.ladders[0], now)["policies"]["thank_you"]
        truth = true_effect("thank_you", pop.first["thank_you"], actions, facts, seed, effect)
    return measured, truth


def test_the_uplift_recovers_an_effect_and_its_absence(tmp_path, history):
    works, truth = run(tmp_path / "a", history, 0.10, 5)
    assert works["treated"] > 900 and works["held_out"] > 900, works
    c = works["conversion"]
    assert 0.1 < c["held_out"] < 0.5, c  # many buy again on their own
    # a tenth, less those who would have bought anyway (a sample's share of answers varies)
    assert truth is not None and 0.05 <= truth <= 0.10, truth
    assert c["low"] <= truth <= c["high"] and c["low"] > 0, (c, truth)
    assert works["verdict"].startswith("it works")
    nothing, truth = run(tmp_path / "b", history, 0.0, 5)
    c = nothing["conversion"]
    assert truth == 0 and c["low"] <= 0 <= c["high"], c
    assert nothing["verdict"].startswith("no measurable effect yet")


def test_the_interval_covers_the_true_effect_across_seeds(tmp_path, small_history):
    """Across draws of the control group (the salt) and of the answers (the seed), the interval
    contains the true effect about 95 times in 100: of 12 intervals, more than 3 misses would
    happen by chance less than 2 times in 100 (binomial(12, 0.05))."""
    misses = []
    for k in range(6):
        for effect in (0.10, 0.0):
            measured, truth = run(tmp_path / f"{k}-{effect}", small_history, effect, 100 + k, salt=f"s{k}")
            c = measured["conversion"]
            if not c["low"] <= truth <= c["high"]:
                misses.append((k, effect, c, truth))
    assert len(misses) <= 3, misses


def test_answers_follow_issued_actions_only_and_replay_the_same(tmp_path):
    """Each answer is an order for an issued promotional action whose draw says so, never for a
    held-out person or a service action; the history as ingested, ingested again, decides the same
    actions; and `journey simulate --treatment-effect` writes the same history twice."""
    from engine.demo import tee

    from ..helpers import welcome_email

    until = datetime(2025, 3, 1, tzinfo=UTC)
    base = tmp_path / "base.jsonl"
    write_history(base, simulate(200, 3, until))
    policies = (
        welcome_email(holdout=0.3),
        welcome_email(purpose="service", name="thanks"),
    )
    cfg = Config(data_dir=str(tmp_path / "one"), policies=policies, contact=open_contact())
    written = tmp_path / "answered.jsonl"
    with Engine(cfg, EventTimeClock()) as engine, written.open("wb") as out:
        answers = Answers(engine, read_history(base), 0.5, 9, until)
        answers.ingest_rest(lambda rs: engine.ingest(tee(rs, out), answers.on_batch))
        first = {b["action"]["action_id"]: b["action"] for _, _, b in queries.scan(engine, queries.ACTION_TOPIC)}
    records = [json.loads(line) for line in written.open()]
    answered = {r["properties"]["order_id"].removeprefix(PREFIX) for r in records if r["event_id"].startswith(PREFIX)}
    expected = {
        aid
        for aid, a in first.items()
        if a["status"] == "issued"
        and a["purpose"] == "promotional"
        and (after := answer(9, aid, 0.5)) is not None
        and datetime.fromisoformat(a["at"]).timestamp() + after <= until.timestamp()  # by the history's end
    }
    assert answered == expected and len(answered) > 30, (len(answered), len(expected))
    held = {a["customer_id"] for a in first.values() if a["status"] == "held_out"}
    sendable = {a["customer_id"] for a in first.values() if a["policy"] == "hello" and a["status"] != "suppressed"}
    assert held and held == {c for c in sendable if share(c, "hello", "journey") < 0.3}
    assert not held & {r["customer_id"] for r in records if r["event_id"].startswith(PREFIX)}
    # the same history, ingested again as it was written, decides the same actions
    again = cfg.model_copy(update={"data_dir": str(tmp_path / "two")})
    with Engine(again, EventTimeClock()) as engine:
        engine.ingest(records)
        second = {b["action"]["action_id"]: b["action"] for _, _, b in queries.scan(engine, queries.ACTION_TOPIC)}
    assert {k: a["status"] for k, a in second.items()} == {k: a["status"] for k, a in first.items()}
    # the command: reproducible from the seed
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(
        f'data_dir = "{tmp_path / "cli"}"\n[contact]\npromotional_consent_default = true\n'
        'quiet_hours_start = "00:00"\nquiet_hours_end = "00:00"\n'
        '[[policies]]\nname = "hello"\naction = "hello_email"\nchannel = "mail"\npurpose = "promotional"\n'
        'holdout = 0.3\ntrigger = { on = "touchpoint", kind = "customer.registered" }\n'
    )
    from engine.cli import main

    outs = []
    for k in range(2):
        out = tmp_path / f"sim{k}.jsonl"
        args = ["simulate", "--customers", "150", "--seed", "4", "--until", "2025-03-01", "--out", str(out)]
        result = CliRunner().invoke(main, [*args, "--treatment-effect", "0.5", "--config", str(cfg_file), "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output.splitlines()[-1])
        assert summary["answers"] == sum(PREFIX in line for line in out.open()) > 10
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
