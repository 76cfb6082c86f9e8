"""What pydantic cannot see in a ladder: names, kinds and properties that do not exist or have the
wrong type, and stages or health rules that can never be reached. Each problem names the ladder,
the place (a count, a stage, a health rule, applies_to), the condition and the fix."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from difflib import get_close_matches
from typing import Any

from .model import BUILTIN_COUNTS, Absent, All, AnyOf, Count, Counted, LadderDef, Latest, Sum, nested

ORDER_KIND = "order.placed"
# Each kind known, with its properties and their types ("number", "string", "other"); None: any.
Kinds = Mapping[str, Mapping[str, str] | None]


def problems(d: LadderDef, kinds: Kinds) -> list[str]:
    """Every problem of the ladder, each once."""
    out: list[str] = []
    a = d.applies_to
    if a is not None:
        out += [f"ladder {d.name}, applies_to: {p}" for p in _known(a.kinds, kinds, "kinds")]
    for name, spec in d.counts.items():
        out += [f"ladder {d.name}, count {name}: {p}" for p in _counted(spec, kinds)]
    for place, c in _places(d):
        out += [f"ladder {d.name}, {place}: {p}" for p in _condition(d, c, kinds)]
    for what, names, conds in (
        ("stage", [s.name for s in d.stages[1:]], [s.when for s in d.stages[1:]]),
        ("health rule", [h.name for h in d.health], [h.when for h in d.health]),
    ):
        for i, (name, c) in enumerate(zip(names, conds)):
            for later, other in zip(names[i + 1 :], conds[i + 1 :]):
                if implies(d, c, other):
                    out.append(
                        f"ladder {d.name}, {what} {name}: can never be reached: whoever meets its condition "
                        f"meets that of {later}, listed after it (the last {what} whose condition holds wins): "
                        f"list them from the lowest, or make {name}'s condition narrower"
                    )
                    break
    return list(dict.fromkeys(out))


def _places(d: LadderDef) -> Iterator[tuple[str, Any]]:
    for s in d.stages[1:]:
        for c in nested(s.when):
            yield f"stage {s.name}", c
    for h in d.health:
        for c in nested(h.when):
            yield f"health rule {h.name}", c


def _condition(d: LadderDef, c: Any, kinds: Kinds) -> list[str]:
    if isinstance(c, Count | Sum | Absent):
        ref = c.count if isinstance(c, Count) else c.of if isinstance(c, Sum) else c.absent
        shape = type(c).__name__.lower()
        if isinstance(ref, str) and ref not in d.counts and ref not in BUILTIN_COUNTS:
            named = sorted({*d.counts, *BUILTIN_COUNTS})
            return [
                f"{shape} {ref!r} is not defined{_maybe(ref, named)}: define it under [ladders.counts] "
                f"or use one of {', '.join(named)}"
            ]
        spec = d.counted(ref)
        # a named count is checked once, under its name; one written in place, here
        out = [f"{shape} {spec.words()}: {p}" for p in _counted(spec, kinds)] if isinstance(ref, Counted) else []
        if isinstance(c, Sum):
            out += _props(spec.kinds, [c.sum], kinds, f"sum of {c.sum!r}", numeric=True)
            if spec.kinds == (ORDER_KIND,) and c.sum != "amount":
                out.append(f"sum of {c.sum!r}: orders add up their amount only")
        return out
    if isinstance(c, Latest):
        if set(c.of) & {ORDER_KIND, "order.cancelled", "order.refunded"}:
            return [f"latest {c.latest!r}: orders have no latest value to read: sum their amount instead"]
        return _known(c.of, kinds, f"latest {c.latest!r}") or _props(
            c.of, [c.latest], kinds, f"latest {c.latest!r}", numeric=True
        )
    return []


def _counted(spec: Counted, kinds: Kinds) -> list[str]:
    out = _known(spec.kinds + spec.voided_by + spec.reduced_by, kinds, "kinds")
    if out:
        return out
    if ORDER_KIND in spec.kinds and (spec.kinds != (ORDER_KIND,) or spec.once_per != "order_id"):
        out.append(
            'orders count once per order id: use kinds = ["order.placed"] alone with once_per = "order_id" '
            '(or the built-in "purchases")'
        )
    voids = {"order.cancelled", "order.refunded"}
    if set(spec.kinds) & voids:
        out.append(
            "cancellations and refunds are not counted: they void or reduce orders "
            '(voided_by = ["order.cancelled"], reduced_by = ["order.refunded"] on a count of order.placed)'
        )
    if spec.kinds == (ORDER_KIND,):
        if set(spec.voided_by + spec.reduced_by) - voids:
            out.append("orders are voided by order.cancelled and reduced by order.refunded only")
        if spec.where is not None and spec.where.property not in ("amount", "currency"):
            out.append(f"where on orders reads amount or currency, not {spec.where.property!r}")
    if spec.once_per:
        out += _props(spec.kinds, [spec.once_per], kinds, "once_per")
        out += _props(spec.voided_by + spec.reduced_by, [spec.once_per], kinds, "once_per")
    w = spec.where
    if w is not None:
        ranged = w.at_least is not None or w.at_most is not None
        out += _props(spec.kinds, [w.property], kinds, "where", numeric=ranged)
    if spec.reduced_by:
        out += _props(spec.kinds + spec.reduced_by, ["amount"], kinds, "reduced_by (it reads amounts)", numeric=True)
    return out


def _maybe(name: str, among: Any) -> str:
    close = get_close_matches(name, list(among), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known(names: tuple[str, ...], kinds: Kinds, where: str) -> list[str]:
    return [
        f"{where}: unknown kind {k!r}{_maybe(k, kinds)}: declare it under [[kinds]] (name = {k!r}) or fix the name"
        for k in names
        if k not in kinds
    ]


def _props(names: tuple[str, ...], props: list[str], kinds: Kinds, where: str, numeric: bool = False) -> list[str]:
    out = []
    for k in names:
        known = kinds.get(k)
        if known is None:
            continue  # any property (a kind whose schema allows extras)
        for p in props:
            if p not in known:
                listed = ", ".join(sorted(known)) or "none"
                out.append(f"{where}: {k} has no property {p!r}{_maybe(p, known)} (its properties: {listed})")
            elif numeric and known[p] != "number":
                out.append(f"{where}: {k}'s {p!r} is a {known[p]}, not a number: compare it with equals")
    return out


def implies(d: LadderDef, a: Any, b: Any) -> bool:
    """Whether `a` holding always means `b` holds (False when it cannot tell: a check, never a
    proof of the opposite)."""
    if isinstance(b, All):
        return all(implies(d, a, p) for p in b.all)
    if isinstance(a, AnyOf):
        return all(implies(d, p, b) for p in a.any)
    if isinstance(a, All) and any(implies(d, p, b) for p in a.all):
        return True
    if isinstance(b, AnyOf):
        return any(implies(d, a, p) for p in b.any)
    if isinstance(a, Count) and isinstance(b, Count):
        try:
            same = d.counted(a.count) == d.counted(b.count)
        except KeyError:
            return False
        wider = b.within_days is None or (a.within_days is not None and a.within_days <= b.within_days)
        return same and a.at_least >= b.at_least and wider
    return a == b
