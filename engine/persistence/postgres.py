"""The journey recorder on PostgreSQL: the library's application recorder, its contract kept,
plus the side tables and the bulk reads the engine needs (engine.persistence.journal); and the
connections, schema and setup lock of a PostgreSQL store."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Cursor
from psycopg.rows import TupleRow, tuple_row
from psycopg.sql import SQL, Identifier

from ..retry import retry
from ..settings import PostgresSettings
from .journal import LinkRow, ModelRow, Row, TimerRow, TouchpointRow, UnlinkRow, by_customer, by_id_version


class PostgresJourneyRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        schema = Identifier(self.datastore.schema)
        self.t_ids = SQL("{}.journey_touchpoints").format(schema)
        self.t_timers = SQL("{}.journey_timers").format(schema)
        self.t_positions = SQL("{}.journey_positions").format(schema)
        self.t_links = SQL("{}.journey_links").format(schema)
        self.t_unlinks = SQL("{}.journey_unlinks").format(schema)
        self.t_models = SQL("{}.journey_models").format(schema)
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (event_id text PRIMARY KEY, customer text NOT NULL, "
                "digest text NOT NULL)"
            ).format(self.t_ids),
            SQL("CREATE TABLE IF NOT EXISTS {} (customer text PRIMARY KEY, due_us bigint)").format(self.t_timers),
            SQL("CREATE INDEX IF NOT EXISTS journey_timers_due ON {} (due_us)").format(self.t_timers),
            SQL("CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, position bigint NOT NULL)").format(
                self.t_positions
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (a_kind text NOT NULL, a_value text NOT NULL, b_kind text NOT NULL, "
                "b_value text NOT NULL, at text NOT NULL, recorded_at text NOT NULL, evidence text NOT NULL, "
                "rule text NOT NULL, PRIMARY KEY (evidence, rule, a_value, b_value))"
            ).format(self.t_links),
            SQL("CREATE INDEX IF NOT EXISTS journey_links_a ON {} (a_value)").format(self.t_links),
            SQL("CREATE INDEX IF NOT EXISTS journey_links_b ON {} (b_value)").format(self.t_links),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (a_kind text NOT NULL, a_value text NOT NULL, b_kind text NOT NULL, "
                "b_value text NOT NULL, recorded_at text NOT NULL, reason text NOT NULL, "
                "PRIMARY KEY (a_kind, a_value, b_kind, b_value, recorded_at))"
            ).format(self.t_unlinks),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} "
                "(model_id text NOT NULL, recorded_at text NOT NULL, body text NOT NULL, "
                "PRIMARY KEY (recorded_at, model_id))"
            ).format(self.t_models),
        ]
        self.upsert_timer = SQL(
            "INSERT INTO {} VALUES (%s, %s) ON CONFLICT (customer) DO UPDATE SET due_us = excluded.due_us"
        ).format(self.t_timers)
        self.insert_touchpoint = SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(self.t_ids)
        self.insert_link = SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(
            self.t_links
        )
        self.insert_rows = SQL(
            "INSERT INTO {}.{} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)"
        ).format(schema, Identifier(self.events_table_name))

    def write(
        self,
        events: Sequence[StoredEvent],
        touchpoint_ids: Sequence[TouchpointRow] = (),
        timers: Sequence[TimerRow] = (),
        links: Sequence[LinkRow] = (),
    ) -> None:
        """As JourneyRecorder.write. The library's insert_events sends one array of its composite
        type, which psycopg dumps in Python (a fifth of a PostgreSQL ingest), and fetches the
        notification ids; here plain columns, dumped in C and pipelined, under the same table lock
        (so positions are committed in order and a relay never passes a gap) and notification.
        A pooled connection the server dropped is replaced, as the library's insert does: the write
        is all or nothing, and if it did commit, the next attempt collides (IntegrityError)."""
        retry(lambda _: self._write(events, touchpoint_ids, timers, links), InterfaceError, attempts=3)

    def _write(
        self,
        events: Sequence[StoredEvent],
        touchpoint_ids: Sequence[TouchpointRow],
        timers: Sequence[TimerRow],
        links: Sequence[LinkRow],
    ) -> None:
        with self.datastore.get_connection() as conn:
            with conn.pipeline() as pipeline, conn.transaction(), conn.cursor() as curs:
                if events:  # no event, no position: no lock and nothing to notify
                    for statement in self.lock_table_statements:
                        curs.execute(statement, prepare=True)
                    curs.execute(SQL("NOTIFY {}").format(Identifier(self.channel_name)))
                    curs.executemany(
                        self.insert_rows, [(s.originator_id, s.originator_version, s.topic, s.state) for s in events]
                    )
                if touchpoint_ids:
                    curs.executemany(self.insert_touchpoint, sorted(touchpoint_ids))
                if timers:
                    # Sorted first: inside the call, mypy would take the rows for psycopg's Params.
                    in_order: list[TimerRow] = sorted(timers, key=by_customer)
                    curs.executemany(self.upsert_timer, in_order)
                if links:
                    curs.executemany(self.insert_link, list(links))
                pipeline.sync()  # a unique violation is raised here, as an IntegrityError

    @contextmanager
    def _reading_tuples(self) -> Iterator[Cursor[TupleRow]]:
        """The datastore's read-only transaction, with a cursor of plain tuples: the library's
        make a dict per row. (A cursor of its own: the row type of a cursor is fixed when made.)"""
        with self.datastore.transaction(commit=False) as curs:
            yield curs.connection.cursor(row_factory=tuple_row)

    def log(self, after: int, limit: int, topics: Sequence[str] = ()) -> list[Row]:
        where = SQL(" AND topic = ANY(%s)") if topics else SQL("")
        args = [after, list(topics), limit] if topics else [after, limit]
        with self._reading_tuples() as curs:
            curs.execute(
                SQL(
                    "SELECT notification_id, originator_id::text, topic, state FROM {} "
                    "WHERE notification_id > %s{} ORDER BY notification_id LIMIT %s"
                ).format(
                    SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name)), where
                ),
                args,
            )
            return curs.fetchall()

    def history(self, customer: UUID) -> list[tuple[str, bytes]]:
        with self._reading_tuples() as curs:
            curs.execute(
                SQL("SELECT topic, state FROM {}.{} WHERE originator_id = %s ORDER BY originator_version").format(
                    Identifier(self.datastore.schema), Identifier(self.events_table_name)
                ),
                (customer,),
            )
            return curs.fetchall()

    def known_touchpoints(self, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT event_id, customer, digest FROM {} WHERE event_id = ANY(%s)").format(self.t_ids),
                (list(event_ids),),
            )
            return {r["event_id"]: (r["customer"], r["digest"]) for r in curs.fetchall()}

    def latest(self, snapshots_table: str, customers: Sequence[UUID]) -> list[tuple[UUID, int, str, bytes]]:
        """In one round trip per query."""
        schema = Identifier(self.datastore.schema)
        events, snaps = Identifier(self.events_table_name), Identifier(snapshots_table)
        with self.datastore.transaction(commit=False) as curs:
            # One index scan per customer in both queries: as plain joins the planner, not knowing
            # how few ids come, hash-joins a sequential scan of the whole table (seen: ingest fell
            # to ~500/s at 1.7M touchpoints). OFFSET 0 keeps a lateral subquery from being
            # flattened into such a join; its cost estimate would then switch JIT on (~0.1 s).
            curs.execute("SET LOCAL jit = off")
            curs.execute(
                SQL(
                    "SELECT s.originator_id, s.originator_version, s.topic, s.state "
                    "FROM unnest(%s::uuid[]) AS v(id) CROSS JOIN LATERAL ("
                    "SELECT originator_id, originator_version, topic, state FROM {schema}.{snaps} "
                    "WHERE originator_id = v.id ORDER BY originator_version DESC LIMIT 1) s"
                ).format(schema=schema, snaps=snaps),
                (list(customers),),
            )
            out = [
                (r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])) for r in curs.fetchall()
            ]
            after = dict.fromkeys(customers, 0) | {r[0]: r[1] for r in out}
            curs.execute(
                SQL(
                    "SELECT e.originator_id, e.originator_version, e.topic, e.state "
                    "FROM unnest(%s::uuid[], %s::bigint[]) AS v(id, gt) CROSS JOIN LATERAL ("
                    "SELECT originator_id, originator_version, topic, state FROM {schema}.{events} "
                    "WHERE originator_id = v.id AND originator_version > v.gt OFFSET 0) e"
                ).format(schema=schema, events=events),
                (list(after), list(after.values())),
            )
            out += [
                (r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])) for r in curs.fetchall()
            ]
        out.sort(key=by_id_version)
        return out

    def replace_snapshots(self, snapshots_table: str, stored: Sequence[StoredEvent]) -> None:
        table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(snapshots_table))
        rows = [(s.originator_id, s.originator_version, s.topic, s.state) for s in stored]
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                SQL("INSERT INTO {} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)").format(
                    table
                ),
                rows,
            )
            curs.executemany(
                SQL("DELETE FROM {} WHERE originator_id = %s AND originator_version < %s").format(table),
                [(r[0], r[1]) for r in rows],
            )

    def due_customers(self, until_us: int, limit: int, shard: tuple[int, int] | None = None) -> list[str]:
        where, args = SQL(""), [until_us]
        if shard is not None:  # engine.ids.shard_of: the last byte of the uuid
            where, args = (
                SQL(" AND ('x' || substr(customer, 35, 2))::bit(8)::int %% %s = %s"),
                [until_us, shard[1], shard[0]],
            )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT customer FROM {} WHERE due_us <= %s{} ORDER BY due_us LIMIT %s").format(
                    self.t_timers, where
                ),
                [*args, limit],
            )
            return [r["customer"] for r in curs.fetchall()]

    def customer_count(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT COUNT(*) AS n FROM {}").format(self.t_timers))
            row = curs.fetchone()
            assert row is not None  # COUNT(*) returns a row
            return row["n"]

    def links_of(self, values: Sequence[str]) -> list[LinkRow]:
        with self._reading_tuples() as curs:
            curs.execute(
                SQL("SELECT * FROM {0} WHERE a_value = ANY(%s) UNION SELECT * FROM {0} WHERE b_value = ANY(%s)").format(
                    self.t_links
                ),
                (list(values), list(values)),
            )
            return [tuple(r) for r in curs.fetchall()]

    def all_links(self) -> list[LinkRow]:
        with self._reading_tuples() as curs:
            curs.execute(SQL("SELECT * FROM {}").format(self.t_links))
            return [tuple(r) for r in curs.fetchall()]

    def drop_links(self, value: str, kind: str = "customer") -> int:
        mine = "DELETE FROM {} WHERE (a_kind = %s AND a_value = %s) OR (b_kind = %s AND b_value = %s)"
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL(mine).format(self.t_links), (kind, value, kind, value))
            gone = curs.rowcount
            curs.execute(SQL(mine).format(self.t_unlinks), (kind, value, kind, value))
            return gone

    def record_unlink(self, row: UnlinkRow) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(self.t_unlinks), row
            )

    def unlinks_of(self, values: Sequence[str] | None) -> list[UnlinkRow]:
        with self._reading_tuples() as curs:
            if values is None:
                curs.execute(SQL("SELECT * FROM {}").format(self.t_unlinks))
            else:
                curs.execute(
                    SQL("SELECT * FROM {} WHERE a_value = ANY(%s) OR b_value = ANY(%s)").format(self.t_unlinks),
                    (list(values), list(values)),
                )
            return [tuple(r) for r in curs.fetchall()]

    def record_model(self, row: ModelRow) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("INSERT INTO {} VALUES (%s, %s, %s) ON CONFLICT DO NOTHING").format(self.t_models), row)

    def models(self) -> list[ModelRow]:
        with self._reading_tuples() as curs:
            curs.execute(SQL("SELECT * FROM {} ORDER BY recorded_at, model_id").format(self.t_models))
            return [tuple(r) for r in curs.fetchall()]

    def model_count(self) -> int:
        with self._reading_tuples() as curs:
            curs.execute(SQL("SELECT count(*) FROM {}").format(self.t_models))
            row = curs.fetchone()
            assert row is not None  # a count has a row
            return int(row[0])

    def get_position(self, name: str) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT position FROM {} WHERE name = %s").format(self.t_positions), (name,))
            row = curs.fetchone()
            return row["position"] if row else 0

    def set_position(self, name: str, position: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET position = excluded.position"
                ).format(self.t_positions),
                (name, position),
            )


def pg_connect(pg: PostgresSettings, **kwargs: Any) -> Any:
    import psycopg

    return psycopg.connect(
        dbname=pg.dbname, host=pg.host, port=pg.port, user=pg.user, password=pg.password or None, **kwargs
    )


@contextmanager
def pg_setup_lock(pg: PostgresSettings) -> Iterator[None]:
    """A session advisory lock per schema, held while tables are created."""
    key = zlib.crc32(f"journey-setup:{pg.schema_}".encode())
    with pg_connect(pg, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def ensure_schema(pg: PostgresSettings) -> None:
    with pg_connect(pg, autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(pg.schema_)))


def postgres_store_exists(pg: PostgresSettings) -> bool:
    """Whether the schema holds a journey store (its touchpoint table), without creating anything."""
    with pg_connect(pg, autocommit=True) as conn:
        name = SQL("{}.journey_touchpoints").format(Identifier(pg.schema_)).as_string(conn)
        row = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    return row is not None and row[0] is not None
