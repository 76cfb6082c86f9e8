"""`journey value`: per person (a guest order counts for its customer), in the base currency, as of
any time; on both stores."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
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
    assert s["top20_share"] == s["top_share_of_revenue"]  # top_share is 0.2 by default
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
        "predicted": None,  # no value model fitted yet
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
    out = CliRunner().invoke(main, ["value", "customers"], env=env)  # no model yet
    assert out.exit_code == 1 and "no value model in EUR yet: fit one with journey value fit" in out.output
    for args, problem in (
        (["--calibration-end", "2999-01-01"], "the calibration end 2999-01-01 is after today"),
        (["--calibration-end", "2025-03-01", "--holdout-end", "2025-02-01"], "is not after the calibration end"),
        (["--calibration-end", "2024-01-01"], "nobody had a purchase by 2024-01-01"),
        (["--calibration-end", "2025-01-07"], "nobody had bought twice by 2025-01-07"),
    ):
        out = CliRunner().invoke(main, ["value", "fit", *args], env=env)
        assert out.exit_code == 1 and problem in out.output, (args, out.output)


def test_renamed_value_segments_keep_the_default_policies_valid(tmp_path):
    from engine.config import ConfigError, load_config

    config = tmp_path / "c.toml"
    config.write_text('[value]\nvalue_segments = [{ name = "gold", share = 0.1 }, { name = "silver", share = 0.3 }]\n')
    at_risk = {p.name: p.conditions for p in load_config(config).policies if p.trigger.health == "at_risk"}
    assert (at_risk["top_customer_call"].value_segment, at_risk["churn_risk_outreach"].not_value_segment) == (
        ("gold",),
        ("gold",),
    )
    config.write_text("[value]\nvalue_segments = []\n")
    assert "top_customer_call" not in {p.name for p in load_config(config).policies}  # no segments: no call
    config.write_text(
        '[value]\nvalue_segments = [{ name = "gold", share = 0.1 }]\n'
        '[[policies]]\nname = "x"\ntrigger = { on = "value_segment_entered", segment = "top" }\n'
        'action = "a"\nchannel = "email"\npurpose = "service"\n'
    )
    with pytest.raises(ConfigError, match="policy x: trigger segment 'top' is no segment of \\[value\\]"):
        load_config(config)


def test_a_fitted_model_is_a_fact_that_views_name_and_a_rebuild_keeps(engine, tmp_path):
    from engine.clock import FixedClock
    from engine.config import Config
    from engine.service import Engine
    from engine.value_view import fit, models
    from replay.rebuild import rebuild

    shop(engine)
    engine.ingest([order("a3", day(80), customer="ann", amount=50.0), order("b3", day(90), customer="bob")])
    dry = fit(engine, day(60), record=False)
    assert (dry["recorded"], models(engine)) == (False, [])
    assert engine.view("ann", NOW)["value"]["predicted"] is None
    first = fit(engine, day(60))
    assert first["model_id"] == dry["model_id"] and first["customers"] == 3  # ann (with her guest order), bob, cy
    engine.clock.advance(days=1)
    second = fit(engine, day(100))
    assert [m["model_id"] for m in models(engine)] == [first["model_id"], second["model_id"]]
    p = engine.view("web-1", NOW)["value"]["predicted"]  # ann's, through her device: the model in force
    assert p["model_id"] == second["model_id"] and 0 < p["p_alive"] <= 1 and p["value_segment"] in ("top", "middle")
    # as known an hour after the first fit (recorded at NOW): the first model; at NOW itself, none yet
    soon = NOW + timedelta(hours=1)
    assert engine.view("ann", soon, as_known=True)["value"]["predicted"]["model_id"] == first["model_id"]
    assert engine.view("ann", NOW, as_known=True)["value"]["predicted"] is None
    assert engine.view("dee", NOW)["value"]["predicted"] is None  # no purchase: nothing to predict
    s = summary(engine, NOW)
    assert s["model"]["model_id"] == second["model_id"] and sum(s["value_segments"].values()) == 3
    # The cut-offs are the model's: at its calibration end the top fifth (rounded up) of 3 is one person.
    rows = {r["customer_id"]: r for r in customers(engine, day(100), value_segment="top")}
    assert list(rows) == ["ann"] and rows["ann"]["predicted"]["clv"] > 0
    later = summary(engine, NOW)["value_segments"]  # a year on, ann's CLV has fallen below the top: fit again
    assert later["top"] == 0
    # The Parquet export's snapshot: revenue per currency, the base-currency column, the scores.
    import pandas as pd

    from replay.export import frames, to_parquet

    snap = frames(engine, NOW)["snapshot"].set_index("customer_id")
    ann = snap.loc["ann"]
    assert (ann["base_currency"], ann["net_revenue_base"]) == ("EUR", round(100 + 60 * 0.86 + 40 + 50, 2))
    assert (ann["revenue_EUR"], ann["revenue_USD"]) == (190.0, 60.0)
    assert ann["model_id"] == second["model_id"] and abs(ann["p_alive"] - p["p_alive"]) < 1e-4  # the view rounds
    assert ann["value_segment"] == p["value_segment"] and ann["rfm_segment"] is not None
    assert pd.isna(snap.loc["dee"]["clv"]) and pd.isna(snap.loc["dee"]["rfm"])  # no purchase: no scores
    changes = frames(engine, NOW)["changes"]
    to_parquet({"snapshot": snap.reset_index(), "changes": changes}, tmp_path / "out")
    with Engine(Config(data_dir=str(tmp_path / "rebuilt")), FixedClock(NOW)) as target:
        rebuild(engine, target)
        assert models(target) == models(engine)
        assert target.view("ann", NOW)["value"] == engine.view("ann", NOW)["value"]
    # A model fitted in dollars is not in force for a store counted in euros (its cut-offs are dollars).
    usd = engine.config.model_copy(update={"value": engine.config.value.model_copy(update={"base_currency": "USD"})})
    with Engine(usd, FixedClock(NOW + timedelta(days=2))) as dollars:
        fit(dollars, day(100))
        assert dollars.value_models.in_force().base_currency == "USD"
    assert engine.value_models.in_force().model_id == second["model_id"]  # the euro store's is still in force
    assert engine.view("ann", NOW)["value"]["predicted"]["model_id"] == second["model_id"]
    with Engine(Config(data_dir=str(tmp_path / "rebuilt2")), FixedClock(NOW)) as target:
        rebuild(engine, target)
        assert models(target) == models(engine)
        assert target.view("ann", NOW)["value"] == engine.view("ann", NOW)["value"]


def test_journey_value_fit_on_the_cdnow_sample(tmp_path):
    """The whole path on real data: CDNOW ingested as orders, `journey value fit` with a holdout."""
    from collections import defaultdict
    from datetime import UTC, date, datetime

    from engine.cli import main
    from engine.clock import FixedClock
    from engine.config import Config
    from engine.service import Engine

    from .test_cdnow import rows as cdnow_rows
    from .test_cdnow import touchpoints as cdnow_touchpoints

    config = tmp_path / "usd.toml"
    config.write_text('[value]\nbase_currency = "USD"\n')
    with Engine(Config(data_dir=str(tmp_path / "var")), FixedClock(datetime(1998, 7, 1, tzinfo=UTC))) as engine:
        assert engine.ingest(cdnow_touchpoints()).rejected == 0
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "var")}
    args = ["value", "fit", "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30", "--config", str(config)]
    out = CliRunner().invoke(main, [*args, "--json"], env=env)
    assert out.exit_code == 0, out.output
    fitted = json.loads(out.output)
    f, g = fitted["bgnbd"], fitted["gamma_gamma"]
    assert fitted["customers"] == 2357 and abs(f["log_likelihood"] - -9582.4) <= 0.5
    for got, want in ((f["r"], 0.243), (f["alpha"], 4.414), (f["a"], 0.793), (f["b"], 2.426)):
        assert abs(got - want) <= 0.005 * want
    for got, want in ((g["p"], 6.25), (g["q"], 3.74), (g["gamma"], 15.44)):
        assert abs(got - want) <= 0.01 * want
    # The holdout's actual repeat purchase days, counted here from the raw file.
    days = defaultdict(set)
    for _, customer, at, _, _ in cdnow_rows():
        days[customer].add(at.date())
    made = sum(1 for ds in days.values() for d in ds if date(1997, 9, 30) < d <= date(1998, 6, 30))
    h = fitted["holdout"]
    assert h["actual"] == made and sum(r["customers"] for r in h["by_frequency"]) == 2357
    assert abs(h["predicted"] - made) < 0.2 * made  # the paper's model under-predicts CDNOW a little
    text = CliRunner().invoke(main, args, env=env).output
    assert "r 0.2426, alpha 4.4136, a 0.7929, b 2.4259" in text and "7+" in text
    out = CliRunner().invoke(main, ["value", "customers", "--as-of", "1997-09-30", "--json"], env=env)
    assert out.exit_code == 1 and "no value model in EUR yet" in out.output  # the model's cut-offs are dollars
    listing = ["value", "customers", "--as-of", "1997-09-30", "--json", "--limit", "0", "--config", str(config)]
    out = CliRunner().invoke(main, listing, env=env)
    listed = json.loads(out.output)
    assert len(listed) == 2357 and listed[0]["predicted"]["model_id"] == fitted["model_id"]
    clvs = [r["predicted"]["clv"] for r in listed]
    assert clvs == sorted(clvs, reverse=True)  # best first
    listed_models = CliRunner().invoke(main, ["value", "models", "--config", str(config)], env=env).output
    assert f"{fitted['model_id']} recorded" in listed_models and "in USD (in force)" in listed_models
    assert "p 6.250, q 3.744" in listed_models and "top from 29.40 USD" in listed_models
    assert "(in force)" not in CliRunner().invoke(main, ["value", "models"], env=env).output  # not for euros
    out = CliRunner().invoke(main, ["value", "customers", "--segment", "vip", "--config", str(config)], env=env)
    assert out.exit_code == 1 and "the segments: top, middle, rest" in out.output
    out = CliRunner().invoke(main, ["value", "fit", "--calibration-end", "1990-01-01"], env=env)
    assert out.exit_code == 1 and "nobody had a purchase by 1990-01-01" in out.output


def valued_store(records, batch: int) -> tuple[list, list, str | None]:
    """Ingest into a fresh SQLite store, a few at a time; return the value lists and summaries at
    several times, and the id of a model fitted to it."""
    import tempfile

    from engine.clock import FixedClock
    from engine.config import Config
    from engine.service import Engine
    from engine.value_view import fit

    from .test_properties import START

    with tempfile.TemporaryDirectory() as tmp:
        clock = FixedClock(NOW)
        with Engine(Config(data_dir=tmp, ingest={"batch_size": batch}), clock) as engine:
            for i in range(0, len(records), 5):
                engine.ingest([json.dumps(r) for r in records[i : i + 5]])
                clock.advance(minutes=1)
            times = [START + timedelta(days=d) for d in range(100, 1000, 150)]
            lists = [customers(engine, T) for T in times]
            sums = [{k: v for k, v in summary(engine, T).items() if k != "model"} for T in times]
            try:
                model_id = fit(engine, START + timedelta(days=600))["model_id"]
            except ValueError:  # nobody had bought by then
                model_id = None
        return lists, sums, model_id


def test_value_does_not_depend_on_arrival_order_or_duplicates():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from .test_properties import deliveries, histories

    @st.composite
    def people(draw):
        out = []
        for person in ("ann", "bob", "cy"):
            for r in draw(histories(max_events=8)):
                out.append({**r, "event_id": f"{person}-{r['event_id']}", "customer_id": person})
        return out

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def check(data):
        records = data.draw(people())
        delivered = data.draw(deliveries(records))
        batch = data.draw(st.integers(1, 7))
        assert valued_store(sorted(records, key=lambda r: r["occurred_at"]), batch) == valued_store(delivered, batch)

    check()


def test_dated_rates_convert_each_purchase_at_the_rate_of_its_day(tmp_path):
    import pytest

    from engine.config import ConfigError, load_config
    from engine.value import historical, transactions

    from ..unit.test_value import T0, bought

    rates = tmp_path / "rates.csv"
    rates.write_text("date,currency,rate\n2026-01-01,USD,0.5\n2026-01-03,USD,0.8\n\n2026-01-02,GBP,1.2\n")
    config = tmp_path / "c.toml"
    config.write_text('[value]\nrates_file = "rates.csv"\n')  # relative to the config file
    rules = load_config(config).value
    assert (rules.rate("USD", T0.date()), rules.rate("USD", (T0 + timedelta(2)).date())) == (0.5, 0.8)
    assert rules.rate("GBP", T0.date()) is None and rules.table == {}  # before its first date: no rate
    f = bought(("a", 10.0, "USD", 0), ("b", 10.0, "USD", 5), ("c", 10.0, "GBP", 0), ("d", 10.0, "GBP", 1))
    v = historical(f, T0 + timedelta(10), rules)
    assert (v.net_revenue, v.unconverted, v.purchases) == (5.0 + 8.0 + 12.0, {"GBP": 10.0}, 4)
    assert transactions(f, T0 + timedelta(10), rules) == [
        (T0.date(), 5.0),  # GBP on day 0 has no rate: it counts 0 here
        ((T0 + timedelta(1)).date(), 12.0),
        ((T0 + timedelta(5)).date(), 8.0),
    ]
    for body, problem in (
        ("day,cur,rate\n", "header date,currency,rate"),
        ("date,currency,rate\n2026-13-01,USD,1\n", "line 2: '2026-13-01' is not a date"),
        ("date,currency,rate\n2026-01-01,USD,-1\n", "line 2: the rate '-1' is not a positive number"),
        ("date,currency,rate\n2026-01-01,EUR,1\n", "EUR is the base currency"),
        ("date,currency,rate\n2026-01-01,USD,1\n2026-01-01,USD,2\n", "line 3: USD has a rate for 2026-01-01"),
    ):
        rates.write_text(body)
        with pytest.raises(ConfigError, match=problem):
            load_config(config)
    config.write_text('[value]\nrates_file = "rates.csv"\nrates = { USD = 1.0 }\n')
    with pytest.raises(ConfigError, match="not both"):
        load_config(config)
    config.write_text('[value]\nrates_file = "nowhere.csv"\n')
    with pytest.raises(ConfigError, match="nowhere.csv"):
        load_config(config)
