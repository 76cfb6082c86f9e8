"""Which policies fire: on the lifecycle changes and touchpoints just recorded, and on timers
(absence, time held in a stage, dates) that are due.

Every firing has a stable trigger id (the change id, the touchpoint id, or the anchor of a
timer), so the action id derived from it is the same however often the same facts are seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..projections.lifecycle import Status
from ..vocabulary import VALUE_SEGMENT
from .model import PolicySpec


@dataclass(frozen=True)
class Firing:
    spec: PolicySpec
    trigger_id: str
    description: str
    causes: tuple[str, ...]


def on_facts(
    specs: Iterable[PolicySpec], changes: list[dict[str, Any]], touchpoints: list[dict[str, Any]]
) -> list[Firing]:
    out = []
    for spec in specs:
        t = spec.trigger
        for c in changes:
            on_ladder = c.get("ladder", "customer") == t.ladder  # changes recorded before ladders: customer
            stage, health = on_ladder and c["dimension"] == "stage", on_ladder and c["dimension"] == "health"
            value = c["dimension"] == VALUE_SEGMENT
            if (
                (t.on == "stage_entered" and stage and c["to"] == t.stage)
                or (t.on == "stage_left" and stage and c["from"] == t.stage)
                or (t.on == "health_changed" and health and c["to"] == t.health)
                or (t.on == "value_segment_entered" and value and c["to"] == t.segment)
                or (t.on == "value_segment_left" and value and c["from"] == t.segment)
            ):
                # A first-time trigger has one id per customer and stage, so it is decided once.
                trigger_id = f"first:{t.stage or t.segment}" if t.first_time else c["change_id"]
                out.append(
                    Firing(
                        spec,
                        trigger_id,
                        f"{c['dimension']} changed {c['from'] or 'none'} → {c['to'] or 'none'} "
                        f"(effective {c['effective_at'][:10]}, change {c['change_id']})",
                        (c["change_id"], *c["causes"]),
                    )
                )
        if t.on == "touchpoint":
            out += [
                Firing(
                    spec,
                    tp["event_id"],
                    f"touchpoint {tp['kind']} {tp['event_id']} on {tp['occurred_at'][:10]}",
                    (tp["event_id"],),
                )
                for tp in touchpoints
                if tp["kind"] == t.kind
            ]
    return out


def timers(spec: PolicySpec, customer: Any, status: Status, now: datetime) -> list[tuple[datetime, Firing]]:
    """The timer firings of one policy for this customer: due ones and the next one to come."""
    t = spec.trigger
    if t.on == "absence" and t.absence == "second_purchase":
        if status.count != 1 or status.first is None:
            return []
        assert t.days is not None  # Trigger.complete: an absence has its days
        first = status.first
        return [
            (
                first.at + timedelta(days=t.days),
                Firing(
                    spec,
                    f"second_purchase:{first.event_id}",
                    f"no second purchase {t.days} days after the first ({first.event_id} on {first.at:%Y-%m-%d})",
                    (first.event_id,),
                ),
            )
        ]
    if t.on == "absence" and t.absence == "activity" and customer.activity:
        assert t.days is not None  # Trigger.complete: an absence has its days
        at, eid = customer.activity
        return [
            (
                datetime.fromisoformat(at) + timedelta(days=t.days),
                Firing(spec, f"activity:{eid}", f"no activity for {t.days} days after {eid} on {at[:10]}", (eid,)),
            )
        ]
    if t.on == "stage_held" and customer.stage == t.stage and customer.stage_since:
        assert t.days is not None  # Trigger.complete: stage_held has its days
        since, change = customer.stage_since
        return [
            (
                datetime.fromisoformat(since) + timedelta(days=t.days),
                Firing(
                    spec,
                    f"held:{change}",
                    f"{t.stage} for {t.days} days since {since[:10]} (change {change})",
                    (change,),
                ),
            )
        ]
    if t.on == "date" and status.first is not None:
        first = status.first
        years = max(1, _whole_years(first.at, now))
        out = []
        for k in (years, years + 1):  # the latest anniversary reached, and the next one
            due = _anniversary(first.at, k)
            out.append(
                (
                    due,
                    Firing(
                        spec,
                        f"anniversary:{first.event_id}:{k}",
                        f"{k}. anniversary of the first purchase ({first.event_id})",
                        (first.event_id,),
                    ),
                )
            )
        return out
    return []


def _anniversary(t: datetime, years: int) -> datetime:
    try:
        return t.replace(year=t.year + years)
    except ValueError:  # 29 February in a year without one
        return t.replace(year=t.year + years, day=28)


def _whole_years(start: datetime, now: datetime) -> int:
    years = now.year - start.year
    return years if _anniversary(start, years) <= now else years - 1
