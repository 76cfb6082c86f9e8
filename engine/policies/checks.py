"""Contact rules: may this action reach this customer now? Pure functions of the customer's
recorded state and the time.

The checks run in a fixed order and every check is recorded, blocking or not: forgotten,
consent, open complaint, overdue invoice, caps, quiet hours. An action is suppressed when
any check but quiet hours blocks it, deferred when quiet hours alone do, else issued.
Service actions skip the complaint, invoice, cap and quiet-hour checks, never consent.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..clock import iso
from ..projections.contact import consent_at, open_at
from .model import ContactRules, PolicySpec


def consent(customer: Any, channel: str, purpose: str, t: str, rules: ContactRules) -> tuple[bool, str]:
    latest = consent_at(customer.consent, f"{channel}/{purpose}", t)
    if latest is not None:
        at, event_id, granted = latest
        return granted, (
            f"{purpose} consent on {channel} {'granted' if granted else 'withdrawn'} on {at[:10]} ({event_id})"
        )
    default = rules.promotional_consent_default if purpose == "promotional" else rules.service_consent_default
    rule = "opt-in" if not default else "allowed unless revoked"
    return default, f"no {purpose} consent recorded on {channel} ({purpose}: {rule})"


def cap_state(customer: Any, T: datetime, t: str, rules: ContactRules) -> list[dict[str, Any]]:
    out = []
    for cap in rules.caps:
        since = iso(T - timedelta(days=cap.days))
        used = sum(
            1
            for at, channel, purpose in customer.contacts
            if purpose == "promotional" and since < at <= t and cap.channel in ("any", channel)
        )
        out.append({"channel": cap.channel, "days": cap.days, "max": cap.max, "used": used})
    return out


def zone_of(customer: Any, rules: ContactRules) -> tuple[ZoneInfo, str]:
    name = customer.timezone[1] if customer.timezone else rules.default_timezone
    try:
        return ZoneInfo(name), name
    except Exception:  # noqa: BLE001 - an unknown zone in a trait must not stop decisions
        return ZoneInfo(rules.default_timezone), rules.default_timezone


def quiet_until(T: datetime, zone: ZoneInfo, rules: ContactRules) -> datetime | None:
    """When the quiet hours around T end, or None if T is outside them."""
    start, end = time.fromisoformat(rules.quiet_hours_start), time.fromisoformat(rules.quiet_hours_end)
    local = T.astimezone(zone)
    now = local.time()
    quiet = (start <= now < end) if start <= end else (now >= start or now < end)
    if not quiet:
        return None
    release = datetime.combine(local.date(), end, tzinfo=zone)
    if release <= local:
        release = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=zone)
    return release.astimezone(T.tzinfo)


def run_checks(
    customer: Any, spec: PolicySpec, T: datetime, rules: ContactRules
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]], datetime | None]:
    """(status, checks, cap state, release time of a deferral)."""
    checks: list[dict[str, Any]] = []

    def check(name: str, blocked: bool, detail: str) -> None:
        checks.append({"check": name, "blocked": blocked, "detail": detail})

    check("forgotten", customer.erased, "the customer asked to be forgotten" if customer.erased else "not forgotten")
    t = iso(T)
    granted, why = consent(customer, spec.channel, spec.purpose, t, rules)
    check("consent", not granted, why)
    caps: list[dict[str, Any]] = []
    release = None
    if spec.purpose == "promotional":
        complaints = open_at(customer.complaints, t)
        check(
            "open_complaint",
            bool(complaints),
            "; ".join(f"complaint {k} open since {at[:10]}" for k, at in complaints) or "no open complaint",
        )
        invoices = open_at(customer.invoices, t)
        check(
            "overdue_invoice",
            bool(invoices),
            "; ".join(f"invoice {k} overdue since {at[:10]}" for k, at in invoices) or "no overdue invoice",
        )
        caps = cap_state(customer, T, t, rules)
        full = [c for c in caps if c["used"] >= c["max"]]
        check(
            "cap",
            bool(full),
            "; ".join(
                f"{c['used']} of {c['max']} promotional actions in {c['days']:g} days"
                f"{'' if c['channel'] == 'any' else ' on ' + c['channel']}"
                for c in (full or caps)
            )
            or "no caps",
        )
        zone, zone_name = zone_of(customer, rules)
        release = quiet_until(T, zone, rules)
        local = T.astimezone(zone).strftime("%H:%M")
        check(
            "quiet_hours",
            release is not None,
            f"{local} in {zone_name} is within quiet hours {rules.quiet_hours_start}-{rules.quiet_hours_end}"
            if release
            else f"{local} in {zone_name} is outside quiet hours",
        )
    blocked = [c["check"] for c in checks if c["blocked"]]
    if any(b != "quiet_hours" for b in blocked):
        return "suppressed", checks, caps, None
    if blocked:
        return "deferred", checks, caps, release
    return "issued", checks, caps, None
