"""A person's historical value as of T, in the base currency.

Net revenue is the one definition of engine.projections.lifecycle.revenue (orders placed by T,
neither cancelled nor fully refunded by T, less the refunds made on them by T), per currency, then
converted at the configured rates. An amount in a currency with no rate still counts as a purchase;
it is named apart (`unconverted`), never added to the base amount."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from ..money import minor_digits
from ..projections.facts import Facts
from ..projections.lifecycle import net_purchases, purchases, revenue
from ..rules import ValueRules

DAY = 86400


def rate(currency: str, rules: ValueRules) -> float | None:
    """Units of the base currency one unit of this currency is worth; None without a rate."""
    return 1.0 if currency == rules.base_currency else rules.table.get(currency)


def to_base(amounts: dict[str, float], rules: ValueRules) -> tuple[float, dict[str, float]]:
    """Amounts per currency as one amount in the base currency, and those with no rate apart."""
    base, unconverted = 0.0, {}
    for currency, amount in sorted(amounts.items()):
        per = rate(currency, rules)
        if per is None:
            unconverted[currency] = amount
        else:
            base += amount * per
    return round(base, minor_digits(rules.base_currency)), unconverted


@dataclass(frozen=True)
class Historical:
    net_revenue: float  # in the base currency
    unconverted: dict[str, float] = field(default_factory=dict)  # currencies with no rate
    purchases: int = 0
    average_order_value: float | None = None  # net revenue (base) per purchase
    first_purchase: datetime | None = None
    last_purchase: datetime | None = None
    tenure_days: float | None = None  # from the first touchpoint to T


def historical(facts: Facts, T: datetime, rules: ValueRules) -> Historical:
    bought = purchases(facts, T)
    net, unconverted = to_base(revenue(facts, T), rules)
    return Historical(
        net_revenue=net,
        unconverted=unconverted,
        purchases=len(bought),
        average_order_value=round(net / len(bought), minor_digits(rules.base_currency)) if bought else None,
        first_purchase=bought[0].at if bought else None,
        last_purchase=max(o.at for o in bought) if bought else None,
        tenure_days=(T - facts.first_seen).total_seconds() / DAY
        if facts.first_seen and facts.first_seen <= T
        else None,
    )


def transactions(facts: Facts, T: datetime, rules: ValueRules) -> list[tuple[date, float]]:
    """A person's purchases as of T as the value model's transactions (engine.value.model): one
    per calendar day (UTC), their net amounts in the base currency summed, oldest first. An amount
    with no rate counts 0 (the purchase still counts)."""
    days: dict[date, float] = {}
    for order, net in net_purchases(facts, T):
        day = order.at.date()
        days[day] = days.get(day, 0.0) + net * (rate(order.currency, rules) or 0.0)
    return sorted(days.items())


def rfm_of(v: Historical, T: datetime) -> tuple[float, int, float] | None:
    """A person's RFM values as of T (engine.value.rfm): days since the last purchase, purchases,
    net revenue in the base currency; None without a purchase."""
    if not v.purchases or v.last_purchase is None:
        return None
    return (T - v.last_purchase).total_seconds() / DAY, v.purchases, v.net_revenue
