"""Uplift: does a retention action work? Treated against held-out persons of each policy
(docs/policies.md, "Control groups"), among decisions that would have been sent.

For each policy and period: the share who purchased within N days of the decision, treated and
held out, their difference with a 95% interval (Newcombe's hybrid score interval, from Wilson
intervals of each share: sound where the plain Wald interval is not, at small counts or shares
near 0 or 1), and net revenue per person in those days (base currency) with a Welch interval.
Only a control group makes this causal: suppressed persons differ from the others (no consent,
complaints, overdue invoices), so they are no control.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.clock import iso
from engine.projections.facts import Facts
from engine.projections.ladder import Ladder
from engine.projections.lifecycle import evaluate, purchases
from engine.rules import ValueRules
from engine.value.history import historical

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a share x/n."""
    if n == 0:
        return 0.0, 1.0
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def share_difference(x1: int, n1: int, x0: int, n0: int) -> dict[str, Any]:
    """The difference of two shares (treated x1/n1 minus held out x0/n0) with Newcombe's 95%
    interval (his method 10: the Wilson intervals of each, combined)."""
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson(x1, n1)
    l0, u0 = wilson(x0, n0)
    d = p1 - p0
    return {
        "treated": round(p1, 6),
        "held_out": round(p0, 6),
        "difference": round(d, 6),
        "low": round(d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), 6),
        "high": round(d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2), 6),
    }


def mean_difference(treated: list[float], held: list[float]) -> dict[str, Any] | None:
    """The difference of two means with Welch's 95% interval (None with fewer than 2 of either)."""
    n1, n0 = len(treated), len(held)
    if n1 < 2 or n0 < 2:
        return None
    from scipy.stats import t  # scipy is a dependency (the value model): loaded when asked for

    m1, m0 = sum(treated) / n1, sum(held) / n0
    v1 = sum((x - m1) ** 2 for x in treated) / (n1 - 1)
    v0 = sum((x - m0) ** 2 for x in held) / (n0 - 1)
    se2 = v1 / n1 + v0 / n0
    d = m1 - m0
    if se2 == 0:
        return {"treated": m1, "held_out": m0, "difference": d, "low": d, "high": d}
    df = se2**2 / ((v1 / n1) ** 2 / (n1 - 1) + (v0 / n0) ** 2 / (n0 - 1))
    half = float(t.ppf(0.975, df)) * math.sqrt(se2)
    return {
        "treated": round(m1, 4),
        "held_out": round(m0, 4),
        "difference": round(d, 4),
        "low": round(d - half, 4),
        "high": round(d + half, 4),
    }


def verdict(c: dict[str, Any], n1: int, n0: int, still_open: int = 0) -> str:
    """The conversion result in plain words."""
    if n1 == n0 == 0:
        which = (
            "the outcome window of 1 decision is"
            if still_open == 1
            else f"the outcome windows of {still_open:,} decisions are"
        )
        return f"nothing to measure yet: {which} still open"
    if n0 == 0:
        return f"no control group: {n1:,} treated, none held out (set holdout on the policy)"
    if n1 == 0:
        return f"nobody treated: {n0:,} held out"
    span = f"95% CI {100 * c['low']:+.1f} to {100 * c['high']:+.1f} points, {n1:,} vs {n0:,} persons"
    if c["low"] > 0:
        return f"it works: {100 * c['difference']:+.1f} points ({span})"
    if c["high"] < 0:
        return f"it backfires: {100 * c['difference']:+.1f} points ({span})"
    return f"no measurable effect yet: {span}"


@dataclass
class Population:
    """Whom an uplift measures: per promotional policy, each person's first decision of the
    period that would have been sent (issued: treated; held_out: the control group), and how
    many later decisions were left out because their window had not closed."""

    first: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # policy -> person -> action
    still_open: dict[str, int] = field(default_factory=dict)


def population(
    actions: Iterable[dict[str, Any]],
    now: datetime,
    days: int = 30,
    start: datetime | None = None,
    end: datetime | None = None,
    policy: str | None = None,
) -> Population:
    """The persons measured (see uplift): decisions of [start, end] whose latest record says issued
    or held out, of promotional policies (service actions go to everyone: no control group by
    design), whose `days` have passed by `now`; each person once per policy, at their first."""
    latest: dict[str, dict[str, Any]] = {}
    for a in actions:
        latest[a["action_id"]] = a
    pop = Population()
    for a in latest.values():
        if a["status"] not in ("issued", "held_out") or a["purpose"] != "promotional":
            continue
        if policy and a["policy"] != policy:
            continue
        at = datetime.fromisoformat(a["at"])
        if (start and at < start) or (end and at > end):
            continue
        if at + timedelta(days=days) > now:
            pop.still_open[a["policy"]] = pop.still_open.get(a["policy"], 0) + 1
            continue
        persons = pop.first.setdefault(a["policy"], {})
        held = persons.get(a["customer_id"])
        if held is None or (a["at"], a["action_id"]) < (held["at"], held["action_id"]):
            persons[a["customer_id"]] = a
    return pop


def uplift(
    actions: Iterable[dict[str, Any]],
    facts_of: dict[str, Facts],
    rules: ValueRules,
    ladder: Ladder,
    now: datetime,
    days: int = 30,
    start: datetime | None = None,
    end: datetime | None = None,
    policy: str | None = None,
) -> dict[str, Any]:
    """Per promotional policy, the persons whose decision of [start, end] would have been sent,
    each once (population), treated against held out (measure). Outcomes are known up to `now`
    or the data's end, whichever is earlier (known_until)."""
    now = known_until(facts_of, now)
    return measure(population(actions, now, days, start, end, policy), facts_of, rules, ladder, now, days, start, end)


def known_until(facts_of: dict[str, Facts], now: datetime) -> datetime:
    """`now`, or the time of the latest lifecycle touchpoint if earlier: a store whose data stops
    (a demo, a backfill, a stalled feed) does not know what happened after, and a window that
    ends there would look closed with its end missing."""
    last = max((f.moments[-1][0] for f in facts_of.values() if f.moments), default=None)
    return min(now, last) if last is not None else now


MIN_WITH_REVENUE = 5  # persons with revenue on each side, for a revenue interval


def measure(
    pop: Population,
    facts_of: dict[str, Facts],
    rules: ValueRules,
    ladder: Ladder,
    now: datetime,
    days: int = 30,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Outcomes in the `days` after each measured person's decision: a purchase (the conversion of
    the verdict), a move up `ladder`, not lapsed at the end, net revenue per person; the
    decisions whose window has not closed by `now` are counted as `open`."""
    still_open = pop.still_open
    groups: dict[str, dict[str, list[Outcome]]] = {}
    for name, persons in pop.first.items():
        for customer, a in sorted(persons.items()):
            facts = facts_of.get(customer)
            if facts is None:
                continue
            at = datetime.fromisoformat(a["at"])
            side = "treated" if a["status"] == "issued" else "held_out"
            groups.setdefault(name, {"treated": [], "held_out": []})[side].append(
                outcome(facts, at, at + timedelta(days=days), rules, ladder)
            )
    out = {}
    for name in sorted(set(groups) | set(still_open)):
        t, h = groups.get(name, {}).get("treated", []), groups.get(name, {}).get("held_out", [])
        n1, n0 = len(t), len(h)
        conversion = _shares(t, h, 0)
        revenue = mean_difference([o[3] for o in t], [o[3] for o in h])
        if revenue and min(sum(o[3] != 0 for o in t), sum(o[3] != 0 for o in h)) < MIN_WITH_REVENUE:
            # Welch's interval reads the spread of each side: with (almost) nobody spending on a
            # side, that side looks certain, and the interval far too narrow.
            revenue |= {"low": None, "high": None}
        out[name] = {
            "treated": n1,
            "held_out": n0,
            "open": still_open.get(name, 0),
            "conversion": conversion,
            "moved_up": _shares(t, h, 1),
            "not_lapsed": _shares(t, h, 2),
            "revenue_per_person": revenue,
            "verdict": verdict(conversion or {}, n1, n0, still_open.get(name, 0)),
        }
    return {
        "days": days,
        "from": iso(start) if start else None,
        "to": iso(end) if end else None,
        "as_of": iso(now),
        "base_currency": rules.base_currency,
        "policies": out,
    }


Outcome = tuple[bool, bool, bool, float]  # purchased, moved up, not lapsed, net revenue


def _shares(treated: list[Outcome], held: list[Outcome], i: int) -> dict[str, Any] | None:
    """The difference in the share of persons with the i-th outcome (None without both sides)."""
    if not treated or not held:
        return None
    return share_difference(sum(bool(o[i]) for o in treated), len(treated), sum(bool(o[i]) for o in held), len(held))


def outcome(facts: Facts, at: datetime, until: datetime, rules: ValueRules, ladder: Ladder) -> Outcome:
    """What a person did in (at, until]: a purchase, a move up the ladder (a later stage at the end
    than at the decision), not lapsed at the end, and net revenue (base currency)."""
    bought = any(at < o.at <= until for o in purchases(facts, until))
    before, after = evaluate(facts, at, ladder), evaluate(facts, until, ladder)
    rank = ladder.stage_index
    up = after.stage is not None and (before.stage is None or rank[after.stage] > rank[before.stage])
    revenue = historical(facts, until, rules).net_revenue - historical(facts, at, rules).net_revenue
    return bought, up, after.health != "lapsed", revenue
