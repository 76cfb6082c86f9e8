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

import fcntl
import gc
import logging
import os
import random
import sqlite3
import threading
import time
import zlib
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence
from uuid import UUID

import orjson
from eventsourcing.application import Application
from eventsourcing.persistence import (IntegrityError, InternalError, OperationalError, ProgrammingError, StoredEvent,
                                      Transcoder)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from .aggregates.customer import Customer
from .config import Config

log = logging.getLogger("journey.store")

WAL_CHECKPOINT_PAGES = 10_000   # SQLite: checkpoint the WAL every ~40 MB (default: 1,000 pages)
WRITER_CACHE_KIB = 65_536       # SQLite: page cache of the writing connection (default: 2 MB)

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
SNAPSHOT_TOPIC = get_topic(Customer.Snapshot)


def to_us(t: datetime) -> int:
    """Microseconds since the epoch, exactly: the timers' sortable integer form."""
    return (t - EPOCH) // timedelta(microseconds=1)


def _first(row: tuple) -> Any:
    return row[0]


def _id_version(row: tuple) -> tuple:
    return str(row[0]), row[1]


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
        # Each touchpoint dirties a page of several indexes with random keys (customer, event
        # id), so a batch writes megabytes to the WAL; checkpointing after every ~1,000 pages
        # (the default) rewrites them all into the database at each commit. Checkpoints every
        # ~40 MB, and a page cache that holds the hot index pages, doubled the write rate at
        # 100,000 customers. (Connection settings, so they are set on the writing connection.)
        c.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        c.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        # One executemany instead of the library's execute per event, which it does to return
        # each notification id; nothing here uses them (relays read the log from positions).
        c.executemany(self.insert_events_statement,
                      [(s.originator_id.hex, s.originator_version, s.topic, s.state) for s in stored_events])
        if kwargs.get("touchpoint_ids"):
            c.executemany("INSERT INTO journey_touchpoints VALUES (?,?,?)", sorted(kwargs["touchpoint_ids"]))
        if kwargs.get("timers"):
            c.executemany("INSERT INTO journey_timers VALUES (?,?) ON CONFLICT (customer) "
                          "DO UPDATE SET due_us = excluded.due_us", sorted(kwargs["timers"], key=_first))
        return None

    def log(self, after: int, limit: int, topics: Sequence[str] = ()) -> list[tuple[int, str, str, bytes]]:
        """(position, customer id as text, topic, state) of stored events after a position: the
        notification log as bare rows, for folds over millions of events (the library builds a
        Notification with a UUID per row)."""
        where = f" AND topic IN ({','.join('?' * len(topics))})" if topics else ""
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None   # plain tuples: a sqlite3.Row per row costs as much as the read
            c.execute(f"SELECT rowid, originator_id, topic, state FROM {self.events_table_name} "
                      f"WHERE rowid > ?{where} ORDER BY rowid LIMIT ?", [after, *topics, limit])
            return c.fetchall()

    def history(self, customer: UUID) -> list[tuple[str, bytes]]:
        """(topic, state) of one customer's stored events, oldest first."""
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None
            c.execute(f"SELECT topic, state FROM {self.events_table_name} WHERE originator_id = ? "
                      "ORDER BY originator_version", (customer.hex,))
            return c.fetchall()

    def known_touchpoints(self, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(event_ids), 500):
                chunk = event_ids[i:i + 500]
                c.execute("SELECT event_id, customer, digest FROM journey_touchpoints WHERE event_id IN "
                          f"({','.join('?' * len(chunk))})", chunk)
                out.update({r[0]: (r[1], r[2]) for r in c.fetchall()})
        return out

    def latest(self, snapshots_table: str, customers: Sequence[UUID]) -> list[tuple[UUID, int, str, bytes]]:
        """The newest snapshot of each customer that has one, then every event after it (or all
        events), ordered by customer and version: what rebuilds them, in two queries a chunk."""
        out: list[tuple[UUID, int, str, bytes]] = []
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(customers), 400):
                chunk = [u.hex for u in customers[i:i + 400]]
                marks = ",".join("?" * len(chunk))
                c.execute(f"SELECT originator_id, MAX(originator_version) FROM {snapshots_table} "
                          f"WHERE originator_id IN ({marks}) GROUP BY originator_id", chunk)
                after = dict.fromkeys(chunk, 0) | {r[0]: r[1] for r in c.fetchall()}
                snapped = [(k, v) for k, v in after.items() if v]
                if snapped:
                    c.execute("WITH v(id, version) AS (VALUES " + ",".join(["(?,?)"] * len(snapped)) + ") "
                              f"SELECT s.originator_id, s.originator_version, s.topic, s.state FROM v JOIN "
                              f"{snapshots_table} s ON s.originator_id = v.id AND s.originator_version = v.version",
                              [x for kv in snapped for x in kv])
                    out += [(UUID(r[0]), r[1], r[2], r[3]) for r in c.fetchall()]
                c.execute("WITH v(id, gt) AS (VALUES " + ",".join(["(?,?)"] * len(after)) + ") "
                          f"SELECT e.originator_id, e.originator_version, e.topic, e.state FROM v "
                          f"JOIN {self.events_table_name} e ON e.originator_id = v.id AND e.originator_version > v.gt",
                          [x for kv in after.items() for x in kv])
                out += [(UUID(r[0]), r[1], r[2], r[3]) for r in c.fetchall()]
        out.sort(key=_id_version)
        return out

    def replace_snapshots(self, snapshots_table: str, stored: Sequence[StoredEvent]) -> None:
        """Write these snapshots and delete the older ones of the same customers, in one
        transaction: a customer keeps one snapshot, whatever its history's length."""
        rows = [(s.originator_id.hex, s.originator_version, s.topic, s.state) for s in stored]
        with self.datastore.transaction(commit=True) as c:
            c.executemany(f"INSERT INTO {snapshots_table} (originator_id, originator_version, topic, state) "
                          "VALUES (?, ?, ?, ?)", rows)
            c.executemany(f"DELETE FROM {snapshots_table} WHERE originator_id = ? AND originator_version < ?",
                          [(r[0], r[1]) for r in rows])

    def due_customers(self, until_us: int, limit: int, shard: tuple[int, int] | None = None) -> list[str]:
        """Customers due by then, earliest first; with shard (k, n), only those of writer k of n."""
        where, args = "", [until_us]
        if shard is not None:
            # engine.ids.shard_of: the last byte of the uuid (its last two hex digits).
            where, args = (" AND ((instr('0123456789abcdef', substr(customer, 35, 1)) - 1) * 16"
                           " + instr('0123456789abcdef', substr(customer, 36, 1)) - 1) % ? = ?",
                           [until_us, shard[1], shard[0]])
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT customer FROM journey_timers WHERE due_us <= ?{where} ORDER BY due_us LIMIT ?",
                      [*args, limit])
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
        self.insert_rows = SQL("INSERT INTO {}.{} (originator_id, originator_version, topic, state) "
                               "VALUES (%s, %s, %s, %s)").format(schema, Identifier(self.events_table_name))

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        """As the library does, but a collision reaches the caller as the IntegrityError it is:
        eventsourcing 9.5 commits the aborted pipeline of a failed insert, and psycopg then raises
        "pipeline aborted" (an OperationalError) in place of the unique violation. Our inserts'
        only expected failure is another writer's version or touchpoint id, so that is what it
        means; the caller decides again (engine.ingest.retrying)."""
        import psycopg
        try:
            return super().insert_events(stored_events, **kwargs)
        except OperationalError as e:
            if isinstance(e.__cause__, psycopg.errors.PipelineAborted):
                raise IntegrityError(f"a concurrent write collided ({e})") from e
            raise

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[Any], **kwargs: Any) -> None:
        # As the library does (table lock, notify), but rows rather than one array of its composite
        # type: psycopg dumps composites in Python, a fifth of a PostgreSQL ingest; plain columns
        # are dumped in C and pipelined. Nothing here uses the returned notification ids.
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.executemany(self.insert_rows, [(s.originator_id, s.originator_version, s.topic, s.state)
                                            for s in stored_events])

    def _fetch_ids_after_insert_events(self, curs: Any, stored_events: Sequence[Any], **kwargs: Any) -> None:
        return None

    def _insert_events(self, curs: Any, stored_events: Sequence[Any], **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        # Sorted, so two writers take row locks in the same order and cannot deadlock.
        if kwargs.get("touchpoint_ids"):
            curs.executemany(SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(self.t_ids),
                             sorted(kwargs["touchpoint_ids"]))
        if kwargs.get("timers"):
            curs.executemany(self.upsert_timer, sorted(kwargs["timers"], key=_first))

    def log(self, after: int, limit: int, topics: Sequence[str] = ()) -> list[tuple[int, str, str, bytes]]:
        """As SQLiteJourneyRecorder.log."""
        where = SQL(" AND topic = ANY(%s)") if topics else SQL("")
        args = [after, list(topics), limit] if topics else [after, limit]
        with self.datastore.transaction(commit=False) as curs:
            curs.row_factory = tuple_row
            curs.execute(SQL("SELECT notification_id, originator_id::text, topic, state FROM {} "
                             "WHERE notification_id > %s{} ORDER BY notification_id LIMIT %s").format(
                SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name)), where),
                args)
            return curs.fetchall()

    def history(self, customer: UUID) -> list[tuple[str, bytes]]:
        """As SQLiteJourneyRecorder.history."""
        with self.datastore.transaction(commit=False) as curs:
            curs.row_factory = tuple_row
            curs.execute(SQL("SELECT topic, state FROM {}.{} WHERE originator_id = %s ORDER BY originator_version")
                         .format(Identifier(self.datastore.schema), Identifier(self.events_table_name)), (customer,))
            return curs.fetchall()

    def known_touchpoints(self, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT event_id, customer, digest FROM {} WHERE event_id = ANY(%s)")
                         .format(self.t_ids), (list(event_ids),))
            return {r["event_id"]: (r["customer"], r["digest"]) for r in curs.fetchall()}

    def latest(self, snapshots_table: str, customers: Sequence[UUID]) -> list[tuple[UUID, int, str, bytes]]:
        """As SQLiteJourneyRecorder.latest, in one round trip per query."""
        schema = Identifier(self.datastore.schema)
        events, snaps = Identifier(self.events_table_name), Identifier(snapshots_table)
        with self.datastore.transaction(commit=False) as curs:
            # One index scan per customer in both queries: as plain joins the planner, not knowing
            # how few ids come, hash-joins a sequential scan of the whole table (seen: ingest fell
            # to ~500/s at 1.7M touchpoints). OFFSET 0 keeps a lateral subquery from being
            # flattened into such a join; its cost estimate would then switch JIT on (~0.1 s).
            curs.execute("SET LOCAL jit = off")
            curs.execute(SQL(
                "SELECT s.originator_id, s.originator_version, s.topic, s.state "
                "FROM unnest(%s::uuid[]) AS v(id) CROSS JOIN LATERAL ("
                "SELECT originator_id, originator_version, topic, state FROM {schema}.{snaps} "
                "WHERE originator_id = v.id ORDER BY originator_version DESC LIMIT 1) s").format(
                schema=schema, snaps=snaps), (list(customers),))
            out = [(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
                   for r in curs.fetchall()]
            after = dict.fromkeys(customers, 0) | {r[0]: r[1] for r in out}
            curs.execute(SQL(
                "SELECT e.originator_id, e.originator_version, e.topic, e.state "
                "FROM unnest(%s::uuid[], %s::bigint[]) AS v(id, gt) CROSS JOIN LATERAL ("
                "SELECT originator_id, originator_version, topic, state FROM {schema}.{events} "
                "WHERE originator_id = v.id AND originator_version > v.gt OFFSET 0) e").format(
                schema=schema, events=events), (list(after), list(after.values())))
            out += [(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
                    for r in curs.fetchall()]
        out.sort(key=_id_version)
        return out

    def replace_snapshots(self, snapshots_table: str, stored: Sequence[StoredEvent]) -> None:
        """As SQLiteJourneyRecorder.replace_snapshots."""
        table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(snapshots_table))
        rows = [(s.originator_id, s.originator_version, s.topic, s.state) for s in stored]
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(SQL("INSERT INTO {} (originator_id, originator_version, topic, state) "
                                 "VALUES (%s, %s, %s, %s)").format(table), rows)
            curs.executemany(SQL("DELETE FROM {} WHERE originator_id = %s AND originator_version < %s").format(table),
                             [(r[0], r[1]) for r in rows])

    def due_customers(self, until_us: int, limit: int, shard: tuple[int, int] | None = None) -> list[str]:
        where, args = SQL(""), [until_us]
        if shard is not None:   # engine.ids.shard_of: the last byte of the uuid
            where, args = SQL(" AND ('x' || substr(customer, 35, 2))::bit(8)::int %% %s = %s"), [
                until_us, shard[1], shard[0]]
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT customer FROM {} WHERE due_us <= %s{} ORDER BY due_us LIMIT %s")
                         .format(self.t_timers, where), [*args, limit])
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


class WriterLock:
    """Writers of one store take turns, across processes. Every write holds the lock while it
    writes (both stores write one transaction at a time anyway); a writer whose write collided
    with another's holds it for a whole round of reading, deciding and writing
    (JourneyStore.exclusive), during which nobody else commits, so that round cannot collide
    again. Reentrant, and threads of one process take turns too. The lock itself: an exclusive
    flock on a file beside a SQLite database; a session advisory lock per PostgreSQL schema."""

    def __init__(self, acquire: Callable[[], None], release: Callable[[], None], close: Callable[[], None]):
        self._acquire, self._release, self._close = acquire, release, close
        self.depth = 0
        self.threads = threading.RLock()

    @contextmanager
    def held(self) -> Iterator[None]:
        with self.threads:
            if self.depth == 0:
                self._acquire()
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self._release()

    def close(self) -> None:
        self._close()

    @classmethod
    def file(cls, path: str) -> "WriterLock":
        fd: list[int] = []

        def acquire() -> None:
            if not fd:
                fd.append(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            fcntl.flock(fd[0], fcntl.LOCK_EX)

        def close() -> None:
            while fd:
                os.close(fd.pop())
        return cls(acquire, lambda: fcntl.flock(fd[0], fcntl.LOCK_UN), close)

    @classmethod
    def postgres(cls, config: Config) -> "WriterLock":
        key = zlib.crc32(f"journey-writer:{config.store.postgres.schema_}".encode())
        conn: list[Any] = []

        def acquire() -> None:
            import psycopg
            for attempt in (1, 2):   # a connection the server dropped is replaced once
                if not conn:
                    conn.append(pg_connect(config, autocommit=True))
                try:
                    conn[0].execute("SELECT pg_advisory_lock(%s)", (key,))
                    return
                except psycopg.OperationalError:
                    close()
                    if attempt == 2:
                        raise

        def release() -> None:
            import psycopg
            try:
                conn[0].execute("SELECT pg_advisory_unlock(%s)", (key,))
            except psycopg.OperationalError:
                close()   # the lock went with the session

        def close() -> None:
            while conn:
                try:
                    conn.pop().close()
                except Exception:  # noqa: BLE001 - closing what is already broken
                    pass
        return cls(acquire, release, close)


class JourneyStore(Application):
    """The event store: customers and their touchpoint and lifecycle events."""
    name = "journey"
    is_snapshotting_enabled = True

    def __init__(self, env: dict[str, str], snapshot_interval: int, lock: WriterLock):
        super().__init__(env=env)
        self.snapshotting_intervals = {Customer: snapshot_interval}
        self.lock = lock

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
        for customer in customers:   # all at once failed: one by one, so one bad one costs only its own
            self._write_snapshots([customer])

    def _write_snapshots(self, group: list[Customer]) -> bool:
        to_snapshot = self.snapshots.mapper.to_stored_event  # type: ignore[union-attr]
        try:
            with self.exclusive():   # in version order with other writers, so one snapshot stays
                self.recorder.replace_snapshots(  # type: ignore[attr-defined]
                    self.snapshots.recorder.events_table_name,  # type: ignore[union-attr]
                    [to_snapshot(Customer.Snapshot.take(c)) for c in group])
        except Exception:  # noqa: BLE001 - see _snapshot
            if len(group) > 1:
                return False
            log.exception("the snapshot of customer %s could not be written", group[0].customer_id)
        for customer in group:   # written, or given up on until the next snapshot point
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
                    found[uuid] = cache.get(uuid)
                    continue
                except KeyError:
                    pass
            missing.append(uuid)
        if not missing:
            return found
        snapshots = self.snapshots.recorder.events_table_name  # type: ignore[union-attr]
        loaded: dict[UUID, Any] = {}
        for uuid, version, topic, state in self.recorder.latest(snapshots, missing):  # type: ignore[attr-defined]
            stored = StoredEvent(originator_id=uuid, originator_version=version, topic=topic, state=state)
            loaded[uuid] = self.mapper.to_domain_event(stored).mutate(loaded.get(uuid))
            if topic == SNAPSHOT_TOPIC:
                loaded[uuid].snapshotted = version
        if cache is not None:
            for uuid, customer in loaded.items():
                cache.put(uuid, customer)
        return found | loaded

    def append(self, customers: Iterable[Customer], **side_rows: Any) -> None:
        """Write the customers' new events and the side-table rows in one transaction, snapshot
        those whose history crossed a multiple of the snapshot interval, and cache them.

        The library's `save` does the same per aggregate with runtime protocol checks and a
        re-read of each snapshotted aggregate, about half of the ingest time; here it is one
        pass, and snapshots are taken from the customer in memory at its new version.
        """
        interval = self.snapshotting_intervals[Customer]
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
            self.recorder.insert_events(stored, **side_rows)
        if snap and self.snapshots is not None:
            self._snapshot(snap)
        if self.repository.cache is not None:
            for customer in touched:
                self.repository.cache.put(customer.id, customer)
        # The cached customers are many small objects that live long: without this, the cyclic
        # collector rescans all of them again and again (13% of ingest time at 5,000 customers,
        # growing with the cache). Frozen objects are still freed when no longer referenced;
        # only reference cycles among them would stay, and the engine's state makes none.
        gc.freeze()


def store_env(config: Config) -> dict[str, str]:
    s = config.store
    # The cache keeps the customers a worker writes (see JourneyStore.customers): no fast-forward
    # read per customer and batch (a third of ingest time), and no defensive deep copy (a fifth):
    # a failed write evicts what it touched, and a write over another writer's events collides.
    cache = {"AGGREGATE_CACHE_MAXSIZE": str(s.cache_customers), "AGGREGATE_CACHE_FASTFORWARD": "n",
             "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}
    return cache | _backend_env(config)


def _backend_env(config: Config) -> dict[str, str]:
    s = config.store
    if s.backend == "sqlite":
        path = private_dir(config.data_path)
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
        return JourneyStore(env, config.store.snapshot_interval, WriterLock.file(env["SQLITE_DBNAME"] + ".writer-lock"))
    import psycopg
    for attempt in range(5):
        # Workers starting together race to create the schema, tables and functions; the
        # advisory lock makes them take turns, and the retry covers a server without it.
        try:
            with pg_setup_lock(config):
                ensure_schema(config)
                return JourneyStore(store_env(config), config.store.snapshot_interval, WriterLock.postgres(config))
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject, psycopg.errors.DuplicateTable,
                IntegrityError, ProgrammingError, InternalError) as e:
            if attempt == 4 or not any(w in str(e) for w in ("already exists", "concurrently", "duplicate key")):
                raise
            time.sleep(0.05 + random.random() * 0.1)
    raise AssertionError("unreachable")


def private_dir(path: Path) -> Path:
    """The data directory, created readable by its owner only (it holds the key store); writers
    starting together may both create it."""
    path.mkdir(parents=True, mode=0o700, exist_ok=True)
    return path


def private_file(path: str) -> None:
    """Create a file readable by its owner only, before SQLite opens it (its journal, WAL and
    shared-memory files take the same permissions)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def sqlite_wal(path: str) -> None:
    private_file(path)
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
