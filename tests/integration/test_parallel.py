"""Ingest with several processes, each owning a shard of the customers (engine.parallel)."""

from __future__ import annotations

import uuid

import pytest

from engine import parallel
from engine.clock import EventTimeClock, FixedClock
from engine.ids import shard_of
from engine.policies.model import PolicySpec, Trigger
from engine.service import Engine
from engine.simulator import simulate
from replay.rebuild import rebuild

from ..conftest import NOW
from ..helpers import day, facts_of, order, tp


def test_the_stores_pick_the_same_shards_as_the_engine(engine):
    customers = [uuid.uuid4() for _ in range(300)]
    recorder = engine.store.recorder
    with recorder.datastore.transaction(commit=True) as c:  # every customer due at once
        insert = (
            f"INSERT INTO {recorder.t_timers.as_string(c.connection)} VALUES (%s, 0)"
            if hasattr(recorder, "t_timers")
            else "INSERT INTO journey_timers VALUES (?, 0)"
        )
        c.executemany(insert, [(str(u),) for u in customers])
    for n in (2, 3):
        for k in range(n):
            due = set(recorder.due_customers(1, 1000, (k, n)))
            assert due == {str(u) for u in customers if shard_of(u, n) == k}


def test_parallel_backfill_keeps_every_customer_and_replays_exactly(tmp_path, sqlite_config):
    records = list(simulate(200, 5, NOW))
    records.insert(40, {"event_id": "bad-1", "customer_id": "x"})  # no kind: rejected
    records.insert(400, b"{not json")  # rejected, counted
    single_config = sqlite_config.model_copy(update={"data_dir": str(tmp_path / "single")})
    with Engine(single_config, EventTimeClock()) as single:
        one = single.ingest(records)
        single_funnel = single.funnel(NOW)
        single_view = single.customer("cust-000007", as_of=NOW)
    with Engine(sqlite_config, EventTimeClock()) as engine:
        two = parallel.ingest(engine, records, 2)
        assert (
            (two.accepted, two.duplicates, two.rejected)
            == (one.accepted, one.duplicates, one.rejected)
            == (one.accepted, one.duplicates, 2)
        )
        assert [r.record for r in two.rejections] == [41, 401]  # numbers kept, in order
        # The same history, so the same stages and health as of any time, and the same
        # corrected history per customer; recorded times depend on the batches, as in any backfill.
        assert engine.funnel(NOW) == single_funnel
        view = engine.customer("cust-000007", as_of=NOW)
        assert (view["stage"], view["health"], view["history"]) == (
            single_view["stage"],
            single_view["health"],
            single_view["history"],
        )
        changes, actions = facts_of(engine)
        assert changes and actions
        # Each writer ran the timers of its own customers: a rebuild knows whose they were.
        target = Engine(sqlite_config.model_copy(update={"data_dir": str(tmp_path / "rebuilt")}), FixedClock(NOW))
        rebuild(engine, target)
        assert facts_of(target) == (changes, actions)
        target.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_record_whose_processing_fails_is_rejected_and_the_rest_kept(sqlite_config, workers):
    # A custom condition that raises: the one record it fails on is rejected with the error
    # (its batch retried without it), in one process or several; nothing else is lost.
    policy = PolicySpec(
        name="broken",
        trigger=Trigger(on="touchpoint", kind="order.placed"),
        action="call",
        channel="phone",
        purpose="service",
        python="tests.support.vip:broken",
    )
    config = sqlite_config.model_copy(update={"policies": (policy,)})
    with Engine(config, FixedClock(NOW)) as engine:
        records = (
            [tp(f"v{i}", "page.viewed", day(i), customer=f"c{i}") for i in range(20)]
            + [order("o1", day(30))]
            + [tp(f"w{i}", "page.viewed", day(i), customer=f"c{i}") for i in range(20)]
        )
        report = parallel.ingest(engine, records, workers)
        assert (report.accepted, report.rejected) == (40, 1)
        rejected = report.rejections[0]
        assert rejected.record == 21 and rejected.event_id == "o1"
        assert "ZeroDivisionError: the custom condition divided by zero" in rejected.reason
        assert engine.funnel()["customers"] == 20


def test_a_record_no_process_can_route_is_rejected_not_fatal(sqlite_config):
    records = [tp("ok", "page.viewed", day(1)), {**tp("bad", "page.viewed", day(1)), "customer_id": "\ud800"}]
    with Engine(sqlite_config, FixedClock(NOW)) as engine:
        report = parallel.ingest(engine, records, 2)
    assert (report.accepted, report.rejected) == (1, 1) and report.rejections[0].field == "customer_id"
