"""The simulator: reproducible, valid, and covering every lifecycle stage and health."""

from __future__ import annotations

import inspect
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from engine.catalog import CHANNELS, Catalog
from engine.config import LifecycleRules
from engine.projections.facts import Facts
from engine.projections.lifecycle import HEALTHS, STAGES, customer_ladder, evaluate
from engine.simulator import simulate
from engine.touchpoints import Touchpoint, Validator

UNTIL = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return list(simulate(500, 42, UNTIL))


@pytest.fixture(scope="module")
def touchpoints(records) -> list[Touchpoint]:
    v = Validator(Catalog(), timedelta(hours=24), 65536)
    out, problems = [], []
    for n, record in enumerate(records, 1):
        res = v.validate(record, n, now=UNTIL)
        (out if isinstance(res, Touchpoint) else problems).append(res)
    assert not problems, [p.message() for p in problems[:5]]
    return out


def test_same_arguments_give_the_same_bytes():
    a = json.dumps(list(simulate(60, 7, UNTIL)))
    assert a == json.dumps(list(simulate(60, 7, UNTIL)))
    assert a != json.dumps(list(simulate(60, 8, UNTIL)))
    assert a != json.dumps(list(simulate(60, 7, UNTIL - timedelta(days=1))))


def test_no_customers_no_records():
    assert list(simulate(0, 1, UNTIL)) == []


def test_naive_until_is_refused():
    with pytest.raises(ValueError):
        next(simulate(1, 1, datetime(2026, 6, 1)))


def test_every_record_validates(records, touchpoints):
    assert len(touchpoints) == len(records)
    assert all(tp.occurred_at <= UNTIL for tp in touchpoints)
    assert all("@" not in r["customer_id"] and r["event_id"].startswith("sim-42-") for r in records)


def test_envelope_and_ids(records, touchpoints):
    by_id: dict[str, dict] = {}
    for r in records:
        assert set(r) == {"event_id", "customer_id", "kind", "occurred_at", "channel", "source", "properties", "traits"}
        # a redelivery repeats the identical record; a distinct touchpoint gets its own id
        assert by_id.setdefault(r["event_id"], r) == r
    assert {r["customer_id"] for r in records} == {f"cust-{i:06d}" for i in range(500)}
    assert {tp.channel for tp in touchpoints} == set(CHANNELS)
    assert any(not r["occurred_at"].endswith("+00:00") for r in records)  # other offsets occur
    registered = [r for r in records if r["kind"] == "customer.registered"]
    assert registered and all({"name", "email", "timezone", "country"} <= set(r["traits"]) for r in registered)


def test_all_kinds_occur(touchpoints):
    kinds = Counter(tp.kind for tp in touchpoints)
    # Segment's alias and group (over HTTP) aside: the simulated shoppers have one id and no account
    assert set(kinds) == set(Catalog().schemas) - {"customer.aliased", "customer.grouped"}
    assert 10 <= len(touchpoints) / 500 <= 30  # records per customer
    refunds = [tp for tp in touchpoints if tp.kind == "order.refunded"]
    amounts = {tp.properties["order_id"]: tp.properties["amount"] for tp in touchpoints if tp.kind == "order.placed"}
    full = sum(tp.properties["amount"] == amounts[tp.properties["order_id"]] for tp in refunds)
    assert 0 < full < len(refunds)  # full and partial refunds
    consents = Counter(tp.properties["granted"] for tp in touchpoints if tp.kind == "consent.changed")
    assert consents[True] and consents[False]


def test_follow_ups_come_after_their_cause(touchpoints):
    placed = {tp.properties["order_id"]: tp.occurred_at for tp in touchpoints if tp.kind == "order.placed"}
    filed = {tp.properties["complaint_id"]: tp.occurred_at for tp in touchpoints if tp.kind == "complaint.filed"}
    for tp in touchpoints:
        if tp.kind in ("order.refunded", "order.cancelled"):
            assert placed[tp.properties["order_id"]] < tp.occurred_at
        elif tp.kind == "complaint.resolved":
            assert filed[tp.properties["complaint_id"]] < tp.occurred_at
    overdue = {tp.properties["invoice_id"] for tp in touchpoints if tp.kind == "invoice.overdue"}
    paid = {tp.properties["invoice_id"] for tp in touchpoints if tp.kind == "invoice.paid"}
    assert overdue & paid and overdue - paid  # some overdue invoices get paid, some not yet


def test_late_and_duplicate_deliveries(touchpoints):
    seen: set[str] = set()
    duplicates = late = 0
    latest = None
    for tp in touchpoints:
        if tp.event_id in seen:
            duplicates += 1
        else:
            seen.add(tp.event_id)
            if latest is not None and tp.occurred_at < latest:
                late += 1
        latest = max(latest or tp.occurred_at, tp.occurred_at)
    n = len(touchpoints)
    assert 0.01 * n < duplicates < 0.04 * n
    assert 0.01 * n < late < 0.06 * n


def test_every_stage_and_health_occurs(touchpoints):
    facts: dict[str, Facts] = defaultdict(Facts)
    for tp in touchpoints:
        facts[tp.customer_id].add(tp.event_id, tp.kind, tp.occurred_at, tp.properties)
    statuses = [evaluate(f, UNTIL, customer_ladder(LifecycleRules())) for f in facts.values()]
    stages = Counter(s.stage for s in statuses)
    healths = Counter(s.health for s in statuses if s.health)
    assert set(stages) == set(STAGES) and set(healths) == set(HEALTHS)
    assert all(stages[s] >= 0.05 * 500 for s in STAGES), stages  # a reasonable share each
    assert all(healths[h] >= 0.05 * 500 for h in HEALTHS), healths


def test_streams_in_delivery_order(records):
    # A generator, mostly in occurred_at order: only late and repeated deliveries step back.
    assert inspect.isgenerator(simulate(1, 1, UNTIL))
    times = [datetime.fromisoformat(r["occurred_at"]) for r in records]
    back = sum(b < a for a, b in zip(times, times[1:]))
    assert back < 0.1 * len(records)
