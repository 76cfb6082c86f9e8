"""Bad input: every rejection names the record, the field and the reason; nothing valid is lost."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.catalog import Catalog
from engine.config import Config, CustomField, CustomKind, IngestSettings
from engine.service import Engine
from engine.touchpoints import Rejection, Touchpoint, Validator

from ..conftest import NOW
from ..helpers import order, tp

V = Validator(Catalog(), timedelta(hours=24), 65536)
GOOD = order("e1", NOW - timedelta(days=1))


def reject(record, **kw) -> Rejection:
    result = V.parse_line(record if isinstance(record, (str, bytes)) else json.dumps(record), 7, NOW)
    assert isinstance(result, Rejection), result
    assert result.record == 7 and result.message().startswith("record 7")
    return result


def with_(**changes):
    return {**GOOD, **changes}


def without(key):
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    "record, field, words",
    [
        ("{not json", "", "not valid JSON"),
        ("[1, 2]", "", "a touchpoint is a JSON object, not an array"),
        ('"text"', "", "a touchpoint is a JSON object, not a string"),
        (without("event_id"), "event_id", "is required"),
        (without("occurred_at"), "occurred_at", "is required"),
        (with_(event_id=17), "event_id", "string"),
        (with_(customer_id=""), "customer_id", "blank"),
        (with_(customer_id="   "), "customer_id", "blank"),
        (with_(customer_id="ann@example.org"), "customer_id", "email"),
        (with_(traits={"timezone": "Mars/Olympus"}), "traits.timezone", "is not an IANA time zone"),
        (with_(traits={"timezone": "../../etc/passwd"}), "traits.timezone", "not an IANA time zone"),
        (with_(traits={"timezone": 1}), "traits.timezone", "not an IANA time zone"),
        (with_(traits={"timezone": {"tz": "UTC"}}), "traits.timezone", "not an IANA time zone"),
        (with_(kind="order.teleported"), "kind", "unknown kind 'order.teleported'"),
        (with_(channel="pigeon"), "channel", "is not one of: 'web', 'mobile_app'"),
        (with_(occurred_at="2026-05-01T10:00:00"), "occurred_at", "UTC offset"),
        (with_(occurred_at=1748772000), "occurred_at", "ISO 8601"),
        (with_(occurred_at="yesterday"), "occurred_at", "not an ISO 8601 date-time"),
        (with_(occurred_at=(NOW + timedelta(hours=25)).isoformat()), "occurred_at", "more than 24 hours ahead"),
        (
            with_(properties={"order_id": "o", "amount": -1, "currency": "EUR"}),
            "properties.amount",
            "must be at least 0",
        ),
        (
            with_(properties={"order_id": "o", "amount": "12", "currency": "EUR"}),
            "properties.amount",
            "must be a number, not a string (send the number without quotes)",
        ),
        (with_(properties={"order_id": "o", "amount": 1}), "properties.currency", "is required"),
        (with_(properties=[1]), "properties", "must be an object, not an array"),
        (with_(surprise=1), "surprise", "not a field of the touchpoint envelope"),
        (tp("s", "survey.answered", NOW, nps=11), "properties.nps", "must be at most 10"),
        (tp("s", "survey.answered", NOW), "properties", "nps (0-10) and/or csat"),
        (tp("r", "review.posted", NOW, rating=0), "properties.rating", "must be at least 1"),
        (
            {
                **tp("c", "consent.changed", NOW),
                "properties": {"channel": "email", "purpose": "promotional", "granted": "yes"},
            },
            "properties.granted",
            "must be true or false, not a string",
        ),
        (
            {**tp("c", "consent.changed", NOW), "properties": {"channel": "email", "purpose": "spam", "granted": True}},
            "properties.purpose",
            "is not one of: 'promotional', 'service'",
        ),
    ],
)
def test_each_kind_of_bad_input_is_named(record, field, words):
    r = reject(record)
    assert r.field == field
    assert words in r.reason, r.reason


def test_too_large_is_rejected_before_parsing():
    big = json.dumps(with_(properties={**GOOD["properties"], "note": "x" * 70000}))
    assert "limit is 65,536" in reject(big).reason


def test_a_touchpoint_within_the_future_tolerance_is_accepted():
    assert isinstance(V.validate(with_(occurred_at=(NOW + timedelta(hours=23)).isoformat()), 1, NOW), Touchpoint)


def test_offsets_are_normalised_to_utc_and_hash_alike():
    a = V.validate(with_(occurred_at="2026-05-01T12:00:00+02:00"), 1, NOW)
    b = V.validate(with_(occurred_at="2026-05-01T10:00:00Z"), 2, NOW)
    assert a.occurred_at == b.occurred_at and a.digest == b.digest


def test_custom_kinds_from_config_are_validated():
    catalog = Catalog(
        (
            CustomKind(
                name="webinar.attended",
                fields={
                    "webinar_id": CustomField(type="string"),
                    "minutes": CustomField(type="integer", required=False),
                },
            ),
        )
    )
    v = Validator(catalog, timedelta(hours=24), 65536)
    ok = v.validate(tp("w", "webinar.attended", NOW, webinar_id="w1", minutes=30), 1, NOW)
    assert isinstance(ok, Touchpoint)
    bad = v.validate(tp("w", "webinar.attended", NOW, minutes=30), 3, NOW)
    assert bad.field == "properties.webinar_id"
    assert V.validate(tp("w", "webinar.attended", NOW, webinar_id="w1"), 1, NOW).field == "kind"


def test_one_bad_line_among_ten_thousand_keeps_the_rest(sqlite_config, clock):
    lines = [
        json.dumps(tp(f"e{i}", "page.viewed", NOW - timedelta(minutes=i), customer=f"c{i % 300}"))
        for i in range(10_000)
    ]
    lines[4321] = lines[4321][:-5]  # truncated JSON
    with Engine(sqlite_config, clock) as engine:
        report = engine.ingest(lines)
        assert (report.accepted, report.duplicates, report.rejected) == (9_999, 0, 1)
        assert report.rejections[0].record == 4322
        assert engine.funnel()["customers"] == 300
        assert engine.store.journal.customer_count() == 300


def test_nothing_crashes_on_garbage(sqlite_config, clock):
    garbage = [b"\xff\xfe", b"null", b"{}", b"1e999", "\u0000", json.dumps({"event_id": None})]
    with Engine(sqlite_config, clock) as engine:
        report = engine.ingest(garbage + [b"", b"  ", json.dumps(GOOD)])  # blank lines are no records
    assert (report.accepted, report.rejected) == (1, len(garbage))
    assert all(r.message() for r in report.rejections)


def test_size_limit_comes_from_config(tmp_path, clock):
    config = Config(data_dir=str(tmp_path), ingest=IngestSettings(max_touchpoint_bytes=100))
    with Engine(config, clock) as engine:
        report = engine.ingest([json.dumps(GOOD)])
    assert report.rejected == 1 and "limit is 100" in report.rejections[0].reason


def test_a_true_duplicate_in_another_key_order_is_a_duplicate_of_the_accepted_original(engine):
    # It was rejected as a conflict "with record 9108", itself a rejected record.
    original = order("e1", NOW - timedelta(days=2), amount=10)
    reordered = json.dumps(
        dict(reversed(list({**original, "properties": dict(reversed(list(original["properties"].items())))}.items())))
    )
    other = order("e1", NOW - timedelta(days=2), amount=99)
    r = engine.ingest([json.dumps(original), json.dumps(other), reordered])
    assert (r.accepted, r.duplicates, r.rejected) == (1, 1, 1)
    assert "record 1, accepted in this batch" in r.rejections[0].reason
    r = engine.ingest([json.dumps(other), reordered])  # later: against the stored original
    assert (r.accepted, r.duplicates, r.rejected) == (0, 1, 1)
    assert "a touchpoint of this customer accepted earlier, with other content" in r.rejections[0].reason


@pytest.mark.parametrize(
    "raw, field, words",
    [
        (b'{"event_id": "x\xc3\x28"}', "", "not valid UTF-8: byte 15 (0xc3) invalid continuation byte"),
        ('{"event_id": "e", "event_id": "f"}', "", "key 'event_id' appears twice"),
        (json.dumps(with_(occurred_at="2026-06-30T23:59:60Z")), "occurred_at", "leap second"),
        (json.dumps(with_(occurred_at="2026-03-01T12:00:00+25:00")), "occurred_at", "offset +25:00 is out of range"),
        (json.dumps(with_(occurred_at="2026-02-30T12:00:00Z")), "occurred_at", "day 30 is out of range for 2026-02"),
        (json.dumps(with_(occurred_at="1748772000")), "occurred_at", "is a number"),
        (json.dumps(with_(occurred_at="2026-03-01")), "occurred_at", "a date without a time"),
        (json.dumps(with_(occurred_at="1899-12-31T23:59:59Z")), "occurred_at", "earliest time accepted"),
        (json.dumps(with_(occurred_at="0000-01-01T00:00:00Z")), "occurred_at", "year 0"),
        (
            '{"event_id": "e", "customer_id": "c", "kind": "page.viewed", "occurred_at": "2026-03-01T12:00:00Z", '
            '"channel": "web", "source": "s", "properties": {"n": 12345678901234567890123}}',
            "properties.n",
            "2**53",
        ),
        (
            json.dumps(with_(properties={**GOOD["properties"], "amount": 2e15})),
            "properties.amount",
            "must be at most 1,000,000,000,000,000",
        ),
        (json.dumps(with_(event_id=" e1")), "event_id", "whitespace"),
        (json.dumps(with_(source="x" * 201)), "source", "at most 200"),
    ],
)
def test_what_is_wrong_is_said_and_nothing_changes_silently(raw, field, words):
    r = reject(raw)
    assert r.field == field and words in r.reason, r


def test_a_sum_of_amounts_cannot_overflow(engine):
    big = [order(f"b{i}", NOW - timedelta(days=3 - i), amount=1e15) for i in range(3)]
    assert engine.ingest(big).accepted == 3
    view = engine.customer("c1")
    assert view["revenue"] == {"EUR": 3e15} and view["purchases"] == 3


NAMES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=6
).filter(lambda n: n not in GOOD["properties"])  # as engine.limits allows; not an order's own properties
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(-1e9, 1e9)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=8,
)


def count_keys(value) -> int:
    if isinstance(value, dict):
        return len(value) + sum(count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_keys(v) for v in value)
    return 0


@settings(max_examples=300, deadline=None)
@given(
    props=st.dictionaries(NAMES, JSON_VALUES, max_size=4),
    layout=st.sampled_from(
        [{}, {"separators": (",", ":")}, {"indent": 1}, {"separators": (" , ", " : ")}, {"ensure_ascii": False}]
    ),
)
def test_a_key_given_twice_is_always_found_however_the_json_is_written(props, layout):
    from engine.limits import raw_keys

    record = with_(properties={**GOOD["properties"], **props})
    raw = json.dumps(record, **layout)
    assert raw_keys(raw.encode()) >= count_keys(record)  # never fewer keys than there are
    assert isinstance(V.parse_line(raw, 1, NOW), Touchpoint)  # and a valid record stays valid
    twice = raw.replace('"currency"', '"amount": 3, "currency"', 1)  # one key given twice
    r = V.parse_line(twice, 1, NOW)
    assert isinstance(r, Rejection) and "appears twice" in r.reason, r


@pytest.mark.parametrize(
    "raw, field, words",
    [
        # A widened integer (beyond 64 bits, read as a float) with a key twice, or with a string that
        # starts with a colon (which the fast key count counts once more): each hid the other.
        (
            b'{"event_id": "w1", "customer_id": "c", "kind": "page.viewed", "occurred_at": "2026-03-01T12:00:00Z", '
            b'"channel": "web", "source": "s", "properties": {"x": 1e19, "note": "a", "note": "b"}}',
            "",
            "appears twice",
        ),
        (
            b'{"event_id": "w2", "customer_id": "c", "kind": "page.viewed", "occurred_at": "2026-03-01T12:00:00Z", '
            b'"channel": "web", "source": "s", "properties": {"x": 99999999999999999999, "note": "a", "note": "b"}}',
            "",
            "appears twice",
        ),
        (
            b'{"event_id": "w3", "customer_id": "c", "kind": "page.viewed", "occurred_at": "2026-03-01T12:00:00Z", '
            b'"channel": "web", "source": "s", "properties": {"n": 99999999999999999999, "note": ":hello"}}',
            "properties.n",
            "2**53",
        ),
        (
            json.dumps(with_(occurred_at="\u0661\u0669\u0660\u0660-01-01T00:00:00Z")).encode(),
            "occurred_at",
            "not an ISO 8601 date-time",
        ),  # digits of another script
    ],
)
def test_nothing_hides_a_silent_change(raw, field, words):
    r = reject(raw)
    assert r.field == field and words in r.reason, r


def test_a_float_that_only_looks_widened_is_kept():
    ok = V.parse_line(json.dumps(with_(properties={**GOOD["properties"], "big": 1e19})), 1, NOW)
    assert isinstance(ok, Touchpoint) and ok.properties["big"] == 1e19


def test_every_problem_of_a_record_is_named():
    r = reject({k: v for k, v in GOOD.items() if k not in ("kind", "channel")} | {"event_id": " e1"})
    assert r.field == "event_id" and r.reason.startswith("must not start or end with whitespace; also ")
    assert "kind is required" in r.reason and "channel is required" in r.reason
    # all of them, however many, the envelope's and the properties' together: one round of fixes
    r = reject(
        GOOD
        | {"event_id": "", "customer_id": "", "occurred_at": "x", "channel": "pigeon", "source": "", "kind": "no.such"}
    )
    for words in (
        "customer_id must not be blank",
        "occurred_at is not an ISO 8601 date-time",
        "channel is not one of",
        "source must not be blank",
        "unknown kind 'no.such'",
    ):
        assert words in r.reason
    assert "more" not in r.reason
    r = reject(GOOD | {"channel": "pigeon", "properties": {"amount": -1, "currency": "eur"}})
    assert r.field == "channel"
    for words in (
        "properties.order_id is required",
        "properties.amount must be at least 0",
        "properties.currency 'eur'",
    ):
        assert words in r.reason
