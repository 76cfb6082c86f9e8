"""Journeys over time, from the corrected history (every transition at its effective time):
stage and health per period, transitions between two dates, time to a stage, retention by
acquisition cohort, and what followed each policy's actions."""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from statistics import median, quantiles
from typing import Any, TypeVar

from engine.config import LifecycleRules
from engine.projections.facts import Facts
from engine.projections.lifecycle import HEALTHS, STAGES, Transition, customer_ladder, purchases, timeline

from .history import History

RANK = {s: i for i, s in enumerate(STAGES)}
Item = TypeVar("Item")


def counted(items: Iterable[Item], progress: Callable[[int], None] | None, every: int = 1000) -> Iterator[Item]:
    """The items, telling `progress` how many went by: in steps of `every` (a call per item would
    cost more than the work on it), then the rest."""
    if progress is None:
        yield from items
        return
    n = 0
    for n, item in enumerate(items, 1):
        yield item
        if n % every == 0:
            progress(every)
    if n % every:
        progress(n % every)


class Journeys:
    """`progress` hears how many customers' timelines were worked out (the costly part)."""

    def __init__(
        self, history: History, rules: LifecycleRules, until: datetime, progress: Callable[[int], None] | None = None
    ):
        self.h, self.rules, self.until, self.progress = history, rules, until, progress
        self._timelines: dict[str, list[Transition]] | None = None

    def timelines(self) -> dict[str, list[Transition]]:
        if self._timelines is None:
            self._timelines = {
                cid: timeline(f, customer_ladder(self.rules), None, self.until)[0]
                for cid, f in counted(self.h.customers(), self.progress)
            }
        return self._timelines

    def state_at(self, transitions: list[Transition], T: datetime) -> tuple[str | None, str | None]:
        stage = health = None
        for tr in transitions:
            if tr.effective_at > T:
                break
            if tr.dimension == "stage":
                stage = tr.to_value
            else:
                health = tr.to_value
        return stage, health

    def distribution(self, ends: list[datetime]) -> list[dict[str, Any]]:
        stages: list[Counter[str]] = [Counter() for _ in ends]
        healths: list[Counter[str]] = [Counter() for _ in ends]
        for transitions in self.timelines().values():
            times = [tr.effective_at for tr in transitions]
            for end, at_stage, at_health in zip(ends, stages, healths):
                stage, health = self.state_at(transitions[: bisect_right(times, end)], end)
                if stage:
                    at_stage[stage] += 1
                if health:
                    at_health[health] += 1
        return [
            {
                "period_end": end.isoformat(),
                "customers": sum(s.values()),
                "stages": {x: s[x] for x in STAGES},
                "health": {h: hs[h] for h in HEALTHS},
            }
            for end, s, hs in zip(ends, stages, healths)
        ]

    def transitions(self, start: datetime, end: datetime) -> dict[str, Any]:
        matrix: dict[str, Counter] = defaultdict(Counter)
        for transitions in self.timelines().values():
            a, _ = self.state_at(transitions, start)
            b, _ = self.state_at(transitions, end)
            if b is not None:
                matrix[a or "new"][b] += 1
        order = ["new", *STAGES]
        return {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "matrix": {a: {b: matrix[a][b] for b in STAGES} for a in order if a in matrix},
        }

    def time_to_stage(self, target: str = "loyal", origin: str = "first_buyer") -> dict[str, Any]:
        days = []
        for transitions in self.timelines().values():
            entered = {}
            for tr in transitions:
                if tr.dimension == "stage" and tr.to_value not in entered:
                    entered[tr.to_value] = tr.effective_at
            if origin in entered and target in entered and entered[target] >= entered[origin]:
                days.append((entered[target] - entered[origin]).total_seconds() / 86400)
        out: dict[str, Any] = {"origin": origin, "target": target, "count": len(days), "days": sorted(days)}
        if len(days) >= 2:
            q = quantiles(days, n=4)
            out.update(median_days=median(days), p25_days=q[0], p75_days=q[2])
        return out

    def cohorts(self, months: int = 12) -> list[dict[str, Any]]:
        """Acquisition cohorts by month of first purchase; retention[k] is the share of the cohort
        that purchased in the k-th month after (k = 0 is the acquisition month, always 1.0)."""
        groups: dict[str, list[set[int]]] = defaultdict(list)
        for _, facts in self.h.customers():
            bought = purchases(facts, self.until)
            if not bought:
                continue
            first = bought[0].at
            groups[first.strftime("%Y-%m")].append({_month_index(o.at) - _month_index(first) for o in bought})
        out = []
        for cohort in sorted(groups):
            members = groups[cohort]
            horizon = min(months, _month_index(self.until) - _month_index(datetime.strptime(cohort, "%Y-%m")) + 1)
            out.append(
                {
                    "cohort": cohort,
                    "customers": len(members),
                    "retention": [
                        round(sum(1 for m in members if k in m) / len(members), 4) for k in range(max(horizon, 1))
                    ],
                }
            )
        return out

    def policy_outcomes(self, days: int = 30) -> dict[str, Any]:
        """Per policy: decisions by latest status, and for issued, suppressed and held-out ones
        (its control group: docs/policies.md) the share of customers who purchased, or moved up a
        stage, within `days` after the decision."""
        latest = {a["action_id"]: a for a in self.h.actions}
        facts_of = {cid: f for cid, f in self.h.customers()}
        out: dict[str, Any] = {}
        for a in latest.values():
            row = out.setdefault(
                a["policy"],
                {
                    "issued": 0,
                    "suppressed": 0,
                    "deferred": 0,
                    "held_out": 0,
                    "followed": {"issued": [0, 0, 0], "suppressed": [0, 0, 0], "held_out": [0, 0, 0]},
                },
            )
            row[a["status"]] += 1
            if a["status"] in ("issued", "suppressed", "held_out") and a["customer_id"] in facts_of:
                at = datetime.fromisoformat(a["at"])
                bought, moved = self._followed(
                    a["customer_id"], facts_of[a["customer_id"]], at, at + timedelta(days=days)
                )
                counts = row["followed"][a["status"]]
                counts[0] += 1
                counts[1] += bought
                counts[2] += moved
        for row in out.values():
            for status, (n, bought, moved) in list(row["followed"].items()):
                row["followed"][status] = {
                    "decisions": n,
                    "purchased": round(bought / n, 4) if n else None,
                    "moved_up": round(moved / n, 4) if n else None,
                }
        return {"days": days, "policies": dict(sorted(out.items()))}

    def _followed(self, cid: str, facts: Facts, start: datetime, end: datetime) -> tuple[bool, bool]:
        bought = any(start < o.at <= end for o in purchases(facts, end))
        transitions = self.timelines().get(cid, [])
        before, _ = self.state_at(transitions, start)
        moved = any(
            tr.dimension == "stage"
            and start < tr.effective_at <= end
            and RANK.get(tr.to_value or "", -1) > RANK.get(before or "", -1)
            for tr in transitions
        )
        return bought, moved


def _month_index(t: datetime) -> int:
    return t.year * 12 + t.month - 1


def period_ends(start: datetime, end: datetime, unit: str = "month") -> list[datetime]:
    """The last instant of every month (or ISO week) from start's to end's."""
    out = []
    if unit == "week":
        t = (start - timedelta(days=start.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        while t <= end:
            t += timedelta(days=7)
            out.append(t - timedelta(microseconds=1))
        return out
    y, m = start.year, start.month
    while True:
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        last = datetime(ny, nm, 1, tzinfo=UTC) - timedelta(microseconds=1)
        out.append(last)
        if last >= end:
            return out
        y, m = ny, nm
