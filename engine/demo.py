"""The main job on embedded defaults: simulate, ingest as history unfolds, derive, summarise."""

from __future__ import annotations

import heapq
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from . import queries
from .clock import EventTimeClock, SystemClock
from .config import Config
from .service import Engine
from .simulator import simulate, with_devices
from .value_view import fit as fit_value_model
from .value_view import summary as value_summary


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


def write_history(out: Path, records: Iterator[dict]) -> int:
    n = 0
    with out.open("wb") as f:
        for n, record in enumerate(records, start=1):  # noqa: B007 - n is the count, read after the loop
            f.write(orjson.dumps(record) + b"\n")
    return n


VALUE_MODEL_DAYS = 120  # the value model is fitted this long before the end of the history


def split_history(history: Path, at: datetime) -> tuple[Path, Path]:
    """The history's records in two files: those recorded before `at` (the delivery order of the
    file, which follows event time but for late deliveries), and the rest."""
    early, late = history.with_name("history-early.jsonl"), history.with_name("history-late.jsonl")
    cut = at.isoformat()
    with history.open("rb") as f, early.open("wb") as a, late.open("wb") as b:
        out = a
        for line in f:
            if out is a and orjson.loads(line)["occurred_at"] >= cut:
                out = b  # from the first record at or after `at`, everything (late ones too) comes second
            out.write(line)
    return early, late


def run_demo(config: Config, customers: int, seed: int, ingest: Callable[[Engine, Path], Any]) -> dict[str, Any]:
    """`ingest(engine, path)` loads the history (the CLI passes one with a progress bar)."""
    data = config.data_path / "demo"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    # The demo always runs embedded, whatever store the config names, and leaves that store alone.
    config = config.model_copy(
        update={"data_dir": str(data), "store": config.store.model_copy(update={"backend": "sqlite"})}
    )
    history = data / "history.jsonl"
    # Most web and app touchpoints come with the browser's or the app's anonymous id; a tenth of the
    # customers also browse and buy as guests, whose history joins theirs when they sign in.
    base = with_devices(simulate(customers, seed, today()), 0.6, 0.1, seed, guests=0.1)
    write_history(history, with_ladders(config, base, ladder_persons(customers), seed, today()))
    # The last months of it come second, so that the value model, fitted in between as a nightly
    # job would, is in force for them: its top customers at risk get a call, not a coupon.
    early, late = split_history(history, today() - timedelta(days=VALUE_MODEL_DAYS))
    # History is replayed as it unfolded: the clock follows event time, timers fire on the way.
    with Engine(config, EventTimeClock()) as engine:
        report = ingest(engine, early)
        fit_value_model(engine, engine.clock.now())
        report.merge(ingest(engine, late))
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
        funnel = engine.funnel()
        ladders = [engine.funnel(ladder=lad.name) for lad in engine.ladders[1:]]
        merged = {str(customer) for _, customer, _ in queries.scan(engine, queries.JOINED_TOPIC)}
        value = value_summary(engine, engine.clock.now())
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
    }


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
