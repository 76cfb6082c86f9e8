"""Identity resolution's pure part (engine.identity): guards, links, persons. The persons, refusals
and survivors depend on the facts only, never on the order they arrive in or on duplicates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.identity import Guards, Identifier, Limits, Link, Unlink, anonymous_home, resolve, trait_identifier

C = lambda v: Identifier("customer", v)  # noqa: E731
A = lambda v: Identifier("anonymous", v)  # noqa: E731


def link(a, b, at="2026-01-01T00:00:00Z", evidence="t1", rule="both ids", recorded_at=None):
    return Link(a, b, at, recorded_at or at, evidence, rule)


def test_a_guest_checkout_then_a_login_is_one_person_under_the_customer_id():
    r = resolve([link(A("anon-1"), C("ann"), evidence="login-1")])
    assert r.person(A("anon-1")) == r.person(C("ann")) == "ann"
    assert r.members["ann"] == [A("anon-1"), C("ann")]  # sorted: kind, then value
    assert r.person(A("anon-9")) == anonymous_home("anon-9")  # never linked: a person of its own


def test_a_shared_device_never_joins_two_known_customers_and_stays_with_the_first():
    device = A("tablet")
    r = resolve(
        [
            link(device, C("bob"), at="2026-01-02T00:00:00Z", evidence="b-login"),
            link(device, C("ann"), at="2026-01-01T00:00:00Z", evidence="a-login"),  # earlier, arrives later
        ]
    )
    assert r.person(device) == "ann" and r.person(C("bob")) == "bob"
    assert [x.link.evidence for x in r.refused] == ["b-login"]
    assert "2 known customers" in r.refused[0].reason and "shared device" in r.refused[0].reason
    two = resolve([link(device, C("bob"), evidence="b"), link(device, C("ann"), evidence="a")], limits=Limits(2))
    assert two.person(C("ann")) == two.person(C("bob")) and not two.refused


@pytest.mark.parametrize("value", ["guest", " Undefined ", "NULL", "0", "-1", "[object Object]", "", "  "])
def test_a_blocked_value_never_merges_strangers(value):
    r = resolve([link(A(value), C("ann"), evidence="x"), link(A(value), C("bob"), evidence="y")])
    assert r.person(C("ann")) == "ann" and r.person(C("bob")) == "bob"
    assert len(r.refused) == 2 and all(x.reason.startswith("anonymous id ") for x in r.refused)


def test_configured_patterns_block_and_a_bad_pattern_is_named():
    guards = Guards.of(["qa-user"], [r"qa-\d+"])
    r = resolve([link(A("a1"), C("qa-17")), link(A("a2"), C("QA-USER"))], guards=guards)
    assert [x.reason for x in r.refused] == [
        "customer id matches the blocked pattern 'qa-\\d+' (identity.blocked_patterns)",
        "customer id is a placeholder value shared by many (identity blocked values), never an identifier",
    ]
    with pytest.raises(ValueError, match=r"blocked pattern '\(' is not a regular expression"):
        Guards.of(patterns=["("])


def test_caps_on_anonymous_ids_and_identifiers():
    links = [link(A(f"a{i}"), C("ann"), at=f"2026-01-0{i + 1}T00:00:00Z", evidence=f"e{i}") for i in range(5)]
    r = resolve(links, limits=Limits(max_anonymous_ids=3))
    assert r.members["ann"] == [A("a0"), A("a1"), A("a2"), C("ann")]  # the first three, by event time
    assert [x.link.evidence for x in r.refused] == ["e3", "e4"]
    assert "max_anonymous_ids" in r.refused[0].reason


def test_unlink_restores_both_persons_and_refuses_the_pair_from_then_on_as_known():
    first = link(A("tab"), C("ann"), evidence="t1", recorded_at="2026-01-01T00:00:00Z")
    again = link(A("tab"), C("ann"), at="2026-03-01T00:00:00Z", evidence="t2")
    undo = Unlink(C("ann"), A("tab"), "2026-02-01T00:00:00Z", "shared tablet in the shop")
    r = resolve([first, again], [undo])
    assert r.person(A("tab")) == anonymous_home("tab") and not r.accepted
    assert {x.reason for x in r.refused} == {"unlinked: shared tablet in the shop"}
    before = resolve([first, again], [undo], as_known="2026-01-15T00:00:00Z")  # as known then
    assert before.person(A("tab")) == "ann"


def test_an_anonymous_only_person_is_named_by_its_earliest_identifier():
    r = resolve(
        [
            link(A("web-2"), A("app-1"), at="2026-01-03T00:00:00Z", evidence="x"),
            link(A("web-1"), A("web-2"), at="2026-01-02T00:00:00Z", evidence="y"),
        ]
    )
    assert {r.person(A(v)) for v in ("web-1", "web-2", "app-1")} == {anonymous_home("web-1")}


def test_identifying_traits_link_by_a_keyed_hash_never_in_clear():
    secret = b"k" * 32
    one, two = (
        trait_identifier("email", "Ann@Example.org ", secret),
        trait_identifier("email", "ann@example.org", secret),
    )
    assert one == two and "example" not in one.value
    assert trait_identifier("email", "ann@example.org", b"other" * 8) != one


IDS = st.sampled_from([C("ann"), C("bob"), C("cy"), A("a1"), A("a2"), A("a3"), A("guest"), A("a4")])
LINKS = st.builds(
    link,
    IDS,
    IDS,
    at=st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
    evidence=st.sampled_from(["t1", "t2", "t3", "t4"]),
    rule=st.sampled_from(["both ids", "alias"]),
)


UNLINKS = st.builds(
    Unlink, IDS, IDS, st.sampled_from(["2026-01-01T12:00:00Z", "2026-01-02T12:00:00Z"]), st.sampled_from(["x", "y"])
)


def summary(r):
    return (
        r.person_of,
        r.members,
        sorted((x.id, str(x.a), str(x.b)) for x in r.accepted),
        sorted((x.link.id, str(x.link.a), x.reason) for x in r.refused),
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(LINKS, max_size=12),
    st.lists(UNLINKS, max_size=2),
    st.randoms(use_true_random=False),
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(2, 6),
    st.sampled_from([None, "2026-01-02T00:00:00Z"]),
)
def test_persons_do_not_depend_on_arrival_order_or_duplicates(links, unlinks, rng, customers, anonymous, most, known):
    limits = Limits(max_customer_ids=customers, max_anonymous_ids=anonymous, max_identifiers=most)
    # some arrive twice, some written the other way round
    again = [Link(x.b, x.a, x.at, x.recorded_at, x.evidence, x.rule) for x in links[: len(links) // 2]]
    shuffled, undo = links + again, list(unlinks)
    rng.shuffle(shuffled)
    rng.shuffle(undo)
    assert summary(resolve(shuffled, undo, limits, as_known=known)) == summary(
        resolve(links, unlinks, limits, as_known=known)
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(LINKS, max_size=12))
def test_each_person_holds_at_most_one_known_customer_and_no_blocked_value(links):
    r = resolve(links)
    for person, members in r.members.items():
        known = [m for m in members if m.kind == "customer"]
        assert len(known) <= 1 and (not known or person == known[0].value)
        assert A("guest") not in members


def test_after_an_unlink_the_person_is_derived_again_from_the_links_that_stand():
    """docs/identity.md's example: the tablet went with ann (linked first); unlinked from her, its
    link to bob, refused until then, stands."""
    links = [
        Link(A("tablet"), C("ann"), "2026-01-01T10:00:00Z", "2026-01-01T10:00:01Z", "login-1", "both ids"),
        Link(A("tablet"), C("bob"), "2026-01-02T10:00:00Z", "2026-01-02T10:00:01Z", "login-2", "both ids"),
    ]
    assert (resolve(links).person(A("tablet")), resolve(links).person(C("bob"))) == ("ann", "bob")
    undo = Unlink(A("tablet"), C("ann"), "2026-02-01T00:00:00Z", "the shop's demo tablet")
    assert resolve(links, [undo]).person(A("tablet")) == "bob"
    assert resolve(links, [undo], as_known="2026-01-15T00:00:00Z").person(A("tablet")) == "ann"
