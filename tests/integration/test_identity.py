"""Identity links recorded from touchpoints (docs/identity.md), on both stores: a touchpoint with an
anonymous id, and an alias, are evidence of a link; the guards refuse a shared device and blocked
values, with the reason; `journey identity show` tells it; a rebuild records the same links."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from engine.clock import FixedClock
from engine.config import Config, IdentityRules
from engine.identity import anonymous_home
from engine.identity_view import person
from engine.queries import TOUCHPOINT_TOPIC, scan
from engine.service import Engine
from replay.rebuild import rebuild

from ..conftest import NOW
from ..helpers import day, order, tp


def visits(engine: Engine) -> None:
    report = engine.ingest(
        [
            {**tp("g1", "page.viewed", day(0), customer="ann", url="/"), "anonymous_id": "web-1"},
            {**order("g2", day(1), customer="ann"), "anonymous_id": "web-1"},
            tp("g3", "customer.aliased", day(2), customer="ann", previous_id="app-7"),
            {**tp("s1", "page.viewed", day(3), customer="bob", url="/"), "anonymous_id": "web-1"},  # shared device
            {**tp("s2", "page.viewed", day(4), customer="cy", url="/"), "anonymous_id": "guest"},  # a placeholder
        ]
    )
    assert (report.accepted, report.rejected) == (5, 0), report.rejections


def test_links_are_recorded_with_their_evidence_and_the_guards_say_why(engine):
    visits(engine)
    ann = person(engine.store.journal, IdentityRules(), "web-1")
    assert ann["person"] == "ann"
    assert [(i["kind"], i["value"]) for i in ann["identifiers"]] == [
        ("anonymous", "app-7"),
        ("anonymous", "web-1"),
        ("customer", "ann"),
    ]
    assert sorted((x["evidence"], x["rule"]) for x in ann["links"]) == [
        ("g1", "both ids"),
        ("g2", "both ids"),
        ("g3", "alias"),
    ]
    assert [(x["evidence"], x["reason"][:28]) for x in ann["refused"]] == [("s1", "would join 2 known customers")]
    bob = person(engine.store.journal, IdentityRules(), "bob")
    assert (bob["person"], bob["links"]) == ("bob", [])
    cy = person(engine.store.journal, IdentityRules(), "cy")
    assert cy["refused"][0]["reason"].startswith("anonymous id is a placeholder value")
    view = engine.view("app-7", NOW)  # the 360° view by any identifier of the person
    assert (view["identified_by"], view["customer_id"], view["purchases"]) == ("app-7", "ann", 1)
    assert "identified_by" not in engine.view("ann", NOW)
    for nobody in ("guest", "nobody"):  # a blocked value, an id never seen
        try:
            engine.view(nobody, NOW)
            raise AssertionError(nobody)
        except KeyError:
            pass
    two = person(engine.store.journal, IdentityRules(max_customer_ids=2), "bob")
    assert two["person"] == "ann" and {"ann", "bob"} <= {i["value"] for i in two["identifiers"]}


def test_a_bad_anonymous_id_is_refused_with_the_field(engine):
    report = engine.ingest([{**tp("x1", "page.viewed", day(0), url="/"), "anonymous_id": 42}])
    assert [(r.field, r.reason) for r in report.rejections] == [("anonymous_id", "must be a string, not a number")]


def test_identity_show_on_the_command_line_and_a_rebuild_records_the_same_links(tmp_path):
    config = Config(data_dir=str(tmp_path / "live"))
    with Engine(config, FixedClock(NOW)) as live:
        visits(live)
        with Engine(Config(data_dir=str(tmp_path / "rebuilt")), FixedClock(NOW)) as target:
            rebuild(live, target)
            assert person(target.store.journal, IdentityRules(), "web-1") == person(
                live.store.journal, IdentityRules(), "web-1"
            )
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "live")}
    from engine.cli import main

    out = CliRunner().invoke(main, ["identity", "show", "app-7", "--json"], env=env, catch_exceptions=False)
    assert json.loads(out.output)["person"] == "ann"
    out = CliRunner().invoke(main, ["identity", "show", "web-1"], env=env, catch_exceptions=False)
    assert "person ann, 3 identifiers" in out.output and "refused  anonymous:web-1 = customer:bob" in out.output
    out = CliRunner().invoke(main, ["identity", "show", "nobody"], env=env, catch_exceptions=False)
    assert "no links recorded for nobody: a person of its own" in out.output


def test_a_placeholder_customer_id_is_refused_never_one_customer_of_strangers(tmp_path):
    config = Config(data_dir=str(tmp_path / "var"), identity=IdentityRules(blocked_patterns=("qa-.*",)))
    with Engine(config, FixedClock(NOW)) as engine:
        report = engine.ingest(
            [
                tp("b1", "page.viewed", day(0), customer="guest", url="/"),
                tp("b2", "page.viewed", day(0), customer="Undefined", url="/"),
                tp("b3", "page.viewed", day(0), customer="qa-17", url="/"),
                tp("b4", "page.viewed", day(0), customer="guest-ann", url="/"),  # a real id that starts so
            ]
        )
    assert report.accepted == 1
    assert [(r.record, r.field, r.reason.split(" (")[0]) for r in report.rejections] == [
        (1, "customer_id", "is a placeholder value shared by many"),
        (2, "customer_id", "is a placeholder value shared by many"),
        (3, "customer_id", "matches the blocked pattern 'qa-.*'"),
    ]


def test_other_identifiers_are_sealed_and_forget_erases_them(engine):
    report = engine.ingest(
        [
            {**tp("f1", "page.viewed", day(0), customer="fay", url="/"), "anonymous_id": "marker-anon-f"},
            tp("f2", "customer.aliased", day(1), customer="fay", previous_id="marker-prev-f"),
            tp("f3", "customer.aliased", day(1), customer="fay", previous_id=" padded "),
        ]
    )
    assert [(r.record, r.field) for r in report.rejections] == [(3, "properties.previous_id")]
    assert person(engine.store.journal, IdentityRules(), "marker-anon-f")["person"] == "fay"
    stored = [b["touchpoint"] for _, _, b in scan(engine, TOUCHPOINT_TOPIC)]
    assert "marker" not in json.dumps(stored)  # sealed under fay's key, not in the bodies in clear
    assert engine.customer("fay")["touchpoints"] == 2
    engine.forget("fay")
    assert person(engine.store.journal, IdentityRules(), "marker-anon-f")["links"] == []


def test_the_simulator_sends_device_ids_and_shared_devices_are_refused(tmp_path):
    from datetime import UTC, datetime

    from engine.simulator import simulate, with_devices

    records = list(with_devices(simulate(60, 3, datetime(2026, 1, 1, tzinfo=UTC)), 0.63, 0.2, 3, guests=0.3))
    carried = [r for r in records if "anonymous_id" in r]
    assert 0.22 < len(carried) / len(records) < 0.38  # about 30%: from browsers and apps only
    assert {r["channel"] for r in carried} == {"web", "mobile_app"}
    guests = [r for r in records if "customer_id" not in r]  # signed out: page and product views, orders
    assert guests and {r["kind"] for r in guests} <= {"page.viewed", "product.viewed", "order.placed"}
    with Engine(Config(data_dir=str(tmp_path / "var")), FixedClock(NOW)) as engine:
        assert engine.ingest(records).rejected == 0
        journal = engine.store.journal
        devices = {r["anonymous_id"] for r in carried}
        shown = [person(journal, IdentityRules(), d) for d in sorted(devices)]
        shared = [p for p in shown if p["refused"]]
        assert shared and all("shared device" in x["reason"] for p in shared for x in p["refused"])
        assert all(p["person"].startswith("cust-") for p in shown)  # each device with one customer


def test_unlink_is_a_fact_and_the_person_is_derived_again(engine):
    from engine.identity_view import unlink

    visits(engine)
    with pytest.raises(ValueError, match="no link of their own"):
        unlink(engine.store.journal, "app-7", "bob", "2026-02-01T00:00:00Z", "not bob's")
    done = unlink(engine.store.journal, "web-1", "ann", "2026-02-01T00:00:00Z", "the shop's demo tablet")
    assert (done["a"], done["b"], done["links_refused"]) == ("anonymous:web-1", "customer:ann", 2)
    web = person(engine.store.journal, IdentityRules(), "web-1")
    assert web["person"] == "bob"  # its link to bob, refused while it was ann's, now stands
    assert {x["evidence"]: x["reason"] for x in web["refused"]} == {
        "g1": "unlinked: the shop's demo tablet",
        "g2": "unlinked: the shop's demo tablet",
    }
    assert person(engine.store.journal, IdentityRules(), "app-7")["person"] == "ann"  # the alias stands
    assert engine.view("web-1", NOW)["customer_id"] == "bob"


def test_unlink_on_the_command_line_and_a_rebuild_keeps_it(tmp_path):
    from engine.cli import main

    with Engine(Config(data_dir=str(tmp_path / "live")), FixedClock(NOW)) as live:
        visits(live)
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "live")}
    out = CliRunner().invoke(main, ["identity", "unlink", "ann", "web-1", "--reason", "demo tablet"], env=env)
    assert out.exit_code == 0 and "unlinked anonymous:web-1 and customer:ann (no longer counted: 2 links" in out.output
    out = CliRunner().invoke(main, ["identity", "unlink", "ann", "bob", "--reason", "x"], env=env)
    assert out.exit_code == 1 and "no link of their own" in out.output
    out = CliRunner().invoke(main, ["identity", "unlink", "ann", "web-1", "--reason", " "], env=env)
    assert out.exit_code == 2 and "say why" in out.output
    with Engine(Config(data_dir=str(tmp_path / "live")), FixedClock(NOW)) as live:
        with Engine(Config(data_dir=str(tmp_path / "rebuilt")), FixedClock(NOW)) as target:
            rebuild(live, target)
            assert person(target.store.journal, IdentityRules(), "web-1")["person"] == "bob"


def test_identifying_traits_link_by_keyed_hash_and_never_in_clear(tmp_path):
    config = Config(data_dir=str(tmp_path / "var"), identity=IdentityRules(identifying_traits=("email",)))
    records = [
        tp("e1", "customer.registered", day(0), customer="ann", traits={"email": "Marker-Same@mail.test"}),
        tp("e2", "customer.registered", day(1), customer="bob", traits={"email": "marker-same@mail.test "}),
        tp("e3", "customer.registered", day(2), customer="cy", traits={"email": "marker-cy@mail.test"}),
    ]
    with Engine(config, FixedClock(NOW)) as engine:
        assert engine.ingest(records).accepted == 3
        ann = person(engine.store.journal, config.identity, "ann")
        assert [i["kind"] for i in ann["identifiers"]] == ["customer", "trait"]
        assert [x["rule"] for x in ann["links"]] == ["trait:email"]
        assert [(x["evidence"], x["reason"][:28]) for x in ann["refused"]] == [("e2", "would join 2 known customers")]
        assert person(engine.store.journal, config.identity, "cy")["links"][0]["b"] != ann["links"][0]["b"]
    blob = b"".join(p.read_bytes() for p in (tmp_path / "var").rglob("*") if p.is_file())
    assert b"marker-same" not in blob.lower()  # sealed in the touchpoints, hashed in the links
    with Engine(Config(data_dir=str(tmp_path / "off")), FixedClock(NOW)) as engine:  # off by default
        engine.ingest(records)
        assert person(engine.store.journal, IdentityRules(), "ann")["links"] == []


def test_show_finds_the_identifier_asked_for_and_its_refused_links(engine):
    """What a newcomer trial found: an id whose links were all refused, a blocked value, and a
    value that is a customer id and another's anonymous id were shown as customers with no links."""
    from engine.identity_view import unlink

    visits(engine)
    engine.ingest([{**tp("h1", "page.viewed", day(5), customer="frank", url="/"), "anonymous_id": "bob"}])
    unlink(engine.store.journal, "web-1", "ann", "2026-02-01T00:00:00Z", "demo tablet")
    web = person(engine.store.journal, IdentityRules(), "web-1")
    assert (web["identifier"], web["known"], web["person"]) == ("anonymous:web-1", True, "bob")
    assert {x["reason"] for x in web["refused"]} == {"unlinked: demo tablet"}
    assert engine.forget("bob")["anonymous_ids_erased"] == 1  # the tablet was bob's: erased with him
    web = person(engine.store.journal, IdentityRules(), "anonymous:web-1")
    assert (web["known"], web["person"]) == (False, anonymous_home("web-1"))
    guest = person(engine.store.journal, IdentityRules(), "guest")
    assert guest["blocked"].startswith("is a placeholder") and guest["refused"][0]["b"] == "customer:cy"
    frank = person(engine.store.journal, IdentityRules(), "frank")
    assert (frank["identifier"], frank["person"]) == ("customer:frank", "frank")
    assert person(engine.store.journal, IdentityRules(), "anonymous:frank")["known"] is False
    with pytest.raises(ValueError, match="given twice"):
        unlink(engine.store.journal, "ann", "ann", "2026-02-01T00:00:00Z", "x")


def test_identifying_traits_skip_placeholders_and_match_names_in_any_case(tmp_path):
    config = Config(data_dir=str(tmp_path / "var"), identity=IdentityRules(identifying_traits=("email",)))
    with Engine(config, FixedClock(NOW)) as engine:
        engine.ingest(
            [
                tp("n1", "customer.registered", day(0), customer="quin", traits={"email": "none"}),
                tp("n2", "customer.registered", day(0), customer="rae", traits={"email": "none"}),
                tp("n3", "customer.registered", day(0), customer="pat", traits={"Email": "pat@mail.test"}),
            ]
        )
        assert person(engine.store.journal, config.identity, "quin")["known"] is False
        assert [x["rule"] for x in person(engine.store.journal, config.identity, "pat")["links"]] == ["trait:email"]
