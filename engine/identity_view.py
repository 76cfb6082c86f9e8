"""The read side of identity resolution: a person as the store's links make it (engine.identity),
for `journey identity show`. The links are read outward from the identifier asked for, bounded by
the identity limits, then resolved as everywhere: the same facts give the same person."""

from __future__ import annotations

from typing import Any

from .identity import Guards, Identifier, Limits, Link, Resolution, Unlink, resolve
from .persistence.journal import JourneyRecorder, LinkRow
from .rules import IdentityRules


def _links(journal: JourneyRecorder, value: str, guards: Guards, most: int) -> tuple[list[Link], list[Unlink]]:
    """The links of the identifiers reachable from `value`, read outward until `most` links: never
    through a blocked value (a placeholder every visitor shares would reach everyone)."""
    rows: dict[tuple[str, ...], LinkRow] = {}
    seen = {value}
    frontier = [value]
    while frontier and len(rows) < most:
        found = journal.links_of(frontier)
        frontier = []
        for r in found:
            rows[(r[6], r[7], r[0], r[1], r[2], r[3])] = r
            for v in (r[1], r[3]):
                if v not in seen and guards.refusal(v) is None:
                    seen.add(v)
                    frontier.append(v)
    links = [Link(Identifier(r[0], r[1]), Identifier(r[2], r[3]), r[4], r[5], r[6], r[7]) for r in rows.values()]  # type: ignore[arg-type]
    unlinks = [
        Unlink(Identifier(u[0], u[1]), Identifier(u[2], u[3]), u[4], u[5])  # type: ignore[arg-type]
        for u in journal.unlinks_of(sorted(seen))
    ]
    return links, unlinks


def resolution(journal: JourneyRecorder, rules: IdentityRules, value: str, as_known: str | None = None) -> Resolution:
    """The persons of the links around `value` (as known at `as_known`, an ISO time, when given)."""
    guards = Guards.of(rules.blocked_values, rules.blocked_patterns)
    links, unlinks = _links(journal, value, guards, 4 * rules.max_identifiers)
    return resolve(
        links,
        unlinks,
        limits=Limits(rules.max_customer_ids, rules.max_anonymous_ids, rules.max_identifiers),
        guards=guards,
        as_known=as_known,
    )


def person(journal: JourneyRecorder, rules: IdentityRules, value: str) -> dict[str, Any]:
    """The person an identifier (a customer id or an anonymous id) belongs to: its identifiers with
    when each was first and last seen in a link, the accepted links with their evidence and rule,
    and the refused ones with the reason."""
    r = resolution(journal, rules, value)
    asked = next(
        (i for i in (Identifier("customer", value), Identifier("anonymous", value)) if i in r.person_of),
        Identifier("customer", value),
    )
    pid = r.person(asked)
    members = r.members.get(pid, [asked])
    mine = set(members)
    seen: dict[Identifier, list[str]] = {m: [] for m in members}
    for link in r.accepted:
        for end in link.pair:
            if end in mine:
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
        "identifier": value,
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
    direct = [r for r in journal.links_of([a]) if {r[1], r[3]} == {a, b} and a != b]
    if not direct:
        raise ValueError(f"{a} and {b} have no link of their own to undo (journey identity show {a})")
    ends = sorted({(r[0], r[1]) for r in direct} | {(r[2], r[3]) for r in direct})
    (ka, va), (kb, vb) = ends[0], ends[-1]
    journal.record_unlink((ka, va, kb, vb, at, reason))
    return {"a": f"{ka}:{va}", "b": f"{kb}:{vb}", "recorded_at": at, "reason": reason, "links_refused": len(direct)}
