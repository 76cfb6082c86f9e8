"""The event store: an eventsourcing application of customers on SQLite or PostgreSQL, with
orjson events and the journey recorders' side tables (engine.persistence), and its wiring."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, InternalError, ProgrammingError, StoredEvent, Transcoder
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder
from eventsourcing.utils import get_topic

from .aggregates.customer import Customer
from .config import Config
from .persistence.codec import OrjsonTranscoder
from .persistence.files import private_dir, sqlite_wal
from .persistence.journal import JourneyRecorder, LinkRow, TimerRow, TouchpointRow
from .persistence.locks import WriterLock
from .persistence.postgres import PostgresJourneyRecorder, ensure_schema, pg_setup_lock
from .persistence.sqlite import SQLiteJourneyRecorder
from .retry import retry

log = logging.getLogger("journey.store")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SNAPSHOT_TOPIC = get_topic(Customer.Snapshot)


def to_us(t: datetime) -> int:
    """Microseconds since the epoch, exactly: the timers' sortable integer form."""
    return (t - EPOCH) // timedelta(microseconds=1)


class JourneyStore(Application[UUID]):
    """The event store: customers and their touchpoint and lifecycle events."""

    name = "journey"
    is_snapshotting_enabled = True

    def __init__(self, env: dict[str, str], snapshot_interval: int, lock: WriterLock):
        super().__init__(env=env)
        # Snapshots are taken by append (the library's per-class intervals serve only its save).
        self.snapshot_interval = snapshot_interval
        self.lock = lock
        if not isinstance(self.recorder, JourneyRecorder):
            raise TypeError(f"{type(self.recorder).__name__} is not a journey recorder (APPLICATION_RECORDER_TOPIC)")
        # The recorder with the journey's side tables, typed (engine.persistence.journal).
        self.journal: JourneyRecorder = self.recorder
        assert self.snapshots is not None  # snapshotting is enabled
        snapshots = self.snapshots.recorder
        assert isinstance(snapshots, (SQLiteAggregateRecorder, PostgresAggregateRecorder))
        self.snapshots_table: str = snapshots.events_table_name

    def exclusive(self) -> Any:
        """Hold off every other writer of this store for a read-decide-write round."""
        return self.lock.held()

    def close(self) -> None:
        super().close()
        self.lock.close()

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    @contextmanager
    def writing(self, customers: Iterable[Customer]) -> Iterator[None]:
        """Mutate cached customers and save them inside this block: if anything fails, the
        customers, whose in-memory state may have run ahead of the store, leave the cache."""
        try:
            yield
        except BaseException:
            if self.repository.cache is not None:
                for customer in customers:
                    try:
                        self.repository.cache.get(customer.id, evict=True)
                    except KeyError:
                        pass
            raise

    def _snapshot(self, customers: list[Customer]) -> None:
        """Write the customers' snapshots (replacing older ones), after their events' commit. Only
        a shortcut for loading: one that cannot be written is logged and skipped until the
        customer's next snapshot point, never a failed batch (it would be retried as duplicates)."""
        if self._write_snapshots(customers) or len(customers) == 1:
            return
        for customer in customers:  # all at once failed: one by one, so one bad one costs only its own
            self._write_snapshots([customer])

    def _write_snapshots(self, group: list[Customer]) -> bool:
        assert self.snapshots is not None
        to_snapshot = self.snapshots.mapper.to_stored_event
        try:
            with self.exclusive():  # in version order with other writers, so one snapshot stays
                self.journal.replace_snapshots(
                    self.snapshots_table, [to_snapshot(Customer.Snapshot.take(c)) for c in group]
                )
        except Exception:  # noqa: BLE001 - see _snapshot
            if len(group) > 1:
                return False
            log.exception("the snapshot of customer %s could not be written", group[0].customer_id)
        for customer in group:  # written, or given up on until the next snapshot point
            customer.snapshotted = customer.version
        return True

    def customer(self, customer: UUID) -> Customer | None:
        return self.customers([customer]).get(customer)

    def customers(self, ids: Iterable[UUID], cached: bool = True) -> dict[UUID, Customer]:
        """The customers that exist among these ids: from the cache, the rest rebuilt from the
        store in a few queries for all of them (newest snapshot, then the events after it).

        Cached customers are not re-read: a worker owns its customers (Kafka partitions are
        keyed by customer), and if another writer did append to one, the next save collides on
        (customer, version), the customer leaves the cache and the batch is decided again.
        Readers beside the writers ask with cached=False: all from the store, none cached.
        """
        cache = self.repository.cache if cached else None
        found: dict[UUID, Customer] = {}
        missing = []
        for uuid in ids:
            if cache is not None:
                try:
                    hit = cache.get(uuid)
                    assert isinstance(hit, Customer)  # the store's only aggregate
                    found[uuid] = hit
                    continue
                except KeyError:
                    pass
            missing.append(uuid)
        if not missing:
            return found
        loaded: dict[UUID, Any] = {}
        for uuid, version, topic, state in self.journal.latest(self.snapshots_table, missing):
            stored = StoredEvent(originator_id=uuid, originator_version=version, topic=topic, state=state)
            domain_event = self.mapper.to_domain_event(stored)
            assert isinstance(domain_event, (Customer.Event, Customer.Snapshot))  # a customer's events only
            loaded[uuid] = domain_event.mutate(loaded.get(uuid))
            if topic == SNAPSHOT_TOPIC:
                loaded[uuid].snapshotted = version
        if cache is not None:
            for uuid, customer in loaded.items():
                cache.put(uuid, customer)
        return found | loaded

    def append(
        self,
        customers: Iterable[Customer],
        touchpoint_ids: Sequence[TouchpointRow] = (),
        timers: Sequence[TimerRow] = (),
        links: Sequence[LinkRow] = (),
    ) -> None:
        """Write the customers' new events and the side-table rows in one transaction, snapshot
        those whose history crossed a multiple of the snapshot interval, and cache them.

        The library's `save` does the same per aggregate with runtime protocol checks and a
        re-read of each snapshotted aggregate, about half of the ingest time; here it is one
        pass, and snapshots are taken from the customer in memory at its new version.
        """
        interval = self.snapshot_interval
        events: list[Any] = []
        snap = []
        touched = []
        for customer in customers:
            new = customer.collect_events()
            if new:
                events += new
                touched.append(customer)
                # Every `interval` events, or for a heavy customer every `weight` events: writing
                # a snapshot costs its size, so per event it costs at most a constant.
                if customer.version - customer.snapshotted >= max(interval, customer.weight()):
                    snap.append(customer)
        to_stored = self.mapper.to_stored_event
        stored = [to_stored(e) for e in events]
        with self.exclusive():
            self.journal.write(stored, touchpoint_ids, timers, links)
        if snap:
            self._snapshot(snap)
        if self.repository.cache is not None:
            for customer in touched:
                self.repository.cache.put(customer.id, customer)


def store_env(config: Config) -> dict[str, str]:
    s = config.store
    # The cache keeps the customers a worker writes (see JourneyStore.customers): no fast-forward
    # read per customer and batch (a third of ingest time), and no defensive deep copy (a fifth):
    # a failed write evicts what it touched, and a write over another writer's events collides.
    cache = {
        "AGGREGATE_CACHE_MAXSIZE": str(s.cache_customers),
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }
    return cache | _backend_env(config)


def _backend_env(config: Config) -> dict[str, str]:
    s = config.store
    if s.backend == "sqlite":
        path = private_dir(config.data_path)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path / s.sqlite_file),
            "SQLITE_LOCK_TIMEOUT": str(s.lock_timeout_seconds),
            "APPLICATION_RECORDER_TOPIC": get_topic(SQLiteJourneyRecorder),
        }
    pg = s.postgres
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": pg.dbname,
        "POSTGRES_HOST": pg.host,
        "POSTGRES_PORT": str(pg.port),
        "POSTGRES_USER": pg.user,
        "POSTGRES_PASSWORD": pg.password,
        "POSTGRES_SCHEMA": pg.schema_,
        "POSTGRES_LOCK_TIMEOUT": str(config.store.lock_timeout_seconds),
        "APPLICATION_RECORDER_TOPIC": get_topic(PostgresJourneyRecorder),
    }


def open_store(config: Config) -> JourneyStore:
    if config.store.backend == "sqlite":
        env = store_env(config)
        # Switching a file to WAL needs a lock that two processes opening at once can miss;
        # do it here with retries, so the library finds WAL already on and leaves it.
        retry(lambda _: sqlite_wal(env["SQLITE_DBNAME"]), sqlite3.OperationalError, attempts=50)
        # The env given here overrides what the library would read from os.environ.
        return JourneyStore(env, config.store.snapshot_interval, WriterLock.file(env["SQLITE_DBNAME"] + ".writer-lock"))
    import psycopg

    pg = config.store.postgres

    def create(_: int) -> JourneyStore:
        with pg_setup_lock(pg):
            ensure_schema(pg)
            return JourneyStore(store_env(config), config.store.snapshot_interval, WriterLock.postgres(pg))

    # Workers starting together race to create the schema, tables and functions; the advisory
    # lock makes them take turns, and the retry covers a server without it.
    return retry(
        create,
        (
            psycopg.errors.UniqueViolation,
            psycopg.errors.DuplicateObject,
            psycopg.errors.DuplicateTable,
            IntegrityError,
            ProgrammingError,
            InternalError,
        ),
        attempts=5,
        curable=lambda e: any(w in str(e) for w in ("already exists", "concurrently", "duplicate key")),
    )
