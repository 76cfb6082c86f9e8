"""Small builders for touchpoint records in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def tp(
    event_id: str,
    kind: str,
    at: datetime,
    customer: str = "c1",
    channel: str = "web",
    traits: dict | None = None,
    **properties: Any,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "kind": kind,
        "occurred_at": at.isoformat(),
        "channel": channel,
        "source": "test",
        "properties": properties,
        "traits": traits,
    }


def order(
    event_id: str, at: datetime, order_id: str | None = None, amount: float = 10.0, currency: str = "EUR", **kw: Any
) -> dict:
    return tp(event_id, "order.placed", at, order_id=order_id or event_id, amount=amount, currency=currency, **kw)


def facts_of(engine: Any) -> tuple[list, list]:
    """The change and action feeds without their positions: what two histories must agree on."""
    strip = lambda xs: [{k: v for k, v in x.items() if k != "position"} for x in xs]  # noqa: E731
    return strip(engine.changes(limit=1_000_000)), strip(engine.actions(limit=1_000_000))


def welcome_email(holdout: float = 0.0, purpose: str = "promotional", name: str = "hello") -> Any:
    """A policy that emails every customer who registers, with a control group of `holdout`."""
    from engine.policies.model import PolicySpec

    return PolicySpec.model_validate(
        {
            "name": name,
            "action": f"{name}_email",
            "channel": "email",
            "purpose": purpose,
            "holdout": holdout,
            "trigger": {"on": "touchpoint", "kind": "customer.registered"},
        }
    )


def open_contact() -> Any:
    """Contact rules that let every email through: promotional consent by default, no quiet hours."""
    from engine.policies.model import ContactRules

    return ContactRules(promotional_consent_default=True, quiet_hours_start="00:00", quiet_hours_end="00:00")
