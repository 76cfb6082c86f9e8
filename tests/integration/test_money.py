"""Money has one definition: net revenue (orders less refunds, cancelled or fully refunded
orders out), per currency, the same in every reader; currencies are ISO 4217's, and a refund
is in its order's currency."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.config import Config
from engine.ids import customer_uuid
from engine.policies.decide import PolicyContext
from engine.projections.lifecycle import revenue
from engine.queries import summary
from engine.service import Engine
from replay.export import frames

from ..conftest import NOW
from ..helpers import order, tp
from ..support.vip import VIP_CARE

ago = lambda d: NOW - timedelta(days=d)  # noqa: E731


def refund(eid, at, order_id, amount, customer="c1", **kw):
    return tp(eid, "order.refunded", at, customer=customer, order_id=order_id, amount=amount, **kw)


def history(customer="c1"):
    """100 EUR refunded 40, 50 EUR cancelled, 30 USD: net 60 EUR and 30 USD."""
    return [
        order("o1", ago(9), amount=100, customer=customer),
        refund("r1", ago(8), "o1", 40, customer=customer, currency="EUR"),
        order("o2", ago(7), amount=50, customer=customer),
        tp("x2", "order.cancelled", ago(6), customer=customer, order_id="o2"),
        order("o3", ago(5), amount=30, currency="USD", customer=customer),
    ]


def test_every_reader_gives_the_same_net_revenue_per_currency(engine):
    r = engine.ingest(history())
    assert (r.accepted, r.rejected) == (5, 0)
    want = {"EUR": 60.0, "USD": 30.0}
    assert engine.customer("c1", NOW)["revenue"] == want  # the 360 view
    customer = engine.store.customers([customer_uuid("c1")], cached=False)[customer_uuid("c1")]
    assert summary(customer, NOW, engine.rules, engine.value_rules)["revenue"] == want  # the Redis read model's rows
    assert PolicyContext("c1", None, None, 1, NOW, None, customer.facts).revenue == want  # policy conditions
    snap = frames(engine, NOW)["snapshot"].set_index("customer_id")  # the Parquet export
    assert (snap.loc["c1", "revenue_EUR"], snap.loc["c1", "revenue_USD"]) == (60.0, 30.0)
    # as of times before the refund, and after it but before the cancellation
    assert engine.customer("c1", ago(8.5))["revenue"] == {"EUR": 100.0}
    assert engine.customer("c1", ago(6.5))["revenue"] == {"EUR": 110.0}
    assert revenue(customer.facts, ago(10)) == {}


def test_a_policy_condition_sees_revenue_net_of_refunds(tmp_path, clock):
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path),
            "policies": [VIP_CARE],
        }
    )
    with Engine(config, clock) as engine:
        # 600 placed, 200 refunded, then 50 more: 450 net (650 gross), below the 500 of big_spender;
        # 60 more make 510
        engine.ingest([order("o1", ago(5), amount=600), refund("r1", ago(4), "o1", 200)])
        engine.ingest([order("o2", ago(3), amount=50)])
        engine.ingest([order("o3", ago(2), amount=60)])
        fired = [a for a in engine.actions() if a["policy"] == "vip_care"]
        assert [a["trigger"]["id"] for a in fired] == ["o3"]


@pytest.mark.parametrize(
    "code, words",
    [
        ("XXQ", "'XXQ' is not an ISO 4217 currency code"),
        ("eur", "ISO 4217 codes are capitals ('EUR')"),
        ("HRK", "'HRK' is not an ISO 4217 currency code"),  # withdrawn in 2023 (the euro)
        ("XXX", "'XXX' is ISO 4217's code for no currency"),
        ("XTS", "reserved for testing"),
    ],
)
def test_currencies_are_iso_4217_codes(engine, code, words):
    r = engine.ingest([order("o1", ago(3), currency=code), order("o2", ago(2), currency="JPY")])
    assert (r.accepted, r.rejected) == (1, 1)
    bad = r.rejections[0]
    assert (bad.record, bad.field) == (1, "properties.currency") and words in bad.reason


def test_a_refund_in_another_currency_than_its_order_is_rejected(engine):
    r = engine.ingest(
        [
            order("o1", ago(9), amount=100),
            refund("r1", ago(8), "o1", 40, currency="USD"),
            refund("r2", ago(7), "o1", 10),
        ]
    )  # no currency: the order's
    assert (r.accepted, r.rejected) == (2, 1)
    bad = r.rejections[0]
    assert (bad.record, bad.field, bad.event_id) == (2, "properties.currency", "r1")
    assert "refund in USD of order 'o1', which was placed in EUR" in bad.reason
    # in a later batch too
    r = engine.ingest([refund("r3", ago(6), "o1", 5, currency="GBP")])
    assert r.rejected == 1 and "placed in EUR" in r.rejections[0].reason
    assert engine.customer("c1", NOW)["revenue"] == {"EUR": 90.0}
    # a refund that arrived first fixes the currency its order must have
    engine.ingest([refund("r9", ago(3), "o9", 5, customer="c2", currency="USD")])
    r = engine.ingest([order("o9", ago(4), amount=20, customer="c2"), order("o8", ago(4), amount=1, customer="c2")])
    assert (r.accepted, r.rejected) == (1, 1)
    assert "order 'o9' placed in EUR, but refunds of it were recorded in USD" in r.rejections[0].reason
    assert engine.customer("c2", NOW)["revenue"] == {"EUR": 1.0}
    # ...in one batch as well: judged in arrival order, wherever the batches end
    r = engine.ingest(
        [refund("r7", ago(3), "o7", 5, customer="c3", currency="USD"), order("o7", ago(4), amount=20, customer="c3")]
    )
    assert (r.accepted, r.rejected) == (1, 1) and r.rejections[0].event_id == "o7"


def test_a_batch_whose_touchpoints_of_a_customer_are_all_refused_leaves_it_as_it_was(engine):
    # (a new customer's first touchpoint with a currency is never refused: it sets the currency)
    engine.ingest([order("o1", ago(9), amount=100, customer="c1")])
    r = engine.ingest([refund("r1", ago(8), "o1", 40, customer="c1", currency="USD")])
    assert (r.accepted, r.rejected) == (0, 1)
    engine.ingest([refund("r5", ago(8), "o5", 40, customer="c5", currency="USD")])
    r = engine.ingest([order("o5", ago(9), amount=100, customer="c5")])
    assert (r.accepted, r.rejected) == (0, 1)
    assert engine.customer("c5", NOW)["touchpoints"] == 1


def test_the_360_view_and_the_read_models_summary_agree_on_money_and_contact_state(engine):
    """Both fold the same way (engine.projections): as of any time, the same revenue, consents,
    open complaints and overdue invoices."""
    from engine.simulator import simulate

    records = list(simulate(40, 5, NOW))
    engine.ingest(records)
    customers = sorted({r["customer_id"] for r in records})
    found = engine.store.customers([customer_uuid(c) for c in customers], cached=False)
    compared = 0
    for cid in customers:
        customer = found[customer_uuid(cid)]
        for days in (700, 300, 90, 0):
            T = NOW - timedelta(days=days)
            view, row = engine.customer(cid, T), summary(customer, T, engine.rules, engine.value_rules)
            keys = ("revenue", "purchases", "stage", "health", "consent", "open_complaints", "overdue_invoices")
            assert {k: view[k] for k in keys} == {k: row[k] for k in keys}, (cid, T)
            assert view["value"]["net_revenue"] == row["net_revenue"], (cid, T)
            compared += bool(view["consent"] or view["open_complaints"] or view["overdue_invoices"])
    assert compared > 10  # the histories have contact state to compare


def test_revenue_is_rounded_to_each_currencys_minor_unit(engine):
    engine.ingest(
        [
            order("j", ago(3), amount=1000.4, currency="JPY"),
            order("b", ago(3), amount=7.1234, currency="BHD"),
            order("e", ago(3), amount=9.999, currency="EUR"),
        ]
    )
    assert engine.customer("c1", NOW)["revenue"] == {"BHD": 7.123, "EUR": 10.0, "JPY": 1000.0}


def test_an_order_has_one_currency_whatever_arrives_first(engine):
    # two refunds before their order: the first sets the currency, the second is refused
    r = engine.ingest([refund("r1", ago(3), "o1", 5, currency="USD"), refund("r2", ago(2), "o1", 5, currency="EUR")])
    assert (r.accepted, r.rejected) == (1, 1) and "whose earlier refunds are in USD" in r.rejections[0].reason
    r = engine.ingest([order("o1", ago(4), amount=20, currency="USD")])  # ...and the order can still be recorded
    assert r.accepted == 1 and engine.customer("c1", NOW)["revenue"] == {"USD": 15.0}
    # an order placed again in another currency (an earlier time would make it the placement that counts)
    r = engine.ingest([order("o1-again", ago(9), order_id="o1", amount=20, currency="EUR")])
    assert r.rejected == 1 and "order 'o1' placed again in EUR; it was placed in USD" in r.rejections[0].reason
    assert engine.customer("c1", NOW)["revenue"] == {"USD": 15.0}
