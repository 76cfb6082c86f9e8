"""The real CDNOW sample (2,357 customers' CD purchases, 1997-98), checked against an
independent computation of the default rules written here from the raw file."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from statistics import median

from engine.clock import FixedClock
from engine.service import Engine

FIXTURE = Path(__file__).parent.parent / "fixtures" / "cdnow_sample.txt"
AS_OF = datetime(1998, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)


def rows():
    for n, line in enumerate(FIXTURE.read_text().splitlines(), start=1):
        customer, _sample, ymd, cds, dollars = line.split()
        yield n, customer, datetime.strptime(ymd, "%Y%m%d").replace(tzinfo=UTC), int(cds), float(dollars)


def touchpoints():
    for n, customer, at, cds, dollars in rows():
        yield {
            "event_id": f"cdnow-{n}",
            "customer_id": f"cdnow-{customer}",
            "kind": "order.placed",
            "occurred_at": at.isoformat(),
            "channel": "mail",
            "source": "cdnow",
            "properties": {"order_id": f"cdnow-{n}", "amount": dollars, "currency": "USD", "cds": cds},
        }


def expected_funnel() -> dict:
    """Default rules by hand: every CDNOW row is a purchase (no refunds or cancellations)."""
    days: dict[str, list[date]] = defaultdict(list)
    for _, customer, at, _, _ in rows():
        if at <= AS_OF:
            days[customer].append(at.date())
    stages, health = Counter(), Counter()
    as_of_day = AS_OF.date()
    for purchases in days.values():
        purchases.sort()
        recent = sum(1 for d in purchases if (as_of_day - d).days < 365)  # within (T-365d, T]
        n = len(purchases)
        stages["loyal" if n >= 4 and recent >= 2 else "repeat" if n >= 2 else "first_buyer"] += 1
        idle = (as_of_day - purchases[-1]).days + 1  # whole days from that midnight to the end of T's day
        gaps = [(b - a).days for a, b in zip(purchases, purchases[1:])]
        limit = 60 if n == 1 else max(60, 2.0 * median(gaps))
        health["lapsed" if idle > 365 else "at_risk" if idle > limit else "active"] += 1
    return {
        "customers": len(days),
        "stages": {s: stages[s] for s in ("prospect", "first_buyer", "repeat", "loyal", "advocate")},
        "health": {h: health[h] for h in ("active", "at_risk", "lapsed")},
    }


def test_cdnow_funnel_as_of_mid_1998(sqlite_config):
    with Engine(sqlite_config, FixedClock(datetime(1998, 7, 1, tzinfo=UTC))) as engine:
        report = engine.ingest(touchpoints())
        assert (report.accepted, report.rejected) == (6919, 0)
        funnel = engine.funnel(AS_OF)
    expected = expected_funnel()
    assert expected["customers"] == 2357
    assert {k: funnel[k] for k in ("customers", "stages", "health")} == expected
    # a sanity check that the sample exercises the rules
    assert min(expected["stages"][s] for s in ("first_buyer", "repeat", "loyal")) > 50
    assert min(expected["health"].values()) > 50
