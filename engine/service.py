"""The engine's service API: what the CLI, streams/ and replay/ call. Wiring is done here, by hand."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterable
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from .catalog import Catalog
from .clock import EventTimeClock, SystemClock, iso
from .config import Config, ConfigError
from .ids import customer_uuid
from .ingest import BatchResult, Ingestor
from .keys import open_keystore
from .policies.decide import PolicyEngine
from .store import open_store, to_us
from .touchpoints import Rejection, Touchpoint, Validator
from . import queries


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    changes: int = 0
    timer_changes: int = 0
    actions: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def add(self, batch: BatchResult, invalid: list[Rejection]) -> None:
        self.accepted += batch.accepted
        self.duplicates += batch.duplicates
        self.changes += batch.changes
        self.actions += batch.actions
        self.timer_changes += batch.timer_changes
        self.rejections += invalid + batch.rejected
        self.rejected = len(self.rejections)

    def merge(self, other: "IngestReport") -> None:
        """Add another report of the same ingest (a batch, or another process's share)."""
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.changes += other.changes
        self.timer_changes += other.timer_changes
        self.actions += other.actions
        self.rejections += other.rejections
        self.rejected = len(self.rejections)

    def summary(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected,
                "stage_changes": self.changes, "timer_changes": self.timer_changes, "actions": self.actions}


class Engine:
    def __init__(self, config: Config, clock: Any = None, shard: tuple[int, int] | None = None):
        """`shard` (k, n): this engine is writer k of n, each owning the customers engine.ids.shard_of
        gives it, as a worker owns the customers of its Kafka partitions (see engine.parallel)."""
        self.config = config
        self.shard = shard
        self.clock = clock or SystemClock()
        self.rules = config.lifecycle
        self.catalog = Catalog(config.kinds, config.privacy.pii_fields)
        self.validator = Validator(self.catalog, timedelta(hours=config.ingest.future_tolerance_hours),
                                   config.ingest.max_touchpoint_bytes)
        self.store = open_store(config)
        self.keys = open_keystore(config)
        for spec in config.policies:
            if spec.trigger.kind is not None and self.catalog.schema(spec.trigger.kind) is None:
                raise ConfigError(f"policy {spec.name}: trigger kind {spec.trigger.kind!r} is not a known "
                                  "touchpoint kind")
        self.policies = PolicyEngine(config.policies, config.contact)
        self.ingestor = Ingestor(self.store, self.keys, self.catalog, self.rules, self.policies, shard)

    def close(self) -> None:
        self.keys.close()
        self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    def ingest(self, records: Iterable[bytes | str | dict], on_batch: Callable[[int], None] | None = None,
               workers: int = 1) -> IngestReport:
        """Validate and ingest records (raw JSON lines or decoded objects), batch by batch.

        Record numbers count from 1 in the order given, so a rejection points at its line.
        With workers > 1, that many processes share the work, each owning a shard of the
        customers (engine.parallel).
        """
        if workers > 1:
            from .parallel import ingest_in_parallel
            return ingest_in_parallel(self.config, records, workers, isinstance(self.clock, EventTimeClock),
                                      on_batch)
        report = IngestReport()
        size = self.config.ingest.batch_size
        batch: list[tuple[int, bytes | str | dict]] = []
        for number, record in enumerate(records, start=1):
            batch.append((number, record))
            if len(batch) >= size:
                self.ingest_batch(batch, report)
                if on_batch:
                    on_batch(len(batch))
                batch = []
        if batch:
            self.ingest_batch(batch, report)
            if on_batch:
                on_batch(len(batch))
        return report

    def ingest_batch(self, batch: list[tuple[int, bytes | str | dict]], report: IngestReport) -> None:
        """Ingest one batch of numbered records in one transaction, adding to the report."""
        backfill = isinstance(self.clock, EventTimeClock)
        # A backfill's clock follows the data: "in the future" means after the real time.
        now = SystemClock().now() if backfill else self.clock.now()
        valid: list[tuple[int, Touchpoint]] = []
        invalid: list[Rejection] = []
        for number, record in batch:
            if isinstance(record, (bytes, str)):
                parsed = self.validator.parse_line(record, number, now)
            else:
                parsed = self.validator.validate(record, number, now)
            (valid.append((number, parsed)) if isinstance(parsed, Touchpoint) else invalid.append(parsed))
        if backfill and valid:
            self.clock.observe(max(tp.occurred_at for _, tp in valid))
        # A backfill also runs the timers due by now, in the batch's own transaction.
        report.add(self.ingestor.ingest(valid, self.clock.now(), due_timers=backfill), invalid)
        if backfill:
            report.timer_changes += self.run_due()

    def run_due(self, batch: int = 500, shard: tuple[int, int] | None = None) -> int:
        """Re-evaluate every customer whose timer is due (window expiries, health thresholds,
        policy timers, deferred actions) among this engine's shard, or the given one; returns the
        changes and decisions recorded."""
        now = self.clock.now()
        shard = shard or self.shard
        recorder = self.store.recorder
        changes = 0
        while due := recorder.due_customers(to_us(now), batch, shard):  # type: ignore[attr-defined]
            for attempt in range(8):
                try:
                    customers = list(self.store.customers(UUID(u) for u in due).values())
                    timers: list = []
                    with self.store.writing(customers):
                        n = sum(sum(self.ingestor.derive(c, now, iso(now), timers)) for c in customers)
                        self.store.append(customers, timers=timers)
                    changes += n
                    break
                except IntegrityError:
                    if attempt == 7:
                        raise
        return changes

    def forget(self, customer_id: str) -> dict[str, Any]:
        customer = self.store.customer(customer_uuid(customer_id))
        if customer is None:
            raise KeyError(customer_id)
        deleted = self.keys.delete(str(customer.id))
        if not customer.erased:
            with self.store.writing([customer]):
                customer.erase(iso(self.clock.now()))
                self.store.append([customer])
        return {"customer_id": customer_id, "erased": True, "key_deleted": deleted}

    # -- reading -----------------------------------------------------------------------------

    def customer(self, customer_id: str, as_of: Any = None) -> dict[str, Any]:
        return queries.customer_view(self, customer_id, as_of or self.clock.now())

    def funnel(self, as_of: Any = None) -> dict[str, Any]:
        return queries.funnel(self, as_of or self.clock.now())

    def changes(self, after: int = 0, limit: int = 100, customer_id: str | None = None) -> list[dict[str, Any]]:
        return queries.changes(self, after, limit, customer_id)

    def actions(self, after: int = 0, limit: int = 100, customer_id: str | None = None) -> list[dict[str, Any]]:
        return queries.actions(self, after, limit, customer_id)

    def why(self, action_id: str) -> dict[str, Any]:
        from .policies.explain import explain
        history = queries.action_history(self, action_id)
        if not history:
            raise KeyError(action_id)
        return {"action_id": action_id, "status": history[-1]["status"], "explanation": explain(history),
                "records": history}
