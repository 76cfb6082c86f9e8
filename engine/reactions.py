"""Simulated persons who answer the engine's promotional actions: the effect that control groups
are there to measure (journey simulate --treatment-effect, journey demo; docs/policies.md,
"Simulated reactions").

The model: an issued promotional action makes its person place one extra order, at a time drawn
uniformly within the following DAYS days, with probability `effect`, on top of whatever they would
have done anyway. The share who buy in the window therefore rises by effect x (1 - b), b the
share who would have bought anyway. Held-out persons are never reached, so they never react.
Whether an action is answered, and when, is a hash of (seed, action id): the same action is
answered the same way on every run, and the draw a held-out decision would have had is known, so
the true effect on the persons an uplift measures can be computed (true_effect).

The engine decides as the history unfolds, so the answers are made in one loop with it: records
flow from a simulated history into engine.ingest; after each batch, the new entries of the action
feed are read and each answer is queued at its time and merged into the stream (delivered late
when the stream has already passed that time, as late records are). The result depends on the
seed, the config and the batch size alone (one process, a fresh store): the history as ingested
(every record, in order) decides the same actions again when ingested the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from heapq import heappop, heappush
from itertools import count
from typing import Any, TypeVar

from . import queries
from .projections.facts import Facts
from .projections.lifecycle import purchases
from .service import Engine

R = TypeVar("R")
DAYS = 30  # an action's answer comes within this many days (the uplift's default window)
HOUR = 3600.0
BASKET = 45.0  # the amount of an answer when the person never ordered before (base currency)
PREFIX = "answer-"  # the event ids of answers: reaction orders are told apart by it


def answer(seed: int, action_id: str, effect: float) -> float | None:
    """Seconds after the action when its person answers with an order, or None if they do not.
    Within (1 hour, DAYS days - 1 hour): inside any window of DAYS days that starts at the action."""
    h = hashlib.sha256(f"{seed}\x1f{action_id}".encode()).digest()
    if int.from_bytes(h[:8]) / 2**64 >= effect:
        return None
    return HOUR + int.from_bytes(h[8:16]) / 2**64 * (DAYS * 86400.0 - 2 * HOUR)


def event_id(seed: int, action_id: str) -> str:
    return f"{PREFIX}{seed}-{action_id}"


class Answers:
    """A simulated history, and the orders its persons place in answer to the engine's issued
    promotional actions, in one stream for `engine` (on a fresh store) to ingest. Pass
    `on_batch` to engine.ingest; `records()` is the stream (resumable: `before` stops it ahead of
    the first simulated record at or after a time, and a later call goes on from there). The
    actions of the last batch are answered after the stream ended: `ingest_rest` ingests them
    too."""

    def __init__(self, engine: Engine, history: Iterable[dict], effect: float, seed: int, until: datetime):
        self.engine, self.effect, self.seed = engine, effect, seed
        self.until = until.timestamp()
        self.base = engine.config.value.base_currency
        self._history = iter(history)
        self._next = next(self._history, None)
        self._queue: list[tuple[float, int, dict]] = []  # answers by time
        self._seq = count()
        self._position = 0  # of the action feed, read up to here
        self._seen: set[str] = set()  # actions whose issue was read
        self._basket: dict[str, tuple[float, str]] = {}  # person -> amount and currency of the last order
        self.answered = 0  # answers queued so far (their orders may lie ahead in the stream)

    @property
    def waiting(self) -> bool:
        """Whether answers are queued after the simulated history ended."""
        return self._next is None and bool(self._queue)

    def ingest_rest(self, ingest: Callable[[Iterator[dict]], R]) -> list[R]:
        """Ingest the rest of the stream with `ingest` (which must call on_batch after each batch),
        then the answers to the actions of its last batch, and theirs, until none wait."""
        done = [ingest(self.records())]
        while self.waiting:
            done.append(ingest(self.records()))
        return done

    def records(self, before: datetime | None = None) -> Iterator[dict]:
        stop = before.timestamp() if before else None
        while self._next is not None:
            r = self._next
            t = datetime.fromisoformat(r["occurred_at"]).timestamp()
            if stop is not None and t >= stop:
                return
            while self._queue and self._queue[0][0] <= t:
                yield heappop(self._queue)[2]
            if r["kind"] == "order.placed" and r.get("customer_id"):
                p = r["properties"]
                self._basket[r["customer_id"]] = (p["amount"], p["currency"])
            yield r
            self._next = next(self._history, None)
        while self._queue and (stop is None or self._queue[0][0] < stop):
            yield heappop(self._queue)[2]

    def on_batch(self, _size: int = 0) -> None:
        """Read the actions the engine issued since the last batch, and queue their answers."""
        for position, _, body in queries.scan(self.engine, queries.ACTION_TOPIC, after=self._position):
            self._position = position
            a = body["action"]
            if a["status"] != "issued" or a["purpose"] != "promotional" or a["action_id"] in self._seen:
                continue
            self._seen.add(a["action_id"])
            after = answer(self.seed, a["action_id"], self.effect)
            if after is None:
                continue
            t = datetime.fromisoformat(a["at"]).timestamp() + after
            if t > self.until:
                continue  # it would happen after the history's end: not yet
            amount, currency = self._basket.get(a["customer_id"], (BASKET, self.base))
            order = f"{PREFIX}{a['action_id']}"
            heappush(
                self._queue,
                (
                    t,
                    next(self._seq),
                    {
                        "event_id": event_id(self.seed, a["action_id"]),
                        "customer_id": a["customer_id"],
                        "kind": "order.placed",
                        "occurred_at": datetime.fromtimestamp(int(t), UTC).isoformat(),
                        "channel": "web",
                        "source": "shop",
                        "properties": {
                            "order_id": order,
                            "amount": amount,
                            "currency": currency,
                            "campaign": a["policy"],
                        },
                        "traits": None,
                    },
                ),
            )
            self.answered += 1


def true_effect(
    policy: str,
    persons: dict[str, dict[str, Any]],
    actions: Iterable[dict[str, Any]],
    facts_of: dict[str, Facts],
    seed: int,
    effect: float,
    days: int = DAYS,
) -> float | None:
    """The effect the simulation put in, on the persons a policy's uplift measures (person -> their
    first decision, engine.uplift.population): the mean over them of the difference the policy's
    actions made to "a purchase within `days` of that decision" — 1 for a person one of whose
    decisions of the policy in that window is answered within it (for the held out: would have
    been, by the draw their decisions have) and who would not have bought otherwise, else 0. The
    policy as it runs, as the uplift measures it: a later decision of the same policy counts.
    Not counted: what answers set off further (another policy's action to a person an answer made
    loyal), and held-out decisions' use of no contact cap (other actions reach them more)."""
    sendable: dict[str, list[tuple[datetime, str]]] = {}
    for a in {a["action_id"]: a for a in actions}.values():
        if a["policy"] == policy and a["status"] in ("issued", "held_out"):
            sendable.setdefault(a["customer_id"], []).append((datetime.fromisoformat(a["at"]), a["action_id"]))
    made = []
    for customer, first in persons.items():
        facts = facts_of.get(customer)
        if facts is None:
            continue
        at = datetime.fromisoformat(first["at"])
        until = at + timedelta(days=days)
        mine = sendable.get(customer, [])
        answered = any(
            at <= t and (after := answer(seed, aid, effect)) is not None and t + timedelta(seconds=after) <= until
            for t, aid in mine
        )
        own = {event_id(seed, aid) for _, aid in mine}
        otherwise = any(at < o.at <= until and o.event_id not in own for o in purchases(facts, until))
        made.append(answered and not otherwise)
    return sum(made) / len(made) if made else None
