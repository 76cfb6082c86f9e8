"""What-if: the full history under other lifecycle rules and policies, with no side effects.

Stages as of T are re-evaluated from the facts under both rule sets; decisions are re-made
by replaying the live history's writes into a throwaway store under the other config. The
live store, its feeds and the read models are only read.
"""
from __future__ import annotations

import tempfile
from collections import Counter
from datetime import datetime
from typing import Any, Callable

from engine.clock import FixedClock, iso
from engine.config import Config
from engine.projections.lifecycle import evaluate
from engine.service import Engine

from .history import History, load
from .rebuild import rebuild

SAMPLE = 20


def whatif(live: Engine, alternative: Config, as_of: datetime, history: History | None = None,
           on_step: Callable[[Any], None] | None = None) -> dict[str, Any]:
    h = history or load(live)
    moves: Counter = Counter()
    sample = []
    customers = 0
    for cid, facts in sorted(h.customers()):
        a = evaluate(facts, as_of, live.rules)
        b = evaluate(facts, as_of, alternative.lifecycle)
        if a.stage is None:
            continue
        customers += 1
        if (a.stage, a.health) != (b.stage, b.health):
            moves[(a.stage, b.stage, a.health, b.health)] += 1
            if len(sample) < SAMPLE:
                sample.append({"customer_id": cid, "stage": [a.stage, b.stage], "health": [a.health, b.health],
                               "reason": b.stage_reason})
    stage_moves = Counter()
    for (s0, s1, _, _), n in moves.items():
        if s0 != s1:
            stage_moves[f"{s0}->{s1}"] += n
    return {"as_of": iso(as_of), "customers": customers,
            "changed": sum(n for (s0, s1, _, _), n in moves.items() if s0 != s1),
            "health_changed": sum(n for (_, _, h0, h1), n in moves.items() if h0 != h1),
            "by_transition": dict(stage_moves.most_common()), "sample": sample,
            "actions": _actions(live, alternative, as_of, h, on_step),
            "rules": {"live": live.rules.rules_version, "alternative": alternative.lifecycle.rules_version}}


def _actions(live: Engine, alternative: Config, as_of: datetime, h: History,
             on_step: Callable[[Any], None] | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="journey-whatif-") as tmp:
        config = alternative.model_copy(update={"data_dir": tmp, "store": alternative.store.model_copy(
            update={"backend": "sqlite"})})
        with Engine(config, FixedClock(as_of)) as sandbox:
            rebuild(live, sandbox, on_step=on_step)
            alt = [a for a in sandbox.actions(limit=10**9)]
    cutoff = iso(as_of)
    outcome = lambda actions: {(a["policy"], a["customer_id"], a["trigger"]["id"]): a["status"]  # noqa: E731
                               for a in actions if a["at"] <= cutoff}
    before, after = outcome(h.actions), outcome(alt)
    per_policy: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        policy = key[0]
        row = per_policy.setdefault(policy, {"live": Counter(), "alternative": Counter(), "differ": 0, "sample": []})
        if key in before:
            row["live"][before[key]] += 1
        if key in after:
            row["alternative"][after[key]] += 1
        if before.get(key) != after.get(key):
            row["differ"] += 1
            if len(row["sample"]) < 5:
                row["sample"].append({"customer_id": key[1], "trigger": key[2],
                                      "live": before.get(key), "alternative": after.get(key)})
    for row in per_policy.values():
        row["live"], row["alternative"] = dict(row["live"]), dict(row["alternative"])
    return per_policy
