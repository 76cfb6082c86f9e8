"""The contact state of a customer: consents, open complaints, overdue invoices, folded from
touchpoints in any order and read as of any time. The aggregate keeps it (the contact rules
read it), and the 360° view folds the touchpoints visible as of T the same way.

Consent history per "channel/purpose" as sorted [occurred_at, event_id, granted]; complaints
and invoices as [opened, closed] times, the earliest of each, whatever the arrival order.
Times are stored strings (engine.asof).
"""

from __future__ import annotations

from typing import Any

OPENS = {
    "complaint.filed": ("complaints", "complaint_id", 0),
    "complaint.resolved": ("complaints", "complaint_id", 1),
    "invoice.overdue": ("invoices", "invoice_id", 0),
    "invoice.paid": ("invoices", "invoice_id", 1),
}


def fold(
    consent: dict[str, list[list[Any]]],
    complaints: dict[str, list[str | None]],
    invoices: dict[str, list[str | None]],
    tp: dict[str, Any],
) -> None:
    """Fold one touchpoint body into the three maps (in place)."""
    kind = tp["kind"]
    if kind == "consent.changed":
        props = tp["properties"]
        history = consent.setdefault(f"{props['channel']}/{props['purpose']}", [])
        history.append([tp["occurred_at"], tp["event_id"], props["granted"]])
        history.sort()
    elif kind in OPENS:
        which, key, i = OPENS[kind]
        spans = complaints if which == "complaints" else invoices
        span = spans.setdefault(tp["properties"][key], [None, None])
        at = tp["occurred_at"]
        if span[i] is None or at < span[i]:
            span[i] = at


def open_at(spans: dict[str, list[str | None]], t: str) -> list[tuple[str, str]]:
    """(id, opened at) of the complaints or invoices open at t, by id."""
    return sorted(
        (k, opened)
        for k, (opened, closed) in spans.items()
        if opened is not None and opened <= t and (closed is None or closed > t)
    )


def consent_at(consent: dict[str, list[list[Any]]], key: str, t: str) -> list[Any] | None:
    """The latest [occurred_at, event_id, granted] for "channel/purpose" at t, or None."""
    latest = None
    for entry in consent.get(key, ()):
        if entry[0] > t:
            break
        latest = entry
    return latest


def consents_at(consent: dict[str, list[list[Any]]], t: str) -> dict[str, dict[str, Any]]:
    """Every consent recorded by t: {"channel/purpose": {"granted", "at"}}."""
    out = {}
    for key in consent:
        latest = consent_at(consent, key, t)
        if latest is not None:
            out[key] = {"granted": latest[2], "at": latest[0]}
    return out
