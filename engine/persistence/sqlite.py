"""The journey recorder on SQLite: the library's application recorder, its contract kept, plus
the side tables and the bulk reads the engine needs (engine.persistence.journal)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from .journal import LinkRow, ModelRow, Row, TimerRow, TouchpointRow, UnlinkRow, by_customer, by_id_version

WAL_CHECKPOINT_PAGES = 10_000  # SQLite: checkpoint the WAL every ~40 MB (default: 1,000 pages)
WRITER_CACHE_KIB = 65_536
LINK_COLUMNS = (
    "a_kind TEXT NOT NULL, a_value TEXT NOT NULL, b_kind TEXT NOT NULL, b_value TEXT NOT NULL, "
    "at TEXT NOT NULL, recorded_at TEXT NOT NULL, evidence TEXT NOT NULL, rule TEXT NOT NULL"
)  # SQLite: page cache of the writing connection (default: 2 MB)


def _id_text(originator_id: UUID | str) -> str:
    """A stored event's originator id as this table holds it (the library's rule: a UUID as hex)."""
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


class SQLiteJourneyRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + [
            "CREATE TABLE IF NOT EXISTS journey_touchpoints ("
            "event_id TEXT PRIMARY KEY, customer TEXT NOT NULL, digest TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS journey_timers (customer TEXT PRIMARY KEY, due_us INTEGER)",
            "CREATE INDEX IF NOT EXISTS journey_timers_due ON journey_timers (due_us)",
            "CREATE TABLE IF NOT EXISTS journey_positions (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS journey_links ({LINK_COLUMNS}, "
            "PRIMARY KEY (evidence, rule, a_value, b_value))",
            "CREATE INDEX IF NOT EXISTS journey_links_a ON journey_links (a_value)",
            "CREATE INDEX IF NOT EXISTS journey_links_b ON journey_links (b_value)",
            "CREATE TABLE IF NOT EXISTS journey_unlinks (a_kind TEXT NOT NULL, a_value TEXT NOT NULL, "
            "b_kind TEXT NOT NULL, b_value TEXT NOT NULL, recorded_at TEXT NOT NULL, reason TEXT NOT NULL, "
            "PRIMARY KEY (a_kind, a_value, b_kind, b_value, recorded_at))",
            "CREATE TABLE IF NOT EXISTS journey_models "
            "(model_id TEXT NOT NULL, recorded_at TEXT NOT NULL, body TEXT NOT NULL, "
            "PRIMARY KEY (recorded_at, model_id))",
        ]

    def write(
        self,
        events: Sequence[StoredEvent],
        touchpoint_ids: Sequence[TouchpointRow] = (),
        timers: Sequence[TimerRow] = (),
        links: Sequence[LinkRow] = (),
    ) -> None:
        """As JourneyRecorder.write: one executemany per table. (The library's insert_events runs
        one statement per event, to return each notification id; it is left as it is.)"""
        # Each touchpoint dirties a page of several indexes with random keys (customer, event
        # id), so a batch writes megabytes to the WAL; checkpointing after every ~1,000 pages
        # (the default) rewrites them all into the database at each commit. Checkpoints every
        # ~40 MB, and a page cache that holds the hot index pages, doubled the write rate at
        # 100,000 customers. (Connection settings, so they are set on the writing connection.)
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            c.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            c.executemany(
                self.insert_events_statement,
                [(_id_text(s.originator_id), s.originator_version, s.topic, s.state) for s in events],
            )
            if touchpoint_ids:
                c.executemany("INSERT INTO journey_touchpoints VALUES (?,?,?)", sorted(touchpoint_ids))
            if timers:
                c.executemany(
                    "INSERT INTO journey_timers VALUES (?,?) "
                    "ON CONFLICT (customer) DO UPDATE SET due_us = excluded.due_us",
                    sorted(timers, key=by_customer),
                )
            if links:  # a touchpoint recorded again (a rebuild into a store that has it) adds none
                c.executemany("INSERT OR IGNORE INTO journey_links VALUES (?,?,?,?,?,?,?,?)", links)

    def log(self, after: int, limit: int, topics: Sequence[str] = ()) -> list[Row]:
        where = f" AND topic IN ({','.join('?' * len(topics))})" if topics else ""
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None  # plain tuples: a sqlite3.Row per row costs as much as the read
            c.execute(
                f"SELECT rowid, originator_id, topic, state FROM {self.events_table_name} "
                f"WHERE rowid > ?{where} ORDER BY rowid LIMIT ?",
                [after, *topics, limit],
            )
            return c.fetchall()

    def history(self, customer: UUID) -> list[tuple[str, bytes]]:
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None
            c.execute(
                f"SELECT topic, state FROM {self.events_table_name} WHERE originator_id = ? "
                "ORDER BY originator_version",
                (customer.hex,),
            )
            return c.fetchall()

    def known_touchpoints(self, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(event_ids), 500):
                chunk = event_ids[i : i + 500]
                c.execute(
                    "SELECT event_id, customer, digest FROM journey_touchpoints WHERE event_id IN "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                )
                out.update({r[0]: (r[1], r[2]) for r in c.fetchall()})
        return out

    def latest(self, snapshots_table: str, customers: Sequence[UUID]) -> list[tuple[UUID, int, str, bytes]]:
        """In two queries per chunk of customers."""
        out: list[tuple[UUID, int, str, bytes]] = []
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(customers), 400):
                chunk = [u.hex for u in customers[i : i + 400]]
                marks = ",".join("?" * len(chunk))
                c.execute(
                    f"SELECT originator_id, MAX(originator_version) FROM {snapshots_table} "
                    f"WHERE originator_id IN ({marks}) GROUP BY originator_id",
                    chunk,
                )
                after = dict.fromkeys(chunk, 0) | {r[0]: r[1] for r in c.fetchall()}
                snapped = [(k, v) for k, v in after.items() if v]
                if snapped:
                    c.execute(
                        "WITH v(id, version) AS (VALUES " + ",".join(["(?,?)"] * len(snapped)) + ") "
                        f"SELECT s.originator_id, s.originator_version, s.topic, s.state FROM v JOIN "
                        f"{snapshots_table} s ON s.originator_id = v.id AND s.originator_version = v.version",
                        [x for kv in snapped for x in kv],
                    )
                    out += [(UUID(r[0]), r[1], r[2], r[3]) for r in c.fetchall()]
                c.execute(
                    "WITH v(id, gt) AS (VALUES " + ",".join(["(?,?)"] * len(after)) + ") "
                    f"SELECT e.originator_id, e.originator_version, e.topic, e.state FROM v "
                    f"JOIN {self.events_table_name} e ON e.originator_id = v.id AND e.originator_version > v.gt",
                    [x for kv in after.items() for x in kv],
                )
                out += [(UUID(r[0]), r[1], r[2], r[3]) for r in c.fetchall()]
        out.sort(key=by_id_version)
        return out

    def replace_snapshots(self, snapshots_table: str, stored: Sequence[StoredEvent]) -> None:
        rows = [(_id_text(s.originator_id), s.originator_version, s.topic, s.state) for s in stored]
        with self.datastore.transaction(commit=True) as c:
            c.executemany(
                f"INSERT INTO {snapshots_table} (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
                rows,
            )
            c.executemany(
                f"DELETE FROM {snapshots_table} WHERE originator_id = ? AND originator_version < ?",
                [(r[0], r[1]) for r in rows],
            )

    def due_customers(self, until_us: int, limit: int, shard: tuple[int, int] | None = None) -> list[str]:
        where, args = "", [until_us]
        if shard is not None:
            # engine.ids.shard_of: the last byte of the uuid (its last two hex digits).
            where, args = (
                " AND ((instr('0123456789abcdef', substr(customer, 35, 1)) - 1) * 16"
                " + instr('0123456789abcdef', substr(customer, 36, 1)) - 1) % ? = ?",
                [until_us, shard[1], shard[0]],
            )
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT customer FROM journey_timers WHERE due_us <= ?{where} ORDER BY due_us LIMIT ?", [*args, limit]
            )
            return [r[0] for r in c.fetchall()]

    def customer_count(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT COUNT(*) FROM journey_timers")
            return c.fetchone()[0]

    def links_of(self, values: Sequence[str]) -> list[LinkRow]:
        out: list[LinkRow] = []
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(values), 400):
                chunk = list(values[i : i + 400])
                marks = ",".join("?" * len(chunk))
                c.execute(
                    f"SELECT * FROM journey_links WHERE a_value IN ({marks}) "
                    f"UNION SELECT * FROM journey_links WHERE b_value IN ({marks})",
                    chunk + chunk,
                )
                out += [tuple(r) for r in c.fetchall()]
        return out

    def all_links(self) -> list[LinkRow]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM journey_links")
            return [tuple(r) for r in c.fetchall()]

    def drop_links(self, value: str, kind: str = "customer") -> int:
        mine = "(a_kind = ? AND a_value = ?) OR (b_kind = ? AND b_value = ?)"
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM journey_links WHERE {mine}", (kind, value, kind, value))
            gone = c.sqlite_cursor.rowcount
            c.execute(f"DELETE FROM journey_unlinks WHERE {mine}", (kind, value, kind, value))
            return gone

    def record_unlink(self, row: UnlinkRow) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("INSERT OR IGNORE INTO journey_unlinks VALUES (?,?,?,?,?,?)", row)

    def unlinks_of(self, values: Sequence[str] | None) -> list[UnlinkRow]:
        with self.datastore.transaction(commit=False) as c:
            if values is None:
                c.execute("SELECT * FROM journey_unlinks")
            else:
                marks = ",".join("?" * len(values))
                c.execute(
                    f"SELECT * FROM journey_unlinks WHERE a_value IN ({marks}) OR b_value IN ({marks})",
                    [*values, *values],
                )
            return [tuple(r) for r in c.fetchall()]

    def record_model(self, row: ModelRow) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("INSERT OR IGNORE INTO journey_models VALUES (?,?,?)", row)

    def models(self) -> list[ModelRow]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM journey_models ORDER BY recorded_at, model_id")
            return [tuple(r) for r in c.fetchall()]

    def model_count(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT count(*) FROM journey_models")
            return int(c.fetchone()[0])

    def get_position(self, name: str) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT position FROM journey_positions WHERE name = ?", (name,))
            row = c.fetchone()
            return row[0] if row else 0

    def set_position(self, name: str, position: int) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "INSERT INTO journey_positions VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET position = excluded.position",
                (name, position),
            )
