"""Properties the engine's shortcuts must keep, over generated inputs: the memoised lifecycle walk
gives what the plain walk gives; a timeline ends where the as-of evaluation stands; the validator
answers every JSON value without raising. (A config's TOML round trip: integration/test_config.)"""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.catalog import Catalog
from engine.projections import lifecycle
from engine.projections.facts import Facts
from engine.touchpoints import Rejection, Touchpoint, Validator

from ..conftest import NOW
from .test_lifecycle_oracle import START, events, fold, rules

L = lifecycle.customer_ladder

GRID = timedelta(hours=6)


@settings(max_examples=200, deadline=None)
@given(evs=events(max_events=50), r=rules(), data=st.data())
def test_the_memoised_walk_records_what_the_plain_walk_records(evs, r, data):
    """Touchpoints arrive in batches at advancing times: advance() with the memo and sweep it kept
    from the batch before must record the same transitions and statuses as a plain walk of the
    same facts from the same recorded state (live_transitions with a fresh sweep)."""
    order = data.draw(st.permutations(range(len(evs))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(evs)), max_size=6)))
    facts, memo = Facts(), None
    recorded: tuple[str | None, str | None] = (None, None)
    until = None
    now = START
    for lo, hi in zip([0, *cuts], [*cuts, len(evs)]):
        for i in order[lo:hi]:
            facts.add(*evs[i])
        now += GRID * data.draw(st.integers(0, 400))
        plain_facts = fold([evs[i] for i in order[:hi]])
        want, want_status = lifecycle.live_transitions(
            plain_facts, recorded, until, now, L(r), lifecycle.Walk(plain_facts, L(r))
        )
        got, status, memo = lifecycle.advance(facts, recorded, until, now, L(r), memo)
        assert got == want
        assert (status.stage, status.health, status.count) == (want_status.stage, want_status.health, want_status.count)
        for t in got:
            recorded = (t.to_value, recorded[1]) if t.dimension == "stage" else (recorded[0], t.to_value)
        until = now


@settings(max_examples=300, deadline=None)
@given(evs=events(), r=rules(), data=st.data())
def test_a_timeline_ends_where_the_as_of_evaluation_stands(evs, r, data):
    facts = fold(evs)
    T = START + GRID * data.draw(st.integers(-4, 4 * 500))
    history, status = lifecycle.timeline(facts, L(r), None, T)
    asof = lifecycle.evaluate(facts, T, L(r))
    assert (status.stage, status.health, status.count, status.stage_reason, status.health_reason) == (
        asof.stage,
        asof.health,
        asof.count,
        asof.stage_reason,
        asof.health_reason,
    )
    # ...and the last transition of each dimension lands on it
    for dim in ("stage", "health"):
        last = [t for t in history if t.dimension == dim]
        assert (last[-1].to_value if last else None) == asof.get(dim)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ("event_id", "customer_id", "kind", "occurred_at", "channel", "source", "properties", "traits")


@st.composite
def records(draw):
    """Arbitrary JSON, and objects with the envelope's keys holding arbitrary JSON."""
    if draw(st.booleans()):
        return draw(JSON)
    base = {
        "event_id": "e1",
        "customer_id": "c1",
        "kind": draw(st.sampled_from(["order.placed", "page.viewed", "consent.changed", "survey.answered", "x.y"])),
        "occurred_at": "2026-05-01T00:00:00Z",
        "channel": "web",
        "source": "s",
        "properties": {},
    }
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        base[key] = draw(JSON)
    return base


VALIDATOR = Validator(Catalog(), timedelta(hours=24), 65536)


@settings(max_examples=500, deadline=None)
@given(record=records())
def test_the_validator_answers_every_json_value_without_raising(record):
    for answer in (VALIDATOR.validate(record, 1, NOW), VALIDATOR.parse_line(json.dumps(record).encode(), 1, NOW)):
        assert isinstance(answer, (Touchpoint, Rejection))
        if isinstance(answer, Rejection):
            assert answer.record == 1 and answer.reason
