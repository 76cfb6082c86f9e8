"""Per-customer encryption keys, kept apart from the events they unlock.

Deleting a key is the erasure (crypto-shredding): the sealed PII in the immutable
events can never be opened again. SQLite keys live in their own file with
secure_delete on and a rollback journal (no WAL), so a deleted key leaves no bytes behind.

A deleted key leaves a tombstone (an empty key, ERASED_KEY) in its place, in the same
transaction: creating a key is an insert that a present row ignores, so once a customer is
forgotten no writer, however stale its view of the customer, can make a new key for them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from typing import Protocol

from psycopg.sql import SQL, Identifier

from .config import Config
from .retry import retry

log = logging.getLogger("journey.keys")
ERASED_KEY = b""  # the tombstone of a deleted key: personal fields are dropped, never sealed


class KeyStore(Protocol):
    def get_many(self, customers: Iterable[str]) -> dict[str, bytes]: ...
    def create_many(self, customers: Iterable[str]) -> dict[str, bytes]: ...
    def delete(self, customer: str) -> bool: ...
    def close(self) -> None: ...


class SQLiteKeyStore:
    def __init__(self, path: str):
        from .persistence.files import private_file

        private_file(path)  # keys: readable by the owner only
        os.chmod(path, 0o600)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA secure_delete = ON")
        retry(lambda _: self.db.execute("PRAGMA journal_mode = DELETE"), sqlite3.OperationalError, attempts=50)
        self.db.execute("CREATE TABLE IF NOT EXISTS customer_keys (customer TEXT PRIMARY KEY, key BLOB NOT NULL)")

    def get_many(self, customers: Iterable[str]) -> dict[str, bytes]:
        ids = list(customers)
        out = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self.db.execute(
                f"SELECT customer, key FROM customer_keys WHERE customer IN ({','.join('?' * len(chunk))})", chunk
            )
            out.update(dict(rows))
        return out

    def create_many(self, customers: Iterable[str]) -> dict[str, bytes]:
        # INSERT OR IGNORE then read back: a concurrent writer's key wins, and both use it.
        rows = [(c, os.urandom(32)) for c in customers]
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT OR IGNORE INTO customer_keys VALUES (?, ?)", rows)
        self.db.execute("COMMIT")
        return self.get_many(c for c, _ in rows)

    def delete(self, customer: str) -> bool:
        """Replace the customer's key by the tombstone; True if a key was there."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            had = self.db.execute("SELECT key FROM customer_keys WHERE customer = ?", (customer,)).fetchone()
            self.db.execute("DELETE FROM customer_keys WHERE customer = ?", (customer,))
            self.db.execute("INSERT INTO customer_keys VALUES (?, ?)", (customer, ERASED_KEY))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        vacuum(lambda: self.db.execute("VACUUM"))
        return bool(had and had[0])

    def close(self) -> None:
        self.db.close()


class PostgresKeyStore:
    def __init__(self, config: Config):
        import psycopg

        from .persistence.postgres import pg_connect, pg_setup_lock

        self.conn = pg_connect(config.store.postgres, autocommit=True)
        self.table = SQL("{}.journey_customer_keys").format(Identifier(config.store.postgres.schema_))
        # Workers starting together would race to create the table: they take turns.
        with pg_setup_lock(config.store.postgres):
            retry(
                lambda _: self.conn.execute(
                    SQL("CREATE TABLE IF NOT EXISTS {} (customer text PRIMARY KEY, key bytea NOT NULL)").format(
                        self.table
                    )
                ),
                (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject),
                attempts=5,
            )

    def get_many(self, customers: Iterable[str]) -> dict[str, bytes]:
        rows = self.conn.execute(
            SQL("SELECT customer, key FROM {} WHERE customer = ANY(%s)").format(self.table), (list(customers),)
        ).fetchall()
        return {c: bytes(k) for c, k in rows}

    def create_many(self, customers: Iterable[str]) -> dict[str, bytes]:
        ids = list(customers)
        with self.conn.cursor() as cur:
            cur.executemany(
                SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(self.table),
                [(c, os.urandom(32)) for c in ids],
            )
        return self.get_many(ids)

    def delete(self, customer: str) -> bool:
        """Replace the customer's key by the tombstone; True if a key was there."""
        with self.conn.transaction():
            row = self.conn.execute(
                SQL("DELETE FROM {} WHERE customer = %s RETURNING key").format(self.table), (customer,)
            ).fetchone()
            # A writer making the customer's first key meanwhile loses to the tombstone.
            self.conn.execute(
                SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT (customer) DO UPDATE SET key = excluded.key").format(
                    self.table
                ),
                (customer, ERASED_KEY),
            )
        vacuum(lambda: self.conn.execute(SQL("VACUUM {}").format(self.table)))  # dead tuples keep key bytes
        return bool(row and bytes(row[0]))

    def close(self) -> None:
        self.conn.close()


def vacuum(run: Callable[[], object]) -> None:
    """Reclaim the space of what a forget deleted (a key, kept rejects). The deletion is committed
    whatever happens here; if the store is busy, the next forget or VACUUM does it."""
    try:
        run()
    except Exception as e:  # noqa: BLE001 - logged, not fatal: see above
        log.warning("VACUUM after a forget failed (%s); the deleted bytes may linger until the next one", e)


def open_keystore(config: Config) -> KeyStore:
    if config.store.backend == "postgres":
        return PostgresKeyStore(config)
    from .persistence.files import private_dir

    return SQLiteKeyStore(str(private_dir(config.data_path) / config.store.keys_file))
