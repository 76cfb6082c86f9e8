"""The dead-letter table on both stores: kept once per place of origin, listed in order, and a
person's deleted by forget without leaving their bytes behind (SQLite)."""

from __future__ import annotations

import pytest

from engine import rejects
from engine.rejects import open_dead_letters


@pytest.fixture(params=["sqlite", "postgres"])
def config(request):
    return request.getfixturevalue("sqlite_config" if request.param == "sqlite" else "pg_config")


def test_rejects_are_kept_once_listed_in_order_and_dropped_per_customer(config):
    letters = open_dead_letters(config)
    try:
        first = rejects.row("kafka/t/0/1", "2026-01-01T00:00:00Z", b'{"x": "marker-r1"}', "kind", "bad", "p1", "e1")
        second = rejects.row("http/abc", "2026-01-01T00:00:01Z", b"\xff\xfe", "", "not UTF-8", 7, ["x"])
        assert letters.keep([first, second]) == 2
        assert letters.keep([first]) == 0  # the same record redelivered
        listed = [rejects.as_dict(k) for k in letters.after(0, 10)]
        assert [(e["source"], e["customer_id"], e["message_id"], e["field"]) for e in listed] == [
            ("kafka/t/0/1", "p1", "e1", "kind"),
            ("http/abc", "7", None, ""),  # a number as an id is kept as text, for forget to match
        ]
        assert listed[0]["body"] == '{"x": "marker-r1"}' and listed[1]["body_base64"] == "//4="
        assert letters.after(listed[0]["number"], 10)[0][1] == "http/abc"
        assert letters.drop("p1") == 1 and letters.drop("p1") == 0
        assert [e[1] for e in letters.after(0, 10)] == ["http/abc"]
    finally:
        letters.close()
    if config.store.backend == "sqlite":
        kept = config.data_path / config.store.rejects_file
        assert b"marker-r1" not in kept.read_bytes()  # secure_delete and VACUUM: no bytes left
