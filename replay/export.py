"""Exports for notebooks: pandas DataFrames and Parquet files of touchpoints, lifecycle
changes, actions and the as-of snapshot. Nothing personal: sealed fields are never opened,
and an erased customer's remaining traits are dropped too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from engine.clock import iso
from engine.projections.lifecycle import customer_ladder, evaluate, revenue
from engine.service import Engine
from engine.value.person import valuate

from .history import History, load

TABLES = ("touchpoints", "changes", "actions", "snapshot")
# The snapshot's value columns (docs/value.md): historical in the base currency, RFM as of the
# snapshot among its customers, and the predictions of the model in force (none without one).
VALUE_COLUMNS = [
    "base_currency",
    "net_revenue_base",
    "average_order_value",
    "tenure_days",
    "rfm",
    "rfm_segment",
    "p_alive",
    "churn_risk",
    "expected_transactions",
    "clv",
    "value_segment",
    "model_id",
]


def frames(
    engine: Engine, as_of: datetime, as_known: bool = False, progress: Callable[[int], None] | None = None
) -> dict[str, pd.DataFrame]:
    """The four tables; `progress` is told of the events read (replay.history.load)."""
    rows: list[dict[str, Any]] = []
    h: History

    def touchpoint(uuid: Any, tp: dict) -> None:
        rows.append(
            {
                "customer": uuid,
                "event_id": tp["event_id"],
                "kind": tp["kind"],
                "occurred_at": tp["occurred_at"],
                "recorded_at": tp["recorded_at"],
                "channel": tp["channel"],
                "source": tp["source"],
                "properties": orjson.dumps(tp["properties"]).decode(),
                "traits": orjson.dumps(tp["traits"] or {}).decode(),
            }
        )

    h = load(engine, as_known_at=as_of if as_known else None, touchpoints=touchpoint, progress=progress)
    for row in rows:
        uuid = row.pop("customer")
        row["customer_id"] = h.names[uuid]
        row["erased"] = uuid in h.erased
        if row["erased"]:
            row["traits"] = "{}"
    touchpoints = _frame(
        rows,
        [
            "customer_id",
            "event_id",
            "kind",
            "occurred_at",
            "recorded_at",
            "channel",
            "source",
            "properties",
            "traits",
            "erased",
        ],
        ("occurred_at", "recorded_at"),
    )
    changes = _frame(
        [
            {
                # a stage or health change recorded before ladders was the customer ladder's
                "ladder": "customer" if c["dimension"] in ("stage", "health") else None,
                "ladder_version": None,
                "model_id": None,
                **c,
                "causes": orjson.dumps(c["causes"]).decode(),
            }
            for c in h.changes
        ],
        [
            "change_id",
            "customer_id",
            "ladder",
            "ladder_version",
            "dimension",
            "from",
            "to",
            "effective_at",
            "recorded_at",
            "rules_version",
            "model_id",  # the value model of a value_segment change
            "causes",
            "reason",
        ],
        ("effective_at", "recorded_at"),
    )
    actions = _frame(
        [
            {k: (orjson.dumps(v).decode() if isinstance(v, (dict, list)) else v) for k, v in a.items()}
            for a in h.actions
        ],
        [
            "action_id",
            "customer_id",
            "policy",
            "policy_version",
            "action",
            "channel",
            "purpose",
            "priority",
            "status",
            "reason",
            "at",
            "release_at",
            "trigger",
            "causes",
            "conditions",
            "checks",
            "caps",
        ],
        ("at", "release_at"),
    )
    snapshot = []
    rules = engine.value_rules
    known = iso(as_of) if as_known else None
    value = valuate({h.names[u]: f for u, f in h.facts.items()}, as_of, rules, engine.value_models.in_force(known))
    for uuid, facts in h.facts.items():
        s = evaluate(facts, as_of, customer_ladder(engine.rules))
        if s.stage is None:
            continue
        name = h.names[uuid]
        v, rfm, p = value.historical[name], value.rfm.get(name), value.predicted.get(name)
        snapshot.append(
            {
                "customer_id": name,
                "stage": s.stage,
                "health": s.health,
                "purchases": s.count,
                **{f"revenue_{c}": v for c, v in revenue(facts, as_of).items()},
                "base_currency": rules.base_currency,
                "net_revenue_base": v.net_revenue,  # what has no rate to it is in revenue_XXX only
                "average_order_value": v.average_order_value,
                "tenure_days": v.tenure_days,
                "rfm": rfm.code if rfm else None,
                "rfm_segment": rfm.segment if rfm else None,
                "p_alive": p.p_alive if p else None,
                "churn_risk": p.churn_risk if p else None,
                "expected_transactions": p.expected_transactions if p else None,
                "clv": p.clv if p else None,
                "value_segment": p.value_segment if p else None,
                "model_id": value.model.model_id if p and value.model else None,
                "first_purchase": iso(s.first.at) if s.first else None,
                "last_purchase": iso(s.last.at) if s.last else None,
                "erased": uuid in h.erased,
                "as_of": iso(as_of),
            }
        )
    # Net revenue in a column per currency (revenue_EUR, ...): amounts in two currencies are never
    # added; net_revenue_base converts those with a rate to the base currency (docs/value.md).
    money = sorted({k for row in snapshot for k in row if k.startswith("revenue_")})
    snap = _frame(
        snapshot,
        ["customer_id", "stage", "health", "purchases", *money, *VALUE_COLUMNS, "first_purchase", "last_purchase"]
        + ["erased", "as_of"],
        ("first_purchase", "last_purchase", "as_of"),
    )
    snap[money] = snap[money].fillna(0.0)
    return {"touchpoints": touchpoints, "changes": changes, "actions": actions, "snapshot": snap}


def _frame(rows: list[dict], columns: list[str], times: tuple[str, ...]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    for col in times:
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    return df


def to_parquet(tables: dict[str, pd.DataFrame], out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, df in tables.items():
        path = out / f"{name}.parquet"
        df.to_parquet(path, index=False)
        written[name] = str(path)
    return written
