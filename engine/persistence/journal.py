"""The typed seam between the engine and its recorders: what a journey recorder does beyond the
library's application-recorder contract. Both recorders (SQLite, PostgreSQL) implement it, and
engine.store checks that the one the library built does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import StoredEvent

# (position, customer id as text, topic, stored state): a row of the log, bare.
Row = tuple[int, str, str, bytes]
# (event_id, customer uuid as text, content digest): a touchpoint accepted for good.
TouchpointRow = tuple[str, str, str]
# (customer uuid as text, due time in microseconds since the epoch, or None): a customer's next timer.
TimerRow = tuple[str, "int | None"]
# An identity link a touchpoint is evidence of (engine.identity): (kind, value) of each end, when it
# happened, when it was recorded, the touchpoint's event id, the rule.
LinkRow = tuple[str, str, str, str, str, str, str, str]
# An unlink (engine.identity.Unlink): (kind, value) of each end, when it was recorded, the reason.
UnlinkRow = tuple[str, str, str, str, str, str]
# A fitted value model (engine.value.model): its id, when it was recorded, its body as JSON.
ModelRow = tuple[str, str, str]


@runtime_checkable
class JourneyRecorder(Protocol):
    def write(
        self,
        events: Sequence[StoredEvent],
        touchpoint_ids: Sequence[TouchpointRow] = (),
        timers: Sequence[TimerRow] = (),
        links: Sequence[LinkRow] = (),
    ) -> None:
        """Insert events and side-table rows in one transaction, without returning notification
        ids (nothing here uses them). A collision with another writer (a customer's version, a
        touchpoint id) raises eventsourcing's IntegrityError and writes nothing."""

    def log(self, after: int, limit: int, topics: Sequence[str] = ()) -> list[Row]:
        """Stored events after a position, in log order, as bare rows (for folds over millions of
        events: the library builds a Notification with a UUID per row)."""

    def history(self, customer: UUID) -> list[tuple[str, bytes]]:
        """(topic, state) of one customer's stored events, oldest first."""

    def known_touchpoints(self, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """event_id -> (customer, digest) of those among these ids that were accepted."""

    def latest(self, snapshots_table: str, customers: Sequence[UUID]) -> list[tuple[UUID, int, str, bytes]]:
        """The newest snapshot of each customer that has one, then every event after it (or all
        events), ordered by customer and version: what rebuilds them."""

    def replace_snapshots(self, snapshots_table: str, stored: Sequence[StoredEvent]) -> None:
        """Write these snapshots and delete the older ones of the same customers, in one transaction."""

    def due_customers(self, until_us: int, limit: int, shard: tuple[int, int] | None = None) -> list[str]:
        """Customers due by then, earliest first; with shard (k, n), only those of writer k of n."""

    def customer_count(self) -> int: ...

    def links_of(self, values: Sequence[str]) -> list[LinkRow]:
        """The identity links with an end of one of these values (of any kind)."""

    def all_links(self) -> list[LinkRow]:
        """Every identity link (a rebuild copies them: their ids are sealed in the bodies)."""

    def drop_links(self, value: str, kind: str = "customer") -> int:
        """Delete the links and unlinks with this identifier at an end (erasure); returns how many links."""

    def record_unlink(self, row: UnlinkRow) -> None:
        """Record that two identifiers are not one person (kept for good, as a fact)."""

    def unlinks_of(self, values: Sequence[str] | None) -> list[UnlinkRow]:
        """The unlinks with an end of one of these values; all of them with `values` None."""

    def record_model(self, row: ModelRow) -> None:
        """Record a fitted value model (kept for good: scores and decisions name it); the same
        model recorded again is in force again from then."""

    def models(self) -> list[ModelRow]:
        """Every recording of a value model, in the order they were recorded (the last is in force)."""

    def model_count(self) -> int:
        """How many recordings of value models there are (they are never deleted: a cache of
        `models` is fresh while this is unchanged)."""

    def get_position(self, name: str) -> int: ...

    def set_position(self, name: str, position: int) -> None: ...

    def max_notification_id(self) -> int | None: ...


def by_customer(row: tuple[Any, ...]) -> Any:
    """Sort key of side-table rows: two writers take row locks in the same order, never deadlocking."""
    return row[0]


def by_id_version(row: tuple[Any, ...]) -> tuple[str, int]:
    return str(row[0]), row[1]
