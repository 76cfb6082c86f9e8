"""The main job on embedded defaults: simulate, ingest as history unfolds (the simulated persons
answering the promotional actions issued to them), derive, summarise, measure the actions."""

from __future__ import annotations

import heapq
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from . import queries
from .clock import EventTimeClock, SystemClock
from .config import Config
from .reactions import DAYS, Answers, true_effect
from .service import Engine
from .simulator import simulate, with_devices
from .uplift import known_until, measure, population
from .value_view import fit as fit_value_model
from .value_view import summary as value_summary

# ingest(engine, records, total, on_batch): the CLI passes one with a progress bar
Ingest = Callable[[Engine, Iterator[dict], int, Callable[[int], None]], Any]


def today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def ladder_persons(customers: int) -> int:
    """How many persons each [[ladders]] gets beside `customers` customers in a simulation."""
    return max(40, customers // 4)


def with_ladders(config: Config, records: Iterator[dict], persons: int, seed: int, until: datetime) -> Iterator[dict]:
    """The records, and those of `persons` persons on each of the config's [[ladders]]
    (engine.ladder_sim), in time order."""
    if not config.ladders:
        return records
    from .ladder_sim import simulate_ladder

    more = [simulate_ladder(d, config.kinds, persons, seed, until) for d in config.ladders]
    return heapq.merge(records, *more, key=lambda r: str(r["occurred_at"]))


def read_history(path: Path) -> Iterator[dict]:
    with path.open("rb") as f:
        for line in f:
            yield orjson.loads(line)


def tee(records: Iterator[dict], out: BinaryIO) -> Iterator[dict]:
    """The records, each written to `out` as a JSON line as it passes."""
    for r in records:
        out.write(orjson.dumps(r) + b"\n")
        yield r


def answered_history(
    config: Config, simulated: Path, total: int, out: Path, effect: float, seed: int, until: datetime, ingest: Ingest
) -> int:
    """The simulated history (`total` records in `simulated`) with the orders its persons place in
    answer to the promotional actions the engine issues (engine.reactions), written to `out` as
    ingested: the engine runs on an embedded store in a temporary directory, with the config's
    rules. Returns the answers (`out` holds total + answers records)."""
    with tempfile.TemporaryDirectory(prefix="journey-simulate-") as scratch:
        config = config.model_copy(
            update={"data_dir": scratch, "store": config.store.model_copy(update={"backend": "sqlite"})}
        )
        with Engine(config, EventTimeClock()) as engine, out.open("wb") as written:
            answers = Answers(engine, read_history(simulated), effect, seed, until)
            reports = answers.ingest_rest(
                lambda records: ingest(engine, tee(records, written), total, answers.on_batch)
            )
        if rejected := sum(r.rejected for r in reports):  # the records were written: say so
            raise ValueError(f"the engine rejected {rejected:,} of the simulated records (journey ingest says why)")
        return answers.answered


def write_history(out: Path, records: Iterator[dict]) -> int:
    """The records as JSON lines in `out`; how many."""
    with out.open("wb") as f:
        return sum(1 for _ in tee(records, f))


VALUE_MODEL_DAYS = 120  # the value model is fitted this long before the end of the history


def with_holdouts(config: Config, holdout: float) -> Config:
    """The config with `holdout` on each promotional policy that sets none (a control group to
    measure it against; service policies cannot have one)."""
    policies = tuple(
        p.model_copy(update={"holdout": holdout}) if p.purpose == "promotional" and not p.holdout else p
        for p in config.policies
    )
    return config.model_copy(update={"policies": policies})


def run_demo(
    config: Config,
    customers: int,
    seed: int,
    ingest: Ingest,
    effect: float,
    holdout: float,
) -> dict[str, Any]:
    """Simulate `customers` (and persons on each declared ladder), ingest them as their history
    unfolds with `effect` as the answer to promotional actions and `holdout` as the control group
    of each promotional policy without one, and summarise what the engine made of it."""
    data = config.data_path / "demo"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    # The demo always runs embedded, whatever store the config names, and leaves that store alone.
    config = with_holdouts(config, holdout).model_copy(
        update={"data_dir": str(data), "store": config.store.model_copy(update={"backend": "sqlite"})}
    )
    simulated, history = data / "simulated.jsonl", data / "history.jsonl"
    # Most web and app touchpoints come with the browser's or the app's anonymous id; a tenth of the
    # customers also browse and buy as guests, whose history joins theirs when they sign in.
    base = with_devices(simulate(customers, seed, today()), 0.6, 0.1, seed, guests=0.1)
    total = write_history(simulated, with_ladders(config, base, ladder_persons(customers), seed, today()))
    # History is replayed as it unfolded: the clock follows event time, timers fire on the way, and
    # the persons answer the promotional actions issued to them (engine.reactions); what was
    # ingested, answers included, is written to history.jsonl.
    with Engine(config, EventTimeClock()) as engine, history.open("wb") as written:
        answers = Answers(engine, read_history(simulated), effect, seed, today())

        # The last months come second, so that the value model, fitted in between as a nightly job
        # would, is in force for them: its top customers at risk get a call, not a coupon.
        cut = today() - timedelta(days=VALUE_MODEL_DAYS)
        report = ingest(engine, tee(answers.records(before=cut), written), total, answers.on_batch)
        fit_value_model(engine, engine.clock.now())
        for more in answers.ingest_rest(lambda records: ingest(engine, tee(records, written), total, answers.on_batch)):
            report.merge(more)
        engine.clock = SystemClock()
        report.add_timers(engine.run_due())
        changes = Counter(
            (
                c.get("ladder", "customer") if c["dimension"] != "value_segment" else None,
                c["dimension"],
                c["from"],
                c["to"],
            )
            for _, _, body in queries.scan(engine, queries.CHANGE_TOPIC)
            for c in [body["change"]]
        )
        latest: dict[str, dict] = {}
        policies: dict[str, Counter] = {}
        blocked: Counter = Counter()
        for _, _, body in queries.scan(engine, queries.ACTION_TOPIC):
            a = body["action"]
            latest[a["action_id"]] = a
        for a in latest.values():
            policies.setdefault(a["policy"], Counter())[a["status"]] += 1
            blocked.update(c["check"] for c in a["checks"] if c["blocked"])
        # The value model fitted to everything so far, as a nightly job would (docs/value.md).
        model = fit_value_model(engine, engine.clock.now())
        sample = pick_customer(engine)
        view = engine.customer(sample, limit=15)
        explained = next(
            (
                engine.why(a["action_id"])
                for a in latest.values()
                if a["status"] == "suppressed" and a["customer_id"] == sample
            ),
            None,
        ) or next((engine.why(a["action_id"]) for a in latest.values() if a["status"] == "suppressed"), None)
        measured = measure_actions(engine, list(latest.values()), seed, effect)
        funnel = engine.funnel()
        ladders = [engine.funnel(ladder=lad.name) for lad in engine.ladders[1:]]
        merged = {str(customer) for _, customer, _ in queries.scan(engine, queries.JOINED_TOPIC)}
        value = value_summary(engine, engine.clock.now())
    simulated.unlink()  # history.jsonl holds it, with the answers, as ingested
    return {
        "data_dir": str(data),
        "history": str(history),
        "customers": customers,
        "seed": seed,
        "ingest": report.summary(),
        "funnel": funnel,
        "ladders": ladders,  # the funnel of each [[ladders]]
        # identity resolution (docs/identity.md): customers whose guest history joined theirs
        "identity": {"customers_with_guest_history": len(merged), "anonymous_visitors": funnel["anonymous_visitors"]},
        "value": value,
        "value_model": model,
        "changes": [
            {"ladder": lad, "dimension": d, "from": f, "to": t, "count": n}
            for (lad, d, f, t), n in changes.most_common()
        ],
        "actions": {
            "by_policy": {
                p: {s: c[s] for s in ("issued", "suppressed", "deferred", "held_out")}
                for p, c in sorted(policies.items())
            },
            "blocked_by": dict(blocked.most_common()),
        },
        "customer": view,
        "why": explained,
        # Did the promotional actions work? Each policy's persons against its control group
        # (engine.uplift), beside the effect the simulation put in (engine.reactions).
        "uplift": measured,
    }


def measure_actions(engine: Engine, actions: list[dict[str, Any]], seed: int, effect: float) -> dict[str, Any]:
    """The uplift of each promotional policy, and the true effect of the answers on its persons."""
    facts, _ = queries.persons_facts(engine, engine.clock.now())
    now = known_until(facts, engine.clock.now())
    pop = population(actions, now, DAYS)
    result = measure(pop, facts, engine.value_rules, engine.ladders[0], now, DAYS)
    for name, r in result["policies"].items():
        r["true_effect"] = true_effect(name, pop.first.get(name, {}), actions, facts, seed, effect)
    return result | {"treatment_effect": effect}


def pick_customer(engine: Engine) -> str:
    """A current advocate if there is one: the customer whose story shows the most of the engine."""
    latest: dict[str, dict[str, str]] = {}
    for _, _, body in queries.scan(engine, queries.CHANGE_TOPIC):
        change = body["change"]
        if change.get("ladder", "customer") == "customer":
            latest.setdefault(change["customer_id"], {})[change["dimension"]] = change["to"]
    for wanted in ({"stage": "advocate", "health": "active"}, {"stage": "advocate"}, {}):
        for customer, now in latest.items():
            if all(now.get(k) == v for k, v in wanted.items()):
                return customer
    raise ValueError("no customer was ingested")
