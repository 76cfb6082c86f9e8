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
from datetime import datetime, timedelta
from typing import Any

from engine.clock import iso
from engine.projections.facts import Facts
from engine.projections.lifecycle import purchases
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


def verdict(c: dict[str, Any], n1: int, n0: int) -> str:
    """The conversion result in plain words."""
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


def uplift(
    actions: Iterable[dict[str, Any]],
    facts_of: dict[str, Facts],
    rules: ValueRules,
    days: int = 30,
    start: datetime | None = None,
    end: datetime | None = None,
    policy: str | None = None,
) -> dict[str, Any]:
    """Per promotional policy, for the decisions of [start, end] that would have been sent
    (issued or held out, by their latest record): conversion (a purchase within `days`) and net
    revenue per person in those days, treated against held out."""
    latest: dict[str, dict[str, Any]] = {}
    for a in actions:
        latest[a["action_id"]] = a
    groups: dict[str, dict[str, list[tuple[bool, float]]]] = {}
    for a in latest.values():
        if a["status"] not in ("issued", "held_out") or (policy and a["policy"] != policy):
            continue
        if a["purpose"] != "promotional":
            continue  # service actions are sent to everyone: no control group by design
        at = datetime.fromisoformat(a["at"])
        if (start and at < start) or (end and at > end):
            continue
        facts = facts_of.get(a["customer_id"])
        if facts is None:
            continue
        until = at + timedelta(days=days)
        bought = any(at < o.at <= until for o in purchases(facts, until))
        revenue = historical(facts, until, rules).net_revenue - historical(facts, at, rules).net_revenue
        side = "treated" if a["status"] == "issued" else "held_out"
        groups.setdefault(a["policy"], {"treated": [], "held_out": []})[side].append((bought, revenue))
    out = {}
    for name, g in sorted(groups.items()):
        t, h = g["treated"], g["held_out"]
        n1, n0 = len(t), len(h)
        conversion = share_difference(sum(b for b, _ in t), n1, sum(b for b, _ in h), n0) if n1 and n0 else None
        out[name] = {
            "treated": n1,
            "held_out": n0,
            "conversion": conversion,
            "revenue_per_person": mean_difference([r for _, r in t], [r for _, r in h]),
            "verdict": verdict(conversion or {}, n1, n0),
        }
    return {
        "days": days,
        "from": iso(start) if start else None,
        "to": iso(end) if end else None,
        "base_currency": rules.base_currency,
        "policies": out,
    }
