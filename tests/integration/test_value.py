"""`journey value`: per person (a guest order counts for its customer), in the base currency, as of
any time; on both stores."""

from __future__ import annotations

import json

from click.testing import CliRunner

from engine.value_view import customers, summary

from ..conftest import NOW
from ..helpers import day, order, tp


def shop(engine) -> None:
    report = engine.ingest(
        [
            order("a1", day(0), customer="ann", amount=100.0),
            order("a2", day(50), customer="ann", amount=60.0, currency="USD"),
            {**order("g1", day(10), amount=40.0), "anonymous_id": "web-1", "customer_id": None},
            {**tp("l1", "page.viewed", day(20), customer="ann"), "anonymous_id": "web-1"},
            order("b1", day(5), customer="bob", amount=30.0),
            tp("b2", "order.refunded", day(6), customer="bob", order_id="b1", amount=10.0),
            order("c1", day(7), customer="cy", amount=20.0, currency="JPY"),
            tp("d1", "page.viewed", day(8), customer="dee"),
        ]
    )
    assert report.rejected == 0, report.rejections


def test_value_per_person_in_the_base_currency(engine):
    shop(engine)
    s = summary(engine, NOW)
    # ann: 100 + 60 USD at 0.86 + her guest order 40; bob: 30 - 10; cy: JPY has no rate; dee: no purchase
    assert (s["customers"], s["buyers"], s["base_currency"]) == (4, 3, "EUR")
    assert s["net_revenue"] == round(100 + 60 * 0.86 + 40 + 20, 2)
    assert s["unconverted"] == {"JPY": 20.0}
    assert s["top_share_of_revenue"] == round((100 + 60 * 0.86 + 40) / (100 + 60 * 0.86 + 40 + 20), 4)
    rows = {r["customer_id"]: r for r in customers(engine, NOW)}
    assert rows["ann"]["purchases"] == 3 and rows["cy"]["net_revenue"] == 0.0
    assert sum(s["rfm_segments"].values()) == 3
    view = engine.view("web-1", NOW)["value"]  # the 360° view's value block: ann's, through her device
    assert view == {
        "base_currency": "EUR",
        "net_revenue": round(100 + 60 * 0.86 + 40, 2),
        "unconverted": {},
        "average_order_value": round((100 + 60 * 0.86 + 40) / 3, 2),
        "tenure_days": (NOW - day(0)).total_seconds() / 86400,
    }
    assert engine.view("cy", NOW)["value"]["unconverted"] == {"JPY": 20.0}
    early = summary(engine, day(6), as_known=False)
    assert (early["buyers"], early["net_revenue"]) == (2, 100 + 20)  # ann's first order, bob's net of the refund


def test_journey_value_on_the_command_line(tmp_path):
    from engine.cli import main
    from engine.clock import FixedClock
    from engine.config import Config
    from engine.service import Engine

    with Engine(Config(data_dir=str(tmp_path / "var")), FixedClock(NOW)) as engine:
        shop(engine)
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "var")}
    out = CliRunner().invoke(main, ["value", "summary", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["buyers"] == 3
    out = CliRunner().invoke(main, ["value", "summary"], env=env)
    assert "with no rate to EUR: 20 JPY" in out.output and "the top 20% of buyers bring" in out.output
    out = CliRunner().invoke(main, ["value", "rfm", "--json", "--limit", "0"], env=env)
    assert [r["customer_id"] for r in json.loads(out.output)] == ["ann", "bob", "cy"]  # by net revenue
    out = CliRunner().invoke(main, ["value", "rfm", "--segment", "vip"], env=env)
    assert out.exit_code == 2 and "the segments: Champions" in out.output
