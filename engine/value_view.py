"""The read side of customer value (engine.value, docs/value.md): each customer's historical value
and RFM as of T, over the store's history (with the anonymous ids linked to them), for `journey
value` and whoever asks."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from .clock import iso
from .queries import persons_facts
from .rules import ValueRules
from .service import Engine
from .value import Historical, Rfm, historical, pareto_share, score_rfm
from .value.history import DAY
from .value.rfm import OTHER


def values(engine: Engine, T: datetime, as_known: bool = False) -> tuple[dict[str, Historical], dict[str, Rfm]]:
    """Each customer's historical value as of T, and the RFM of those with a purchase."""
    rules = engine.config.value
    facts, _ = persons_facts(engine, T, as_known)
    value = {c: historical(f, T, rules) for c, f in facts.items()}
    rows = {
        c: ((T - v.last_purchase).total_seconds() / DAY, v.purchases, v.net_revenue)
        for c, v in value.items()
        if v.purchases and v.last_purchase is not None
    }
    return value, score_rfm(rows, rules.rfm_segments)


def summary(engine: Engine, T: datetime, as_known: bool = False) -> dict[str, Any]:
    """Customers, net revenue in the base currency (and what could not be converted), the Pareto
    share, and the customers per RFM segment, as of T."""
    rules: ValueRules = engine.config.value
    value, rfm = values(engine, T, as_known)
    buyers = [v for v in value.values() if v.purchases]
    unconverted: Counter[str] = Counter()
    for v in buyers:
        unconverted.update(v.unconverted)
    segments = Counter(x.segment for x in rfm.values())
    names = [s.name for s in rules.rfm_segments] + ([OTHER] if segments[OTHER] else [])
    share = pareto_share([v.net_revenue for v in buyers], rules.top_share)
    return {
        "as_of": iso(T),
        "as_known": as_known,
        "base_currency": rules.base_currency,
        "customers": len(value),
        "buyers": len(buyers),
        "net_revenue": round(sum(v.net_revenue for v in buyers), 2),
        "unconverted": {c: round(a, 2) for c, a in sorted(unconverted.items())},
        "top_share": rules.top_share,
        "top_share_of_revenue": None if share is None else round(share, 4),
        "rfm_segments": {name: segments[name] for name in dict.fromkeys(names)},
    }


def customers(engine: Engine, T: datetime, segment: str | None = None, as_known: bool = False) -> list[dict[str, Any]]:
    """The customers with a purchase, best first (by net revenue), with their value and RFM."""
    value, rfm = values(engine, T, as_known)
    out = []
    for c, x in rfm.items():
        if segment is not None and x.segment != segment:
            continue
        v = value[c]
        out.append(
            {
                "customer_id": c,
                "segment": x.segment,
                "rfm": x.code,
                "recency_days": round(x.recency_days, 1),
                "purchases": v.purchases,
                "net_revenue": v.net_revenue,
                "unconverted": v.unconverted,
                "average_order_value": v.average_order_value,
                "first_purchase": iso(v.first_purchase) if v.first_purchase else None,
                "last_purchase": iso(v.last_purchase) if v.last_purchase else None,
                "tenure_days": None if v.tenure_days is None else round(v.tenure_days, 1),
            }
        )
    return sorted(out, key=lambda r: (-value[r["customer_id"]].net_revenue, r["customer_id"]))
