"""The Redis read model: one hash per customer, for lookups at every touchpoint.

It follows every customer event in the store from a position kept in Redis; the hashes of
the customers touched by a batch and the new position are written in one MULTI/EXEC, so the
model is always some exact prefix of the store's history. `rebuild` starts it from scratch.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from engine import queries
from engine.service import Engine

from .topology import Topology

BATCH = 2000


def summaries(engine: Engine, customers: set[UUID]) -> list[tuple[str, dict[str, str]]]:
    """The read-model fields of these customers, now (no personal data: ids, stage, money, flags)."""
    # Rebuilt from the store in a few queries for all of them, not from the customer cache that
    # the writers share, and from each one's recorded state rather than its whole history.
    now = engine.clock.now()
    model = engine.value_models.in_force()  # P(alive) and CLV as of this update (docs/value.md)
    out = []
    for customer in engine.store.customers(customers, cached=False).values():
        v = queries.summary(customer, now, engine.rules, engine.value_rules)
        scored = None
        if model is not None:
            from engine.value.person import valued

            scored = valued(customer.facts, now, model, engine.value_rules, with_rfm=False)
        out.append(
            (
                v["customer_id"],
                {
                    "customer_id": v["customer_id"],
                    "stage": v["stage"] or "",
                    "health": v["health"] or "",
                    "purchases": str(v["purchases"]),
                    "revenue": orjson.dumps(v["revenue"]).decode(),
                    "base_currency": v["base_currency"],
                    "net_revenue": str(v["net_revenue"]),  # in the base currency (docs/value.md)
                    "value_segment": v["value_segment"] or "",
                    "ladders": orjson.dumps(v["ladders"]).decode(),  # {name: {stage, health}}, other ladders
                    "p_alive": "" if scored is None else f"{scored.p_alive:.4f}",
                    "clv": "" if scored is None or scored.clv is None else f"{scored.clv:.2f}",
                    "model_id": "" if scored is None else scored.model_id,
                    "last_purchase": v["last_purchase"] or "",
                    "open_complaint": "1" if v["open_complaints"] else "0",
                    "overdue_invoice": "1" if v["overdue_invoices"] else "0",
                    "consent": orjson.dumps(v["consent"]).decode(),
                    "erased": "1" if v["erased"] else "0",
                },
            )
        )
    return out


def _touched(engine: Engine, after: int, limit: int) -> tuple[int, set[UUID]]:
    last, customers = after, set()
    for position, customer, _, _ in queries.rows(engine, after, limit):
        last = position
        customers.add(customer)
    return last, {UUID(c) for c in customers}


async def update(engine: Engine, redis: Redis, topo: Topology, batch: int = BATCH) -> int:
    """Apply the next batch of the store's history; returns how many customers were refreshed."""
    position_key = topo.key("readmodel", "position")
    async with redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(position_key)
            position = int(await pipe.get(position_key) or 0)
            last, customers = await asyncio.to_thread(_touched, engine, position, batch)
            if last == position:
                return 0
            rows = await asyncio.to_thread(summaries, engine, customers)
            pipe.multi()
            for row in rows:
                key = topo.key("customer", row[0])
                pipe.delete(key)
                # redis-py types the mapping Mapping[FieldT, EncodableT], whose key type is invariant:
                # a dict[str, str] does not fit it, though str is a FieldT.
                pipe.hset(key, mapping=row[1])  # type: ignore[arg-type]
            pipe.set(position_key, last)
            await pipe.execute()
        except WatchError:
            return 0
    return len(customers)


async def catch_up(engine: Engine, redis: Redis, topo: Topology) -> int:
    total = 0
    while True:
        before = int(await redis.get(topo.key("readmodel", "position")) or 0)
        total += await update(engine, redis, topo)
        if int(await redis.get(topo.key("readmodel", "position")) or 0) == before:
            return total


async def rebuild(engine: Engine, redis: Redis, topo: Topology) -> int:
    """Drop every customer hash and the position, then follow the whole history again."""
    async for key in redis.scan_iter(match=topo.key("customer", "*"), count=1000):
        await redis.delete(key)
    await redis.delete(topo.key("readmodel", "position"))
    return await catch_up(engine, redis, topo)


def _text(reply: bytes | str) -> str:
    """A reply as text: bytes from a client without decode_responses, str from one with it."""
    return reply.decode() if isinstance(reply, bytes) else reply


class StaleReadModel(Exception):
    """A row in a format this version no longer writes."""


async def lookup(redis: Redis, topo: Topology, customer_id: str) -> dict[str, Any] | None:
    """What a service calls at a touchpoint: the customer's stage, health and flags, or None."""
    raw = await redis.hgetall(topo.key("customer", customer_id))
    if not raw:
        return None
    row = {_text(k): _text(v) for k, v in raw.items()}
    revenue = orjson.loads(row["revenue"])
    if not isinstance(revenue, dict):  # "60.00": a row written before revenue was kept per currency
        raise StaleReadModel(
            f"the read model's row of {customer_id!r} predates revenue per currency: run journey readmodel --rebuild"
        )
    return {
        **row,
        "purchases": int(row["purchases"]),
        "revenue": revenue,
        "open_complaint": row["open_complaint"] == "1",
        "overdue_invoice": row["overdue_invoice"] == "1",
        "consent": orjson.loads(row["consent"]),
        "erased": row["erased"] == "1",
        "stage": row["stage"] or None,
        "health": row["health"] or None,
        "last_purchase": row["last_purchase"] or None,
        # rows written before value existed have none of it until rewritten
        "net_revenue": float(row["net_revenue"]) if row.get("net_revenue") else None,
        "value_segment": row.get("value_segment") or None,
        "ladders": orjson.loads(row["ladders"]) if row.get("ladders") else {},
        "p_alive": float(row["p_alive"]) if row.get("p_alive") else None,
        "clv": float(row["clv"]) if row.get("clv") else None,
        "model_id": row.get("model_id") or None,
    }
