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
from engine.projections.lifecycle import evaluate, revenue
from engine.service import Engine

from .history import History, load

TABLES = ("touchpoints", "changes", "actions", "snapshot")


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
        [{**c, "causes": orjson.dumps(c["causes"]).decode()} for c in h.changes],
        [
            "change_id",
            "customer_id",
            "dimension",
            "from",
            "to",
            "effective_at",
            "recorded_at",
            "rules_version",
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
    for uuid, facts in h.facts.items():
        s = evaluate(facts, as_of, engine.rules)
        if s.stage is None:
            continue
        snapshot.append(
            {
                "customer_id": h.names[uuid],
                "stage": s.stage,
                "health": s.health,
                "purchases": s.count,
                **{f"revenue_{c}": v for c, v in revenue(facts, as_of).items()},
                "first_purchase": iso(s.first.at) if s.first else None,
                "last_purchase": iso(s.last.at) if s.last else None,
                "erased": uuid in h.erased,
                "as_of": iso(as_of),
            }
        )
    # Net revenue in a column per currency (revenue_EUR, ...): amounts in two currencies are never added.
    money = sorted({k for row in snapshot for k in row if k.startswith("revenue_")})
    snap = _frame(
        snapshot,
        ["customer_id", "stage", "health", "purchases", *money, "first_purchase", "last_purchase", "erased", "as_of"],
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
