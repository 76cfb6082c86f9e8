"""The engine in a process of its own, behind `journey serve`.

The engine is synchronous Python: in a thread of the server's process it took turns on the GIL
with the HTTP work (parsing, mapping), so neither ran while the other did. In a process of its
own it writes one group while the server parses the next. One process, so calls run one at a
time, in the order they were made (writes and the reads between them); each is a function of
this module, given the engine first, so that it can be sent to the process by name.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine import queries, rejects
from engine.config import Config
from engine.memory import settle
from engine.reports import blank
from engine.service import Engine
from engine.touchpoints import Rejection, Touchpoint

_engine: Engine | None = None


def open_engine(config: Config) -> None:
    """The process's initializer: the engine, and a watch on the server's process."""
    global _engine
    _engine = Engine(config)
    threading.Thread(target=_orphaned, args=(os.getppid(),), daemon=True, name="parent-watch").start()


def _orphaned(parent: int) -> None:
    """End this process when the server's is gone (killed with SIGKILL, it cannot say so): an
    orphan would keep the store open and go on holding its lock. What it was writing is one
    transaction, so it is committed or not; the server's client sends it again either way."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def call(work: Any, *args: Any) -> Any:
    assert _engine is not None, "opened by the initializer"
    return work(_engine, *args)


def close(engine: Engine) -> None:
    engine.close()


@dataclass
class Outcome:
    """What became of one request's records: accepted, duplicates, and the refused ones (their index
    among the request's records, and the engine's rejection)."""

    accepted: int
    duplicates: int
    refused: list[tuple[int, Rejection]]


def write_group(engine: Engine, parts: list[tuple[list[Any], bool]]) -> list[Outcome]:
    """The requests' records ingested in arrival order: one engine ingest (one transaction when
    they fit one batch) per run of consecutive requests of one kind (Segment's, deduplicated by
    id, or native), and what became of each request's records."""
    outcomes: list[Outcome] = []
    for by_id, run in itertools.groupby(parts, key=lambda part: part[1]):
        records = [part for part, _ in run]
        report = engine.ingest([r for part in records for r in part], by_id=by_id)
        refused = {r.record: r for r in report.rejections}
        twice = set(report.duplicate_records)
        start = 0  # record numbers count from 1 over what is sent
        for part in records:
            numbers = range(start + 1, start + len(part) + 1)
            mine = [(k, refused[n]) for k, n in enumerate(numbers) if n in refused]
            dups = sum(1 for n in numbers if n in twice)
            skipped = sum(1 for r in part if blank(r))
            outcomes.append(Outcome(len(part) - skipped - len(mine) - dups, dups, mine))
            start += len(part)
    # The collector's policy after each group, as journey ingest after each batch (engine.memory):
    # without it full collections rescanned the customer cache, 13% of the server's time in a
    # profile (py-spy, 3,000 customers).
    settle()
    return outcomes


def validate(engine: Engine, records: list[Any]) -> list[tuple[int, Touchpoint | Rejection]]:
    """Each record that is not blank, checked as ingest checks it (the Kafka sink's check)."""
    now = engine.clock.now()
    return [(i, engine.validate(i + 1, r, now)) for i, r in enumerate(records) if not blank(r)]


def keep_rejects(engine: Engine, rows: list[rejects.Row]) -> int:
    return engine.keep_rejects(rows)


def kept_rejects(engine: Engine, after: int, limit: int) -> list[dict[str, Any]]:
    return [rejects.as_dict(k) for k in engine.rejects.after(after, limit)]


def customer(
    engine: Engine,
    customer_id: str,
    T: datetime | None,
    as_known: bool,
    limit: int | None,
    offset: int,
    personal: bool,
) -> dict[str, Any]:
    v = engine.view(customer_id, T or engine.clock.now(), as_known, limit, offset)
    if not personal:  # what is left of the traits without the personal ones
        v["traits"] = engine.personal.split("", {}, v["traits"])[1] or {}
    return v


def funnel(engine: Engine, T: datetime | None, as_known: bool, ladder: str | None = None) -> dict[str, Any]:
    return queries.funnel(engine, T or engine.clock.now(), as_known, ladder)


def feed(engine: Engine, topic: str, key: str, after: int, limit: int, customer_id: str | None) -> list[dict[str, Any]]:
    return queries.feed(engine, topic, key, after, limit, customer_id)


def why(engine: Engine, action_id: str) -> dict[str, Any]:
    return engine.why(action_id)


def position(engine: Engine) -> int:
    return engine.store.journal.max_notification_id() or 0
