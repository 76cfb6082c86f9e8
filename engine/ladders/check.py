"""What pydantic cannot see in a ladder: names, kinds and properties that do not exist, and stages
or health rules that can never be reached. Each problem names the ladder, the stage (or health
rule), the condition and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import BUILTIN_COUNTS, Absent, All, AnyOf, Count, Counted, LadderDef, Latest, Sum

ORDER_KIND = "order.placed"


def problems(d: LadderDef, kinds: Mapping[str, frozenset[str] | None]) -> list[str]:
    """Every problem of the ladder; `kinds` maps each known kind to its properties (None: any)."""
    out: list[str] = []
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
    return out


def _places(d: LadderDef):
    for s in d.stages[1:]:
        for c in _nested(s.when):
            yield f"stage {s.name}", c
    for h in d.health:
        for c in _nested(h.when):
            yield f"health rule {h.name}", c


def _nested(c: Any):
    yield c
    for p in getattr(c, "all", None) or getattr(c, "any", None) or ():
        yield from _nested(p)


def _condition(d: LadderDef, c: Any, kinds: Mapping[str, frozenset[str] | None]) -> list[str]:
    if isinstance(c, Count | Sum | Absent):
        ref = c.count if isinstance(c, Count) else c.of if isinstance(c, Sum) else c.absent
        shape = type(c).__name__.lower()
        if isinstance(ref, str) and ref not in d.counts and ref not in BUILTIN_COUNTS:
            named = sorted({*d.counts, *BUILTIN_COUNTS})
            return [
                f"{shape} {ref!r} is not defined: define it under [ladders.counts] or use one of {', '.join(named)}"
            ]
        spec = d.counted(ref)
        out = _counted(spec, kinds, f"{shape} {ref if isinstance(ref, str) else spec.words()}")
        if isinstance(c, Sum):
            out += _props(spec.kinds, [c.sum], kinds, f"sum of {c.sum!r}")
        return out
    if isinstance(c, Latest):
        out = _known(c.of, kinds, f"latest {c.latest!r}")
        return out or _props(c.of, [c.latest], kinds, f"latest {c.latest!r}")
    return []


def _counted(spec: Counted, kinds: Mapping[str, frozenset[str] | None], where: str) -> list[str]:
    out = _known(spec.kinds + spec.voided_by + spec.reduced_by, kinds, where)
    if out:
        return out
    if ORDER_KIND in spec.kinds and (spec.kinds != (ORDER_KIND,) or spec.once_per != "order_id"):
        out.append(
            f'{where}: orders count once per order id: use kinds = ["order.placed"] alone with '
            'once_per = "order_id" (or the built-in "purchases")'
        )
    props = [p for p in (spec.once_per, spec.where.property if spec.where else None) if p]
    out += _props(spec.kinds, props, kinds, where)
    if spec.once_per:
        out += _props(spec.voided_by + spec.reduced_by, [spec.once_per], kinds, where)
    if spec.reduced_by:
        out += _props(spec.kinds + spec.reduced_by, ["amount"], kinds, f"{where} (reduced_by reads amounts)")
    return out


def _known(names: tuple[str, ...], kinds: Mapping[str, frozenset[str] | None], where: str) -> list[str]:
    return [
        f"{where}: unknown kind {k!r}: declare it under [[kinds]] (name = {k!r}) or fix the name"
        for k in names
        if k not in kinds
    ]


def _props(
    names: tuple[str, ...], props: list[str], kinds: Mapping[str, frozenset[str] | None], where: str
) -> list[str]:
    out = []
    for k in names:
        known = kinds.get(k)
        if known is None:
            continue  # any property (a kind whose schema allows extras)
        for p in props:
            if p not in known:
                listed = ", ".join(sorted(known)) or "none"
                out.append(f"{where}: {k} has no property {p!r} (its properties: {listed})")
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
