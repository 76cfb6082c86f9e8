"""The dead-letter table: records the engine refused, kept as they came with the reason, so that
nothing a client sent is lost (`journey rejects` lists them; `journey forget` deletes a person's).

A kept record is unique by where it came from (its coordinates): the digest of its bytes for HTTP
(a client resending a refused message does not add it twice), topic/partition/offset for Kafka
(neither does a redelivery after a crash). Kept rejects hold personal data as it was sent, so they
live apart from the event log, like the keys: on SQLite in their own file with secure_delete (a
deleted row is overwritten in the file) and a rollback journal (no WAL keeping old pages), on
PostgreSQL in a table vacuumed after a forget (its WAL and free space are the server's to manage).
A record is kept under the customer id it was sent with (Segment's userId, else its anonymousId),
which is what `forget` matches.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from psycopg.sql import SQL, Identifier

from .config import Config
from .keys import vacuum
from .retry import retry

# (coordinates, received at as ISO text, customer id as sent or None, message id or None, field,
# reason, the record's bytes)
Row = tuple[str, str, "str | None", "str | None", str, str, bytes]
COLUMNS = "coordinates, received_at, customer, message_id, field, reason, body"


class DeadLetters(Protocol):
    def keep(self, rows: Sequence[Row]) -> int:
        """Keep refused records in one transaction; one already kept from the same place is not
        kept twice. Returns how many were new."""

    def after(self, number: int, limit: int) -> list[tuple[Any, ...]]:
        """(number, *Row) of the kept rejects numbered after `number`, oldest first."""

    def drop(self, customer_id: str) -> int:
        """Delete the rejects sent with this customer id (erasure); returns how many."""

    def close(self) -> None: ...


class SQLiteDeadLetters:
    def __init__(self, path: str, timeout: float = 30):
        from .persistence.files import private_file

        private_file(path)  # personal data as sent: readable by the owner only
        # One thread at a time uses it: the callers hold the engine's writer lock.
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
        self.db.execute("PRAGMA secure_delete = ON")
        retry(lambda _: self.db.execute("PRAGMA journal_mode = DELETE"), sqlite3.OperationalError, attempts=50)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS rejects (number INTEGER PRIMARY KEY AUTOINCREMENT, "
            "coordinates TEXT NOT NULL UNIQUE, received_at TEXT NOT NULL, customer TEXT, message_id TEXT, "
            "field TEXT NOT NULL, reason TEXT NOT NULL, body BLOB NOT NULL)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS rejects_customer ON rejects (customer)")

    def keep(self, rows: Sequence[Row]) -> int:
        before = self.db.total_changes
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                f"INSERT INTO rejects ({COLUMNS}) VALUES (?,?,?,?,?,?,?) ON CONFLICT (coordinates) DO NOTHING", rows
            )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return self.db.total_changes - before

    def after(self, number: int, limit: int) -> list[tuple[Any, ...]]:
        rows = self.db.execute(
            f"SELECT number, {COLUMNS} FROM rejects WHERE number > ? ORDER BY number LIMIT ?", (number, limit)
        )
        return [tuple(r) for r in rows]

    def drop(self, customer_id: str) -> int:
        gone = self.db.execute("DELETE FROM rejects WHERE customer = ?", (customer_id,)).rowcount
        if gone:
            vacuum(lambda: self.db.execute("VACUUM"))
        return gone

    def close(self) -> None:
        self.db.close()


class PostgresDeadLetters:
    def __init__(self, config: Config):
        import psycopg

        from .persistence.postgres import ensure_schema, pg_connect, pg_setup_lock

        ensure_schema(config.store.postgres)
        self.conn = pg_connect(config.store.postgres, autocommit=True)
        self.table = SQL("{}.journey_rejects").format(Identifier(config.store.postgres.schema_))
        with pg_setup_lock(config.store.postgres):  # workers starting together take turns
            retry(
                lambda _: self.conn.execute(
                    SQL(
                        "CREATE TABLE IF NOT EXISTS {} (number bigserial PRIMARY KEY, coordinates text NOT NULL "
                        "UNIQUE, received_at text NOT NULL, customer text, message_id text, field text NOT NULL, "
                        "reason text NOT NULL, body bytea NOT NULL)"
                    ).format(self.table)
                ),
                (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject),
                attempts=5,
            )

    def keep(self, rows: Sequence[Row]) -> int:
        kept = 0
        with self.conn.transaction(), self.conn.cursor() as cur:
            for r in rows:
                cur.execute(
                    SQL(f"INSERT INTO {{}} ({COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING").format(
                        self.table
                    ),
                    r,
                )
                kept += cur.rowcount
        return kept

    def after(self, number: int, limit: int) -> list[tuple[Any, ...]]:
        rows = self.conn.execute(
            SQL(f"SELECT number, {COLUMNS} FROM {{}} WHERE number > %s ORDER BY number LIMIT %s").format(self.table),
            (number, limit),
        ).fetchall()
        return [(*r[:7], bytes(r[7])) for r in rows]

    def drop(self, customer_id: str) -> int:
        gone = self.conn.execute(SQL("DELETE FROM {} WHERE customer = %s").format(self.table), (customer_id,)).rowcount
        if gone:
            vacuum(lambda: self.conn.execute(SQL("VACUUM {}").format(self.table)))  # dead tuples keep the bytes
        return gone

    def close(self) -> None:
        self.conn.close()


def open_dead_letters(config: Config) -> DeadLetters:
    if config.store.backend == "postgres":
        return PostgresDeadLetters(config)
    from .persistence.files import private_dir

    return SQLiteDeadLetters(
        str(private_dir(config.data_path) / config.store.rejects_file), config.store.lock_timeout_seconds
    )


def http_coordinates(body: bytes) -> str:
    return "http/" + hashlib.sha256(body).hexdigest()[:32]


def row(
    coordinates: str,
    received_at: str,
    body: bytes,
    field: str,
    reason: str,
    customer_id: Any = None,
    message_id: Any = None,
) -> Row:
    """A reject to keep. A number as an id is kept as text (forget can match it); ids of other
    types (a malformed record may hold anything) are only in the body."""
    return (
        coordinates,
        received_at,
        _id(customer_id),
        _id(message_id),
        field,
        reason,
        body,
    )


def _id(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def sent_by(record: Any, *names: str) -> Any:
    """The first of these fields a record was sent with (a decoded object, or a JSON line): whose
    it is, as far as can be told from a record that was refused."""
    if isinstance(record, bytes | str):
        try:
            record = orjson.loads(record)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(record, dict):
        return None
    return next((record[n] for n in names if record.get(n) not in (None, "")), None)


def as_dict(kept: tuple[Any, ...]) -> dict[str, Any]:
    """A kept reject as `journey rejects --json` gives it: the body as text when it is UTF-8, else
    in base64 (the bytes as they came)."""
    number, coordinates, received_at, customer, message_id, field, reason, body = kept
    try:
        text: str | None = body.decode()
        raw = None
    except UnicodeDecodeError:
        text, raw = None, base64.b64encode(body).decode()
    return {
        "number": number,
        "source": coordinates,
        "received_at": received_at,
        "customer_id": customer,
        "message_id": message_id,
        "field": field,
        "reason": reason,
        "body": text,
        "body_base64": raw,
    }
