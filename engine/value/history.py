"""A person's historical value as of T, in the base currency.

Net revenue is the one definition of engine.projections.lifecycle (net_purchases: orders placed by
T, neither cancelled nor fully refunded by T, less the refunds made on them by T), each purchase
converted at the rate of its day (a fixed table, or dated rates: ValueRules.rate). An amount in a
currency with no rate then still counts as a purchase; it is named apart (`unconverted`), never
added to the base amount."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from ..money import minor_digits
from ..projections.facts import Facts
from ..projections.lifecycle import net_purchases
from ..rules import ValueRules

DAY = 86400


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
    base = minor_digits(rules.base_currency)
    bought = net_purchases(facts, T)
    net, unconverted = 0.0, dict[str, float]()
    for order, amount in bought:  # each at the rate of its day (engine.rules.ValueRules.rate)
        rate = rules.rate(order.currency, order.at.date())
        if rate is None:
            unconverted[order.currency] = unconverted.get(order.currency, 0.0) + amount
        else:
            net += amount * rate
    net = round(net, base)
    return Historical(
        net_revenue=net,
        unconverted={c: round(a, minor_digits(c)) for c, a in sorted(unconverted.items())},
        purchases=len(bought),
        average_order_value=round(net / len(bought), base) if bought else None,
        first_purchase=bought[0][0].at if bought else None,
        last_purchase=max(o.at for o, _ in bought) if bought else None,
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
        days[day] = days.get(day, 0.0) + net * (rules.rate(order.currency, day) or 0.0)
    return sorted(days.items())


def rfm_of(v: Historical, T: datetime) -> tuple[float, int, float] | None:
    """A person's RFM values as of T (engine.value.rfm): days since the last purchase, purchases,
    net revenue in the base currency; None without a purchase."""
    if not v.purchases or v.last_purchase is None:
        return None
    return (T - v.last_purchase).total_seconds() / DAY, v.purchases, v.net_revenue
