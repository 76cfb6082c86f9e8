"""THE LADDER ORACLE: a ladder's conditions evaluated the plain way, from the list of touchpoints,
one full evaluation per instant (O(n) or worse each), written from docs/ladders.md and not from
engine.projections.ladder. Tests compare the engine's incremental walk with it."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from typing import Any

from engine.ladders.model import Absent, All, AnyOf, Count, Counted, LadderDef, Latest, Sum

TICK = timedelta(microseconds=1)
Tp = tuple[str, str, datetime, dict[str, Any]]  # (event id, kind, at, properties)


def counted(d: LadderDef, spec: Counted, tps: list[Tp], T: datetime) -> list[tuple[datetime, str, dict[str, Any]]]:
    """The touchpoints `spec` counts at T, oldest first: (at, event id, properties)."""
    firsts: dict[Any, Tp] = {}
    for tp in sorted(tps, key=lambda tp: (tp[2], tp[0])):
        eid, kind, at, props = tp
        if kind not in spec.kinds or at > T:
            continue
        key = eid if spec.once_per is None or props.get(spec.once_per) is None else ("k", props[spec.once_per])
        firsts.setdefault(key, tp)
    out = []
    for key, (eid, _, at, props) in firsts.items():
        if spec.where is not None and not spec.where.test(props.get(spec.where.property)):
            continue
        voided = False
        if isinstance(key, tuple):
            same = sorted(
                (tp for tp in tps if tp[2] <= T and tp[3].get(spec.once_per) == key[1]), key=lambda tp: (tp[2], tp[0])
            )
            if any(tp[1] in spec.voided_by for tp in same):
                voided = True
            amount = props.get("amount")
            if amount is not None:  # negative reductions reduce nothing
                reducing = [tp[3].get("amount") or 0.0 for tp in same if tp[1] in spec.reduced_by]
                if any(a >= 0 for a in reducing) and sum(a for a in reducing if a >= 0) >= amount:
                    voided = True
        if not voided:
            out.append((at, eid, props))
    return sorted(out, key=lambda x: (x[0], x[1]))


def holds(d: LadderDef, c: Any, tps: list[Tp], first_seen: datetime, T: datetime) -> bool:
    if isinstance(c, All):
        return all(holds(d, p, tps, first_seen, T) for p in c.all)
    if isinstance(c, AnyOf):
        return any(holds(d, p, tps, first_seen, T) for p in c.any)
    if isinstance(c, Count):
        items = counted(d, d.counted(c.count), tps, T)
        if c.within_days:
            items = [i for i in items if i[0] > T - timedelta(days=c.within_days)]
        return len(items) >= c.at_least
    if isinstance(c, Sum):
        spec = d.counted(c.of)
        items = counted(d, spec, tps, T)
        if c.within_days:
            items = [i for i in items if i[0] > T - timedelta(days=c.within_days)]
        total = 0.0
        for _, _, props in items:
            v = props.get(c.sum)
            if isinstance(v, int | float) and not isinstance(v, bool):
                if c.sum == "amount" and spec.reduced_by:
                    key = props.get(spec.once_per)
                    v -= sum(
                        tp[3].get("amount") or 0.0
                        for tp in tps
                        if tp[1] in spec.reduced_by and tp[2] <= T and tp[3].get(spec.once_per) == key
                    )
                total += v
        return total >= c.at_least
    if isinstance(c, Latest):
        items = [
            (at, eid, props)
            for eid, kind, at, props in tps
            if kind in c.of
            and at <= T
            and (not c.within_days or at > T - timedelta(days=c.within_days))
            and isinstance(props.get(c.latest), int | float)
        ]
        if not items:
            return False
        v = max(items, key=lambda i: (i[0], i[1]))[2][c.latest]
        return (c.at_least is None or v >= c.at_least) and (c.at_most is None or v <= c.at_most)
    if isinstance(c, Absent):
        items = counted(d, d.counted(c.absent), tps, T)
        if items:
            since = items[-1][0]
        elif c.since_first and first_seen <= T:
            since = first_seen
        else:
            return False
        return (T - since).total_seconds() / 86400 > limit(c, items)
    raise TypeError(c)


def limit(c: Absent, items: list) -> float:
    out = float(c.more_than_days)
    if c.gap_factor is not None and len(items) >= 2:
        gaps = [(b[0] - a[0]).total_seconds() / 86400 for a, b in zip(items, items[1:])]
        out = max(out, c.gap_factor * statistics.median(gaps))
    return out


def status(d: LadderDef, tps: list[Tp], T: datetime) -> tuple[str | None, str | None]:
    if not tps or min(tp[2] for tp in tps) > T:
        return None, None
    first_seen = min(tp[2] for tp in tps)
    stage = d.stages[0].name
    for s in d.stages[1:]:
        if holds(d, s.when, tps, first_seen, T):
            stage = s.name
    health = None
    for h in d.health:
        if holds(d, h.when, tps, first_seen, T):
            health = h.name
    return stage, health


def _conditions(c: Any):
    yield c
    for p in getattr(c, "all", None) or getattr(c, "any", None) or ():
        yield from _conditions(p)


def instants(d: LadderDef, tps: list[Tp], end: datetime) -> list[datetime]:
    """Every instant at which the status could change: a touchpoint; a touchpoint leaving any
    window; an absence passing its threshold, computed from what counts after each touchpoint
    (what counts changes only at touchpoints)."""
    times = {tp[2] for tp in tps}
    conds = [c for s in d.stages[1:] for c in _conditions(s.when)] + [c for h in d.health for c in _conditions(h.when)]
    windows = {c.within_days for c in conds if getattr(c, "within_days", None)}
    out = set(times)
    for t in times:
        for w in windows:
            out.add(t + timedelta(days=w))
    first_seen = min(times)
    for t in times:
        for c in conds:
            if isinstance(c, Absent):
                items = counted(d, d.counted(c.absent), tps, t)
                since = items[-1][0] if items else first_seen if c.since_first else None
                if since is not None:
                    try:
                        out.add(since + timedelta(days=limit(c, items)) + TICK)
                    except OverflowError:
                        pass
    return sorted(x for x in out if x <= end)


def timeline(d: LadderDef, tps: list[Tp], end: datetime) -> list[tuple[str, str | None, str | None, datetime]]:
    """(dimension, from, to, effective at) of every change up to `end`, by trying every instant."""
    out = []
    was: tuple[str | None, str | None] = (None, None)
    for t in instants(d, tps, end):
        now = status(d, tps, t)
        for i, dim in enumerate(("stage", "health")):
            if now[i] != was[i]:
                out.append((dim, was[i], now[i], t))
        was = now
    return out
