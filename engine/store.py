"""Store wiring: an eventsourcing application on SQLite or PostgreSQL, with orjson events.

Two side tables live in the event store's own database and are written in the same
transaction as the events (through the recorder's `_insert_events` hook, the one the
library uses for tracking records):
  journey_touchpoints  event_id -> customer, content digest: idempotency forever, and a
                       unique key that makes concurrent writers of one touchpoint collide;
  journey_timers       customer -> next due time of a lifecycle re-evaluation.
A third, journey_positions, holds how far each relay that follows the log has got.
"""
from __future__ import annotations

import random
import sqlite3
import time
import zlib
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator, Sequence
from uuid import UUID

import orjson
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, InternalError, ProgrammingError, Transcoder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier

from .aggregates.customer import Customer
from .config import Config

# The only datetimes in stored events are the library's own; our bodies hold ISO strings.
_LIBRARY_TIMES = ("timestamp",)
_SNAPSHOT_TIMES = ("_created_on", "_modified_on")


class OrjsonTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        obj = orjson.loads(data)
        for key in _LIBRARY_TIMES:
            if key in obj:
                obj[key] = datetime.fromisoformat(obj[key])
        state = obj.get("state")
        if isinstance(state, dict):
            for key in _SNAPSHOT_TIMES:
                if isinstance(state.get(key), str):
                    state[key] = datetime.fromisoformat(state[key])
        return obj


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_us(t: datetime) -> int:
    """Microseconds since the epoch, exactly: the timers' sortable integer form."""
    return (t - EPOCH) // timedelta(microseconds=1)


def _first(row: tuple) -> Any:
    return row[0]


class SQLiteJourneyRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + [
            "CREATE TABLE IF NOT EXISTS journey_touchpoints ("
            "event_id TEXT PRIMARY KEY, customer TEXT NOT NULL, digest TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS journey_timers ("
            "customer TEXT PRIMARY KEY, due_us INTEGER)",
            "CREATE INDEX IF NOT EXISTS journey_timers_due ON journey_timers (due_us)",
            "CREATE TABLE IF NOT EXISTS journey_positions (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
        ]

    def _insert_events(self, c: Any, stored_events: Sequence[Any], **kwargs: Any) -> Any:
        ids = super()._insert_events(c, stored_events, **kwargs)
        if kwargs.get("touchpoint_ids"):
            c.executemany("INSERT INTO journey_touchpoints VALUES (?,?,?)", sorted(kwargs["touchpoint_ids"]))
        if kwargs.get("timers"):
            c.executemany("INSERT INTO journey_timers VALUES (?,?) ON CONFLICT (customer) "
                          "DO UPDATE SET due_us = excluded.due_us", sorted(kwargs["timers"], key=_first))
        return ids

    def known_touchpoints(self, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(event_ids), 500):
                chunk = event_ids[i:i + 500]
                c.execute("SELECT event_id, customer, digest FROM journey_touchpoints WHERE event_id IN "
                          f"({','.join('?' * len(chunk))})", chunk)
                out.update({r[0]: (r[1], r[2]) for r in c.fetchall()})
        return out

    def set_timers(self, timers: Iterable[tuple[str, int | None]]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.executemany("INSERT INTO journey_timers VALUES (?,?) ON CONFLICT (customer) "
                          "DO UPDATE SET due_us = excluded.due_us", list(timers))

    def due_customers(self, until_us: int, limit: int) -> list[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT customer FROM journey_timers WHERE due_us <= ? ORDER BY due_us LIMIT ?",
                      (until_us, limit))
            return [r[0] for r in c.fetchall()]

    def customer_count(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT COUNT(*) FROM journey_timers")
            return c.fetchone()[0]

    def get_position(self, name: str) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT position FROM journey_positions WHERE name = ?", (name,))
            row = c.fetchone()
            return row[0] if row else 0

    def set_position(self, name: str, position: int) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("INSERT INTO journey_positions VALUES (?, ?) ON CONFLICT (name) "
                      "DO UPDATE SET position = excluded.position", (name, position))


class PostgresJourneyRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        schema = Identifier(self.datastore.schema)
        self.t_ids = SQL("{}.journey_touchpoints").format(schema)
        self.t_timers = SQL("{}.journey_timers").format(schema)
        self.t_positions = SQL("{}.journey_positions").format(schema)
        self.sql_create_statements += [
            SQL("CREATE TABLE IF NOT EXISTS {} (event_id text PRIMARY KEY, customer text NOT NULL, "
                "digest text NOT NULL)").format(self.t_ids),
            SQL("CREATE TABLE IF NOT EXISTS {} (customer text PRIMARY KEY, due_us bigint)").format(self.t_timers),
            SQL("CREATE INDEX IF NOT EXISTS journey_timers_due ON {} (due_us)").format(self.t_timers),
            SQL("CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, position bigint NOT NULL)")
            .format(self.t_positions),
        ]
        self.upsert_timer = SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT (customer) "
                                "DO UPDATE SET due_us = excluded.due_us").format(self.t_timers)

    def _insert_events(self, curs: Any, stored_events: Sequence[Any], **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        # Sorted, so two writers take row locks in the same order and cannot deadlock.
        if kwargs.get("touchpoint_ids"):
            curs.executemany(SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(self.t_ids),
                             sorted(kwargs["touchpoint_ids"]))
        if kwargs.get("timers"):
            curs.executemany(self.upsert_timer, sorted(kwargs["timers"], key=_first))

    def known_touchpoints(self, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT event_id, customer, digest FROM {} WHERE event_id = ANY(%s)")
                         .format(self.t_ids), (list(event_ids),))
            return {r["event_id"]: (r["customer"], r["digest"]) for r in curs.fetchall()}

    def set_timers(self, timers: Iterable[tuple[str, int | None]]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(self.upsert_timer, list(timers))

    def due_customers(self, until_us: int, limit: int) -> list[str]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT customer FROM {} WHERE due_us <= %s ORDER BY due_us LIMIT %s")
                         .format(self.t_timers), (until_us, limit))
            return [r["customer"] for r in curs.fetchall()]

    def customer_count(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT COUNT(*) AS n FROM {}").format(self.t_timers))
            return curs.fetchone()["n"]

    def get_position(self, name: str) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT position FROM {} WHERE name = %s").format(self.t_positions), (name,))
            row = curs.fetchone()
            return row["position"] if row else 0

    def set_position(self, name: str, position: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET "
                             "position = excluded.position").format(self.t_positions), (name, position))


class JourneyStore(Application):
    """The event store: customers and their touchpoint and lifecycle events."""
    name = "journey"
    is_snapshotting_enabled = True

    def __init__(self, env: dict[str, str], snapshot_interval: int):
        super().__init__(env=env)
        self.snapshotting_intervals = {Customer: snapshot_interval}

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

    def customer(self, customer: UUID) -> Customer | None:
        from eventsourcing.application import AggregateNotFoundError
        try:
            return self.repository.get(customer)
        except AggregateNotFoundError:
            return None


def store_env(config: Config) -> dict[str, str]:
    s = config.store
    # Rebuilding a customer from its events costs ~1 ms; the cache keeps recent customers and
    # fast-forwards them with one read of newer events, so another writer's events are seen.
    # No defensive deep copy (a fifth of ingest time): a failed write evicts what it touched.
    cache = {"AGGREGATE_CACHE_MAXSIZE": str(s.cache_customers), "AGGREGATE_CACHE_FASTFORWARD": "y",
             "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}
    return cache | _backend_env(config)


def _backend_env(config: Config) -> dict[str, str]:
    s = config.store
    if s.backend == "sqlite":
        path = config.data_path
        path.mkdir(parents=True, exist_ok=True)
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(path / s.sqlite_file),
                "SQLITE_LOCK_TIMEOUT": "30",
                "APPLICATION_RECORDER_TOPIC": "engine.store:SQLiteJourneyRecorder"}
    pg = s.postgres
    return {"PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": pg.dbname, "POSTGRES_HOST": pg.host, "POSTGRES_PORT": str(pg.port),
            "POSTGRES_USER": pg.user, "POSTGRES_PASSWORD": pg.password,
            "POSTGRES_SCHEMA": pg.schema_, "POSTGRES_LOCK_TIMEOUT": "30",
            "APPLICATION_RECORDER_TOPIC": "engine.store:PostgresJourneyRecorder"}


def open_store(config: Config) -> JourneyStore:
    if config.store.backend == "sqlite":
        env = store_env(config)
        # Switching a file to WAL needs a lock that two processes opening at once can miss;
        # do it here with retries, so the library finds WAL already on and leaves it.
        with_retries(lambda: sqlite_wal(env["SQLITE_DBNAME"]), sqlite3.OperationalError)
        # The env given here overrides what the library would read from os.environ.
        return JourneyStore(env, config.store.snapshot_interval)
    import psycopg
    for attempt in range(5):
        # Workers starting together race to create the schema, tables and functions; the
        # advisory lock makes them take turns, and the retry covers a server without it.
        try:
            with pg_setup_lock(config):
                ensure_schema(config)
                return JourneyStore(store_env(config), config.store.snapshot_interval)
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject, psycopg.errors.DuplicateTable,
                IntegrityError, ProgrammingError, InternalError) as e:
            if attempt == 4 or not any(w in str(e) for w in ("already exists", "concurrently", "duplicate key")):
                raise
            time.sleep(0.05 + random.random() * 0.1)
    raise AssertionError("unreachable")


def sqlite_wal(path: str) -> None:
    db = sqlite3.connect(path, timeout=30)
    try:
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()


def with_retries(action: Any, errors: Any, attempts: int = 50) -> Any:
    for attempt in range(attempts):
        try:
            return action()
        except errors:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 + random.random() * 0.1)


def pg_connect(config: Config, **kwargs: Any) -> Any:
    import psycopg
    pg = config.store.postgres
    return psycopg.connect(dbname=pg.dbname, host=pg.host, port=pg.port, user=pg.user,
                           password=pg.password or None, **kwargs)


@contextmanager
def pg_setup_lock(config: Config) -> Iterator[None]:
    """A session advisory lock per schema, held while tables are created."""
    key = zlib.crc32(f"journey-setup:{config.store.postgres.schema_}".encode())
    with pg_connect(config, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def ensure_schema(config: Config) -> None:
    with pg_connect(config, autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(config.store.postgres.schema_)))
