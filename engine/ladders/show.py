"""A ladder as readable rules (`journey ladders show`)."""

from __future__ import annotations

from typing import Any

from .model import BUILTIN_COUNTS, Absent, All, AnyOf, Count, Counted, LadderDef, Latest, Sum


def rule(c: Any) -> str:
    """One condition in words: 'purchases >= 2 in 365 days', 'all of: ...'."""
    if isinstance(c, All):
        return "all of: " + "; ".join(_part(p) for p in c.all)
    if isinstance(c, AnyOf):
        return "any of: " + "; ".join(_part(p) for p in c.any)
    if isinstance(c, Count):
        return f"{_name(c.count)} >= {c.at_least:,}{_within(c.within_days)}"
    if isinstance(c, Sum):
        return f"{c.sum} of {_name(c.of)} >= {c.at_least:g}{_within(c.within_days)}"
    if isinstance(c, Latest):
        bounds = [
            f">= {c.at_least:g}" if c.at_least is not None else "",
            f"<= {c.at_most:g}" if c.at_most is not None else "",
        ]
        return (
            f"latest {c.latest} of {' or '.join(c.of)} {' and '.join(b for b in bounds if b)}{_within(c.within_days)}"
        )
    if isinstance(c, Absent):
        out = f"no {_name(c.absent)} for more than {c.more_than_days:,} days"
        if c.gap_factor is not None:
            out += f" (or {c.gap_factor:g} x their median gap, if larger)"
        if c.since_first:
            out += ", counted from stepping on the ladder when there is none"
        return out
    raise TypeError(c)  # pragma: no cover - the model admits no other


def _part(c: Any) -> str:
    words = rule(c)
    return f"({words})" if isinstance(c, All | AnyOf) else words


def _name(ref: str | Counted) -> str:
    return ref if isinstance(ref, str) else f"[{ref.words()}]"


def _within(days: int | None) -> str:
    return f" in {days:,} days" if days else ""


def lines(d: LadderDef, version: str) -> list[str]:
    """The ladder, its counts, its stages and its health rules, one per line."""
    out = [f"ladder {d.name} (version {version})" + (f": {d.description}" if d.description else "")]
    a = d.applies_to
    if a is None:
        out.append("  who: everyone, from their first touchpoint")
    else:
        ways = [f"of {' or '.join(a.kinds)}"] if a.kinds else []
        ways += [f"from source {a.source!r}"] if a.source else []
        ways += [f"with the trait {a.trait} = {a.equals!r}"] if a.trait else []
        out.append(f"  who: persons from their first touchpoint {', or '.join(ways)}")
    used = {ref for c in d.conditions() for ref in _refs(c)}
    counts = {**{k: v for k, v in BUILTIN_COUNTS.items() if k in used}, **d.counts}
    if counts:
        out.append("  counts")
        out += [f"    {name}: {spec.words()}" for name, spec in counts.items()]
    width = max([len(s.name) for s in d.stages] + [len(h.name) for h in d.health])
    out.append("  stages (a person stands on the last whose condition holds)")
    for s in d.stages:
        out.append(f"    {s.name:<{width}}  " + ("everyone on the ladder" if s.when is None else rule(s.when)))
    if d.health:
        out.append("  health (the last rule that holds)")
        out += [f"    {h.name:<{width}}  {rule(h.when)}" for h in d.health]
    return out


def _refs(c: Any) -> list[str]:  # the counts a condition names
    ref = (
        c.count if isinstance(c, Count) else c.of if isinstance(c, Sum) else c.absent if isinstance(c, Absent) else None
    )
    return [ref] if isinstance(ref, str) else []
