"""The lifecycle walk alone, as ingest drives it: a simulated history's touchpoints in time order,
each folded into its person's facts and followed by `advance` (a memo and a walk kept per person).

    .venv/bin/python bench/ladder.py --history FILE           # this code
    PYTHONPATH=OTHER_CHECKOUT .venv/bin/python bench/ladder.py --history FILE   # another commit

(`journey simulate --customers 3000 --seed 3 --out FILE` makes the history of docs/benchmarks.md.)
Commits before the ladder language took the [lifecycle] rules where a ladder is taken now; both
are handled, so the figure of the rules as code and of the ladder as data come from one script.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any

import orjson

from engine.projections import lifecycle
from engine.projections.facts import Facts
from engine.rules import LifecycleRules


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--history", required=True, help="JSON lines of touchpoints (journey simulate)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    rules: Any = LifecycleRules()
    ladder = lifecycle.customer_ladder(rules) if hasattr(lifecycle, "customer_ladder") else rules
    with open(args.history, "rb") as lines:
        tps = sorted((orjson.loads(line) for line in lines if line.strip()), key=lambda t: t["occurred_at"])
    for _ in range(args.rounds):
        facts: dict[str, Facts] = {}
        memo: dict[str, Any] = {}
        recorded: dict[str, tuple[str | None, str | None]] = {}
        until: dict[str, datetime] = {}
        changes = 0
        started = time.perf_counter()
        for tp in tps:
            c = tp["customer_id"]
            f = facts.setdefault(c, Facts())
            at = datetime.fromisoformat(tp["occurred_at"])
            f.add(tp["event_id"], tp["kind"], at, tp.get("properties") or {})
            was = recorded.get(c, (None, None))
            trs, _, memo[c] = lifecycle.advance(f, was, until.get(c), at, ladder, memo.get(c))
            for tr in trs:
                was = (tr.to_value, was[1]) if tr.dimension == "stage" else (was[0], tr.to_value)
            changes += len(trs)
            recorded[c], until[c] = was, at
        print(f"{len(tps):,} touchpoints, {changes:,} changes: {time.perf_counter() - started:.3f} s")


if __name__ == "__main__":
    main()
