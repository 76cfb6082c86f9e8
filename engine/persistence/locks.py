"""Writers of one store take turns: WriterLock."""

from __future__ import annotations

import fcntl
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..retry import at_once, retry
from ..settings import PostgresSettings
from .postgres import pg_connect


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
    def file(cls, path: str) -> WriterLock:
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
    def postgres(cls, pg: PostgresSettings) -> WriterLock:
        import psycopg

        key = zlib.crc32(f"journey-writer:{pg.schema_}".encode())
        conn: list[Any] = []

        def lock(attempt: int) -> None:
            if not conn:
                conn.append(pg_connect(pg, autocommit=True))
            try:
                conn[0].execute("SELECT pg_advisory_lock(%s)", (key,))
            except psycopg.OperationalError:
                close()
                raise

        def acquire() -> None:  # a connection the server dropped is replaced once
            retry(lock, psycopg.OperationalError, attempts=2, pause=at_once)

        def release() -> None:
            try:
                conn[0].execute("SELECT pg_advisory_unlock(%s)", (key,))
            except psycopg.OperationalError:
                close()  # the lock went with the session

        def close() -> None:
            while conn:
                try:
                    conn.pop().close()
                except Exception:  # noqa: BLE001 - closing what is already broken
                    pass

        return cls(acquire, release, close)
