"""Replays: a rebuild equals live processing; what-if runs leave the live store alone."""
from __future__ import annotations

from datetime import timedelta

from engine.clock import FixedClock
from engine.config import Config
from engine.service import Engine
from engine.simulator import simulate
from replay.rebuild import rebuild

from .conftest import NOW
from .helpers import order, tp


def facts_of(engine: Engine) -> tuple[list, list]:
    strip = lambda xs: [{k: v for k, v in x.items() if k != "position"} for x in xs]  # noqa: E731
    return strip(engine.changes(limit=1_000_000)), strip(engine.actions(limit=1_000_000))


def test_rebuild_equals_live_processing_and_is_resumable(tmp_path):
    clock = FixedClock(NOW - timedelta(days=500))
    live = Engine(Config(data_dir=str(tmp_path / "live")), clock)
    records = list(simulate(120, 3, NOW))
    for i in range(0, len(records), 300):                    # live: batches as time goes by
        batch = records[i:i + 300]
        clock.at = max(clock.at, max(__import__("datetime").datetime.fromisoformat(r["occurred_at"])
                                     for r in batch) + timedelta(hours=6))
        live.ingest(batch)
        if i % 900 == 0:
            live.run_due()
    live.ingest([order("late", NOW - timedelta(days=300), customer="cust-000001")])   # a late event
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
    assert rebuild(live, target) == 0                          # resumable: nothing left to do
    live.close()
    target.close()


def test_rebuild_resumes_after_an_interruption(tmp_path):
    clock = FixedClock(NOW - timedelta(days=100))
    live = Engine(Config(data_dir=str(tmp_path / "live")), clock)
    for day in range(0, 60, 6):
        clock.at = NOW - timedelta(days=100 - day)
        live.ingest([order(f"o{day}-{c}", clock.now() - timedelta(hours=1), customer=f"c{c}") for c in range(5)]
                    + [tp(f"v{day}", "page.viewed", clock.now(), customer="c9")])
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
