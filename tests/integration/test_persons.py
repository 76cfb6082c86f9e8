"""Everything derived is per person (docs/identity.md): an anonymous visitor's touchpoints are kept
under its anonymous id and count for the customer it is linked to, as late-arriving history whose
corrections name the link; unlink parts them again; forget erases every identifier; a rebuild
redoes it all exactly. On both stores."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.clock import FixedClock
from engine.config import Config
from engine.identity import Identifier, Link, anonymous_home, resolve
from engine.ids import customer_uuid
from engine.projections.facts import Facts
from engine.projections.lifecycle import customer_ladder, evaluate
from engine.rules import LifecycleRules
from engine.service import Engine
from replay.rebuild import rebuild

from ..conftest import NOW
from ..helpers import day, facts_of, order, tp


def anon(record: dict, anonymous_id: str, customer: bool = False) -> dict:
    """The record sent by a visitor: with `customer`, its customer id too (a signed-in visit)."""
    out = {**record, "anonymous_id": anonymous_id}
    if not customer:
        del out["customer_id"]
    return out


def stages(engine: Engine, customer: str) -> list[tuple[str, str | None, str | None, str]]:
    return [
        (c["dimension"], c["from"], c["to"], c["reason"])
        for c in engine.changes(limit=1000, customer_id=customer)
        if c["dimension"] == "stage"
    ]


def guest_then_login(engine: Engine, x: str = "") -> None:
    """A guest order under web-1, browsing as ann, then ann signs in on web-1, then orders again
    (`x` sets the event ids apart)."""
    for batch in (
        [
            anon(order(x + "g1", day(0), order_id="guest-1"), "web-1"),
            tp(x + "p1", "page.viewed", day(1), customer="ann"),
        ],
        [anon(tp(x + "l1", "page.viewed", day(2), customer="ann"), "web-1", customer=True)],
        [order(x + "o2", day(3), customer="ann", order_id="o-2")],
    ):
        report = engine.ingest(batch)
        assert not report.rejected, report.rejections


def test_a_guest_checkout_then_a_login_makes_a_first_buyer_a_repeat_buyer(engine):
    guest_then_login(engine)
    changes = stages(engine, "ann")
    assert [(d, a, b) for d, a, b, _ in changes] == [
        ("stage", None, "prospect"),
        ("stage", "prospect", "first_buyer"),  # the guest order, once the login links it
        ("stage", "first_buyer", "repeat"),
    ]
    assert changes[1][3].startswith("anonymous history joined by touchpoint l1 (both ids), history corrected:")
    assert "order.placed g1" in changes[1][3]
    view = engine.view("web-1", NOW)
    assert (view["identified_by"], view["customer_id"], view["stage"], view["purchases"]) == (
        "web-1",
        "ann",
        "repeat",
        2,
    )
    assert [i.get("identifier") for i in view["timeline"] if i["type"] == "touchpoint"][-1] == "anonymous"  # g1
    assert engine.view("ann", NOW)["purchases"] == 2
    # One person: one welcome, and nothing derived or decided for the visitor's id alone.
    welcomes = [a for a in engine.actions(limit=1000) if a["policy"] == "welcome"]
    assert [a["customer_id"] for a in welcomes] == ["ann"]
    assert {c["customer_id"] for c in engine.changes(limit=1000)} == {"ann"}
    funnel = engine.funnel(NOW)
    assert (funnel["customers"], funnel["stages"]["repeat"], funnel["anonymous_visitors"]) == (1, 1, 0)


def test_an_anonymous_visitor_is_kept_and_counted_apart_until_linked(engine):
    report = engine.ingest(
        [
            anon(tp("v1", "page.viewed", day(0)), "web-9"),
            anon(order("v2", day(1)), "web-9"),
            {**tp("v3", "page.viewed", day(1), customer="guest"), "anonymous_id": "web-9"},  # a placeholder id
            tp("v4", "page.viewed", day(1), customer="guest"),  # and nothing else: nobody's
            {k: v for k, v in tp("v5", "page.viewed", day(1)).items() if k != "customer_id"},
            anon(tp("v6", "page.viewed", day(1)), "undefined"),
        ]
    )
    assert report.accepted == 3
    assert [(r.record, r.field) for r in report.rejections] == [
        (4, "customer_id"),
        (5, "customer_id"),
        (6, "anonymous_id"),
    ]
    assert "a customer_id, an anonymous_id, or both" in report.rejections[1].reason
    view = engine.view("web-9", NOW)
    assert view["customer_id"] == anonymous_home("web-9") and view["stage"] == "first_buyer"
    assert view["touchpoints"] == 3
    assert engine.changes() == [] and engine.actions() == []  # nobody to tell or to address
    funnel = engine.funnel(NOW)
    assert (funnel["customers"], funnel["anonymous_visitors"]) == (0, 1)
    with pytest.raises(KeyError):
        engine.view("web-unknown", NOW)


def test_a_shared_device_never_merges_two_customers_and_its_later_visits_stay_with_the_first(engine):
    engine.ingest(
        [
            anon(tp("a1", "page.viewed", day(0), customer="ann"), "tablet", customer=True),
            anon(tp("b1", "page.viewed", day(1), customer="bob"), "tablet", customer=True),
        ]
    )
    engine.ingest([anon(order("t1", day(2)), "tablet")])
    assert engine.view("tablet", NOW)["customer_id"] == "ann"
    assert engine.view("ann", NOW)["purchases"] == 1
    assert engine.view("bob", NOW)["purchases"] == 0


def test_a_link_found_later_but_earlier_in_time_moves_the_visitor_and_corrects_both(engine):
    # bob signs in on web-2 on day 5 and web-2's guest order counts for him...
    engine.ingest([anon(order("g1", day(4)), "web-2")])
    engine.ingest([anon(tp("b1", "page.viewed", day(5), customer="bob"), "web-2", customer=True)])
    assert engine.view("bob", NOW)["purchases"] == 1
    # ...until ann's sign-in on web-2 on day 3 arrives late: the earlier link wins, in any order.
    engine.ingest([anon(tp("a1", "page.viewed", day(3), customer="ann"), "web-2", customer=True)])
    assert (engine.view("ann", NOW)["purchases"], engine.view("bob", NOW)["purchases"]) == (1, 0)
    assert engine.view("web-2", NOW)["customer_id"] == "ann"
    bob = stages(engine, "bob")
    assert [(a, b) for _, a, b, _ in bob] == [(None, "first_buyer"), ("first_buyer", "prospect")]
    assert "anonymous history parted, link by touchpoint b1 refused: would join 2 known customers" in bob[-1][3]


def test_unlink_restores_both_persons_records_the_corrections_and_a_rebuild_redoes_it(tmp_path):
    from engine.cli import main

    with Engine(Config(data_dir=str(tmp_path / "live")), FixedClock(NOW)) as live:
        guest_then_login(live)
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "live")}
    out = CliRunner().invoke(main, ["identity", "unlink", "ann", "web-1", "--reason", "a shop tablet"], env=env)
    assert out.exit_code == 0, out.output
    assert "1 lifecycle correction recorded" in out.output  # the stage: ann's own order keeps her health
    with Engine(Config(data_dir=str(tmp_path / "live")), FixedClock(NOW + timedelta(days=1))) as live:
        ann = stages(live, "ann")
        assert [(a, b) for _, a, b, _ in ann][-1] == ("repeat", "first_buyer")
        assert ann[-1][3].startswith(
            "anonymous history parted, link by touchpoint l1 refused: unlinked: a shop tablet, history corrected"
        )
        assert live.view("ann", NOW)["purchases"] == 1
        visitor = live.view("web-1", NOW)
        assert (visitor["customer_id"], visitor["purchases"]) == (anonymous_home("web-1"), 1)
        # As known before the unlink (recorded now, after the touchpoints), the visitor was ann's.
        before = live.view("web-1", NOW, as_known=True)
        assert before["customer_id"] == "ann"
        with Engine(Config(data_dir=str(tmp_path / "rebuilt")), FixedClock(NOW)) as target:
            rebuild(live, target)
            assert facts_of(target) == facts_of(live)


def test_a_rebuild_equals_live_across_merges_and_moves(engine, tmp_path):
    test_a_link_found_later_but_earlier_in_time_moves_the_visitor_and_corrects_both(engine)
    guest_then_login(engine, "x-")
    with Engine(Config(data_dir=str(tmp_path / "rebuilt")), FixedClock(NOW)) as target:
        rebuild(engine, target)
        assert facts_of(target) == facts_of(engine)
        assert target.view("web-1", NOW)["purchases"] == engine.view("web-1", NOW)["purchases"]


def test_forget_erases_every_identifier_of_the_person(engine):
    engine.ingest([anon(tp("v1", "page.viewed", day(0), traits={"email": "ann@example.com"}), "web-1")])
    engine.ingest([anon(tp("l1", "page.viewed", day(1), customer="ann"), "web-1", customer=True)])
    assert engine.view("ann", NOW)["touchpoints"] == 2
    done = engine.forget("ann")
    assert (done["erased"], done["anonymous_ids_erased"]) == (True, 1)
    visitor = engine.store.customer(customer_uuid(anonymous_home("web-1")))
    assert visitor is not None and visitor.erased
    assert engine.keys.get_many([str(visitor.id)]).get(str(visitor.id)) in (None, b"")  # no key: nothing opens
    assert engine.store.journal.links_of(["web-1", "ann"]) == []


# -- order independence ---------------------------------------------------------------------------

CUSTOMERS = ("ann", "bob")
DEVICES = ("w1", "w2", "w3")


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict], list[list[int]]]:
    """Touchpoints of two customers and three devices (signed in, or not: a guest), and an arrival
    order cut into batches."""
    n = draw(st.integers(1, 14))
    records = []
    for i in range(n):
        who = draw(st.sampled_from([*CUSTOMERS, None]))
        device = draw(st.sampled_from([*DEVICES, None])) if who else draw(st.sampled_from(DEVICES))
        at = day(draw(st.integers(0, 400)))
        record = order(f"e{i}", at) if draw(st.booleans()) else tp(f"e{i}", "page.viewed", at)
        records.append(anon(record, device, customer=who is not None) if device else {**record, "customer_id": who})
    arrival = draw(st.permutations(range(n)))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, n - 1)), max_size=4)))
    batches = [list(arrival[a:b]) for a, b in zip([0, *cuts], [*cuts, n]) if arrival[a:b]]
    return records, batches


def oracle(records: list[dict], T: datetime) -> dict[str, tuple[str | None, str | None, int]]:
    """Each customer's stage, health and purchases as of T, from the union of its identifiers'
    touchpoints under the persons the pure resolver makes of every link (no store, no engine)."""
    links = [
        Link(
            Identifier("customer", r["customer_id"]),
            Identifier("anonymous", r["anonymous_id"]),
            r["occurred_at"][:26] + "+00:00",
            "x",
            r["event_id"],
            "both ids",
        )
        for r in records
        if r.get("customer_id") and r.get("anonymous_id")
    ]
    persons = resolve(links)
    out = {}
    for customer in sorted({r["customer_id"] for r in records if r.get("customer_id")}):
        facts = Facts()
        for r in records:
            home = r.get("customer_id") or persons.person(Identifier("anonymous", r["anonymous_id"]))
            if home == customer:
                at = datetime.fromisoformat(r["occurred_at"])
                facts.add(r["event_id"], r["kind"], at, r["properties"])
        status = evaluate(facts, T, customer_ladder(LifecycleRules()))
        out[customer] = (status.stage, status.health, status.count)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories())
def test_persons_and_their_stages_do_not_depend_on_the_arrival_order(tmp_path_factory, history):
    records, batches = history
    with Engine(Config(data_dir=str(tmp_path_factory.mktemp("order") / "var")), FixedClock(NOW)) as engine:
        for batch in batches:
            engine.ingest([records[i] for i in batch])
            engine.ingest([records[i] for i in batch[:1]])  # a redelivery changes nothing
        for T in (day(30), day(200), NOW):
            expected = oracle(records, T)
            seen = {c: engine.view(c, T) for c in expected}
            assert {c: (v["stage"], v["health"], v["purchases"]) for c, v in seen.items()} == expected
        for c, (stage, health, _) in oracle(records, NOW).items():  # the feed got there too
            customer = engine.store.customer(customer_uuid(c))
            assert customer is not None and (customer.stage, customer.health) == (stage, health)


# -- what a review found ----------------------------------------------------------------------------


def test_two_writers_racing_a_link_and_a_visitors_touchpoint_lose_nothing(tmp_path, monkeypatch):
    """Writer B decides ann's sign-in on web-1 while writer A, unaware of the link, records web-1's
    second guest order: B's link claims the visitor, so the two collide and B decides again."""
    data = str(tmp_path / "var")
    a, b = Engine(Config(data_dir=data), FixedClock(NOW)), Engine(Config(data_dir=data), FixedClock(NOW))
    try:
        a.ingest([anon(order("g1", day(0)), "web-1")])
        regrouper = b.ingestor.regrouper
        load = regrouper._load
        raced = []

        def racing(homes, names, loaded):
            out = load(homes, names, loaded)
            if not raced and anonymous_home("web-1") in names:
                raced.append(a.ingest([anon(order("g2", day(1)), "web-1")]).accepted)
            return out

        monkeypatch.setattr(regrouper, "_load", racing)
        b.ingest([anon(tp("l1", "page.viewed", day(2), customer="ann"), "web-1", customer=True)])
        assert raced == [1]
    finally:
        a.close()
        b.close()
    with Engine(Config(data_dir=data), FixedClock(NOW)) as engine:
        ann = engine.store.customer(customer_uuid("ann"))
        assert ann is not None and ann.stage == "repeat"  # both guest orders, in the feed's state too
        assert engine.view("ann", NOW)["purchases"] == 2


def test_a_customer_with_many_visits_on_a_device_still_has_its_whole_graph_read(tmp_path):
    """One link row per signed-in visit: the walk counts identifiers, not rows, so a late link
    earlier in time still moves the visitor, and it counts for one customer only."""
    from engine.config import IdentityRules

    config = Config(data_dir=str(tmp_path / "var"), identity=IdentityRules(max_identifiers=3))
    with Engine(config, FixedClock(NOW)) as engine:
        engine.ingest([anon(order("g1", day(0)), "app-7")])
        engine.ingest([anon(tp("a1", "page.viewed", day(5), customer="ann"), "app-7", customer=True)])
        engine.ingest(
            [anon(tp(f"w{i}", "page.viewed", day(6), customer="ann"), "web-1", customer=True) for i in range(40)]
        )
        engine.ingest([anon(tp("b1", "page.viewed", day(1), customer="bob"), "app-7", customer=True)])  # earlier
        # a new device of ann's: its walk crosses her many web-1 links, then must reach bob's link
        engine.ingest([anon(tp("w-last", "page.viewed", day(7), customer="ann"), "web-2", customer=True)])
        assert (engine.view("ann", NOW)["purchases"], engine.view("bob", NOW)["purchases"]) == (0, 1)


def test_forget_erases_the_device_for_everyone_and_it_never_counts_for_another(engine):
    engine.ingest([anon(order("g1", day(0)), "tablet")])
    engine.ingest([anon(tp("a1", "page.viewed", day(1), customer="ann"), "tablet", customer=True)])
    engine.ingest([anon(tp("b1", "page.viewed", day(2), customer="bob"), "tablet", customer=True)])  # refused
    assert engine.forget("ann")["anonymous_ids_erased"] == 1
    assert engine.store.journal.links_of(["tablet"]) == []  # bob's refused link named it in clear
    engine.ingest([anon(tp("b2", "page.viewed", day(4), customer="bob"), "tablet", customer=True)])
    assert engine.view("bob", NOW)["purchases"] == 0  # ann's guest order stays hers, erased
    assert engine.view("ann", NOW)["purchases"] == 1


def test_forget_of_an_anonymous_id_alone_erases_the_visitor_and_its_links(engine):
    engine.ingest([anon(tp("v1", "page.viewed", day(0), traits={"email": "v@example.com"}), "web-5")])
    engine.ingest([anon(tp("l1", "page.viewed", day(1), customer="ann"), "web-5", customer=True)])
    done = engine.forget("web-5")
    assert (done["customer_id"], done["erased"]) == ("web-5", True)
    assert engine.store.journal.links_of(["web-5"]) == []
    assert "email" not in engine.view(anonymous_home("web-5"), NOW)["traits"]
