"""Ingestion on both stores: idempotency, conflicts, concurrency, late events, timers, the feed."""

from __future__ import annotations

import json
import multiprocessing
from datetime import datetime, timedelta

from engine.clock import FixedClock
from engine.ids import customer_uuid
from engine.queries import TOUCHPOINT_TOPIC, scan
from engine.service import Engine

from ..conftest import NOW
from ..helpers import day, order, tp


def stored_touchpoints(engine: Engine) -> list[str]:
    return [body["touchpoint"]["event_id"] for _, _, body in scan(engine, TOUCHPOINT_TOPIC)]


def test_duplicates_within_a_batch_count_once(engine):
    r = engine.ingest([order("e1", day(1)), order("e1", day(1)), order("e2", day(2)), order("e1", day(1))])
    assert (r.accepted, r.duplicates, r.rejected) == (2, 2, 0)
    assert sorted(stored_touchpoints(engine)) == ["e1", "e2"]


def test_duplicates_across_a_restart_have_no_effect(config, clock):
    with Engine(config, clock) as first:
        assert first.ingest([order("e1", day(1))]).accepted == 1
        changes_before = first.changes()
    clock.advance(days=1)
    with Engine(config, clock) as second:
        r = second.ingest([order("e1", day(1)), order("e2", day(3))])
        assert (r.accepted, r.duplicates) == (1, 1)
        r = second.ingest([order("e1", day(1))])
        assert (r.accepted, r.duplicates, r.changes) == (0, 1, 0)
        assert second.changes()[: len(changes_before)] == changes_before
        assert sorted(stored_touchpoints(second)) == ["e1", "e2"]


def test_reusing_an_event_id_with_other_content_is_a_conflict(engine):
    engine.ingest([order("e1", day(1), amount=10)])
    r = engine.ingest([order("e1", day(1), amount=99), order("e2", day(2))])
    assert (r.accepted, r.duplicates, r.rejected) == (1, 0, 1)
    assert (
        r.rejections[0].field == "event_id"
        and "this customer accepted earlier, with other content" in r.rejections[0].reason
    )
    # the same event id under another customer is a conflict too
    r = engine.ingest([order("e1", day(1), amount=10, customer="c2")])
    assert r.rejected == 1 and "a touchpoint of another customer" in r.rejections[0].reason
    # and within one batch
    r = engine.ingest([order("e7", day(1)), order("e7", day(1), amount=3)])
    assert (r.accepted, r.rejected) == (1, 1) and r.rejections[0].record == 2
    assert engine.customer("c1")["revenue"] == {"EUR": 30.0}  # e1, e2 and e7 at 10 each


def _write(args):
    config, records, barrier = args
    barrier.wait()
    with Engine(config, FixedClock(NOW)) as engine:
        r = engine.ingest(records)
    return r.accepted, r.duplicates


def test_two_concurrent_writers_never_double_a_touchpoint(config):
    # Both writers get the same 600 touchpoints over 30 customers, in different orders and batches.
    records = [order(f"e{i}", day(i % 200), customer=f"c{i % 30}") for i in range(600)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Manager().Barrier(2)
    with ctx.Pool(2) as pool:
        results = pool.map(_write, [(config, records, barrier), (config, records[::-1], barrier)])
    assert sum(a for a, _ in results) == 600
    assert sum(d for _, d in results) == 600
    with Engine(config, FixedClock(NOW)) as engine:
        ids = stored_touchpoints(engine)
        assert len(ids) == len(set(ids)) == 600
        assert engine.funnel()["customers"] == 30
        # every customer's recorded stage equals the derived one: no change lost or doubled
        for c in range(30):
            view = engine.customer(f"c{c}")
            recorded = [t for t in view["timeline"] if t["type"] == "stage_change"]
            assert recorded[0]["to"] == view["stage"]  # the timeline is newest first


def test_late_event_is_placed_by_event_time_and_corrects_the_feed(engine, clock):
    ago = lambda d: NOW - timedelta(days=d)  # noqa: E731
    engine.ingest([order("o1", ago(40)), order("o2", ago(30)), order("o4", ago(10))])
    assert engine.customer("c1")["stage"] == "repeat"
    clock.advance(hours=1)
    r = engine.ingest([order("o3", ago(20))])  # arrives late: the 3rd purchase in time
    assert r.changes == 1
    assert engine.customer("c1")["stage"] == "loyal"
    last = engine.changes()[-1]
    assert (last["from"], last["to"], last["causes"]) == ("repeat", "loyal", ["o4"])
    assert last["effective_at"] == ago(10).isoformat(timespec="microseconds")  # loyal from the 4th purchase on
    assert last["recorded_at"] == clock.now().isoformat(timespec="microseconds")
    assert engine.customer("c1", as_of=ago(15))["stage"] == "repeat"
    assert engine.customer("c1", as_of=ago(15))["purchases"] == 3


def test_window_expiry_demotes_without_a_new_touchpoint_even_after_restart(config, clock):
    history = [order(f"o{i}", NOW - timedelta(days=300 - i)) for i in range(4)]
    with Engine(config, clock) as engine:
        engine.ingest(history)
        assert engine.customer("c1")["stage"] == "loyal"
        assert engine.run_due().total == 0  # nothing is due yet
    clock.advance(days=70)  # two purchases leave the window
    with Engine(config, clock) as engine:  # a restart: timers are durable
        n = engine.run_due().total
        assert n >= 1
        stage_changes = [c for c in engine.changes() if c["dimension"] == "stage"]
        assert (stage_changes[-1]["from"], stage_changes[-1]["to"]) == ("loyal", "repeat")
        third = datetime.fromisoformat(history[2]["occurred_at"])
        assert stage_changes[-1]["effective_at"] == (third + timedelta(days=365)).isoformat(timespec="microseconds")
        assert "left the 365-day window" in stage_changes[-1]["reason"]
        assert engine.run_due().total == 0  # fired once, not twice
    with Engine(config, clock) as engine:
        assert engine.run_due().total == 0


def test_feed_positions_are_ordered_and_changes_carry_their_facts(engine):
    engine.ingest(
        [
            tp("r", "customer.registered", day(0)),
            order("o1", day(1)),
            order("o2", day(2)),
            tp("r2", "customer.registered", day(0), customer="c2"),
        ]
    )
    feed = engine.changes()
    assert [c["position"] for c in feed] == sorted(c["position"] for c in feed)
    first = feed[0]
    assert set(first) >= {
        "change_id",
        "customer_id",
        "dimension",
        "from",
        "to",
        "effective_at",
        "recorded_at",
        "rules_version",
        "causes",
        "reason",
        "position",
    }
    c1 = [(c["dimension"], c["to"]) for c in feed if c["customer_id"] == "c1"]
    assert c1[:2] == [("stage", "prospect"), ("stage", "first_buyer")]
    after = engine.changes(after=feed[1]["position"])
    assert after == feed[2:]
    assert engine.changes(customer_id="c2")[0]["to"] == "prospect"
    assert len({c["change_id"] for c in feed}) == len(feed)


def test_same_history_replayed_into_a_new_store_gives_the_same_changes(tmp_path, clock):
    from engine.config import Config

    records = [order(f"o{i}", day(i * 40), customer=f"c{i % 3}") for i in range(12)]
    feeds = []
    for name in ("a", "b"):
        with Engine(Config(data_dir=str(tmp_path / name)), FixedClock(NOW)) as engine:
            engine.ingest(records)
            feeds.append([{k: v for k, v in c.items() if k != "position"} for c in engine.changes(limit=1000)])
    assert feeds[0] == feeds[1] and feeds[0]


def test_customer_view_gathers_the_profile(engine):
    engine.ingest(
        [
            tp(
                "r",
                "customer.registered",
                day(0),
                traits={"name": "Ann", "email": "a@x.org", "timezone": "Europe/Paris"},
            ),
            {
                **tp("c", "consent.changed", day(1), channel="email"),
                "properties": {"channel": "email", "purpose": "promotional", "granted": True},
            },
            order("o1", day(2), amount=50),
            tp("f", "complaint.filed", day(3), complaint_id="k1", severity="high"),
            tp("i", "invoice.overdue", day(4), invoice_id="inv1", amount=5, currency="EUR"),
            tp("rf", "order.refunded", day(5), order_id="o1", amount=20),
        ]
    )
    v = engine.customer("c1")
    assert (v["stage"], v["purchases"], v["revenue"]) == ("first_buyer", 1, {"EUR": 30.0})
    assert v["open_complaints"] == ["k1"] and v["overdue_invoices"] == ["inv1"]
    assert v["consent"]["email/promotional"]["granted"] is True
    assert v["traits"] == {"name": "Ann", "email": "a@x.org", "timezone": "Europe/Paris"}
    assert v["preferred_channel"] == "web"
    assert any(item["type"] == "stage_change" and item["to"] == "first_buyer" for item in v["timeline"])
    assert json.dumps(v)


def test_refund_and_cancellation_demote_through_the_store(engine):
    ago = lambda d: NOW - timedelta(days=d)  # noqa: E731
    engine.ingest([order("o1", ago(30), amount=40), order("o2", ago(20), amount=40)])
    engine.ingest([tp("r1", "order.refunded", ago(10), order_id="o2", amount=40)])
    engine.ingest([tp("c1x", "order.cancelled", ago(5), order_id="o1")])
    stage = [(c["from"], c["to"], c["causes"]) for c in engine.changes() if c["dimension"] == "stage"]
    assert stage[-2:] == [("repeat", "first_buyer", ["r1"]), ("first_buyer", "prospect", ["c1x"])]
    health = [c["to"] for c in engine.changes() if c["dimension"] == "health"]
    assert health[-1] is None  # no purchase left: no health
    assert engine.customer("c1", as_of=ago(15))["stage"] == "repeat"


def test_long_histories_are_snapshotted_and_reload_the_same(config, clock):
    config = config.model_copy(
        update={"store": config.store.model_copy(update={"snapshot_interval": 50, "cache_customers": 0})}
    )
    records = [tp(f"v{i}", "page.viewed", NOW - timedelta(minutes=i)) for i in range(120)]
    records += [order(f"o{i}", NOW - timedelta(days=i)) for i in range(5)]
    with Engine(config, clock) as engine:
        engine.ingest(records)
        snapshots = list(engine.store.snapshots.get(customer_uuid("c1")))
        assert snapshots, "a customer with 120+ events has snapshots"
        customer = engine.store.customer(customer_uuid("c1"))
        assert (customer.touchpoints, customer.stage) == (125, "loyal")
        assert engine.customer("c1")["touchpoints"] == 125


def test_cached_customers_equal_the_library_rebuilding_them_from_the_store(sqlite_config, clock):
    """The hot path applies events to cached customers and writes them in its own pass; the
    library, replaying the stored events (and snapshots), must arrive at the same state."""
    from engine.clock import EventTimeClock
    from engine.simulator import simulate

    config = sqlite_config.model_copy(update={"store": sqlite_config.store.model_copy(update={"snapshot_interval": 7})})
    records = list(simulate(40, 11, NOW))
    uuids = sorted({customer_uuid(r["customer_id"]) for r in records})
    with Engine(config, EventTimeClock()) as engine:
        engine.ingest(records)
        cached = engine.store.customers(uuids)  # as the writer keeps them
        fresh = engine.store.customers(uuids, cached=False)  # rebuilt in bulk from the store
        assert len(cached) == len(fresh) == 40
        for uuid, customer in cached.items():
            by_library = engine.store.repository.get(uuid, version=customer.version)
            assert customer == by_library == fresh[uuid]
            assert customer.facts == by_library.facts  # folded as they came / from the state
        assert list(engine.store.snapshots.get(uuid)), "long histories were snapshotted"


def test_a_customer_keeps_one_snapshot_however_long_its_history(config, clock):
    # A customer with 1M touchpoints had 849 snapshots of up to 13 MB each, every one kept.
    config = config.model_copy(update={"store": config.store.model_copy(update={"snapshot_interval": 20})})
    with Engine(config, clock) as engine:
        for start in range(0, 1200, 100):
            engine.ingest(
                [
                    order(f"o{i}", NOW - timedelta(hours=2000 - i))
                    if i % 5 == 0
                    else tp(f"v{i}", "page.viewed", NOW - timedelta(hours=2000 - i))
                    for i in range(start, start + 100)
                ]
            )
        snapshots = engine.store.snapshots.recorder.select_events(customer_uuid("c1"))
        assert len(snapshots) == 1
        # ...taken every max(interval, size of the state) events: far fewer than 1,200 / 20
        customer = engine.store.customer(customer_uuid("c1"))
        assert customer.version - snapshots[0].originator_version < max(20, customer.weight()) + 100
    with Engine(config, clock) as engine:  # and it loads from that one snapshot
        view = engine.customer("c1", limit=5)
        assert (view["purchases"], view["touchpoints"]) == (240, 1200)
        assert engine.ingest([order("last", NOW)]).accepted == 1


def test_the_timeline_comes_newest_first_in_pages(engine, clock):
    engine.ingest([tp(f"v{i}", "page.viewed", day(i)) for i in range(30)] + [order("o1", day(31))])
    full = engine.customer("c1")
    assert full["timeline_total"] == len(full["timeline"]) == 31 + 5  # prospect, first_buyer, active, at_risk, lapsed
    assert [t["at"] for t in full["timeline"]] == sorted((t["at"] for t in full["timeline"]), reverse=True)
    pages = [engine.customer("c1", limit=10, offset=k)["timeline"] for k in (0, 10, 20, 30)]
    assert [t for page in pages for t in page] == full["timeline"]
    assert engine.customer("c1", limit=10, offset=30)["timeline_total"] == full["timeline_total"]


def test_customers_that_leave_the_cache_leave_memory(sqlite_config, clock):
    # The walk kept beside a customer's facts refers to them, and they to it: as a cycle, frozen
    # by gc.freeze(), every customer evicted from the cache stayed in memory for good.
    import gc

    from engine.projections.facts import Facts

    config = sqlite_config.model_copy(update={"store": sqlite_config.store.model_copy(update={"cache_customers": 50})})
    gc.unfreeze()
    gc.collect()  # what earlier tests left
    before = sum(isinstance(o, Facts) for o in gc.get_objects())
    with Engine(config, clock) as engine:
        for k in range(0, 1200, 300):
            engine.ingest(
                [order(f"o{i}-{j}", day(j * 10), customer=f"k{i}") for i in range(k, k + 300) for j in range(3)]
            )
        gc.unfreeze()  # count what is reachable or leaked, without collecting cycles first
        alive = sum(isinstance(o, Facts) for o in gc.get_objects()) - before
    assert alive <= 50 + 10, alive


def test_a_huge_at_risk_threshold_is_no_overflow(sqlite_config, clock):
    # A factor of 100 on a gap of 89 years puts the at-risk threshold beyond the year 9999.
    config = sqlite_config.model_copy(
        update={"lifecycle": sqlite_config.lifecycle.model_copy(update={"at_risk_gap_factor": 100.0})}
    )
    with Engine(config, clock) as engine:
        r = engine.ingest(
            [order("a", datetime(1901, 1, 1, tzinfo=NOW.tzinfo)), order("b", datetime(1990, 1, 1, tzinfo=NOW.tzinfo))]
        )
        assert (r.accepted, r.rejected) == (2, 0)
        assert engine.customer("c1")["health"] == "lapsed"


def test_a_clock_that_goes_back_changes_nothing_recorded(config):
    with Engine(config, FixedClock(NOW)) as engine:
        engine.ingest([order("o1", NOW - timedelta(days=10)), order("o2", NOW - timedelta(days=5))])
        before = engine.changes()
    with Engine(config, FixedClock(NOW - timedelta(days=3))) as engine:  # a worker whose clock is behind
        r = engine.ingest([tp("v", "page.viewed", NOW - timedelta(days=4))])
        assert (r.accepted, r.rejected, r.changes) == (1, 0, 0)
        assert engine.changes() == before
        assert engine.customer("c1", as_of=NOW)["stage"] == "repeat"
