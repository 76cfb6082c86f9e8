"""What-if: the full history under other lifecycle rules and policies, with no side effects.

Stages as of T are re-evaluated from the facts under both rule sets; decisions are re-made
by replaying the live history's writes into a throwaway store under the other config. The
live store, its feeds and the read models are only read.

Decisions are compared by what the customer would experience, never by their ids: a trigger
id names the lifecycle change that fired it, and a change id counts the customer's changes, so
a rule that adds one stage change early in a history renames every later trigger of that
customer without changing what anyone is sent.
"""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple

from engine.clock import FixedClock, iso
from engine.config import Config
from engine.projections.lifecycle import Ladder, customer_ladder, evaluate
from engine.service import Engine

from .history import History, load
from .journeys import counted
from .rebuild import rebuild

SAMPLE = 20
EXAMPLES = 5
STATUSES = ("issued", "deferred", "suppressed", "held_out")


class Decision(NamedTuple):
    """A decision as its customer gets it (the first six fields), and when it was taken."""

    customer_id: str
    policy: str
    action: str
    channel: str
    status: str
    at: str  # when it reached, or would reach, the customer
    decided_at: str  # its first record: when its trigger was acted on

    @property
    def experience(self) -> tuple[str, ...]:
        return self[:6]


def whatif(
    live: Engine,
    alternative: Config,
    as_of: datetime,
    history: History | None = None,
    on_step: Callable[[Any], None] | None = None,
    on_customers: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """`on_step` sees each step the sandbox replays; `on_customers` hears how many customers'
    stages were evaluated (both for progress bars)."""
    h = history or load(live)
    moves: Counter = Counter()
    sample: list[dict[str, Any]] = []
    customers = 0
    for cid, facts in counted(sorted(h.customers()), on_customers):
        a = evaluate(facts, as_of, customer_ladder(live.rules))
        b = evaluate(facts, as_of, customer_ladder(alternative.lifecycle))
        if a.stage is None:
            continue
        customers += 1
        if (a.stage, a.health) != (b.stage, b.health):
            moves[(a.stage, b.stage, a.health, b.health)] += 1
            if len(sample) < SAMPLE:
                sample.append(
                    {
                        "customer_id": cid,
                        "stage": [a.stage, b.stage],
                        "health": [a.health, b.health],
                        "reason": b.stage_reason,
                    }
                )
    ladders = _ladder_moves(h, live.ladders[1:], alternative.compiled_ladders()[1:], as_of)
    stage_moves: Counter[str] = Counter()
    for (s0, s1, _, _), n in moves.items():
        if s0 != s1:
            stage_moves[f"{s0}->{s1}"] += n  # ASCII for scripts; the text shows an arrow
    policies = {p.name for p in (*live.config.policies, *alternative.policies)}
    alt_actions = _alternative_actions(live, alternative, as_of, on_step)
    return {
        "as_of": iso(as_of),
        "customers": customers,
        "changed": sum(n for (s0, s1, _, _), n in moves.items() if s0 != s1),
        "health_changed": sum(n for (_, _, h0, h1), n in moves.items() if h0 != h1),
        "by_transition": dict(stage_moves.most_common()),
        "sample": sample,
        "ladders": ladders,
        "actions": compare(decisions(h.actions, as_of), decisions(alt_actions, as_of), policies),
        "rules": {"live": live.rules.rules_version, "alternative": alternative.lifecycle.rules_version},
    }


def _ladder_moves(h: History, live: Iterable[Ladder], alternative: Iterable[Ladder], as_of: datetime) -> dict[str, Any]:
    """Per declared ladder (in either config): the persons on it, and those whose stage or health
    as of T differs between the live ladder and the alternative (a ladder in one config only: every
    person on it moves from or to none)."""
    mine, theirs = {lad.name: lad for lad in live}, {lad.name: lad for lad in alternative}
    out: dict[str, Any] = {}
    for name in [*mine, *(n for n in theirs if n not in mine)]:
        a, b = mine.get(name), theirs.get(name)
        persons, health_changed = 0, 0
        moves: Counter[str] = Counter()
        for _, facts in h.customers():
            sa = evaluate(facts, as_of, a) if a is not None else None
            sb = evaluate(facts, as_of, b) if b is not None else None
            was = (sa.stage, sa.health) if sa is not None else (None, None)
            now = (sb.stage, sb.health) if sb is not None else (None, None)
            if was == (None, None) and now == (None, None):
                continue
            persons += 1
            if was[0] != now[0]:
                moves[f"{was[0] or 'none'}->{now[0] or 'none'}"] += 1  # none: not on the ladder
            health_changed += was[1] != now[1]
        out[name] = {
            "versions": {"live": a.version if a else None, "alternative": b.version if b else None},
            "persons": persons,
            "changed": sum(moves.values()),
            "health_changed": health_changed,
            "by_transition": dict(moves.most_common()),
        }
    return out


def _alternative_actions(
    live: Engine, alternative: Config, as_of: datetime, on_step: Callable[[Any], None] | None
) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="journey-whatif-") as tmp:
        config = alternative.model_copy(
            update={"data_dir": tmp, "store": alternative.store.model_copy(update={"backend": "sqlite"})}
        )
        with Engine(config, FixedClock(as_of)) as sandbox:
            rebuild(live, sandbox, on_step=on_step)
            return sandbox.actions(limit=10**9)


def decisions(actions: Iterable[dict[str, Any]], as_of: datetime) -> list[Decision]:
    """Each decision taken by `as_of`, as it stood then. A deferral and its later issue (or
    suppression) are records of one action id, so its latest record is its outcome; a decision
    still deferred would reach the customer at its release."""
    cutoff = iso(as_of)
    first: dict[str, str] = {}
    latest: dict[str, dict[str, Any]] = {}
    for a in actions:
        if a["at"] <= cutoff:
            first.setdefault(a["action_id"], a["at"])
            latest[a["action_id"]] = a
    return [
        Decision(
            a["customer_id"],
            a["policy"],
            a["action"],
            a["channel"],
            a["status"],
            (a["status"] == "deferred" and a["release_at"]) or a["at"],
            first[aid],
        )
        for aid, a in latest.items()
    ]


def pair(
    live: list[Decision], alternative: list[Decision]
) -> tuple[list[tuple[Decision, Decision]], list[tuple[Decision, Decision]], list[Decision], list[Decision]]:
    """(same, changed, removed, added), matched in three rounds, each on what the earlier left:
    1. same: equal in all the customer would experience (customer, policy, action, channel,
       status, time), whatever their trigger and action ids;
    2. changed: a live and an alternative decision of one customer and policy taken at the same
       moment (their triggers fired together), then the rest of that customer and policy in time
       order (a decision the alternative takes earlier or later);
    3. removed and added: what is left, so that for every customer and policy, added - removed
       is the alternative's number of decisions minus the live one.
    Ties pair in order of time and content, so the answer does not depend on the feeds' order."""
    order = lambda d: (d.decided_at, d)  # noqa: E731
    same, live_left, alt_left = _match(sorted(live, key=order), sorted(alternative, key=order), lambda d: d.experience)
    together, live_left, alt_left = _match(live_left, alt_left, lambda d: (d.customer_id, d.policy, d.decided_at))
    moved, removed, added = _match(live_left, alt_left, lambda d: (d.customer_id, d.policy))
    return same, sorted(together + moved, key=lambda p: order(p[0])), removed, added


def _match(
    left: list[Decision], right: list[Decision], key: Callable[[Decision], Any]
) -> tuple[list[tuple[Decision, Decision]], list[Decision], list[Decision]]:
    """Pairs of equal keys, in the given order, and what is left on either side."""
    waiting: dict[Any, list[Decision]] = defaultdict(list)
    for d in right:
        waiting[key(d)].append(d)
    pairs, rest = [], []
    for d in left:
        queue = waiting.get(key(d))
        if queue:
            pairs.append((d, queue.pop(0)))
        else:
            rest.append(d)
    paired = {id(b) for _, b in pairs}
    return pairs, rest, [d for d in right if id(d) not in paired]


def compare(live: list[Decision], alternative: list[Decision], policies: Iterable[str] = ()) -> dict[str, Any]:
    """Per policy: decisions by status, live and under the alternative, and how many are the
    same, changed, removed and added, with examples of each."""
    same, changed, removed, added = pair(live, alternative)
    rows = {p: _row() for p in sorted({*policies, *(d.policy for d in live), *(d.policy for d in alternative)})}
    for side, ds in (("live", live), ("alternative", alternative)):
        for d in ds:
            counts = rows[d.policy][side]
            counts[d.status] = counts.get(d.status, 0) + 1
    for a, _ in same:
        rows[a.policy]["same"] += 1
    for a, b in changed:
        _note(
            rows[a.policy],
            "changed",
            {
                "customer_id": a.customer_id,
                "live": _seen(a),
                "alternative": _seen(b),
                "differs": [f for f in ("status", "action", "channel", "at") if getattr(a, f) != getattr(b, f)],
            },
        )
    for d in removed:
        _note(rows[d.policy], "removed", {"customer_id": d.customer_id, "live": _seen(d)})
    for d in added:
        _note(rows[d.policy], "added", {"customer_id": d.customer_id, "alternative": _seen(d)})
    for row in rows.values():
        row["differ"] = row["added"] + row["removed"] + row["changed"]
    return rows


def _row() -> dict[str, Any]:
    return {
        "live": dict.fromkeys(STATUSES, 0),
        "alternative": dict.fromkeys(STATUSES, 0),
        "same": 0,
        "added": 0,
        "removed": 0,
        "changed": 0,
        "differ": 0,
        "examples": {"added": [], "removed": [], "changed": []},
    }


def _note(row: dict[str, Any], kind: str, example: dict[str, Any]) -> None:
    row[kind] += 1
    if len(row["examples"][kind]) < EXAMPLES:
        row["examples"][kind].append(example)


def _seen(d: Decision) -> dict[str, str]:
    return {"status": d.status, "action": d.action, "channel": d.channel, "at": d.at, "decided_at": d.decided_at}
