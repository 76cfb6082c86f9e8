"""Replays: a rebuild equals live processing; what-if runs leave the live store alone."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from engine.clock import FixedClock
from engine.config import Config
from engine.service import Engine
from engine.simulator import simulate
from replay.rebuild import rebuild

from ..conftest import NOW
from ..helpers import facts_of, order, tp


def test_rebuild_equals_live_processing_and_is_resumable(tmp_path):
    clock = FixedClock(NOW - timedelta(days=500))
    live = Engine(Config(data_dir=str(tmp_path / "live")), clock)
    records = list(simulate(120, 3, NOW))
    for i in range(0, len(records), 300):  # live: batches as time goes by
        batch = records[i : i + 300]
        clock.at = max(
            clock.at,
            max(__import__("datetime").datetime.fromisoformat(r["occurred_at"]) for r in batch) + timedelta(hours=6),
        )
        live.ingest(batch)
        if i % 900 == 0:
            live.run_due()
    live.ingest([order("late", NOW - timedelta(days=300), customer="cust-000001")])  # a late event
    live.forget("cust-000002")
    clock.advance(days=30)
    live.run_due()
    changes, actions = facts_of(live)
    assert len(changes) > 300 and len(actions) > 100

    target = Engine(Config(data_dir=str(tmp_path / "rebuilt")), FixedClock(NOW))
    seen = []
    rebuild(live, target, on_step=lambda s: seen.append(s.kind))
    assert {"ingest", "timers", "erase"} <= set(seen)
    assert facts_of(target) == (changes, actions)
    assert target.customer("cust-000002")["erased"] is True
    assert rebuild(live, target) == 0  # resumable: nothing left to do
    live.close()
    target.close()


def test_rebuild_resumes_after_an_interruption(tmp_path):
    clock = FixedClock(NOW - timedelta(days=100))
    live = Engine(Config(data_dir=str(tmp_path / "live")), clock)
    for day in range(0, 60, 6):
        clock.at = NOW - timedelta(days=100 - day)
        live.ingest(
            [order(f"o{day}-{c}", clock.now() - timedelta(hours=1), customer=f"c{c}") for c in range(5)]
            + [tp(f"v{day}", "page.viewed", clock.now(), customer="c9")]
        )
        live.run_due()
    target = Engine(Config(data_dir=str(tmp_path / "rebuilt")), FixedClock(NOW))

    class Stop(Exception):
        pass

    def interrupt(step, count=[0]):  # noqa: B006 - a counter across calls
        count[0] += 1
        if count[0] == 4:
            raise Stop

    try:
        rebuild(live, target, on_step=interrupt)
    except Stop:
        pass
    target.close()
    target = Engine(Config(data_dir=str(tmp_path / "rebuilt")), FixedClock(NOW))
    assert rebuild(live, target) > 0
    assert facts_of(target) == facts_of(live)
    live.close()
    target.close()


# -- an independent evaluator, written from the rules' text, for checking the engine's answers --


def independent_stage(records: list[dict], T, min_purchases: int = 4) -> tuple[str | None, str | None]:
    from datetime import datetime
    from statistics import median

    unique = {r["event_id"]: r for r in records}.values()
    at = lambda r: datetime.fromisoformat(r["occurred_at"])  # noqa: E731
    known = [r for r in unique if at(r) <= T]
    if not known:
        return None, None
    placed: dict[str, tuple] = {}
    for r in sorted(known, key=lambda r: (at(r), r["event_id"])):
        if r["kind"] == "order.placed":
            placed.setdefault(r["properties"]["order_id"], (at(r), r["properties"]["amount"]))
    cancelled = {r["properties"]["order_id"] for r in known if r["kind"] == "order.cancelled"}
    refunds: dict[str, list] = {}
    for r in known:
        if r["kind"] == "order.refunded":
            refunds.setdefault(r["properties"]["order_id"], []).append(r["properties"]["amount"])
    times = sorted(
        t
        for oid, (t, amount) in placed.items()
        if oid not in cancelled and not (oid in refunds and sum(refunds[oid]) >= amount)
    )
    year = timedelta(days=365)
    recent = [t for t in times if t > T - year]
    signal = any(
        T - year < at(r) <= T
        and (
            r["kind"] == "referral.converted"
            or (r["kind"] == "review.posted" and r["properties"]["rating"] >= 4)
            or (
                r["kind"] == "survey.answered"
                and r["properties"].get("nps") is not None
                and r["properties"]["nps"] >= 9
            )
        )
        for r in known
    )
    if len(times) >= min_purchases and len(recent) >= 2:
        stage = "advocate" if signal else "loyal"
    else:
        stage = {0: "prospect", 1: "first_buyer"}.get(len(times), "repeat")
    if not times:
        return stage, None
    idle = T - times[-1]
    gaps = [(b - a).total_seconds() / 86400 for a, b in zip(times, times[1:])]
    limit = 60 if len(times) == 1 else max(60, 2.0 * median(gaps))
    health = "lapsed" if idle > timedelta(days=365) else "at_risk" if idle > timedelta(days=limit) else "active"
    return stage, health


def independent_funnel(records, T, **kw) -> dict:
    from collections import Counter

    by_customer: dict[str, list] = {}
    for r in records:
        by_customer.setdefault(r["customer_id"], []).append(r)
    stages, health = Counter(), Counter()
    for rs in by_customer.values():
        s, h = independent_stage(rs, T, **kw)
        if s:
            stages[s] += 1
        if h:
            health[h] += 1
    return {
        "customers": sum(stages.values()),
        "stages": {s: stages[s] for s in ("prospect", "first_buyer", "repeat", "loyal", "advocate")},
        "health": {h: health[h] for h in ("active", "at_risk", "lapsed")},
    }


def test_as_of_funnels_equal_an_independent_recomputation(tmp_path):
    records = list(simulate(300, 11, NOW))  # late and duplicated deliveries, refunds
    assert any(r["kind"] == "order.refunded" for r in records)
    with Engine(Config(data_dir=str(tmp_path)), FixedClock(NOW)) as engine:
        engine.ingest(records)
        for T in (NOW - timedelta(days=700), NOW - timedelta(days=400), NOW - timedelta(days=95), NOW):
            got = engine.funnel(T)
            assert {k: got[k] for k in ("customers", "stages", "health")} == independent_funnel(records, T), T


def test_as_known_differs_from_as_corrected_by_a_late_event(tmp_path):
    from engine import queries

    t1, t2 = NOW - timedelta(days=10), NOW
    clock = FixedClock(t1)
    with Engine(Config(data_dir=str(tmp_path)), clock) as engine:
        engine.ingest([order("o1", t1 - timedelta(days=30))])
        clock.at = t2
        engine.ingest([order("o0", t1 - timedelta(days=40))])  # happened before t1, learned at t2
        corrected = queries.funnel(engine, t1)
        known = queries.funnel(engine, t1, as_known=True)
        assert corrected["stages"]["repeat"] == 1 and known["stages"]["first_buyer"] == 1
        assert queries.customer_view(engine, "c1", t1, as_known=True)["purchases"] == 1
        assert queries.customer_view(engine, "c1", t1)["purchases"] == 2


def test_whatif_on_loyal_min_purchases_matches_and_leaves_the_live_store_alone(tmp_path):
    from replay.whatif import whatif

    records = list(simulate(200, 5, NOW))
    live_config = Config(data_dir=str(tmp_path / "live"))
    with Engine(live_config, FixedClock(NOW)) as engine:
        engine.ingest(records)
        before = (engine.funnel(NOW), facts_of(engine), engine.store.journal.max_notification_id())
        alternative = Config.model_validate({"lifecycle": {"loyal_min_purchases": 3, "rules_version": "alt"}})
        result = whatif(engine, alternative, NOW)
        assert (engine.funnel(NOW), facts_of(engine), engine.store.journal.max_notification_id()) == before
    by_customer: dict[str, list] = {}
    for r in records:
        by_customer.setdefault(r["customer_id"], []).append(r)
    expected = sum(
        1
        for rs in by_customer.values()
        if independent_stage(rs, NOW)[0] != independent_stage(rs, NOW, min_purchases=3)[0]
    )
    assert result["changed"] == expected > 0
    assert set(result["by_transition"]) <= {"repeat->loyal", "repeat->advocate"}
    assert result["actions"]["loyalty_enrolment"]["differ"] > 0


def test_exports_round_trip_and_keep_erased_customers_erased(tmp_path):
    import pandas as pd

    from replay.export import frames, to_parquet

    with Engine(Config(data_dir=str(tmp_path / "live")), FixedClock(NOW)) as engine:
        engine.ingest(
            list(simulate(60, 2, NOW))
            + [
                tp(
                    "pii",
                    "profile.updated",
                    NOW,
                    customer="cust-000003",
                    traits={"name": "Zed Secretname", "tier": "gold"},
                )
            ]
        )
        engine.forget("cust-000003")
        tables = frames(engine, NOW)
    written = to_parquet(tables, tmp_path / "out")
    for name, df in tables.items():
        back = pd.read_parquet(written[name])
        pd.testing.assert_frame_equal(back, df, check_dtype=False)
    tps = tables["touchpoints"]
    erased = tps[tps.customer_id == "cust-000003"]
    assert len(erased) and erased.erased.all() and (erased.traits == "{}").all()
    assert (
        len(tables["snapshot"]) == 60
        and tables["snapshot"][tables["snapshot"].customer_id == "cust-000003"].erased.all()
    )
    blob = b"".join((tmp_path / "out" / f"{n}.parquet").read_bytes() for n in tables)
    assert b"Secretname" not in blob and b"@example.com" not in blob


def test_replay_commands_rebuild_swap_whatif_export(tmp_path):
    import json

    from click.testing import CliRunner

    from engine.cli import main
    from engine.clock import EventTimeClock

    data = tmp_path / "var"
    with Engine(Config(data_dir=str(data)), EventTimeClock()) as engine:
        engine.ingest(simulate(80, 9, NOW))
        live = facts_of(engine)
    env = {"JOURNEY_DATA_DIR": str(data)}
    run = lambda *a: CliRunner().invoke(main, list(a), env=env, catch_exceptions=False)  # noqa: E731
    out = run("replay", "rebuild", "--swap", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["swapped"] and result["same_number_of_changes_as_live"] and result["events_per_second"] > 0
    # The previous store is kept, and said to be: a full copy beside the new one.
    assert Path(result["previous"]).exists() and result["previous_bytes"] == Path(result["previous"]).stat().st_size
    with Engine(Config(data_dir=str(data)), FixedClock(NOW)) as engine:  # the rebuilt store, now live
        assert facts_of(engine) == live
    text = run("replay", "rebuild", "--swap", "--no-keep-old").output
    assert "the previous store was deleted" in text
    assert sorted(p.name for p in data.glob("journey.db.before-rebuild-*")) == [Path(result["previous"]).name]
    with Engine(Config(data_dir=str(data)), FixedClock(NOW)) as engine:
        assert facts_of(engine) == live
    alt = tmp_path / "alt.toml"
    alt.write_text('[lifecycle]\nrules_version = "alt"\nloyal_min_purchases = 2\n')
    whatif = json.loads(run("replay", "whatif", "--config", str(alt), "--as-of", NOW.isoformat(), "--json").output)
    assert whatif["changed"] > 0 and "repeat->loyal" in whatif["by_transition"]
    exported = json.loads(run("replay", "export", "--out", str(tmp_path / "x"), "--json").output)
    assert set(exported["files"]) == {"touchpoints", "changes", "actions", "snapshot"}
    for command in (
        ["replay", "journeys", "--months", "3"],
        ["replay", "cohorts"],
        ["replay", "policies"],
        ["replay", "time-to-stage"],
        ["replay", "transitions", "--from", "2026-01-01", "--to", "2026-05-01"],
    ):
        assert json.loads(run(*command, "--json").output)
