"""A ladder (engine.ladders.model) compiled into a walk over one person's facts.

`Walk.to(T).status(T)` gives the stage and health as of T from touchpoints with occurred_at <= T;
`next_moment(t, status)` is the first time after t at which they could change: the next relevant
touchpoint, or a time each condition names (a counted touchpoint leaving a window, an absence
passing its threshold). engine.projections.lifecycle walks from moment to moment.

What each condition counts is a `Tally`: the touchpoints that count at a time `t` that moves, and
(when an absence needs their median gap) the sorted gaps between them. Moving costs O(log n) per
touchpoint or void passed, and so does a change to a counted touchpoint (a late one, a void), so a
touchpoint's cost does not grow with its person's history. Tallies move only when a condition
reads them.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..ladders.model import (
    PURCHASES,
    Absent,
    All,
    AnyOf,
    Condition,
    Count,
    Counted,
    LadderDef,
    Latest,
    Sum,
)
from .facts import ORDER_KINDS, Facts, Order

TICK = timedelta(microseconds=1)  # "more than N days": the threshold passes just after N days
LAST = "\U0010ffff"  # sorts after every event id: (t, LAST) is "the end of instant t"
DAY = 86400

Item = tuple[datetime, str, Any]  # (at, event id, key) of a counted touchpoint
Placed = tuple[datetime, str, datetime | None]  # (at, event id, when voided or None)


def _gap(a: Item, b: Item) -> float:
    # In days, as statistics.median would be given them: the same floats, the same due times.
    return (b[0] - a[0]).total_seconds() / DAY


def _counts(placed: Placed, T: datetime) -> bool:
    """Whether a touchpoint (placed at, event id, void) counts at T (one voided at or before its
    placement never does)."""
    return placed[0] <= T and (placed[2] is None or placed[2] > T)


def void_time(
    amount: float | None, voids: list[tuple[datetime, str]], reductions: list[tuple[datetime, str, float]]
) -> datetime | None:
    """When a counted touchpoint stops counting: its earliest void, or the reduction that brings the
    reductions (in time order) to its amount; None while it counts. The one definition of a voided
    order (a cancellation; refunds adding up to its amount). A negative reduction reduces nothing
    (a void is for good: nothing brings a voided touchpoint back)."""
    void = voids[0][0] if voids else None
    if reductions and amount is not None:
        total = 0.0
        for at, _, value in reductions:
            if value < 0:
                continue
            total += value
            if total >= amount:
                if void is None or at < void:
                    void = at
                break
    return void


class Tally:
    """The touchpoints one `Counted` counts at a time `t` that moves (`to`), oldest first."""

    __slots__ = (
        "spec",
        "facts",
        "orders",
        "gaps_wanted",
        "t",
        "bought",
        "gaps",
        "starts",
        "ends",
        "placed",
        "si",
        "ei",
        "indexed",
        "firsts",
        "voids",
        "props",
    )

    def __init__(self, spec: Counted, facts: Facts, gaps_wanted: bool):
        self.spec, self.facts, self.gaps_wanted = spec, facts, gaps_wanted
        self.orders = spec.kinds == ("order.placed",)  # read from the facts' orders (engine.money)
        self.indexed = False
        self.t: datetime | None = None
        self.gaps: list[float] = []

    # -- what counts, and when it stops ----------------------------------------------------

    def _key(self, kind: str, eid: str, props: Mapping[str, Any]) -> Any:
        once = self.spec.once_per
        if once is None:
            return eid
        key = props.get(once)
        return eid if key is None else ("k", key)

    def _placement(self, key: Any) -> Placed | None:
        spec, f = self.spec, self.facts
        if self.orders:
            o = f.orders.get(key)
            if o is None or (spec.where is not None and not spec.where.test(_order_prop(o, spec.where.property))):
                return None
            voids: list[tuple[datetime, str]] = []
            if "order.cancelled" in spec.voided_by:
                voids = f.cancels.get(key, [])
            reductions: list[tuple[datetime, str, float]] = []
            refunds = f.refunds.get(key)
            if refunds:
                if "order.refunded" in spec.reduced_by:
                    reductions = [(at, eid, amount) for at, eid, amount, _ in refunds]
                elif "order.refunded" in spec.voided_by:
                    voids = sorted([*voids, *((at, eid) for at, eid, _, _ in refunds)])
            return (o.at, o.event_id, void_time(o.amount, voids, reductions))
        first = self.firsts.get(key)
        if first is None:
            return None
        at, eid, props = first
        if spec.where is not None and not spec.where.test(props.get(spec.where.property)):
            return None
        void: datetime | None = None
        vs = self.voids.get(key)
        if vs:
            amount = props.get("amount")
            void = void_time(
                amount if isinstance(amount, int | float) else None,
                [(a, e) for a, e, v, reduces in vs if not reduces],
                [(a, e, v) for a, e, v, reduces in vs if reduces and v is not None],
            )
        return (at, eid, void)

    def _index(self) -> None:
        f, spec = self.facts, self.spec
        self.placed: dict[Any, Placed] = {}
        starts, ends = [], []
        if self.orders:
            keys: Any = f.orders.keys()
        else:
            self.firsts: dict[Any, tuple[datetime, str, Mapping[str, Any]]] = {}
            self.voids: dict[Any, list[tuple[datetime, str, float | None, bool]]] = {}
            for kind in spec.kinds + spec.voided_by + spec.reduced_by:
                for at, eid, props in f.kept.get(kind, ()):
                    self._note(kind, at, eid, props)
            keys = self.firsts.keys()
        for key in keys:
            p = self._placement(key)
            if p is None:
                continue
            self.placed[key] = p
            starts.append((p[0], p[1], key))
            if p[2] is not None and p[2] > p[0]:
                ends.append((p[2], p[1], key))
        starts.sort()
        ends.sort()
        self.starts, self.ends = starts, ends
        self.indexed = True

    def _note(self, kind: str, at: datetime, eid: str, props: Mapping[str, Any]) -> Any:
        """Fold one kept touchpoint into the placements and voids; returns its key, or None."""
        spec = self.spec
        key = self._key(kind, eid, props)
        if kind in spec.kinds:  # the earliest per key counts, if it passes `where`
            old = self.firsts.get(key)
            if old is None or (at, eid) < old[:2]:
                self.firsts[key] = (at, eid, props)
            return key
        if spec.once_per is None or props.get(spec.once_per) is None:
            return None
        reduces = kind in spec.reduced_by
        amount = props.get("amount") if reduces else None
        insort(
            self.voids.setdefault(key, []),
            (at, eid, float(amount) if isinstance(amount, int | float) else None, reduces),
        )
        return key

    def touched(self, kind: str, at: datetime, eid: str, props: Mapping[str, Any]) -> None:
        """A touchpoint of one of this tally's kinds was folded (at any time, late ones too)."""
        if not self.indexed:
            return
        if self.orders:
            key = props.get("order_id")
        else:
            key = self._note(kind, at, eid, props)
        if key is not None:
            self._refresh(key)

    def _refresh(self, key: Any) -> None:
        """Keep the index and, where the tally stands, what counts, after a change to `key`."""
        new = self._placement(key)
        old = self.placed.get(key)
        if new == old:
            return
        t = self.t
        if t is not None:
            was = old is not None and _counts(old, t)
            now = new is not None and _counts(new, t)
            moved = old is None or new is None or old[:2] != new[:2]
            if was and (moved or not now):
                assert old is not None  # it counted, so it was placed
                self._remove((old[0], old[1], key))
            if now and (moved or not was):
                assert new is not None
                self._add((new[0], new[1], key))
        if old is not None:
            self.starts.remove((old[0], old[1], key))
            if old[2] is not None and old[2] > old[0]:
                self.ends.remove((old[2], old[1], key))
        if new is None:
            self.placed.pop(key, None)
        else:
            insort(self.starts, (new[0], new[1], key))
            if new[2] is not None and new[2] > new[0]:
                insort(self.ends, (new[2], new[1], key))
            self.placed[key] = new
        if t is not None:  # the placements and voids at or before t are the ones applied
            self.si = bisect_right(self.starts, (t, LAST))
            self.ei = bisect_right(self.ends, (t, LAST))

    # -- moving ------------------------------------------------------------------------------

    def to(self, T: datetime) -> Tally:
        """Stand at T: every placement and void at or before T applied, none after."""
        if not self.indexed:
            self._index()
        starts, ends, placed = self.starts, self.ends, self.placed
        si, ei = bisect_right(starts, (T, LAST)), bisect_right(ends, (T, LAST))
        if self.t is None:
            # From the start in one go: what counts at T, and the gaps, with two sorts.
            self.bought = bought = [s for s in starts[:si] if _counts(placed[s[2]], T)]
            if self.gaps_wanted:
                self.gaps = sorted(_gap(a, b) for a, b in zip(bought, bought[1:]))
        elif T >= self.t:
            for s in starts[self.si : si]:  # placed in (t, T]: counts unless voided by T
                if _counts(placed[s[2]], T):
                    self._add(s)
            for e in ends[self.ei : ei]:  # voided in (t, T]: no longer counts
                p = placed[e[2]]
                self._remove((p[0], p[1], e[2]))
        else:
            for s in starts[si : self.si]:  # placed in (T, t]: did not count yet
                self._remove(s)
            for e in ends[ei : self.ei]:  # voided in (T, t]: counted still, if placed by T
                p = placed[e[2]]
                if p[0] <= T:
                    self._add((p[0], p[1], e[2]))
        self.si, self.ei, self.t = si, ei, T
        return self

    def _add(self, x: Item) -> None:
        bought, i = self.bought, bisect_left(self.bought, x)
        if self.gaps_wanted:
            prev = bought[i - 1] if i else None
            nxt = bought[i] if i < len(bought) else None
            if prev is not None and nxt is not None:
                self._drop_gap(_gap(prev, nxt))
            if prev is not None:
                insort(self.gaps, _gap(prev, x))
            if nxt is not None:
                insort(self.gaps, _gap(x, nxt))
        bought.insert(i, x)

    def _remove(self, x: Item) -> None:
        bought, i = self.bought, bisect_left(self.bought, x)
        if i >= len(bought) or bought[i] != x:
            return  # it did not count
        if self.gaps_wanted:
            prev = bought[i - 1] if i else None
            nxt = bought[i + 1] if i + 1 < len(bought) else None
            if prev is not None:
                self._drop_gap(_gap(prev, x))
            if nxt is not None:
                self._drop_gap(_gap(x, nxt))
            if prev is not None and nxt is not None:
                insort(self.gaps, _gap(prev, nxt))
        del bought[i]

    def _drop_gap(self, g: float) -> None:
        del self.gaps[bisect_left(self.gaps, g)]

    # -- what is read ------------------------------------------------------------------------

    def median_gap(self) -> float | None:
        n = len(self.bought)
        if n < 2:
            return None
        gaps, mid = self.gaps, (n - 1) // 2
        return gaps[mid] if n % 2 == 0 else (gaps[mid - 1] + gaps[mid]) / 2

    def value(self, item: Item, prop: str, T: datetime) -> float | None:
        """A numeric property of a counted touchpoint; an order's amount net of the reductions
        (refunds) made on it by T."""
        key = item[2]
        if self.orders:
            o = self.facts.orders[key]
            if prop != "amount":
                return None
            net = o.amount
            if self.spec.reduced_by:
                net -= sum(r[2] for r in self.facts.refunds.get(key, ()) if r[0] <= T)
            return net
        v = self.firsts[key][2].get(prop)
        if not isinstance(v, int | float) or isinstance(v, bool):
            return None
        if prop == "amount" and self.spec.reduced_by:
            v -= sum(r[2] or 0.0 for r in self.voids.get(key, ()) if r[3] and r[0] <= T)
        return float(v)


def _order_prop(o: Order, prop: str) -> Any:
    return o.amount if prop == "amount" else o.currency if prop == "currency" else None


def _count(n: float, noun: str) -> str:
    """'1 day', '2 days', '1,204 days' (n rounded to whole units)."""
    whole = round(n)
    return f"{whole:,} {noun}" + ("" if whole == 1 else "s")


# -- conditions, compiled ----------------------------------------------------------------------


class Cond:
    """A compiled condition: whether it holds at T (the walk standing at T), when its answer could
    next change by time alone, and its words."""

    timeless = True  # its answer changes only with a touchpoint

    def holds(self, w: Walk, T: datetime) -> bool:
        raise NotImplementedError

    def pair(self, w: Walk, T: datetime) -> tuple[bool, datetime | None]:
        """(whether it holds at T, the first time after T at which time alone could change that
        (None: never)) in one pass."""
        return self.holds(w, T), None

    def words(self, w: Walk, T: datetime) -> str:
        raise NotImplementedError

    def causes(self, w: Walk, T: datetime) -> tuple[str, ...]:
        return ()


class CountCond(Cond):
    def __init__(self, tally: int, label: str, at_least: int, window: int | None):
        self.tally, self.label, self.at_least = tally, label, at_least
        self.window = timedelta(days=window) if window else None
        self.days = window
        self.timeless = window is None

    def n(self, w: Walk, T: datetime) -> int:
        t = w.tallies[self.tally]
        if t.t != T:
            t.to(T)
        if self.window is None:
            return len(t.bought)
        return len(t.bought) - bisect_right(t.bought, (T - self.window, LAST))

    def holds(self, w: Walk, T: datetime) -> bool:
        t = w.tallies[self.tally]
        if t.t != T:
            t.to(T)
        bought = t.bought
        if self.window is None:
            return len(bought) >= self.at_least
        k = len(bought) - self.at_least  # holds if the k-th (0-based) counted one is in the window
        return k >= 0 and bought[k][0] > T - self.window

    def pair(self, w: Walk, T: datetime) -> tuple[bool, datetime | None]:
        t = w.tallies[self.tally]
        if t.t != T:
            t.to(T)
        bought = t.bought
        k = len(bought) - self.at_least
        if self.window is None:
            return k >= 0, None
        if k < 0 or bought[k][0] <= T - self.window:
            return False, None  # time alone never brings touchpoints into the window
        return True, bought[k][0] + self.window  # when the k-th leaves it

    def words(self, w: Walk, T: datetime) -> str:
        where = f" in the {self.days:,} days to {T:%Y-%m-%d}" if self.days else ""
        return f"{self.label}{where}: {self.n(w, T):,} (at least {self.at_least:,})"

    def causes(self, w: Walk, T: datetime) -> tuple[str, ...]:
        bought = w.tally(self.tally).bought
        return (bought[-1][1],) if bought else ()


class SumCond(Cond):
    def __init__(self, tally: int, label: str, prop: str, at_least: float, window: int | None):
        self.tally, self.label, self.prop, self.at_least = tally, label, prop, at_least
        self.window = timedelta(days=window) if window else None
        self.days = window
        self.timeless = window is None

    def total(self, w: Walk, T: datetime) -> float:
        t = w.tally(self.tally)
        items = t.bought if self.window is None else t.bought[bisect_right(t.bought, (T - self.window, LAST)) :]
        return sum(v for item in items if (v := t.value(item, self.prop, T)) is not None)

    def holds(self, w: Walk, T: datetime) -> bool:
        return self.total(w, T) >= self.at_least

    def pair(self, w: Walk, T: datetime) -> tuple[bool, datetime | None]:
        holds = self.holds(w, T)
        if self.window is None:
            return holds, None
        bought = w.tally(self.tally).bought  # any one leaving the window changes the sum
        i = bisect_right(bought, (T - self.window, LAST))
        return holds, bought[i][0] + self.window if i < len(bought) else None

    def words(self, w: Walk, T: datetime) -> str:
        where = f" in the {self.days:,} days to {T:%Y-%m-%d}" if self.days else ""
        return f"{self.prop} of {self.label}{where}: {self.total(w, T):,.2f} (at least {self.at_least:,g})"


class LatestCond(Cond):
    def __init__(self, tally: int, spec: Latest):
        self.tally, self.spec = tally, spec
        self.window = timedelta(days=spec.within_days) if spec.within_days else None
        self.timeless = self.window is None

    def latest(self, w: Walk, T: datetime) -> tuple[datetime, float] | None:
        t = w.tally(self.tally)
        lo = 0 if self.window is None else bisect_right(t.bought, (T - self.window, LAST))
        for item in reversed(t.bought[lo:]):
            v = t.value(item, self.spec.latest, T)
            if v is not None:
                return item[0], v
        return None

    def holds(self, w: Walk, T: datetime) -> bool:
        found = self.latest(w, T)
        if found is None:
            return False
        s, v = self.spec, found[1]
        return (s.at_least is None or v >= s.at_least) and (s.at_most is None or v <= s.at_most)

    def pair(self, w: Walk, T: datetime) -> tuple[bool, datetime | None]:
        holds = self.holds(w, T)
        if self.window is None:
            return holds, None
        found = self.latest(w, T)  # when it leaves the window, an older one (or none) decides
        return holds, found[0] + self.window if found is not None else None

    def words(self, w: Walk, T: datetime) -> str:
        s = self.spec
        found = self.latest(w, T)
        bound = " and ".join(
            b for b in (f"at least {s.at_least:g}" if s.at_least is not None else "",
                        f"at most {s.at_most:g}" if s.at_most is not None else "") if b
        )  # fmt: skip
        where = f" in the {s.within_days:,} days to {T:%Y-%m-%d}" if s.within_days else ""
        if found is None:
            return f"no {s.latest} of {' or '.join(s.of)}{where} (needs one {bound})"
        return f"latest {s.latest} {found[1]:g} on {found[0]:%Y-%m-%d} ({bound})"


class AbsentCond(Cond):
    timeless = False

    def __init__(self, tally: int, label: str, spec: Absent):
        self.tally, self.label, self.spec = tally, label, spec
        self.days = float(spec.more_than_days)

    def limit(self, w: Walk) -> float:
        """The threshold in days: more_than_days, or max(it, gap_factor x the median gap)."""
        factor = self.spec.gap_factor
        if factor is None:
            return self.days
        gap = w.tally(self.tally).median_gap()
        return self.days if gap is None else max(self.days, factor * gap)

    def since(self, w: Walk) -> tuple[datetime, str] | None:
        bought = w.tally(self.tally).bought
        if bought:
            return bought[-1][0], bought[-1][1]
        if self.spec.since_first and (start := w.start()) is not None:
            return start
        return None

    def holds(self, w: Walk, T: datetime) -> bool:
        s = self.since(w)
        if s is None:
            return False
        days = (T - s[0]).total_seconds() / DAY
        # The threshold is at least more_than_days: the median gap only matters beyond it.
        return days > self.days and days > self.limit(w)

    def pair(self, w: Walk, T: datetime) -> tuple[bool, datetime | None]:
        s = self.since(w)
        if s is None:
            return False, None
        since, limit = s[0], self.limit(w)
        if (T - since).total_seconds() / DAY > limit:
            return True, None  # absent until a touchpoint
        try:
            return False, since + timedelta(days=limit) + TICK
        except OverflowError:  # beyond the year 9999: never
            return False, None

    def words(self, w: Walk, T: datetime) -> str:
        s = self.since(w)
        if s is None:
            return f"no {self.label} yet"
        limit = self.limit(w)
        what = f"last of {self.label}" if w.tally(self.tally).bought else "stepped on the ladder"
        days = (T - s[0]).total_seconds() / DAY
        # Whole days, unless they would read as the threshold itself ("90 days, more than 90"):
        # then as many decimals as tell the two apart ("116.8 days, more than 116.75").
        k = next((k for k in range(1, 4) if f"{days:.{k}f}" != f"{limit:.{k}f}"), 1)
        near = round(days) == round(limit)
        threshold = f"more than {limit:,.{k if near and limit != round(limit) else 0}f}"
        if self.spec.gap_factor is not None:
            threshold += f" (the larger of {self.spec.more_than_days:,} and {self.spec.gap_factor:g} x the median gap)"
        verdict = threshold if days > limit else threshold.replace("more than", "within", 1)
        ago = f"{days:,.{k}f} days" if near else _count(days, "day")
        return f"{what} {ago} before {T:%Y-%m-%d}, {verdict}"

    def causes(self, w: Walk, T: datetime) -> tuple[str, ...]:
        s = self.since(w)
        return (s[1],) if s is not None else ()


class AllCond(Cond):
    def __init__(self, parts: list[Cond]):
        self.parts = parts
        self.timeless = all(p.timeless for p in parts)

    def holds(self, w: Walk, T: datetime) -> bool:
        for p in self.parts:
            if not p.holds(w, T):
                return False
        return True

    def pair(self, w: Walk, T: datetime) -> tuple[bool, datetime | None]:
        if self.timeless:
            return self.holds(w, T), None
        first: datetime | None = None  # holding: false once any part is
        last: datetime | None = None  # not holding: true only once every false part is
        holds = True
        for p in self.parts:
            h, d = p.pair(w, T)
            if h:
                if d is not None and (first is None or d < first):
                    first = d
            else:
                if d is None:
                    return False, None  # false until a touchpoint
                holds = False
                if last is None or d > last:
                    last = d
        return (True, first) if holds else (False, last)

    def words(self, w: Walk, T: datetime) -> str:
        failing = [p for p in self.parts if not p.holds(w, T)]
        return "; ".join(p.words(w, T) for p in (failing or self.parts))

    def causes(self, w: Walk, T: datetime) -> tuple[str, ...]:
        return tuple(c for p in self.parts for c in p.causes(w, T))


class AnyCond(Cond):
    def __init__(self, parts: list[Cond]):
        self.parts = parts
        self.timeless = all(p.timeless for p in parts)

    def holds(self, w: Walk, T: datetime) -> bool:
        for p in self.parts:
            if p.holds(w, T):
                return True
        return False

    def pair(self, w: Walk, T: datetime) -> tuple[bool, datetime | None]:
        if self.timeless:
            return self.holds(w, T), None
        first: datetime | None = None  # not holding: true once any part is
        last: datetime | None = None  # holding: false only once every true part is
        holds, lasting = False, False
        for p in self.parts:
            h, d = p.pair(w, T)
            if h:
                holds = True
                if d is None:
                    lasting = True  # true until a touchpoint
                elif last is None or d > last:
                    last = d
            elif d is not None and (first is None or d < first):
                first = d
        if holds:
            return True, None if lasting else last
        return False, first

    def words(self, w: Walk, T: datetime) -> str:
        holding = [p for p in self.parts if p.holds(w, T)]
        if holding:
            return holding[-1].words(w, T)
        return "none of: " + "; ".join(p.words(w, T) for p in self.parts)

    def causes(self, w: Walk, T: datetime) -> tuple[str, ...]:
        return tuple(c for p in self.parts if p.holds(w, T) for c in p.causes(w, T))


# -- the ladder, compiled --------------------------------------------------------------------


class Ladder:
    """A ladder definition compiled: its tallies (one per distinct counted spec), its stages'
    and health rules' conditions, and the kinds it reads."""

    def __init__(self, definition: LadderDef, version: str = ""):
        self.definition = definition
        self.name = definition.name
        self.version = version
        self.specs: list[Counted] = []
        self.gaps: list[bool] = []
        self.windows: list[tuple[int, timedelta]] = []  # (tally, window) of the windowed conditions
        self._compiled: dict[Any, Cond] = {}
        self.stages = tuple(s.name for s in definition.stages)
        self.stage_conds: list[Cond | None] = [None] + [self._compile(s.when) for s in definition.stages[1:]]
        self.healths = tuple(h.name for h in definition.health)
        self.health_conds = [self._compile(h.when) for h in definition.health]
        self.windows = list(dict.fromkeys(self.windows))
        self.kinds = frozenset(k for s in self.specs for k in s.kinds + s.voided_by + s.reduced_by)
        self.watchers: dict[str, tuple[int, ...]] = {
            kind: tuple(i for i, s in enumerate(self.specs) if kind in s.kinds + s.voided_by + s.reduced_by)
            for kind in self.kinds
        }
        self.purchases = self.specs.index(PURCHASES) if PURCHASES in self.specs else None
        a = definition.applies_to
        self.joins = None if a is None else a.key()
        self.join_id = None if a is None else a.join_id(definition.name)
        # The conditions whose answer time alone can change, from each stage (health) up.
        self.stage_index = {name: i for i, name in enumerate(self.stages)}
        self.health_index = {name: i for i, name in enumerate(self.healths)}
        self.timed_from_stage = [
            [c for c in self.stage_conds[i:] if c is not None and not c.timeless] for i in range(len(self.stages))
        ]
        self.timed_from_health = [
            [c for c in self.health_conds[i:] if not c.timeless] for i in range(max(len(self.healths), 1))
        ]

    def _tally(self, spec: Counted, gaps: bool = False) -> int:
        if spec in self.specs:
            i = self.specs.index(spec)
            self.gaps[i] = self.gaps[i] or gaps
            return i
        self.specs.append(spec)
        self.gaps.append(gaps)
        return len(self.specs) - 1

    def _label(self, ref: Any) -> str:
        return ref if isinstance(ref, str) else ref.words()

    def _compile(self, c: Condition | None) -> Cond:
        """One compiled condition per distinct condition: the stages above repeat those below."""
        done = self._compiled.get(c)
        if done is None:
            done = self._compiled[c] = self._build(c)
        return done

    def _build(self, c: Condition | None) -> Cond:
        d = self.definition
        if isinstance(c, Count):
            i = self._tally(d.counted(c.count))
            if c.within_days:
                self.windows.append((i, timedelta(days=c.within_days)))
            return CountCond(i, self._label(c.count), c.at_least, c.within_days)
        if isinstance(c, Sum):
            i = self._tally(d.counted(c.of))
            if c.within_days:
                self.windows.append((i, timedelta(days=c.within_days)))
            return SumCond(i, self._label(c.of), c.sum, c.at_least, c.within_days)
        if isinstance(c, Latest):
            i = self._tally(Counted(kinds=c.of))
            if c.within_days:
                self.windows.append((i, timedelta(days=c.within_days)))
            return LatestCond(i, c)
        if isinstance(c, Absent):
            i = self._tally(d.counted(c.absent), gaps=c.gap_factor is not None)
            return AbsentCond(i, self._label(c.absent), c)
        if isinstance(c, All):
            return AllCond([self._compile(p) for p in c.all])
        if isinstance(c, AnyOf):
            return AnyCond([self._compile(p) for p in c.any])
        raise TypeError(c)  # pragma: no cover - the model admits no other


@dataclass(slots=True)
class Status:
    stage: str | None  # None before the person's first touchpoint on the ladder
    health: str | None  # None where no health rule holds
    count: int  # purchases that count at `at` (a ladder that counts purchases), the oldest, the newest
    first: Order | None
    last: Order | None
    health_causes: tuple[str, ...]
    at: datetime | None = None
    ladder: Ladder | None = None
    facts: Facts | None = None

    def get(self, dimension: str) -> str | None:
        return self.stage if dimension == "stage" else self.health

    def _walk(self) -> Walk | None:
        if self.ladder is None or self.facts is None or self.at is None:
            return None
        return Walk(self.facts, self.ladder).to(self.at)

    @property
    def stage_reason(self) -> str:
        w = self._walk()
        if w is None or self.stage is None or self.at is None:
            return "no touchpoint yet"
        return stage_words(w, self.at, self.stage)

    @property
    def health_reason(self) -> str:
        w = self._walk()
        if w is None or self.health is None or self.at is None:
            return ""
        return health_words(w, self.at, self.health)


def stage_words(w: Walk, T: datetime, stage: str) -> str:
    """Why a person stands on `stage` at T: its condition, and what the next stage up lacks."""
    lad = w.ladder
    i = lad.stages.index(stage)
    cond = lad.stage_conds[i]
    out = cond.words(w, T) if cond is not None else "on the ladder"
    if i + 1 < len(lad.stages):
        nxt = lad.stage_conds[i + 1]
        assert nxt is not None
        out += f"; not {lad.stages[i + 1]}: {nxt.words(w, T)}"
    return out


def health_words(w: Walk, T: datetime, health: str) -> str:
    lad = w.ladder
    return lad.health_conds[lad.healths.index(health)].words(w, T)


_NOBODY = Status(None, None, 0, None, None, ())


class Walk:
    """A person's facts seen through a ladder, standing at a time that moves."""

    __slots__ = ("facts", "ladder", "tallies", "t", "attached", "__weakref__")

    def __init__(self, facts: Facts, ladder: Ladder, attach: bool = False):
        self.facts, self.ladder = facts, ladder
        self.tallies = [Tally(s, facts, g) for s, g in zip(ladder.specs, ladder.gaps)]
        self.t: datetime | None = None
        if attach:  # kept between batches: the facts tell it of every touchpoint it reads
            alive = [ref for ref in facts.listeners or () if ref() is not None]
            facts.listeners = [*alive, weakref.ref(self)]
        self.attached = attach

    def touched(self, kind: str, at: datetime, eid: str, props: Mapping[str, Any]) -> None:
        for i in self.ladder.watchers.get(kind, ()):
            self.tallies[i].touched(kind, at, eid, props)

    def to(self, T: datetime) -> Walk:
        self.t = T
        return self

    def start(self) -> tuple[datetime, str] | None:
        """When (and by which touchpoint) the person stepped on the ladder: their first touchpoint,
        or, on a ladder that applies to some, the first that joined them."""
        f = self.facts
        if self.ladder.joins is None:
            return None if f.first_seen is None else (f.first_seen, f.first_seen_id or "")
        return f.joined.get(self.ladder.join_id or "")

    def tally(self, i: int) -> Tally:
        t = self.tallies[i]
        if t.t != self.t:
            assert self.t is not None
            t.to(self.t)
        return t

    def status(self, T: datetime) -> Status:
        """The status at T, where the walk stands."""
        f, lad = self.facts, self.ladder
        start = self.start()
        if start is None or start[0] > T:
            return _NOBODY
        conds = lad.stage_conds
        i = len(conds) - 1
        while i > 0:
            c = conds[i]
            assert c is not None
            if c.holds(self, T):
                break
            i -= 1
        health: str | None = None
        causes: tuple[str, ...] = ()
        hc = lad.health_conds
        for j in range(len(hc) - 1, -1, -1):
            if hc[j].holds(self, T):
                health, causes = lad.healths[j], hc[j].causes(self, T)
                break
        p = lad.purchases
        if p is None:
            return Status(lad.stages[i], health, 0, None, None, causes, T, lad, f)
        bought = self.tally(p).bought
        if not bought:
            return Status(lad.stages[i], health, 0, None, None, causes, T, lad, f)
        orders = f.orders
        return Status(
            lad.stages[i], health, len(bought), orders[bought[0][2]], orders[bought[-1][2]], causes, T, lad, f
        )

    def next_moment(self, t: datetime, status: Status) -> datetime | None:
        """The first time after t (where the walk stands) at which the status could change: the
        next relevant touchpoint, the first touchpoint, or a time a condition names (a counted
        touchpoint leaving a window, an absence passing its threshold)."""
        f = self.facts
        best = None
        i = bisect_right(f.moments, (t, LAST))
        if i < len(f.moments):
            best = f.moments[i][0]
        start = self.start()
        if start is not None and start[0] > t and (best is None or start[0] < best):
            best = start[0]
        if status.stage is not None:
            # The stage moves when its condition stops holding or one above starts to; the
            # health likewise (those below the one that holds do not matter while it does).
            lad = self.ladder
            for c in lad.timed_from_stage[lad.stage_index[status.stage]]:
                d = c.pair(self, t)[1]
                if d is not None and (best is None or d < best):
                    best = d
            for c in lad.timed_from_health[lad.health_index.get(status.health or "", 0)]:
                d = c.pair(self, t)[1]
                if d is not None and (best is None or d < best):
                    best = d
        return best

    def trigger(self, at: datetime) -> tuple[str, tuple[str, ...]]:
        """What happened at `at` (where the walk stands): touchpoints that occurred then, else
        what left a window (in time and id order), else time passing."""
        facts = self.facts
        lo = bisect_right(facts.moments, (at - TICK, LAST))
        hi = bisect_right(facts.moments, (at, LAST))
        here = facts.moments[lo:hi]
        if here:
            return (", ".join(f"{kind} {eid}" for _, eid, kind in here), tuple(eid for _, eid, _ in here))
        start = self.start()
        if start is not None and at == start[0]:
            if self.ladder.joins is None:
                return f"first touchpoint {start[1]}", (start[1],)
            return f"joined the {self.ladder.name} ladder: {start[1]}", (start[1],)
        left: dict[str, int] = {}
        for i, window in self.ladder.windows:
            starts = self.tallies[i].starts if self.tallies[i].indexed else []
            then = at - window
            for _, eid, _ in starts[bisect_left(starts, (then,)) : bisect_right(starts, (then, LAST))]:
                left.setdefault(eid, window.days)
        if left:
            days = sorted(set(left.values()))
            return (
                f"{', '.join(left)} left the {' / '.join(f'{d:,}' for d in days)}-day window",
                tuple(left),
            )
        return "time passed", ()


__all__ = ["Ladder", "Status", "Walk", "Tally", "ORDER_KINDS", "void_time", "TICK", "LAST", "DAY"]
