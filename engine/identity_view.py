"""The read side of identity resolution: a person as the store's links make it (engine.identity),
for `journey identity show`. The links are read outward from the identifier asked for, bounded by
the identity limits, then resolved as everywhere: the same facts give the same person."""

from __future__ import annotations

import shlex
from typing import Any

from .identity import Guards, Identifier, Link, Resolution, resolve
from .persistence.journal import JourneyRecorder
from .regroup import limits_of, links_around
from .rules import IdentityRules


def resolution(
    journal: JourneyRecorder,
    rules: IdentityRules,
    value: str,
    as_known: str | None = None,
    guards: Guards | None = None,
) -> Resolution:
    """The persons of the links around `value` (as known at `as_known`, an ISO time, when given)."""
    guards = guards or Guards.of(rules.blocked_values, rules.blocked_patterns)
    links, unlinks = links_around(journal, [value], guards, 4 * rules.max_identifiers)
    return resolve(links, unlinks, limits_of(rules), guards, as_known=as_known)


KINDS = ("customer", "anonymous", "trait")


def parse(value: str) -> tuple[str | None, str]:
    """An identifier as asked for: `customer:ann`, `anonymous:web-1` or `trait:email:...` name their
    kind; a bare value leaves it to be found (None)."""
    kind, _, rest = value.partition(":")
    return (kind, rest) if kind in KINDS and rest else (None, value)


def person(journal: JourneyRecorder, rules: IdentityRules, value: str) -> dict[str, Any]:
    """The person an identifier (a customer id, an anonymous id, or `kind:value`) belongs to: its
    identifiers with when each was first and last linked, the accepted links with their evidence
    and rule, and the refused ones touching them with the reason. A bare value that is a customer
    id in some link is taken as one (as `journey customer` does), else as an anonymous id."""
    kind, bare = parse(value)
    guards = Guards.of(rules.blocked_values, rules.blocked_patterns)
    r = resolution(journal, rules, bare, guards=guards)
    ends = {end for x in r.accepted for end in x.pair} | {end for x in r.refused for end in x.link.pair}
    candidates = [Identifier(k, bare) for k in ((kind,) if kind else KINDS)]  # type: ignore[arg-type]
    asked = next((i for i in candidates if i in ends), candidates[0])
    known = asked in ends
    pid = r.person(asked)
    members = r.members.get(pid, [asked])
    mine = set(members) | {asked}
    seen: dict[Identifier, list[str]] = {m: [] for m in members}
    for link in r.accepted:
        for end in link.pair:
            if end in seen:
                seen[end].append(link.at)

    def shown(link: Link) -> dict[str, Any]:
        return {
            "a": str(link.a),
            "b": str(link.b),
            "at": link.at,
            "recorded_at": link.recorded_at,
            "evidence": link.evidence,
            "rule": link.rule,
        }

    return {
        "identifier": str(asked),
        "known": known,  # whether any link names it
        "blocked": guards.refusal(bare) if asked.kind != "trait" else None,
        "person": pid,
        "identifiers": [
            {
                "kind": m.kind,
                "value": m.value,
                "first_linked": min(seen[m], default=None),
                "last_linked": max(seen[m], default=None),
            }
            for m in members
        ],
        "links": [shown(x) for x in r.accepted if x.a in mine or x.b in mine],
        "refused": [{**shown(x.link), "reason": x.reason} for x in r.refused if x.link.a in mine or x.link.b in mine],
    }


def unlink(journal: JourneyRecorder, a: str, b: str, at: str, reason: str) -> dict[str, Any]:
    """Record that identifiers `a` and `b` are not one person. They must have a link of their own
    (an unlink acts on a pair: two identifiers joined through a third stay joined); ValueError
    says why not. Returns what was recorded and how many links between them it refuses."""
    if a == b:
        raise ValueError(f"{a} is given twice: name the two identifiers to part")
    direct = [r for r in journal.links_of([a]) if {r[1], r[3]} == {a, b}]
    if not direct:
        raise ValueError(f"{a} and {b} have no link of their own to undo (see: journey identity show {shlex.quote(a)})")
    ends = sorted({(r[0], r[1]) for r in direct} | {(r[2], r[3]) for r in direct})
    (ka, va), (kb, vb) = ends[0], ends[-1]
    journal.record_unlink((ka, va, kb, vb, at, reason))
    return {"a": f"{ka}:{va}", "b": f"{kb}:{vb}", "recorded_at": at, "reason": reason, "links_refused": len(direct)}
