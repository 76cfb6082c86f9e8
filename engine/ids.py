"""Deterministic ids: the same input gives the same id on every machine, forever.

Aggregate ids are name-based UUIDs of the customer id, so nothing personal is readable
in an id, and a redelivered or replayed fact gets the id it had the first time.
"""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID, uuid5

NAMESPACE = UUID("6f1b0d5e-3c1a-5b7e-9a43-1c2d7e0f4a11")


@lru_cache(maxsize=1 << 16)  # the hot path asks for the same customers over and over
def customer_uuid(customer_id: str) -> UUID:
    return uuid5(NAMESPACE, "customer:" + customer_id)


def change_id(customer: UUID, seq: int, dimension: str, to: str | None, effective_at: str) -> str:
    return str(uuid5(NAMESPACE, f"change:{customer}:{seq}:{dimension}:{to}:{effective_at}"))


def shard_of(customer: UUID, shards: int) -> int:
    """Which of `shards` writers owns a customer: its uuid's last byte modulo the count, which
    the stores can compute from the id as text (JourneyStore recorders' `due_customers`)."""
    return (customer.int & 0xFF) % shards
