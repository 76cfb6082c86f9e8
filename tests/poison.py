"""Poison records (each once crashed `journey ingest` or stalled a worker) and valid ones at the
edges of the limits, mixed into a stream of ordinary touchpoints."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.limits import MAX_AMOUNT, MAX_SAFE_INTEGER

AT = datetime(2026, 3, 1, tzinfo=UTC)


def record(event_id: str, **changes: Any) -> dict[str, Any]:
    base = {
        "event_id": event_id,
        "customer_id": "poisoned",
        "kind": "page.viewed",
        "occurred_at": "2026-03-01T12:00:00+01:00",
        "channel": "web",
        "source": "test",
        "properties": {},
    }
    return {**base, **changes}


def nested(levels: int, leaf: Any = 1) -> Any:
    """An object `levels` deep (the returned object itself is level 1)."""
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


ORDER = {"order_id": "p-1", "amount": 10.0, "currency": "EUR"}

# (raw line, field of the rejection, words in its reason)
POISON: list[tuple[bytes, str, str]] = [
    (line(record("p-deep-props", properties=nested(253))), "properties", "nested deeper than 16"),
    (line(record("p-deep-traits", traits=nested(300))), "traits", "nested deeper than 16"),
    (
        line(record("p-deep-order", kind="order.placed", properties={**ORDER, "x": nested(250)})),
        "properties.x",
        "nested deeper",
    ),
    (line(record("p-year-1", occurred_at="0001-01-01T00:00:00Z")), "occurred_at", "earliest time accepted"),
    (line(record("p-year-2", occurred_at="0002-06-01T00:00:00+00:00")), "occurred_at", "earliest time accepted"),
    (line(record("p-year-1-offset", occurred_at="0001-01-01T00:30:00+01:00")), "occurred_at", "earliest"),
    (line(record("p-year-9999", occurred_at="9999-12-31T23:30-01:00")), "occurred_at", "beyond the year 9999"),
    (line(record("p-nul\u0000id")), "event_id", "U+0000"),
    (line(record("p-kind-close", kind="[/]")), "kind", "unknown kind '[/]'"),
    (line(record("p-kind-bold", kind="[/bold] oops")), "kind", "unknown kind '[/bold] oops'"),
    (line(record("p-ansi", customer_id="c-\x1b[31mred")), "customer_id", "U+001B"),
    (line(record("p-newline", customer_id="c-one\nc-two")), "customer_id", "U+000A"),
    (line(record("p-bidi\u202eid")), "event_id", "U+202E"),
    (line(record("p-leap", occurred_at="2026-06-30T23:59:60Z")), "occurred_at", "leap second"),
    (line(record("p-offset", occurred_at="2026-03-01T12:00:00+25:00")), "occurred_at", "offset +25:00"),
    (
        b'{"event_id": "p-dup-key", "event_id": "p-dup-key-2", "customer_id": "poisoned", "kind": "page.viewed", '
        b'"occurred_at": "2026-03-01T12:00:00Z", "channel": "web", "source": "test"}',
        "",
        "appears twice",
    ),
    (
        b'{"event_id": "p-big-int", "customer_id": "poisoned", "kind": "page.viewed", "occurred_at": '
        b'"2026-03-01T12:00:00Z", "channel": "web", "source": "test", "properties": {"n": 18446744073709551617}}',
        "properties.n",
        "beyond +-(2**53 - 1)",
    ),
    (line(record("p-big-safe", properties={"n": MAX_SAFE_INTEGER + 2})), "properties.n", "beyond"),
    (
        line(record("p-huge-amount", kind="order.placed", properties={**ORDER, "amount": 1e308})),
        "properties.amount",
        "must be at most 1,000,000,000,000,000",
    ),
    (line(record("p-nul-value", properties={"note": "a\u0000b"})), "properties.note", "NUL"),
    (b'{"event_id": "p-utf8-\xff", "customer_id": "poisoned"}', "", "not valid UTF-8"),
    (b'{"event_id": "p-truncated", "customer_id": ', "", "not valid JSON"),
]

# Valid records that look odd: accepted, stored, snapshotted and shown verbatim.
EDGES: list[dict[str, Any]] = [
    record("edge-markup-1", customer_id="x-[/]-y"),
    record("edge-markup-2", customer_id="[bold]c[/bold] :smile:"),
    record("[/] edge-3", customer_id="x-[/]-y", source="[red]svc[/red]"),
    record(
        "edge-depth",
        customer_id="x-[/]-y",
        kind="order.placed",
        properties={**ORDER, "order_id": "edge-1", "x": nested(15)},
    ),  # 16 levels with properties
    record("edge-traits", customer_id="x-[/]-y", traits=nested(16, "deep")),
    record("edge-int", customer_id="x-[/]-y", properties={"n": MAX_SAFE_INTEGER, "m": -MAX_SAFE_INTEGER}),
    record(
        "edge-amount",
        customer_id="x-[/]-y",
        kind="order.placed",
        properties={"order_id": "edge-2", "amount": MAX_AMOUNT, "currency": "EUR"},
    ),
    record("edge-early", customer_id="x-[/]-y", occurred_at="1900-01-01T00:00:00Z"),
    record("edge-offset", customer_id="x-[/]-y", occurred_at="2026-03-01T12:00:00-23:59"),
]


def valid_records(n: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        at = AT - timedelta(days=rng.random() * 400)
        customer = f"v{rng.randrange(400)}"
        if rng.random() < 0.2:
            out.append(
                record(
                    f"v-{i}",
                    customer_id=customer,
                    kind="order.placed",
                    occurred_at=at.isoformat(),
                    properties={"order_id": f"vo-{i}", "amount": round(rng.uniform(5, 200), 2), "currency": "EUR"},
                )
            )
        else:
            out.append(record(f"v-{i}", customer_id=customer, occurred_at=at.isoformat()))
    return out


def mixed(n_valid: int = 10_000, seed: int = 3) -> tuple[list[bytes], dict[int, tuple[str, str]], int]:
    """Lines of valid records with the poison and the edge records spread among them; returns
    (lines, {record number: (field, words)} of the poison, the number of valid records)."""
    rng = random.Random(seed)
    lines: list[bytes | tuple[str, str]] = [line(r) for r in valid_records(n_valid)] + [line(r) for r in EDGES]
    rng.shuffle(lines)
    for raw, field, words in POISON:
        lines.insert(rng.randrange(len(lines)), (raw, field, words))  # type: ignore[arg-type]
    out, expected = [], {}
    for number, item in enumerate(lines, start=1):
        if isinstance(item, tuple):
            raw, field, words = item  # type: ignore[misc]
            expected[number] = (field, words)
            out.append(raw)
        else:
            out.append(item)
    return out, expected, n_valid + len(EDGES)


def check_rejections(rejections: list[dict[str, Any]], expected: dict[int, tuple[str, str]]) -> None:
    """Each poison record rejected, with the field and reason expected, and nothing else."""
    got = {r["record"]: r for r in rejections}
    assert sorted(got) == sorted(expected), (sorted(got), sorted(expected))
    for number, (field, words) in expected.items():
        r = got[number]
        assert r["field"].startswith(field) and (field or r["field"] == ""), (number, r)
        assert words in r["reason"], (number, r)
